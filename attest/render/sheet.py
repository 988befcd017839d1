"""The side-by-side comparison sheet and deterministic PNG encoding."""

from __future__ import annotations

import io
import math
import os
from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from attest.render.base import Renderer, get_renderer

PAPER = (250, 248, 244)
INKC = (38, 36, 40)
MUTED = (112, 108, 116)
GRID = (222, 218, 212)

VERDICT_STYLE: dict[str, tuple[str, tuple[int, int, int]]] = {
    "match": ("MATCH: the suspect appears to derive from the base model", (32, 128, 72)),
    "no_match": ("NO MATCH: no evidence the suspect derives from the base model", (186, 60, 48)),
    "inconclusive": ("INCONCLUSIVE: the comparison cannot decide", (190, 130, 20)),
}


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font, so body text does not depend on the host's fonts.
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=16)
def _bold(size: int) -> ImageFont.FreeTypeFont | None:
    # The bundled font has no bold; use DejaVu Sans Bold when the host has it
    # (headings only), else fake bold with a stroke.
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf", size)
    except OSError:
        return None


def _text(
    d: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    s: str,
    size: int,
    fill: tuple[int, int, int],
    anchor: str = "la",
    bold: bool = False,
) -> None:
    if bold:
        f = _bold(size)
        if f is not None:
            d.text(xy, s, font=f, fill=fill, anchor=anchor)
            return
        d.text(xy, s, font=_font(size), fill=fill, anchor=anchor, stroke_width=1, stroke_fill=fill)
        return
    d.text(xy, s, font=_font(size), fill=fill, anchor=anchor)


def _clean(s: str, limit: int = 90) -> str:
    """Strings can come from hostile bundles: keep them printable and short."""
    s = "".join(ch if ch.isprintable() else "?" for ch in str(s))
    return s if len(s) <= limit else s[: limit - 1] + "…"


def comparison_sheet(
    base_latent: np.ndarray,
    suspect_latent: np.ndarray,
    *,
    verdict: str,
    score: float,
    ci: tuple[float, float] | None,
    per_layer: Sequence[tuple[str, float]],
    title: str = "",
    renderer: Renderer | None = None,
    base_label: str = "Base model (attested)",
) -> Image.Image:
    """Base dog and suspect dog side by side, the verdict, score with CI, and
    a bar per layer showing its similarity in [-1, 1]."""
    r = renderer if renderer is not None else get_renderer()
    dog_a = r.render(base_latent)
    dog_b = r.render(suspect_latent)
    D = 480
    m = 40
    Wd = m * 3 + D * 2
    chart_h = 230
    H = 84 + D + 48 + 96 + chart_h + 60
    img = Image.new("RGB", (Wd, H), PAPER)
    d = ImageDraw.Draw(img)

    _text(d, (m, 28), _clean(title or "attest: model comparison"), 26, INKC, bold=True)
    y0 = 84
    for i, (dog, label) in enumerate(((dog_a, base_label), (dog_b, "Suspect model"))):
        x = m + i * (D + m)
        d.rounded_rectangle([x - 4, y0 - 4, x + D + 4, y0 + D + 4], radius=14, fill=GRID)
        im = dog.resize((D, D), Image.Resampling.LANCZOS)
        mask = Image.new("L", (D, D), 0)
        ImageDraw.Draw(mask).rounded_rectangle([0, 0, D - 1, D - 1], radius=12, fill=255)
        img.paste(im, (x, y0), mask)
        _text(d, (x + D / 2, y0 + D + 26), label, 20, INKC, anchor="mm")

    y = y0 + D + 48
    text, colour = VERDICT_STYLE.get(verdict, (f"VERDICT: {_clean(verdict, 40)}", MUTED))
    d.rounded_rectangle([m, y, Wd - m, y + 44], radius=10, fill=colour)
    _text(d, (Wd / 2, y + 22), text, 19, (255, 255, 255), anchor="mm", bold=True)
    y += 58
    if isinstance(score, (int, float)) and math.isfinite(score):
        s = f"Aggregate similarity {score:+.3f}"
    else:
        s = "Aggregate similarity: not available"
    if ci is not None and len(ci) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in ci):
        s += f"   (95% CI {ci[0]:+.3f} .. {ci[1]:+.3f})"
    _text(d, (Wd / 2, y + 12), s, 20, INKC, anchor="mm")

    y += 38
    _bars(d, (m, y, Wd - m, y + chart_h), per_layer)
    _text(d, (Wd - m, H - 22), "1.0 = identical invariants, 0 = unrelated", 14, MUTED, anchor="rm")
    return img


def _bars(d: ImageDraw.ImageDraw, box: tuple[int, int, int, int], per_layer: Sequence[tuple[str, float]]) -> None:
    x0, y0, x1, y1 = box
    _text(d, (x0, y0), "Similarity per layer", 15, INKC, bold=True)
    top = y0 + 28
    bottom = y1 - 26
    left = x0 + 44
    mid = (top + bottom) / 2
    for v in (-1.0, -0.5, 0.0, 0.5, 1.0):
        yy = mid - v * (bottom - top) / 2
        d.line([(left, yy), (x1, yy)], fill=INKC if v == 0 else GRID, width=1)
        _text(d, (left - 8, yy), f"{v:+.1f}" if v else "0", 12, MUTED, anchor="rm")
    n = len(per_layer)
    if n == 0:
        _text(d, ((left + x1) / 2, mid - 16), "no per-layer data", 14, MUTED, anchor="mm")
        return
    slot = (x1 - left) / n
    bw = max(1.0, min(36.0, slot * 0.7))
    step = max(1, math.ceil(n / 24))  # label at most ~24 layers so labels never collide
    for i, (name, val) in enumerate(per_layer):
        try:
            v = float(val)
        except (TypeError, ValueError):
            v = float("nan")
        cxb = left + slot * (i + 0.5)
        if math.isfinite(v):
            v = max(-1.0, min(1.0, v))
            yy = mid - v * (bottom - top) / 2
            col = (52, 120, 190) if v >= 0 else (200, 84, 64)
            d.rectangle([cxb - bw / 2, min(mid, yy), cxb + bw / 2, max(mid, yy)], fill=col)
        else:
            _text(d, (cxb, mid - 8), "?", 12, MUTED, anchor="mm")
        if i % step == 0:
            _text(d, (cxb, bottom + 12), _clean(name, 8), 11, MUTED, anchor="mm")


def _stripped(img: Image.Image) -> Image.Image:
    """A copy without img.info, so no ancillary chunks (dpi, text, icc) leak in."""
    mode = img.mode if img.mode in ("RGB", "RGBA", "L") else "RGB"
    src = img.convert(mode)
    return Image.frombytes(mode, src.size, src.tobytes())


def png_bytes(img: Image.Image) -> bytes:
    """PNG bytes that depend only on the pixels: no time, text or metadata chunks."""
    buf = io.BytesIO()
    _stripped(img).save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def save_png(img: Image.Image, path: str | os.PathLike[str]) -> None:
    data = png_bytes(img)
    with open(path, "wb") as fh:
        fh.write(data)
