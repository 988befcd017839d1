"""Distances between dogs, used by the tests and bench/render_stats.py to check
that nearby latents give look-alike dogs and independent latents do not."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from attest.render.traits import trait_vector


def _small(img: Image.Image, size: int, gray: bool) -> np.ndarray:
    im = img.convert("L" if gray else "RGB").resize((size, size), Image.Resampling.BOX)
    return np.asarray(im, dtype=np.float64)


def pixel_distance(a: Image.Image, b: Image.Image, size: int = 64) -> float:
    """Mean absolute RGB difference (0..255) after box-downsampling to size x size.

    Downsampling keeps the comparison about the picture, not about which exact
    pixels a fur stroke landed on.
    """
    return float(np.mean(np.abs(_small(a, size, False) - _small(b, size, False))))


def _box(x: np.ndarray, k: int) -> np.ndarray:
    """Mean over every k x k window (valid region), via summed-area tables."""
    c = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0))), axis=0), axis=1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def ssim(a: Image.Image, b: Image.Image, size: int = 128, window: int = 8) -> float:
    """Mean structural similarity (Wang et al. 2004) of grayscale versions, uniform window."""
    x, y = _small(a, size, True), _small(b, size, True)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _box(x, window), _box(y, window)
    sxx = _box(x * x, window) - mx * mx
    syy = _box(y * y, window) - my * my
    sxy = _box(x * y, window) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(np.mean(s))


def structural_distance(a: Image.Image, b: Image.Image) -> float:
    """1 - SSIM: 0 for identical pictures, ~1 for unrelated ones."""
    return 1.0 - ssim(a, b)


def trait_distance(za: np.ndarray, zb: np.ndarray) -> float:
    """Euclidean distance between trait vectors (each trait in [0, 1])."""
    return float(np.linalg.norm(trait_vector(za) - trait_vector(zb)))


def min_pairwise_distance(points: np.ndarray) -> tuple[float, tuple[int, int]]:
    """Smallest Euclidean distance between any two rows, and which rows."""
    p = np.asarray(points, dtype=np.float64)
    sq = np.sum(p * p, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (p @ p.T)
    np.fill_diagonal(d2, np.inf)
    i, j = np.unravel_index(int(np.argmin(d2)), d2.shape)
    # recompute exactly: the Gram-matrix form loses precision for close points
    return math.sqrt(float(np.sum((p[i] - p[j]) ** 2))), (int(i), int(j))
