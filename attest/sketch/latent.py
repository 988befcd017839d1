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

import numpy as np

from attest.formats import LATENT_DIM, LATENT_SEED


def project(values: np.ndarray, seed: int = LATENT_SEED, dim: int = LATENT_DIM) -> np.ndarray:
    s = np.nan_to_num(np.asarray(values, dtype=np.float64).reshape(-1))
    rng = np.random.Generator(np.random.PCG64(seed))
    buckets = rng.integers(0, dim, size=s.size)
    signs = rng.integers(0, 2, size=s.size) * 2 - 1
    z = np.bincount(buckets, weights=signs * s, minlength=dim)
    std = z.std()
    if std == 0:
        return np.zeros(dim, dtype=np.float32)
    return ((z - z.mean()) / std).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na and nb else 0.0
