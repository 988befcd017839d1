"""The sketch-to-latent projection (attest.sketch.latent): its draws are cached, its values are not."""

from __future__ import annotations

import numpy as np
import pytest

from attest.sketch.latent import project


def _reference(values: np.ndarray, seed: int, dim: int = 512) -> np.ndarray:
    # The projection as docs/method.md defines it, drawn afresh on every call.
    s = np.nan_to_num(np.asarray(values, dtype=np.float64).reshape(-1))
    rng = np.random.Generator(np.random.PCG64(seed))
    buckets = rng.integers(0, dim, size=s.size)
    signs = rng.integers(0, 2, size=s.size) * 2 - 1
    z = np.bincount(buckets, weights=signs * s, minlength=dim)
    return ((z - z.mean()) / z.std()).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 7, 2**31 - 1])
def test_cached_projection_equals_a_fresh_draw(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((6, 400)).astype(np.float32)
    b = rng.standard_normal((6, 400)).astype(np.float32)
    # The same (seed, size) twice: the second call uses the cached draws.
    for values in (a, b, a):
        assert np.array_equal(project(values, seed), _reference(values, seed))
    other = rng.standard_normal((5, 400)).astype(np.float32)  # another size: other draws
    assert np.array_equal(project(other, seed), _reference(other, seed))


def test_different_seeds_give_different_latents() -> None:
    values = np.random.default_rng(1).standard_normal((4, 300)).astype(np.float32)
    assert not np.allclose(project(values, 1), project(values, 2))


def test_callers_cannot_alter_the_cached_draws() -> None:
    values = np.random.default_rng(2).standard_normal((3, 200)).astype(np.float32)
    before = project(values, 11)
    out = project(values, 11)
    out[:] = 0.0  # the returned latent is the caller's own array
    assert np.array_equal(project(values, 11), before)
