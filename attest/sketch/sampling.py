"""The sketch (docs/method.md, "Sketch and latent (bundles)"): standardised invariant values at m fixed token pairs.

The full n×n matrices stay private.  A bundle carries, for every (layer, term)
cell, the values at the same m off-diagonal positions (i, j) of the token list.
The verifier computes its own matrices over the tokens it has, reads the same
positions, and estimates the aggregate similarity.

Estimator and interval (see `aggregate`): the cosine of the matched cells'
values over the valid positions, with a jackknife standard error that leaves
out one position at a time.  Positions, not cells, are the sampling unit,
which keeps the interval honest although cells of one model are correlated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attest.formats import SKETCH_BUDGET_BYTES

DEFAULT_PAIRS = 8192
Z_95 = 1.959963984540054


def choose_pairs(n_tokens: int, m: int, seed: int) -> np.ndarray:
    """m distinct off-diagonal positions of an n×n matrix, [m, 2] int64, sorted."""
    total = n_tokens * (n_tokens - 1)
    m = min(m, total)
    rng = np.random.Generator(np.random.PCG64(seed))
    flat = np.sort(rng.choice(total, size=m, replace=False))
    i = flat // (n_tokens - 1)
    r = flat % (n_tokens - 1)
    j = r + (r >= i)
    return np.stack([i, j], axis=1).astype(np.int64)


def pairs_for_budget(n_tokens: int, n_cells: int, requested: int = DEFAULT_PAIRS) -> int:
    """Largest m <= requested whose float16 sketch fits the size budget."""
    fit = SKETCH_BUDGET_BYTES // max(1, 2 * n_cells)
    return int(max(256, min(requested, fit, n_tokens * (n_tokens - 1))))


def sample(z: torch.Tensor, pairs: np.ndarray) -> np.ndarray:
    """Values of a standardised matrix at the given positions (float32)."""
    idx = torch.as_tensor(pairs, dtype=torch.long)
    return z[idx[:, 0], idx[:, 1]].float().numpy()


def remap_pairs(pairs: np.ndarray, present: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Positions in the covered-token list for pairs whose two tokens are both present.

    Returns (valid mask over the m pairs, remapped [k, 2] positions).
    """
    pos = np.cumsum(present) - 1
    ok = np.asarray(present, dtype=bool)
    valid = ok[pairs[:, 0]] & ok[pairs[:, 1]]
    return valid, pos[pairs[valid]]


@dataclass
class Estimate:
    score: float
    ci: tuple[float, float]
    stderr: float
    n_pairs: int


def aggregate(base: np.ndarray, suspect: np.ndarray) -> Estimate:
    """Cosine of the matched sketch values with a jackknife interval over positions.

    base, suspect: [cells, k] values at the same k valid positions, cells
    matched.  The cosine (not the raw mean of products) keeps the estimate in
    [-1, 1] and makes identical models score exactly 1; dropping one position
    at a time gives the jackknife standard error, which treats positions as
    the sampling unit.
    """
    if base.size == 0 or base.shape[1] < 2:
        return Estimate(float("nan"), (float("nan"), float("nan")), float("nan"), 0)
    a = base.astype(np.float64)
    b = suspect.astype(np.float64)
    s_ab = (a * b).sum(axis=0)
    s_aa = (a * a).sum(axis=0)
    s_bb = (b * b).sum(axis=0)
    tot_ab, tot_aa, tot_bb = s_ab.sum(), s_aa.sum(), s_bb.sum()
    denom = np.sqrt(tot_aa * tot_bb)
    if denom == 0:
        return Estimate(float("nan"), (float("nan"), float("nan")), float("nan"), 0)
    score = float(np.clip(tot_ab / denom, -1.0, 1.0))
    k = a.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        loo = (tot_ab - s_ab) / np.sqrt((tot_aa - s_aa) * (tot_bb - s_bb))
    loo = np.nan_to_num(loo, nan=score)
    se = float(np.sqrt((k - 1) / k * ((loo - loo.mean()) ** 2).sum()))
    lo, hi = max(-1.0, score - Z_95 * se), min(1.0, score + Z_95 * se)
    return Estimate(score, (lo, hi), se, k)


def cell_estimates(base: np.ndarray, suspect: np.ndarray) -> np.ndarray:
    """Per-cell cosine of the sketch values over the valid positions."""
    a = base.astype(np.float64)
    b = suspect.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
