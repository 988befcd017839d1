"""The 512-d latent that draws the dog (docs/method.md, "Sketch and latent (bundles)").

z = P·s for the flattened sketch s.  P is a seeded sparse sign projection
(count sketch): each sketch entry is added, with a fixed random sign, to one
of 512 buckets.  Like a dense Gaussian P it preserves inner products in
expectation, so cos(z_a, z_b) tracks the aggregate similarity, but it costs
O(len(s)) instead of 512·len(s) and needs no 512×10⁶ matrix.  Each bucket sums
thousands of entries, so z is close to Gaussian; it is finally standardised to
zero mean and unit variance.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from attest.formats import LATENT_DIM, LATENT_SEED


@lru_cache(maxsize=4)
def _projection(seed: int, size: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    # The same (seed, size) recurs: `attest identify` projects one sketch per
    # registered bundle, and bundles of one shape share it.  Drawing P again is
    # most of a small projection's cost.  Read-only, so no caller can alter it.
    rng = np.random.Generator(np.random.PCG64(seed))
    buckets = rng.integers(0, dim, size=size)
    signs = (rng.integers(0, 2, size=size) * 2 - 1).astype(np.float64)
    buckets.setflags(write=False)
    signs.setflags(write=False)
    return buckets, signs


def project(values: np.ndarray, seed: int = LATENT_SEED, dim: int = LATENT_DIM) -> np.ndarray:
    s = np.nan_to_num(np.asarray(values, dtype=np.float64).reshape(-1))
    buckets, signs = _projection(int(seed), int(s.size), int(dim))
    z = np.bincount(buckets, weights=signs * s, minlength=dim)
    std = z.std()
    if std == 0:
        return np.zeros(dim, dtype=np.float32)
    return ((z - z.mean()) / std).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na and nb else 0.0
