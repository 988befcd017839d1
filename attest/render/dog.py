"""dog-v1: a procedural dog portrait drawn from a 512-d latent.

Everything here is a smooth function of the traits in traits.py: shapes are
polygons whose control points move continuously, colours are OKLab blends,
and markings fade in through ramps rather than switching on. Random-looking
detail (fur strokes, spot outlines, brindle stripes) comes from FIXED seeds
and is only scaled or recoloured by traits, so a nearby latent moves that
detail a little instead of reshuffling it.

The picture is drawn at SS times the output size with plain polygons and
downscaled with LANCZOS, which gives the anti-aliasing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from attest.render.colour import RGB, Palette, lightness, mix, oklch, shade
from attest.render.traits import scaled_traits

SIZE = 512
SS = 2
W = SIZE * SS

Pts = np.ndarray  # (n, 2) float array in 512-px logical coordinates

COAT = Palette(
    [
        (246, 241, 231),  # white
        (236, 217, 178),  # cream
        (224, 180, 112),  # wheat
        (206, 140, 64),  # golden
        (176, 94, 46),  # red
        (122, 74, 46),  # chocolate
        (66, 47, 38),  # dark brown
        (40, 37, 39),  # black
        (92, 96, 106),  # slate
        (160, 160, 164),  # silver
    ]
)
IRIS = Palette([(58, 34, 20), (112, 64, 28), (178, 118, 38), (128, 120, 56), (96, 146, 186), (160, 196, 222)])
NOSE = Palette([(32, 29, 32), (62, 42, 38), (118, 68, 58), (196, 122, 122)])
METAL = Palette([(222, 178, 64), (236, 214, 140), (196, 198, 206), (170, 172, 182), (190, 116, 70)])
WHITE: RGB = (247, 243, 236)
TONGUE: RGB = (228, 112, 128)
INK: RGB = (40, 30, 30)


def _ramp(u: float, a: float, b: float) -> float:
    """0 below a, 1 above b, smoothstep between: markings fade in, never pop."""
    x = min(1.0, max(0.0, (u - a) / (b - a)))
    return x * x * (3 - 2 * x)


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _ellipse(cx: float, cy: float, rx: float, ry: float, rot: float = 0.0, n: int = 72) -> Pts:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


@lru_cache(maxsize=1)
def _fixed() -> dict[str, np.ndarray]:
    """Seeded detail shared by every dog (legacy RandomState: frozen stream)."""
    rs = np.random.RandomState(20240607)
    # fur stroke anchors inside the unit disk, with per-stroke jitter
    pts = rs.uniform(-1, 1, size=(1400, 2))
    pts = pts[np.hypot(pts[:, 0], pts[:, 1]) < 0.97][:420]
    fur = np.column_stack(
        [pts, rs.uniform(-0.5, 0.5, len(pts)), rs.uniform(0.5, 1.0, len(pts)), rs.randint(0, 2, len(pts))]
    )
    # body fur anchors (unit square, later mapped onto the chest)
    bpts = rs.uniform(-1, 1, size=(160, 2))
    bfur = np.column_stack([bpts, rs.uniform(-0.4, 0.4, 160), rs.uniform(0.5, 1.0, 160), rs.randint(0, 2, 160)])
    # coat spots in head coordinates: x, y, radius, wobble phases
    spots = np.array(
        [
            [-0.62, -0.42, 0.22],
            [0.55, -0.55, 0.17],
            [0.72, 0.05, 0.16],
            [-0.78, 0.18, 0.14],
            [0.12, -0.78, 0.13],
            [-0.25, -0.65, 0.09],
            [0.48, 0.42, 0.10],
            [-0.5, 0.5, 0.08],
        ]
    )
    spot_wob = rs.uniform(0, 2 * math.pi, size=(len(spots), 3))
    body_spots = np.array([[-0.55, 0.35, 0.2], [0.6, 0.55, 0.24], [0.15, 0.8, 0.12], [-0.85, 0.8, 0.16]])
    brindle = np.column_stack([np.linspace(-1.1, 1.1, 15) + rs.uniform(-0.04, 0.04, 15), rs.uniform(0, 6.28, 15)])
    whiskers = np.array([[-0.55, 0.0], [-0.3, -0.2], [-0.62, -0.35], [-0.35, 0.25]])
    return {
        "fur": fur,
        "bfur": bfur,
        "spots": spots,
        "spot_wob": spot_wob,
        "body_spots": body_spots,
        "brindle": brindle,
        "whiskers": whiskers,
    }


class _Canvas:
    """An RGB image at SS x size plus helpers that take logical coordinates."""

    def __init__(self, bg: RGB):
        self.img = Image.new("RGB", (W, W), bg)

    @staticmethod
    def xy(pts: Pts) -> list[tuple[float, float]]:
        return [(float(x) * SS, float(y) * SS) for x, y in pts]

    @staticmethod
    def blank() -> Image.Image:
        return Image.new("L", (W, W), 0)

    def poly_mask(self, polys: Sequence[Pts], value: int = 255, into: Image.Image | None = None) -> Image.Image:
        m = into if into is not None else self.blank()
        d = ImageDraw.Draw(m)
        for p in polys:
            d.polygon(self.xy(p), fill=value)
        return m

    def fill(self, colour: RGB, mask: Image.Image, opacity: float = 1.0) -> None:
        if opacity <= 0.0:
            return
        if opacity < 1.0:
            mask = mask.point(_opacity_lut(int(round(opacity * 255))))
        self.img.paste(colour, (0, 0), mask)

    def poly(self, p: Pts, colour: RGB, opacity: float = 1.0) -> None:
        if opacity >= 1.0:
            ImageDraw.Draw(self.img).polygon(self.xy(p), fill=colour)
        else:
            self.fill(colour, self.poly_mask([p]), opacity)

    def line(self, p: Pts, colour: RGB, width: float, closed: bool = False) -> None:
        pts = self.xy(p)
        if closed:
            pts = pts + pts[:1]
        ImageDraw.Draw(self.img).line(pts, fill=colour, width=max(1, int(round(width * SS))), joint="curve")


@lru_cache(maxsize=256)
def _opacity_lut(alpha: int) -> list[int]:
    return [(v * alpha + 127) // 255 for v in range(256)]


def _soft(mask: Image.Image, radius: float) -> Image.Image:
    """Gaussian blur done at quarter resolution: the blur hides the resampling."""
    small = mask.reduce(4)
    small = small.filter(ImageFilter.GaussianBlur(radius * SS / 4))
    return small.resize(mask.size, Image.Resampling.BILINEAR)


def _clip(mask: Image.Image, clip: Image.Image) -> Image.Image:
    return ImageChops.multiply(mask, clip)


@dataclass
class _Geo:
    cx: float
    cy: float
    hw: float
    hh: float
    tilt: float
    pivot: tuple[float, float]

    def t(self, pts: Pts) -> Pts:
        """Apply the head tilt (rotation about the neck) to head-attached points."""
        c, s = math.cos(self.tilt), math.sin(self.tilt)
        px, py = self.pivot
        x, y = pts[:, 0] - px, pts[:, 1] - py
        return np.stack([px + c * x - s * y, py + s * x + c * y], axis=1)

    def tp(self, x: float, y: float) -> tuple[float, float]:
        p = self.t(np.array([[x, y]]))[0]
        return float(p[0]), float(p[1])


def _tri(x: np.ndarray) -> np.ndarray:
    """Triangle wave in [0, 1] with period 1: zig-zag tufts."""
    f = x - np.floor(x)
    return 1.0 - 2.0 * np.abs(f - 0.5)


def _head_outline(g: _Geo, tr: dict[str, float], n: int = 220) -> Pts:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False) - math.pi / 2
    c, s = np.cos(t), np.sin(t)
    ex_top = 2.0 / tr["skull_squareness"]
    ex = np.where(s < 0, ex_top, 2.0 / 2.1)
    x = np.sign(c) * np.abs(c) ** ex
    y = np.sign(s) * np.abs(s) ** ex
    lower = np.clip(y, 0, None)
    x = x * (1.0 - tr["jaw_taper"] * lower**1.6)
    # cheeks bulge slightly just below the eye line
    x = x * (1.0 + 0.06 * np.exp(-(((y - 0.25) / 0.35) ** 2)))
    px, py = g.hw * x, g.hh * y
    # fur tufts on the cheeks, fading towards crown and chin
    fluff = tr["cheek_fluff"] * (0.4 + 0.6 * tr["fur_length"])
    env = np.exp(-(((y - 0.35) / 0.38) ** 2)) * (np.abs(x) > 0.2)
    amp = 13.0 * fluff * env
    k = 13.0
    tuft = amp * (_tri(t * k / (2 * math.pi) + 0.25) ** 1.7)
    nx, ny = np.sign(x) * 1.0, 0.35 * y
    nn = np.hypot(nx, ny) + 1e-9
    px = px + tuft * nx / nn
    py = py + tuft * ny / nn
    return g.t(np.stack([g.cx + px, g.cy + py], axis=1))


def _ear_polys(g: _Geo, tr: dict[str, float], side: int) -> tuple[Pts | None, Pts | None, Pts | None, tuple]:
    """Upright part, inner-ear part and hanging flap of one ear (side -1 / +1).

    Floppiness f splits the ear's length: the first (1-f) stands up along the
    splay direction, the rest folds over and hangs down in front of the head.
    f=0 is a pricked ear, f=1 a hound's ear, in between a folded tip; every
    value is a valid, continuous shape.
    """
    f = tr["ear_floppiness"]
    f = f * f * (3 - 2 * f) * 0.96 + 0.02  # gentle S so the half-folded look is rarer
    L = tr["ear_length"] * g.hh * 1.02
    wb = tr["ear_width"] * g.hw * 0.62
    set_a = math.radians(_lerp(62.0, 34.0, tr["ear_set"]))  # angle above horizontal on the skull
    bx = g.cx + side * g.hw * math.cos(set_a) * 0.86
    by = g.cy - g.hh * math.sin(set_a) * 0.92
    splay = math.radians(tr["ear_angle"] + _lerp(0, 18, tr["ear_set"]))
    up = np.array([side * math.sin(splay), -math.cos(splay)])
    across = np.array([-up[1], up[0]]) * side  # points outward-ish, perpendicular to up
    tip_round = tr["ear_tip"]

    def prof_upright(sv: np.ndarray) -> np.ndarray:
        sharp = (1 - sv) ** _lerp(0.85, 0.45, tip_round)
        return np.clip(sharp, 0, 1)

    def prof_flap(sv: np.ndarray) -> np.ndarray:
        # leaf/lobe: widest past the middle, round bottom
        return np.clip(np.sqrt(np.clip(1 - sv, 0, 1)) * (0.75 + 0.55 * np.sin(np.pi * np.clip(sv, 0, 1) * 0.85)), 0, 1.3)

    def prof(sv: np.ndarray) -> np.ndarray:
        return (1 - f) * prof_upright(sv) + f * prof_flap(sv)

    n = 28
    s_fold = 1.0 - f
    base = np.array([bx, by])
    upright = None
    inner = None
    if s_fold > 0.02:
        sv = np.linspace(0, s_fold, n)
        half = wb * 0.5 * prof(sv)
        centre = base[None, :] + (sv * L)[:, None] * up[None, :]
        # push the base down into the skull so no gap shows under a tilt
        centre[0] -= up * 12.0
        left = centre - half[:, None] * across[None, :]
        right = centre + half[:, None] * across[None, :]
        upright = np.concatenate([left, right[::-1]])
        ih = half * 0.55
        ic = centre + (-across * wb * 0.04)[None, :]
        il = ic - ih[:, None] * across[None, :]
        ir = ic + ih[:, None] * across[None, :]
        # inner ear stops short of the base so it reads as a hollow
        k0 = max(2, n // 6)
        inner = np.concatenate([il[k0:], ir[k0:][::-1]])
    fold = base + up * (s_fold * L)
    flap = None
    if f > 0.02:
        hang_ang = math.radians(_lerp(8.0, 26.0, tr["ear_angle"] / 40.0))
        down = np.array([side * math.sin(hang_ang), math.cos(hang_ang)])
        side_v = np.array([down[1], -down[0]]) * -side
        sv = np.linspace(s_fold, 1.0, n)
        d = (sv - s_fold) * L * _lerp(1.0, 1.08, f)
        half = wb * 0.5 * prof(sv) * _lerp(1.0, 1.12, f)
        # the fold line keeps the upright part's width at the fold
        centre = fold[None, :] + d[:, None] * down[None, :]
        centre = centre + (side * np.sin(np.pi * (sv - s_fold) / max(1e-6, f)) * wb * 0.06)[:, None] * np.array([1, 0])
        left = centre - half[:, None] * side_v[None, :]
        right = centre + half[:, None] * side_v[None, :]
        tipc = np.linspace(0, math.pi, 9)[1:-1]
        cap = centre[-1][None, :] + (np.cos(tipc)[:, None] * half[-1] * -side_v[None, :]) + (
            np.sin(tipc)[:, None] * half[-1] * 0.35 * down[None, :]
        )
        flap = np.concatenate([left, cap[::-1] if side > 0 else cap, right[::-1]])
        if side < 0:
            flap = np.concatenate([left, cap, right[::-1]])
        else:
            flap = np.concatenate([left, cap, right[::-1]])
    fold_line = (fold - across * wb * 0.5 * float(prof(np.array([s_fold]))[0]), fold + across * wb * 0.5 * float(prof(np.array([s_fold]))[0]))
    return (
        g.t(upright) if upright is not None else None,
        g.t(inner) if inner is not None else None,
        g.t(flap) if flap is not None else None,
        (f, fold_line),
    )


class DogRenderer:
    """Procedural dog portraits. Deterministic: same latent, same pixels."""

    name = "dog-v1"
    version = "1.0.0"

    def render(self, latent: np.ndarray) -> Image.Image:
        tr = scaled_traits(latent)
        return _draw(tr)


def render(latent: np.ndarray) -> Image.Image:
    return DogRenderer().render(latent)


def _draw(tr: dict[str, float]) -> Image.Image:
    fx = _fixed()

    # ---- palette -----------------------------------------------------------
    coat = shade(COAT(tr["coat_colour"]), 0.07 * tr["coat_shade"])
    second = COAT(tr["second_colour"])
    coat_l = lightness(coat)
    # markings must show: push the secondary colour away from the coat
    if abs(lightness(second) - coat_l) < 0.18:
        second = shade(second, -0.22 if coat_l > 0.5 else 0.2)
    coat_dark = shade(coat, -0.16 if coat_l > 0.35 else -0.08)
    coat_light = shade(coat, 0.10 if coat_l < 0.85 else 0.03)
    outline = shade(coat, -0.32 if coat_l > 0.35 else -0.12)
    bg_l = _lerp(0.80, 0.93, tr["bg_light"])
    bg = oklch(bg_l, 0.075, tr["bg_hue"])
    bg_low = oklch(bg_l - 0.09, 0.095, tr["bg_hue"] + 12)
    bg_accent = oklch(bg_l + 0.05 if bg_l < 0.9 else bg_l - 0.07, 0.06, tr["bg_hue"] - 20)

    cv = _Canvas(bg)

    # ---- background ----------------------------------------------------------
    grad = Image.linear_gradient("L").resize((W, W), Image.Resampling.BILINEAR)
    cv.img.paste(bg_low, (0, 0), grad)
    stripes = tr["bg_stripes"] * 0.0 + _ramp(tr["bg_stripes"], 0.35, 1.0)
    if stripes > 0:
        m = cv.blank()
        d = ImageDraw.Draw(m)
        for k in range(-12, 13):
            x0 = k * 56
            d.polygon(
                [(x0 * SS, 0), ((x0 + 26) * SS, 0), ((x0 + 26 + SIZE) * SS, SIZE * SS), ((x0 + SIZE) * SS, SIZE * SS)],
                fill=255,
            )
        cv.fill(bg_accent, m, 0.55 * stripes)
    dots = _ramp(tr["bg_dots"], 0.35, 1.0)
    if dots > 0:
        m = cv.blank()
        d = ImageDraw.Draw(m)
        r = 9.0 * dots
        for j in range(0, 13):
            for i in range(0, 13):
                x = i * 44 + (22 if j % 2 else 0)
                y = j * 40 + 6
                d.ellipse([(x - r) * SS, (y - r) * SS, (x + r) * SS, (y + r) * SS], fill=255)
        cv.fill(bg_accent if stripes < 0.5 else shade(bg_accent, 0.04), m, 0.8)
    halo = _ramp(tr["bg_halo"], 0.2, 1.0)
    if halo > 0:
        m = cv.poly_mask([_ellipse(256, 250, 205, 205)])
        cv.fill(oklch(min(0.97, bg_l + 0.07), 0.04, tr["bg_hue"]), _soft(m, 6), 0.85 * halo)

    # ---- geometry --------------------------------------------------------------
    hw, hh = tr["head_width"], tr["head_height"]
    cx, cy = 256.0, 262.0 - (hh - 110) * 0.3
    g = _Geo(cx, cy, hw, hh, math.radians(tr["head_tilt"]), (cx, cy + hh * 0.9))

    # ---- body ------------------------------------------------------------------
    bw = hw * 1.42
    btop = cy + hh * 0.55
    t = np.linspace(math.pi, 2 * math.pi, 90)
    bx = cx + bw * np.cos(t) * 1.05
    by = SIZE + 40 + (SIZE + 40 - btop) * np.sin(t)
    body = np.column_stack([bx, by])
    body = np.concatenate([body, [[cx + bw * 1.05, SIZE + 60], [cx - bw * 1.05, SIZE + 60]]])
    body_mask = cv.poly_mask([body])
    cv.fill(coat, body_mask)
    # white bib on the chest
    bib = _ramp(tr["chest_white"], 0.3, 1.0)
    if bib > 0:
        m = cv.poly_mask([_ellipse(cx, SIZE + 10, bw * 0.62 * (0.5 + 0.5 * bib), (SIZE + 10 - btop) * (0.45 + 0.55 * bib))])
        cv.fill(WHITE, _clip(_soft(m, 3), body_mask), 0.95)
    sp = _ramp(tr["spots"], 0.45, 1.0)
    if sp > 0:
        polys = [
            _ellipse(cx + x * bw * 0.8, btop + y * (SIZE - btop), r * bw * 0.55 * sp, r * bw * 0.48 * sp)
            for x, y, r in fx["body_spots"]
        ]
        cv.fill(second, _clip(cv.poly_mask(polys), body_mask))
    _brindle(cv, tr, second, body_mask, cx, btop, bw, SIZE - btop)
    _fur(cv, fx["bfur"], coat, body_mask, cx, (SIZE + btop) / 2 + 20, bw * 0.9, (SIZE - btop) / 2, tr, None)
    # shading: darker towards the edges of the chest
    edge = ImageChops.subtract(body_mask, _soft(body_mask, 22))
    cv.fill(coat_dark, edge, 0.8)

    # ---- collar (below the head, on the chest) --------------------------------
    cw = _lerp(11.0, 22.0, tr["collar_width"])
    ncx = hw * 0.78
    ny0 = cy + hh * 0.80
    xs = np.linspace(-ncx, ncx, 40)
    sag = 14.0
    top = np.column_stack([cx + xs, ny0 + sag * (1 - (xs / ncx) ** 2)])
    bot = np.column_stack([cx + xs[::-1], ny0 + cw + sag * 1.15 * (1 - (xs[::-1] / ncx) ** 2)])
    collar = np.concatenate([top, bot])
    ccol = oklch(0.58, 0.15, tr["collar_hue"])
    cv.poly(collar, ccol)
    hi_band = np.concatenate([top, top[::-1] + np.array([0, cw * 0.3])])
    cv.poly(hi_band, shade(ccol, 0.09), 0.8)
    lo_band = np.concatenate([bot, bot[::-1] - np.array([0, cw * 0.25])])
    cv.poly(lo_band, shade(ccol, -0.12), 0.8)
    stitch_y = ny0 + cw * 0.52 + sag * 1.07
    for i in range(-8, 9):
        x0 = i * 10.0
        x1 = x0 + 5.0
        if abs(x1) < ncx - 6:
            cv.line(
                np.array([[cx + x0, stitch_y - sag * 1.07 * (x0 / ncx) ** 2], [cx + x1, stitch_y - sag * 1.07 * (x1 / ncx) ** 2]]),
                shade(ccol, 0.16),
                1.2,
            )
    # ring and tag
    ring_y = ny0 + cw + sag * 1.15
    cv.line(_ellipse(cx, ring_y + 3, 5, 6), shade(_metal(tr), -0.18), 2.0, closed=True)
    _tag(cv, tr, cx, ring_y + 9 + 18)

    # ---- ears behind the head -------------------------------------------------
    ear_col = mix(coat, second, 0.85 * _ramp(tr["ear_darkness"], 0.35, 1.0))
    ear_inner = mix(ear_col, (214, 150, 140), 0.55)
    ears = [_ear_polys(g, tr, s) for s in (-1, 1)]
    for up, inner, _flap, _info in ears:
        if up is not None:
            cv.poly(up, ear_col)
            cv.line(up, shade(ear_col, -0.25), 1.6, closed=True)
            if inner is not None and len(inner) > 2:
                m = cv.poly_mask([inner])
                cv.fill(ear_inner, _soft(m, 2.0), 0.9)

    # ---- head --------------------------------------------------------------------
    outline_pts = _head_outline(g, tr)
    # soft shadow of the head on the chest and collar
    hm = cv.poly_mask([outline_pts])
    shadow = ImageChops.offset(_soft(hm, 9), 0, 8 * SS)
    cv.fill(shade(coat, -0.3), ImageChops.subtract(shadow, hm), 0.45)
    cv.fill(coat, hm)

    # eye and nose positions (pre-tilt, then tilted)
    es = hw * _lerp(0.29, 0.43, tr["eye_spacing"])
    ey = cy - hh * _lerp(0.02, 0.22, tr["eye_height"])
    er = hw * _lerp(0.105, 0.16, tr["eye_size"])
    ml = tr["muzzle_length"]
    mw = hw * _lerp(0.30, 0.46, tr["muzzle_width"])
    nose_y = cy + hh * _lerp(0.26, 0.50, ml)
    nw = hw * _lerp(0.20, 0.33, tr["nose_size"])
    nh = nw * 0.66
    lobe_rx, lobe_ry = mw * 0.56, hh * _lerp(0.17, 0.23, ml)
    lobe_y = nose_y + nh * 0.45 + lobe_ry * 0.55

    # markings clipped to the head
    _head_markings(cv, g, tr, hm, coat, second, es, ey, er, mw, nose_y, lobe_y, lobe_rx, lobe_ry, fx)
    _fur(cv, fx["fur"], coat, hm, cx, cy, hw, hh, tr, g)

    # volume: light from the upper left, darker rim
    light = cv.poly_mask([g.t(_ellipse(cx - hw * 0.28, cy - hh * 0.42, hw * 0.75, hh * 0.55))])
    cv.fill(coat_light, _clip(_soft(light, 30), hm), 0.55)
    rim = ImageChops.subtract(hm, _soft(hm, 16))
    cv.fill(coat_dark, rim, 0.75)
    cv.line(outline_pts, outline, 1.5, closed=True)

    # ---- muzzle -------------------------------------------------------------------
    muzzle_col = mix(coat, WHITE, _lerp(0.0, 0.85, tr["muzzle_light"]))
    mask_dark = _ramp(tr["face_mask"], 0.55, 1.0)
    if mask_dark > 0:
        muzzle_col = mix(muzzle_col, shade(second, -0.15), 0.85 * mask_dark)
    bridge = g.t(_ellipse(cx, (ey + nose_y) / 2 + 6, mw * 0.62, (nose_y - ey) / 2 + 18))
    m = cv.poly_mask([bridge])
    cv.fill(muzzle_col, _clip(_soft(m, 7), hm), 0.8 * tr["muzzle_light"] + 0.2 * mask_dark)
    # chin
    chin_y = lobe_y + lobe_ry * 0.75
    chin = g.t(_ellipse(cx, chin_y, lobe_rx * 0.95, lobe_ry * 0.8))
    cv.poly(chin, shade(muzzle_col, -0.10))
    # tongue, hanging from between the whisker pads
    tongue = _ramp(tr["tongue"], 0.42, 1.0)
    if tongue > 0:
        tl = _lerp(6.0, 52.0, tongue)
        tw = lobe_rx * 0.78
        ty0 = lobe_y + lobe_ry * 0.2
        tt = np.linspace(0, math.pi, 30)
        tpts = np.concatenate(
            [[[cx - tw, ty0]], np.column_stack([cx - tw * np.cos(tt), ty0 + lobe_ry * 0.6 + tl * np.sin(tt) ** 0.7 * 0.95 + tl * 0.05]), [[cx + tw, ty0]]]
        )
        tpts = g.t(tpts)
        cv.poly(tpts, TONGUE)
        cv.line(tpts, shade(TONGUE, -0.2), 1.3, closed=True)
        tm = cv.poly_mask([tpts])
        hl = cv.poly_mask([g.t(_ellipse(cx - tw * 0.35, ty0 + lobe_ry * 0.6 + tl * 0.45, tw * 0.25, tl * 0.3 + 3))])
        cv.fill(shade(TONGUE, 0.1), _clip(_soft(hl, 3), tm), 0.8)
        crease = g.t(np.array([[cx, ty0 + lobe_ry * 0.6], [cx, ty0 + lobe_ry * 0.6 + tl * 0.7]]))
        cv.line(crease, shade(TONGUE, -0.15), 1.6)
    # whisker pads
    lobes = [g.t(_ellipse(cx + s * lobe_rx * 0.82, lobe_y, lobe_rx, lobe_ry)) for s in (-1, 1)]
    lm = cv.poly_mask(lobes)
    cv.fill(muzzle_col, lm)
    lshade = ImageChops.subtract(lm, _soft(ImageChops.offset(lm, 0, -3 * SS), 5))
    cv.fill(shade(muzzle_col, -0.12), lshade, 0.6)
    for s in (-1, 1):
        for wx, wy in fx["whiskers"]:
            p = g.tp(cx + s * (lobe_rx * 0.82 - wx * lobe_rx * 0.9 * -1) * 1.0 - s * lobe_rx * 0.1, lobe_y + wy * lobe_ry)
            r = 1.5
            cv.poly(_ellipse(p[0], p[1], r, r, n=10), shade(muzzle_col, -0.3))
    # mouth line
    mouth_c = shade(muzzle_col, -0.45) if lightness(muzzle_col) > 0.4 else shade(muzzle_col, -0.2)
    smile = tr["smile"]
    for s in (-1, 1):
        tt = np.linspace(0.0, 1.0, 16)
        mx = cx + s * tt * lobe_rx * 1.75
        my = lobe_y + lobe_ry * (0.9 - 0.25 * tt**2) - tt**2 * lobe_ry * _lerp(0.0, 0.9, smile)
        cv.line(g.t(np.column_stack([mx, my])), mouth_c, 1.6)
    philtrum = g.t(np.array([[cx, nose_y + nh * 0.3], [cx, lobe_y + lobe_ry * 0.9]]))
    cv.line(philtrum, mouth_c, 1.6)

    # ---- nose -----------------------------------------------------------------------
    _nose(cv, g, tr, cx, nose_y, nw, nh)

    # ---- eyes -----------------------------------------------------------------------
    for s in (-1, 1):
        _eye(cv, g, tr, cx + s * es, ey, er, s, coat)

    # ---- hanging ear flaps (in front of the head) -----------------------------------
    for up, _inner, flap, (f, fold_line) in ears:
        if flap is None:
            continue
        fm = cv.poly_mask([flap])
        sh = ImageChops.subtract(ImageChops.offset(_soft(fm, 5), 3 * SS, 5 * SS), fm)
        cv.fill(shade(coat, -0.3), _clip(sh, hm), 0.5)
        cv.fill(ear_col, fm)
        # the fold is darker, the fall of the flap catches light
        crease = cv.poly_mask([np.array(fold_line[0:1] + fold_line[1:2])]) if False else None
        edge = ImageChops.subtract(fm, _soft(fm, 8))
        cv.fill(shade(ear_col, -0.12), edge, 0.8)
        cv.line(flap, shade(ear_col, -0.28), 1.5, closed=True)

    out = cv.img.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    return out


def _metal(tr: dict[str, float]) -> RGB:
    return METAL(tr["tag_metal"])


def _tag(cv: _Canvas, tr: dict[str, float], x: float, y: float) -> None:
    metal = _metal(tr)
    r0 = 17.0
    th = np.linspace(0, 2 * math.pi, 100, endpoint=False) - math.pi / 2
    c, s = np.cos(th), np.sin(th)
    sq = tr["tag_square"]
    n = _lerp(2.0, 5.0, sq)
    # superellipse radius: circle at n=2, rounded square as n grows
    rs = (np.abs(c) ** n + np.abs(s) ** n) ** (-1.0 / n)
    star = 1.0 + 0.26 * _ramp(tr["tag_points"], 0.3, 1.0) * np.cos(5 * (th + math.pi / 2))
    r = r0 * rs * star / (1.0 + 0.1 * sq)
    pts = np.column_stack([x + r * c, y + r * s])
    cv.poly(pts + np.array([1.5, 2.0]), shade(metal, -0.45), 0.35)
    cv.poly(pts, metal)
    m = cv.poly_mask([pts])
    hl = cv.poly_mask([_ellipse(x - r0 * 0.35, y - r0 * 0.4, r0 * 0.45, r0 * 0.3, rot=-0.5)])
    cv.fill(shade(metal, 0.14), _clip(_soft(hl, 3), m), 0.9)
    rim = ImageChops.subtract(m, _soft(m, 3))
    cv.fill(shade(metal, -0.2), rim, 0.9)
    cv.line(pts, shade(metal, -0.3), 1.0, closed=True)
    # a little engraved paw print
    eng = shade(metal, -0.22)
    cv.poly(_ellipse(x, y + 3.5, 4.6, 3.8), eng)
    for dx, dy in ((-5.2, -2.0), (-2.0, -5.4), (2.0, -5.4), (5.2, -2.0)):
        cv.poly(_ellipse(x + dx, y + dy, 1.8, 2.1, n=16), eng)


def _fur(
    cv: _Canvas,
    anchors: np.ndarray,
    coat: RGB,
    clip: Image.Image,
    cx: float,
    cy: float,
    hw: float,
    hh: float,
    tr: dict[str, float],
    g: _Geo | None,
) -> None:
    """Short fur strokes in a darker and a lighter tone, fanning out from the face."""
    fl = tr["fur_length"]
    n = int(len(anchors) * (0.55 + 0.45 * fl))
    lengths = _lerp(4.0, 11.0, fl)
    dark, light = cv.blank(), cv.blank()
    dd, dl = ImageDraw.Draw(dark), ImageDraw.Draw(light)
    segs = []
    for u, v, jit, ln, tone in anchors[:n]:
        x, y = cx + u * hw, cy + v * hh
        ang = math.atan2(v + 0.25, u) + jit
        ang = _lerp(ang, math.pi / 2, 0.25 if g is not None else 0.6)
        L = lengths * ln
        dx, dy = math.cos(ang) * L, math.sin(ang) * L
        bend = 0.25 * L
        segs.append(((x, y), (x + dx * 0.5 - dy * bend / L, y + dy * 0.5 + dx * bend / L), (x + dx, y + dy), tone))
    pts = np.array([[p for seg in segs for p in seg[:3]]]).reshape(-1, 2)
    if g is not None:
        pts = g.t(pts)
    w = max(1, int(round(1.1 * SS)))
    for i, seg in enumerate(segs):
        p = [(float(a) * SS, float(b) * SS) for a, b in pts[3 * i : 3 * i + 3]]
        (dd if seg[3] > 0.5 else dl).line(p, fill=255, width=w)
    cl = lightness(coat)
    cv.fill(shade(coat, -0.10 if cl > 0.3 else -0.05), _clip(dark, clip), 0.55)
    cv.fill(shade(coat, 0.08 if cl < 0.9 else 0.02), _clip(light, clip), 0.45)


def _brindle(
    cv: _Canvas, tr: dict[str, float], second: RGB, clip: Image.Image, cx: float, top: float, hw: float, h: float, g: _Geo | None = None
) -> None:
    b = _ramp(tr["brindle"], 0.5, 1.0)
    if b <= 0:
        return
    m = cv.blank()
    d = ImageDraw.Draw(m)
    for xo, ph in _fixed()["brindle"]:
        yy = np.linspace(-0.1, 1.1, 14)
        xx = xo + 0.07 * np.sin(yy * 5.0 + ph) + 0.12 * yy * np.sign(xo)
        pts = np.column_stack([cx + xx * hw, top + yy * h])
        if g is not None:
            pts = g.t(pts)
        d.line([(float(a) * SS, float(c) * SS) for a, c in pts], fill=255, width=int(round(_lerp(2.0, 5.0, b) * SS)), joint="curve")
    cv.fill(shade(second, -0.05), _clip(_soft(m, 1.2), clip), 0.6 * b)


def _head_markings(
    cv: _Canvas,
    g: _Geo,
    tr: dict[str, float],
    hm: Image.Image,
    coat: RGB,
    second: RGB,
    es: float,
    ey: float,
    er: float,
    mw: float,
    nose_y: float,
    lobe_y: float,
    lobe_rx: float,
    lobe_ry: float,
    fx: dict[str, np.ndarray],
) -> None:
    cx, cy, hw, hh = g.cx, g.cy, g.hw, g.hh
    # spots
    sp = _ramp(tr["spots"], 0.45, 1.0)
    if sp > 0:
        polys = []
        for (x, y, r), (p1, p2, p3) in zip(fx["spots"], fx["spot_wob"]):
            t = np.linspace(0, 2 * math.pi, 40, endpoint=False)
            rr = r * sp * hw * (1 + 0.12 * np.sin(2 * t + p1) + 0.08 * np.sin(3 * t + p2))
            polys.append(g.t(np.column_stack([cx + x * hw + rr * np.cos(t), cy + y * hh + rr * np.sin(t) * 0.9])))
        cv.fill(second, _clip(cv.poly_mask(polys), hm))
    _brindle(cv, tr, second, hm, cx, cy - hh, hw, 2 * hh, g)
    # eye patch: slides from the left eye over the brow to the right eye
    ps = _ramp(tr["patch_size"], 0.45, 1.0)
    if ps > 0:
        side = tr["patch_side"]
        px = cx + side * es
        py = ey - er * 0.4 * (1 - abs(side))
        t = np.linspace(0, 2 * math.pi, 60, endpoint=False)
        R = er * _lerp(1.5, 3.0, ps)
        rr = R * (1 + 0.12 * np.sin(3 * t + 1.3) + 0.07 * np.sin(5 * t + 0.4))
        poly = g.t(np.column_stack([px + rr * np.cos(t) * 1.05, py + rr * np.sin(t) * 0.95 - R * 0.1]))
        cv.fill(second, _clip(cv.poly_mask([poly]), hm))
    # dark face mask around eyes and muzzle
    fm = _ramp(tr["face_mask"], 0.55, 1.0)
    if fm > 0:
        polys = [
            g.t(_ellipse(cx, (ey + nose_y) / 2 + 10, mw * 1.05, (nose_y - ey) / 2 + 34)),
            g.t(_ellipse(cx - es, ey, er * 2.0, er * 1.7)),
            g.t(_ellipse(cx + es, ey, er * 2.0, er * 1.7)),
        ]
        cv.fill(shade(second, -0.12), _clip(_soft(cv.poly_mask(polys), 10), hm), 0.9 * fm)
    # blaze down the forehead
    bl = _ramp(tr["blaze"], 0.45, 1.0)
    if bl > 0:
        wt = hw * 0.10 * bl
        wb = mw * 0.7 * (0.4 + 0.6 * bl)
        yy = np.linspace(cy - hh * 1.05, nose_y, 20)
        ww = wt + (wb - wt) * ((yy - yy[0]) / (yy[-1] - yy[0])) ** 2.2
        left = np.column_stack([cx - ww, yy])
        right = np.column_stack([cx + ww, yy])[::-1]
        poly = g.t(np.concatenate([left, right]))
        cv.fill(WHITE, _clip(_soft(cv.poly_mask([poly]), 1.5), hm), 0.95)
    # tan brow pips
    br = _ramp(tr["brow_marks"], 0.45, 1.0)
    if br > 0:
        cl = lightness(coat)
        tan = mix((196, 128, 62), (120, 70, 40), _ramp(cl, 0.5, 0.8))
        polys = [g.t(_ellipse(cx + s * (es - er * 0.15), ey - er * 1.55, er * 0.62, er * 0.42, rot=s * 0.25)) for s in (-1, 1)]
        cv.fill(tan, _soft(cv.poly_mask(polys), 1.5), 0.95 * br)


def _eye(cv: _Canvas, g: _Geo, tr: dict[str, float], x: float, y: float, r: float, side: int, coat: RGB) -> None:
    rot = side * 0.22 * tr["eye_slant"] + g.tilt
    X, Y = g.tp(x, y)
    # socket shadow
    m = cv.poly_mask([_ellipse(X, Y + r * 0.1, r * 1.45, r * 1.3, rot)])
    cv.fill(shade(coat, -0.22), _soft(m, 4), 0.55)
    cv.poly(_ellipse(X, Y, r * 1.1, r * 1.0, rot), INK)
    iris = IRIS(tr["iris_colour"])
    for k in range(7):
        f = 1.0 - k / 7
        col = mix(shade(iris, -0.12), shade(iris, 0.12), k / 6)
        cv.poly(_ellipse(X + r * 0.08 * (1 - f), Y + r * 0.12 * (1 - f), r * 0.92 * f + r * 0.05, r * 0.86 * f + r * 0.05, rot), col)
    cv.poly(_ellipse(X, Y, r * 0.5, r * 0.5, rot, n=40), (16, 12, 12))
    # upper lid casts a shadow over the iris
    lid = cv.poly_mask([_ellipse(X, Y - r * 0.55, r * 1.0, r * 0.55, rot)])
    eye = cv.poly_mask([_ellipse(X, Y, r * 0.95, r * 0.9, rot)])
    cv.fill(INK, _clip(_soft(lid, 2.5), eye), 0.45)
    # catch-lights
    cv.poly(_ellipse(X + r * 0.3, Y - r * 0.32, r * 0.26, r * 0.24, n=24), (255, 255, 255))
    cv.poly(_ellipse(X - r * 0.32, Y + r * 0.36, r * 0.11, r * 0.1, n=16), (255, 255, 255), 0.85)


def _nose(cv: _Canvas, g: _Geo, tr: dict[str, float], x: float, y: float, nw: float, nh: float) -> None:
    col = NOSE(tr["nose_colour"])
    t = np.linspace(0, 2 * math.pi, 60, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / 3.0
    px = np.sign(c) * np.abs(c) ** e * nw / 2 * (1 - 0.42 * np.clip(s, 0, None) ** 1.3)
    py = np.sign(s) * np.abs(s) ** 0.85 * nh / 2
    pts = g.t(np.column_stack([x + px, y + py]))
    cv.poly(pts, col)
    m = cv.poly_mask([pts])
    top = cv.poly_mask([g.t(_ellipse(x, y - nh * 0.25, nw * 0.42, nh * 0.3))])
    cv.fill(shade(col, 0.12), _clip(_soft(top, 3), m), 0.8)
    for s_ in (-1, 1):
        cv.poly(g.t(_ellipse(x + s_ * nw * 0.2, y + nh * 0.08, nw * 0.1, nh * 0.13, rot=s_ * 0.6, n=20)), shade(col, -0.2))
    hl = cv.poly_mask([g.t(_ellipse(x - nw * 0.12, y - nh * 0.22, nw * 0.16, nh * 0.1, rot=-0.2))])
    cv.fill((255, 255, 255), _soft(hl, 1.5), 0.75)
