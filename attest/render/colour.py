"""Colour helpers: interpolation in OKLab so blends between palette stops stay
perceptually even (no muddy greys halfway between two browns)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

RGB = tuple[int, int, int]


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)


_M1 = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ]
)
_M2 = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ]
)
_M1_INV = np.linalg.inv(_M1)
_M2_INV = np.linalg.inv(_M2)


def rgb_to_oklab(rgb: Sequence[float]) -> np.ndarray:
    lin = _srgb_to_linear(np.asarray(rgb, dtype=np.float64) / 255.0)
    lms = _M1 @ lin
    return _M2 @ np.cbrt(lms)


def oklab_to_rgb(lab: Sequence[float]) -> RGB:
    lms = (_M2_INV @ np.asarray(lab, dtype=np.float64)) ** 3
    srgb = _linear_to_srgb(_M1_INV @ lms)
    r, g, b = (int(round(float(v) * 255.0)) for v in srgb)
    return (r, g, b)


def oklch(lightness: float, chroma: float, hue_deg: float) -> RGB:
    h = math.radians(hue_deg)
    return oklab_to_rgb((lightness, chroma * math.cos(h), chroma * math.sin(h)))


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """Blend two sRGB colours through OKLab; t=0 gives a, t=1 gives b."""
    t = min(1.0, max(0.0, t))
    la, lb = rgb_to_oklab(a), rgb_to_oklab(b)
    return oklab_to_rgb(la + (lb - la) * t)


def shade(c: RGB, amount: float) -> RGB:
    """Change OKLab lightness by `amount` (negative darkens), keeping hue."""
    lab = rgb_to_oklab(c)
    lab[0] = min(1.0, max(0.0, lab[0] + amount))
    return oklab_to_rgb(lab)  # type: ignore[arg-type]  # a length-3 array is a sequence of floats


def lightness(c: RGB) -> float:
    return float(rgb_to_oklab(c)[0])


class Palette:
    """Piecewise-linear path through OKLab stops; position 0..1 -> colour."""

    def __init__(self, stops: Sequence[RGB]):
        self._labs = np.array([rgb_to_oklab(s) for s in stops])

    def __call__(self, u: float) -> RGB:
        n = len(self._labs) - 1
        x = min(1.0, max(0.0, u)) * n
        i = min(int(x), n - 1)
        f = x - i
        return oklab_to_rgb(self._labs[i] * (1 - f) + self._labs[i + 1] * f)


COAT_L_MAX = 0.955  # OKLab lightness of the palest coat
COAT_L_MIN = 0.28  # and of the darkest


def coat(light: float, warmth: float) -> RGB:
    """A natural dog coat colour from two continuous axes in [0, 1].

    light: white (0) .. black (1). warmth: blue-grey (0) .. grey .. gold/red (1).
    Chroma peaks at mid lightness (gold, red, tan) and fades towards white and
    black, which is where real coats live; hue drifts from yellow to red as the
    coat darkens and warms.
    """
    lig = COAT_L_MAX + (COAT_L_MIN - COAT_L_MAX) * light
    cmax = 0.018 + 0.115 * math.exp(-(((lig - 0.6) / 0.22) ** 2))
    c = -0.028 + (cmax + 0.028) * warmth
    mixw = min(1.0, max(0.0, 0.5 * warmth + 0.6 * (COAT_L_MAX - lig) / (COAT_L_MAX - COAT_L_MIN)))
    h = 82.0 + (46.0 - 82.0) * mixw
    return oklch(lig, c, h)


def oklab(lig: float, a: float, b: float) -> RGB:
    return oklab_to_rgb((lig, a, b))
