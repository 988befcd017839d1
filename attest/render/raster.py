"""The raster toolkit the dog is drawn with: supersampled canvas, cropped masks, ramps.

Nothing here knows about dogs. Shapes are `(n, 2)` float arrays of points in
logical pixels (a SIZE x SIZE picture); they are drawn at SS times that size
with plain polygons, and `Canvas.finish` downsamples with LANCZOS, which is
what anti-aliases them. Masks (`Layer`) cover only the bounding box of what
they hold, because full-canvas pastes dominated the render time.

Every published dog-v1 image depends on these functions pixel for pixel
(tests/test_render_golden.py pins some), so a change here is a change of the
renderer version, never a refactoring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from attest.render.colour import RGB

SIZE = 512  # logical picture size, in pixels
SS = 2  # supersampling factor of the drawing canvas
W = SIZE * SS  # side of the drawing canvas, in canvas pixels

Pts = np.ndarray  # (n, 2) float array in logical (SIZE-px) coordinates


def ramp(u: float, a: float, b: float) -> float:
    """0 below a, 1 above b, smoothstep between: markings fade in, never pop."""
    x = min(1.0, max(0.0, (u - a) / (b - a)))
    return x * x * (3 - 2 * x)


def lerp(a: float, b: float, t: float) -> float:
    """Linear interpolation from a (t=0) to b (t=1)."""
    return a + (b - a) * t


def ellipse(cx: float, cy: float, rx: float, ry: float, rot: float = 0.0, n: int = 72) -> Pts:
    """An ellipse as an n-gon, rotated by `rot` radians about its centre."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def tri(x: np.ndarray) -> np.ndarray:
    """Triangle wave in [0, 1] with period 1 (zig-zag outlines such as fur tufts)."""
    f = x - np.floor(x)
    return 1.0 - 2.0 * np.abs(f - 0.5)


@lru_cache(maxsize=256)
def _opacity_lut(alpha: int) -> list[int]:
    # a lookup table for Image.point: scales a mask by alpha/255, rounding half up
    return [(v * alpha + 127) // 255 for v in range(256)]


class Layer:
    """An L mask covering only the box (x0, y0)+size of the SS-scale canvas."""

    __slots__ = ("im", "x0", "y0")

    def __init__(self, im: Image.Image, x0: int, y0: int):
        self.im, self.x0, self.y0 = im, x0, y0

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x0 + self.im.width, self.y0 + self.im.height)

    def soft(self, radius: float) -> Layer:
        """Gaussian blur; done at reduced resolution when the blur hides it."""
        r = radius * SS
        if r <= 0:
            return self
        k = 4 if r >= 10 else (2 if r >= 4 else 1)
        if k == 1 or self.im.width < 4 * k or self.im.height < 4 * k:
            return Layer(self.im.filter(ImageFilter.GaussianBlur(r)), self.x0, self.y0)
        small = self.im.reduce(k).filter(ImageFilter.GaussianBlur(r / k))
        return Layer(small.resize(self.im.size, Image.Resampling.BILINEAR), self.x0, self.y0)

    def _other(self, other: Layer) -> Image.Image:
        # `other` cropped (or zero-padded) to this layer's box
        return other.im.crop(
            (
                self.x0 - other.x0,
                self.y0 - other.y0,
                self.x0 - other.x0 + self.im.width,
                self.y0 - other.y0 + self.im.height,
            )
        )

    def clip(self, other: Layer) -> Layer:
        """This mask where `other` covers (their product)."""
        return Layer(ImageChops.multiply(self.im, self._other(other)), self.x0, self.y0)

    def minus(self, other: Layer) -> Layer:
        """This mask where `other` does not cover (saturating difference)."""
        return Layer(ImageChops.subtract(self.im, self._other(other)), self.x0, self.y0)

    def shifted(self, dx: float, dy: float) -> Layer:
        """The same mask moved by (dx, dy) logical pixels."""
        return Layer(self.im, self.x0 + round(dx * SS), self.y0 + round(dy * SS))

    def eroded(self, size: int) -> Layer:
        """The mask shrunk by a MinFilter of `size` canvas pixels."""
        return Layer(self.im.filter(ImageFilter.MinFilter(size)), self.x0, self.y0)


def canvas_points(pts: Pts) -> list[tuple[float, float]]:
    """Logical points as canvas coordinates, the form ImageDraw takes."""
    return [(float(x) * SS, float(y) * SS) for x, y in pts]


def mask(polys: Sequence[Pts], pad: float = 0.0, value: int = 255) -> Layer:
    """Rasterise polygons into a layer cropped to their bounding box + pad (logical px)."""
    allp = np.concatenate(polys) * SS
    p = pad * SS + 2
    x0 = max(0, math.floor(allp[:, 0].min() - p))
    y0 = max(0, math.floor(allp[:, 1].min() - p))
    x1 = min(W, math.ceil(allp[:, 0].max() + p))
    y1 = min(W, math.ceil(allp[:, 1].max() + p))
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    im = Image.new("L", (x1 - x0, y1 - y0), 0)
    d = ImageDraw.Draw(im)
    for poly in polys:
        d.polygon([(float(x) * SS - x0, float(y) * SS - y0) for x, y in poly], fill=value)
    return Layer(im, x0, y0)


def line_mask(pts: Pts, width: float, pad: float = 4.0) -> Layer:
    """A polyline of the given logical width, rasterised into a cropped layer."""
    m = mask([pts], pad=pad + width, value=0)
    ImageDraw.Draw(m.im).line(
        [(float(x) * SS - m.x0, float(y) * SS - m.y0) for x, y in pts], fill=255, width=max(1, round(width * SS))
    )
    return m


def blank_like(layer: Layer) -> Image.Image:
    """An empty L image the size of `layer`, to draw strokes into before wrapping it."""
    return Image.new("L", layer.im.size, 0)


def stroke_width(width: float) -> int:
    """A logical line width as a whole number of canvas pixels (at least 1)."""
    return max(1, round(width * SS))


class Canvas:
    """The SS-scale RGB drawing surface: solid and masked fills, outlines, the final downsample."""

    def __init__(self, bg: RGB):
        self.img = Image.new("RGB", (W, W), bg)
        self.draw = ImageDraw.Draw(self.img)

    def fill(self, colour: RGB, layer: Layer, opacity: float = 1.0) -> None:
        """Paint `colour` through a mask, scaled by `opacity`."""
        if opacity <= 0.0:
            return
        m = layer.im
        if opacity < 1.0:
            m = m.point(_opacity_lut(round(opacity * 255)))
        # paste() clips boxes that run off the canvas for us
        self.img.paste(colour, layer.box, m)

    def poly(self, p: Pts, colour: RGB, opacity: float = 1.0) -> None:
        """A filled polygon; opaque ones are drawn directly, others through a mask."""
        if opacity >= 1.0:
            self.draw.polygon(canvas_points(p), fill=colour)
        else:
            self.fill(colour, mask([p]), opacity)

    def line(self, p: Pts, colour: RGB, width: float, closed: bool = False) -> None:
        """A polyline of the given logical width with rounded joints."""
        pts = canvas_points(p)
        if closed:
            pts = pts + pts[:1]
        self.draw.line(pts, fill=colour, width=stroke_width(width), joint="curve")

    def mean_colour(self, x: float, y: float, radius: float) -> RGB:
        """The average colour of a square patch around logical point (x, y).

        Averaging rather than reading one pixel keeps a thin stroke passing
        the sample point from deciding the result.
        """
        px, py = int(x * SS), int(y * SS)
        k = int(radius * SS)
        patch = np.asarray(self.img.crop((px - k, py - k, px + k + 1, py + k + 1)), dtype=np.float64)
        r, g, b = (round(v) for v in patch.reshape(-1, 3).mean(axis=0))
        return (r, g, b)

    def finish(self) -> Image.Image:
        """The SIZE x SIZE picture: the canvas downsampled with LANCZOS (the anti-aliasing)."""
        return self.img.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
