"""Contact sheets for judging the renderer by eye: diversity and smoothness."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from attest.render.base import Renderer, get_renderer
from attest.render.sheet import INKC, MUTED, PAPER, _font, save_png
from attest.render.traits import LATENT_DIM

PAIR_COSINES: tuple[float, ...] = (0.99, 0.95, 0.9, 0.7, 0.0)
PAIR_ROWS = 5


def latent_at_cosine(z: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    """A latent at cosine exactly c from z, of the same norm, in a random direction.

    z2 = c*z1 + sqrt(1-c^2)*z_perp with z_perp orthogonal to z1 and |z_perp| = |z1|.
    """
    if not -1.0 <= c <= 1.0:
        raise ValueError("cosine must lie in [-1, 1]")
    z = np.asarray(z, dtype=np.float64)
    nz = float(np.linalg.norm(z))
    if nz == 0.0:
        raise ValueError("z must be non-zero")
    while True:
        p = rng.standard_normal(z.shape)
        p -= (p @ z) / (z @ z) * z
        npn = float(np.linalg.norm(p))
        # a draw parallel to z (e.g. an rng seeded like z's) leaves nothing orthogonal
        if npn > 1e-9 * nz:
            break
    p *= nz / npn
    return c * z + math.sqrt(1.0 - c * c) * p


def _label(
    d: ImageDraw.ImageDraw, xy: tuple[float, float], s: str, size: int = 18, fill: tuple[int, int, int] = INKC
) -> None:
    d.text(xy, s, font=_font(size), fill=fill, anchor="mm")


def contact_sheet(n: int = 64, seed: int = 0, thumb: int = 192, renderer: Renderer | None = None) -> Image.Image:
    """n dogs from independent N(0, I) latents on a grid."""
    r = renderer if renderer is not None else get_renderer()
    rng = np.random.RandomState(seed)
    cols = max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / cols))
    gap = 6
    head = 56
    img = Image.new("RGB", (cols * (thumb + gap) + gap, head + rows * (thumb + gap) + gap), PAPER)
    d = ImageDraw.Draw(img)
    _label(
        d,
        (img.width / 2, head / 2),
        f"{n} random dogs ({getattr(r, 'name', '?')} {getattr(r, 'version', '')}, seed {seed})",
        22,
    )
    for i in range(n):
        z = rng.standard_normal(LATENT_DIM)
        im = r.render(z).resize((thumb, thumb), Image.Resampling.LANCZOS)
        img.paste(im, (gap + (i % cols) * (thumb + gap), head + gap + (i // cols) * (thumb + gap)))
    return img


def pairs_sheet(
    rows: int | None = None, seed: int = 0, thumb: int = 208, renderer: Renderer | None = None
) -> Image.Image:
    """Each row: a base dog, then dogs whose latents sit at cosine 0.99 .. 0.0 from it."""
    r = renderer if renderer is not None else get_renderer()
    rows = PAIR_ROWS if rows is None else rows
    rng = np.random.RandomState(seed + 1_000_003)
    cols = 1 + len(PAIR_COSINES)
    gap = 8
    head = 92
    img = Image.new("RGB", (cols * (thumb + gap) + gap, head + rows * (thumb + gap) + gap), PAPER)
    d = ImageDraw.Draw(img)
    _label(d, (img.width / 2, 26), "Latent pairs: base dog, then latents at the given cosine from it", 22)
    _label(d, (gap + thumb / 2, head - 24), "base", 18, MUTED)
    for j, c in enumerate(PAIR_COSINES):
        _label(d, (gap + (j + 1) * (thumb + gap) + thumb / 2, head - 24), f"cos {c:.2f}", 18, MUTED)
    for i in range(rows):
        z = rng.standard_normal(LATENT_DIM)
        variants = [z] + [latent_at_cosine(z, c, rng) for c in PAIR_COSINES]
        for j, v in enumerate(variants):
            im = r.render(v).resize((thumb, thumb), Image.Resampling.LANCZOS)
            img.paste(im, (gap + j * (thumb + gap), head + i * (thumb + gap)))
    return img


def make_gallery(out_dir: str | os.PathLike[str], n: int = 64, seed: int = 0) -> list[Path]:
    """Write gallery.png (n random dogs) and gallery-pairs.png into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r = get_renderer()
    p1 = out / "gallery.png"
    save_png(contact_sheet(n=n, seed=seed, renderer=r), p1)
    p2 = out / "gallery-pairs.png"
    save_png(pairs_sheet(seed=seed, renderer=r), p2)
    return [p1, p2]
