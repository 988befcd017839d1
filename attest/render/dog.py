"""dog-v1: a procedural dog portrait drawn from a 512-d latent.

Everything here is a smooth function of the traits in traits.py: shapes are
polygons whose control points move continuously, colours are OKLab blends,
and markings fade in through smooth ramps rather than switching on. Detail
that looks random (fur strokes, spot outlines, brindle stripes) comes from
FIXED seeds and is only scaled, bent or recoloured by traits, so a nearby
latent nudges that detail instead of reshuffling it.

This module holds the dog's anatomy and markings only; the generic drawing
(supersampled canvas, cropped masks, ramps, the anti-aliasing downsample)
lives in `attest.render.raster`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from attest.render.colour import COAT_L_MAX, COAT_L_MIN, RGB, Palette, lightness, mix, oklab, shade
from attest.render.colour import coat as coat_colour
from attest.render.raster import (
    SIZE,
    SS,
    Canvas,
    Layer,
    Pts,
    W,
    blank_like,
    ellipse,
    lerp,
    line_mask,
    mask,
    ramp,
    stroke_width,
    tri,
)
from attest.render.traits import scaled_traits

IRIS = Palette([(58, 34, 20), (112, 64, 28), (170, 112, 36), (126, 118, 56), (96, 146, 186), (150, 190, 220)])
NOSE = Palette([(30, 27, 30), (58, 40, 36), (112, 64, 54), (190, 116, 116)])
METAL = Palette([(222, 178, 64), (236, 214, 140), (196, 198, 206), (170, 172, 182), (190, 116, 70)])
WHITE: RGB = (247, 243, 236)
_NORMAL = statistics.NormalDist()
TONGUE: RGB = (226, 110, 126)
INK: RGB = (34, 26, 26)


@lru_cache(maxsize=1)
def _fixed() -> dict[str, np.ndarray]:
    """Seeded detail shared by every dog (legacy RandomState: frozen stream)."""
    rs = np.random.RandomState(20240607)
    pts = rs.uniform(-1, 1, size=(1400, 2))
    pts = pts[np.hypot(pts[:, 0], pts[:, 1]) < 0.97][:360]
    fur = np.column_stack(
        [pts, rs.uniform(-0.45, 0.45, len(pts)), rs.uniform(0.5, 1.0, len(pts)), rs.randint(0, 2, len(pts))]
    )
    bpts = rs.uniform(-1, 1, size=(150, 2))
    bfur = np.column_stack([bpts, rs.uniform(-0.4, 0.4, 150), rs.uniform(0.5, 1.0, 150), rs.randint(0, 2, 150)])
    spots = np.array(
        [
            [-0.62, -0.42, 0.22],
            [0.55, -0.55, 0.17],
            [0.74, 0.08, 0.15],
            [-0.78, 0.2, 0.14],
            [0.12, -0.8, 0.13],
            [-0.22, -0.66, 0.09],
            [0.5, 0.45, 0.10],
            [-0.52, 0.52, 0.08],
        ]
    )
    spot_wob = rs.uniform(0, 2 * math.pi, size=(len(spots), 3))
    body_spots = np.array(
        [[-0.55, 0.35, 0.2], [0.6, 0.55, 0.24], [0.15, 0.8, 0.12], [-0.85, 0.8, 0.16], [0.9, 0.1, 0.1]]
    )
    nb = 26
    brindle = np.column_stack(
        [np.linspace(-1.15, 1.15, nb) + rs.uniform(-0.03, 0.03, nb), rs.uniform(0, 6.28, nb), rs.uniform(0.5, 1.0, nb)]
    )
    whiskers = np.array([[0.35, -0.15], [0.6, -0.3], [0.55, 0.05], [0.8, -0.1]])
    return {
        "fur": fur,
        "bfur": bfur,
        "spots": spots,
        "spot_wob": spot_wob,
        "body_spots": body_spots,
        "brindle": brindle,
        "whiskers": whiskers,
    }


def _marking_colour(coat_l: float, light: float, warmth: float) -> RGB:
    """The colour of spots, patches, hood and saddle.

    Its lightness is an offset from the coat's, reflected back into range at
    the ends (a clamp would flatten the contrast to nothing). Markings lighter
    and darker than the coat meet at a zero-contrast point; the trait is
    centred off that point (0.8 sd) so that a nearby latent rarely crosses it
    and turns dark spots light.
    """
    u = min(max(light, 1e-7), 1 - 1e-7)
    offset = 0.55 * (2.0 * _NORMAL.cdf(_NORMAL.inv_cdf(u) + 0.8) - 1.0)
    lo, hi = COAT_L_MIN, COAT_L_MAX
    l2 = coat_l + offset
    l2 = 2 * lo - l2 if l2 < lo else (2 * hi - l2 if l2 > hi else l2)
    return coat_colour((hi - l2) / (hi - lo), warmth)


@dataclass
class _Geo:
    cx: float
    cy: float
    hw: float
    hh: float
    tilt: float
    pivot: tuple[float, float]

    def t(self, pts: Pts) -> Pts:
        """Apply the head tilt (a rotation about the neck) to head-attached points."""
        c, s = math.cos(self.tilt), math.sin(self.tilt)
        px, py = self.pivot
        x, y = pts[:, 0] - px, pts[:, 1] - py
        return np.stack([px + c * x - s * y, py + s * x + c * y], axis=1)

    def tp(self, x: float, y: float) -> tuple[float, float]:
        p = self.t(np.array([[x, y]]))[0]
        return float(p[0]), float(p[1])


# ---------------------------------------------------------------------------
# shapes


def _head_outline(g: _Geo, tr: dict[str, float], n: int = 200) -> Pts:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False) - math.pi / 2
    c, s = np.cos(t), np.sin(t)
    # exponent blends smoothly from crown to jaw so the cheeks show no corner
    wtop = 1.0 / (1.0 + np.exp(6.0 * s))
    ex = wtop * (2.0 / tr["skull_squareness"]) + (1 - wtop) * (2.0 / 2.1)
    x = np.sign(c) * np.abs(c) ** ex
    y = np.sign(s) * np.abs(s) ** ex
    x = x * (1.0 - tr["jaw_taper"] * np.clip(y, 0, None) ** 1.6)
    # cheeks bulge a little below the eye line
    x = x * (1.0 + 0.06 * np.exp(-(((y - 0.2) / 0.45) ** 2)))
    px, py = g.hw * x, g.hh * y
    # fur tufts on the cheeks, fading out towards crown and chin
    fluff = tr["cheek_fluff"] * (0.45 + 0.55 * tr["fur_length"])
    env = np.exp(-(((y - 0.38) / 0.36) ** 2)) * np.clip(np.abs(x) * 3 - 0.6, 0, 1)
    tuft = 15.0 * fluff * env * (tri(t * 12.0 / (2 * math.pi) + 0.25) ** 1.8)
    nx, ny = np.sign(x), 0.45 * y
    nn = np.hypot(nx, ny) + 1e-9
    return g.t(np.stack([g.cx + px + tuft * nx / nn, g.cy + py + tuft * ny / nn], axis=1))


@dataclass
class _Ear:
    upright: Pts | None
    inner: Pts | None
    flap: Pts | None
    fold: Pts | None


def _ear(g: _Geo, tr: dict[str, float], side: int) -> _Ear:
    """One ear (side -1 left, +1 right).

    Floppiness f splits the ear's length: the first (1-f) stands up along the
    splay direction, the rest folds over and hangs down in front of the head.
    f=0 is a pricked ear, f=1 a hound's ear, in between a folded tip, and
    every value is a valid shape, so the ear type changes continuously.
    """
    f = ramp(tr["ear_floppiness"], 0.12, 0.88)
    L = tr["ear_length"] * g.hh * lerp(1.0, 1.2, f)
    wb = tr["ear_width"] * g.hw * lerp(0.78, 0.62, f)
    # hanging ears hang from the sides of the skull, pricked ones sit on top
    set_a = math.radians(lerp(lerp(66.0, 38.0, tr["ear_set"]), lerp(46.0, 30.0, tr["ear_set"]), f))
    bx = g.cx + side * g.hw * math.cos(set_a) * lerp(0.82, 0.97, f)
    by = g.cy - g.hh * math.sin(set_a) * lerp(0.86, 0.97, f)
    splay = math.radians(tr["ear_angle"] + lerp(0, 16, tr["ear_set"]))
    up = np.array([side * math.sin(splay), -math.cos(splay)])
    perp = np.array([-up[1], up[0]])
    tip = tr["ear_tip"]

    def prof(sv: np.ndarray) -> np.ndarray:
        one = np.clip(1 - sv, 0, 1)
        upright = one ** lerp(0.9, 0.42, tip) * (1 + 0.25 * np.sin(np.pi * np.clip(sv, 0, 1)))
        lobe = np.sqrt(one) * (0.62 + 0.6 * np.sin(np.pi * np.clip(sv, 0, 1) * 0.8))
        return (1 - f) * upright + f * lobe

    n = 30
    s_fold = 1.0 - f
    base = np.array([bx, by])
    upright = inner = flap = fold = None
    if s_fold > 1e-3:
        sv = np.linspace(0, s_fold, n)
        half = wb * 0.5 * prof(sv)
        centre = base[None, :] + (sv * L)[:, None] * up[None, :]
        centre[0] = centre[0] - up * 14.0  # root sunk into the skull
        upright = np.concatenate([centre - half[:, None] * perp, (centre + half[:, None] * perp)[::-1]])
        k0 = n // 5
        ic = centre[k0:] + (-perp * side * wb * 0.03)[None, :]
        ih = half[k0:] * 0.56
        inner = np.concatenate([ic - ih[:, None] * perp, (ic + ih[:, None] * perp)[::-1]])
    if f > 1e-3:
        fold_pt = base + up * (s_fold * L)
        hang = math.radians(lerp(8.0, 24.0, tr["ear_angle"] / 40.0))
        down = np.array([side * math.sin(hang), math.cos(hang)])
        dperp = np.array([-down[1], down[0]])
        sv = np.linspace(s_fold, 1.0, n)
        d = (sv - s_fold) * L
        half = wb * 0.5 * prof(sv) * lerp(1.0, 1.15, f)
        centre = fold_pt[None, :] + d[:, None] * down[None, :]
        # a little outward swing so long ears frame the face
        swing = np.sin(np.pi * 0.5 * (sv - s_fold) / f) * wb * 0.18 * f
        centre[:, 0] += side * swing
        h0 = half[0]
        # a fully hanging ear has a rounded top; a folded tip keeps a straight crease
        ca = np.linspace(0, math.pi, 12)[1:-1]
        cap = (
            fold_pt[None, :]
            + np.cos(ca)[:, None] * h0 * dperp[None, :]
            - (np.sin(ca) * h0 * 0.8 * f**2)[:, None] * down[None, :]
        )
        flap = np.concatenate([centre - half[:, None] * dperp, (centre + half[:, None] * dperp)[::-1], cap])
        fold = np.array([fold_pt - h0 * dperp, fold_pt + h0 * dperp])
    return _Ear(
        g.t(upright) if upright is not None else None,
        g.t(inner) if inner is not None else None,
        g.t(flap) if flap is not None else None,
        g.t(fold) if fold is not None else None,
    )


# ---------------------------------------------------------------------------
# the renderer


class DogRenderer:
    """Procedural dog portraits. Deterministic: same latent, same pixels."""

    name = "dog-v1"
    version = "1.0.0"

    def render(self, latent: np.ndarray) -> Image.Image:
        return _draw(scaled_traits(latent))


def render(latent: np.ndarray) -> Image.Image:
    """Draw one latent with the default dog renderer."""
    return DogRenderer().render(latent)


def _draw(tr: dict[str, float]) -> Image.Image:
    fx = _fixed()

    # palette
    coat = coat_colour(tr["coat_light"], tr["coat_warmth"])
    coat_l = lightness(coat)
    second = _marking_colour(coat_l, tr["second_light"], tr["second_warmth"])
    dk = ramp(coat_l, 0.3, 0.45)  # 0 for near-black coats, whose shadows must stay subtle
    coat_dark = shade(coat, lerp(-0.07, -0.14, dk))
    coat_light = shade(coat, lerp(0.09, 0.03, ramp(coat_l, 0.8, 0.9)))
    # pale dogs get deeper backgrounds so they never wash out
    pale = ramp(coat_l, 0.72, 0.95)
    bg_l = lerp(0.80, 0.93, tr["bg_light"]) - 0.15 * pale
    ba, bb = (0.095 + 0.03 * pale) * tr["bg_a"], (0.095 + 0.03 * pale) * tr["bg_b"]
    bg = oklab(bg_l, ba, bb)
    bg_low = oklab(bg_l - 0.08, ba * 1.1 + 0.05 * tr["bg_low_a"], bb * 1.1 + 0.05 * tr["bg_low_b"])
    bg_accent = oklab(bg_l + lerp(0.045, -0.06, ramp(bg_l, 0.86, 0.92)), ba * 0.8, bb * 0.8)
    halo_col = oklab(min(0.97, bg_l + 0.07), ba * 0.5, bb * 0.5)

    cv = Canvas(bg)
    _background(cv, tr, bg_low, bg_accent, halo_col)

    hw, hh = tr["head_width"], tr["head_height"]
    cx, cy = 256.0, 256.0 - (hh - 108) * 0.3
    g = _Geo(cx, cy, hw, hh, math.radians(tr["head_tilt"]), (cx, cy + hh * 0.9))

    # body and collar
    _body(cv, tr, g, coat, coat_dark, second, fx)

    # ears standing behind the head
    ear_col = mix(coat, second, 0.9 * max(ramp(tr["ear_darkness"], 0.4, 1.0), ramp(tr["hood"], 0.3, 0.8)))
    ear_inner = mix(ear_col, (222, 158, 150), 0.6)
    ears = [_ear(g, tr, s) for s in (-1, 1)]
    for e in ears:
        if e.upright is None:
            continue
        cv.poly(e.upright, ear_col)
        um = mask([e.upright], pad=4)
        cv.fill(shade(ear_col, -0.12), um.minus(um.soft(5)), 0.8)
        cv.line(e.upright, shade(ear_col, -0.3), 1.4, closed=True)
        if e.inner is not None:
            cv.fill(ear_inner, mask([e.inner], pad=4).soft(2.5), 0.9)

    # head
    outline_pts = _head_outline(g, tr)
    hm = mask([outline_pts], pad=30)
    shadow = hm.soft(8).shifted(0, 7).minus(hm)
    cv.fill(shade(coat, -0.3), shadow, 0.5)
    cv.fill(coat, hm)

    es = hw * lerp(0.30, 0.42, tr["eye_spacing"])
    ey = cy - hh * lerp(0.02, 0.2, tr["eye_height"])
    er = hw * lerp(0.11, 0.165, tr["eye_size"])
    ml = tr["muzzle_length"]
    mw = hw * lerp(0.32, 0.46, tr["muzzle_width"])
    nose_y = cy + hh * lerp(0.24, 0.46, ml)
    nw = hw * lerp(0.25, 0.37, tr["nose_size"])
    nh = nw * 0.68
    lobe_rx, lobe_ry = mw * 0.58, hh * lerp(0.16, 0.21, ml)
    lobe_y = nose_y + nh * 0.42 + lobe_ry * 0.55
    face = _Face(es, ey, er, mw, nose_y, nw, nh, lobe_rx, lobe_ry, lobe_y)

    _head_markings(cv, g, tr, hm, coat, second, face, fx)
    _fur(cv, fx["fur"], coat, hm, cx, cy, hw, hh, tr, g)

    # volume: light from the upper left, a darker rim
    light = mask([g.t(ellipse(cx - hw * 0.3, cy - hh * 0.45, hw * 0.72, hh * 0.5))], pad=40)
    cv.fill(coat_light, light.soft(24).clip(hm), 0.55)
    cv.fill(coat_dark, hm.minus(hm.soft(14)), 0.8)
    # brow ridges: soft darker arcs over the eyes give the face expression
    for s in (-1, 1):
        arc = g.t(
            np.column_stack(
                [
                    cx + s * es + np.linspace(-er * 1.1, er * 1.1, 12),
                    ey
                    - er * 1.35
                    - er * 0.25 * np.sin(np.linspace(0, math.pi, 12))
                    + s * np.linspace(-1, 1, 12) * er * 0.15,
                ]
            )
        )
        brow = mix(shade(coat, 0.1), coat_dark, ramp(coat_l, 0.25, 0.35))
        cv.fill(brow, line_mask(arc, 2.2, pad=8).soft(1.5), 0.7)

    _muzzle(cv, g, tr, face, coat, second, hm)
    _nose(cv, g, tr, cx, nose_y, nw, nh)
    for s in (-1, 1):
        _eye(cv, g, tr, cx + s * es, ey, er, s, coat)

    # hanging ear flaps, in front of the head
    for e in ears:
        if e.flap is None:
            continue
        fm = mask([e.flap], pad=14)
        cv.fill(shade(coat, -0.32), fm.soft(5).shifted(3, 5).minus(fm).clip(hm), 0.55)
        cv.fill(ear_col, fm)
        cv.fill(shade(ear_col, 0.07), mask([e.flap * 0.7 + e.flap.mean(0) * 0.3], pad=10).soft(6).clip(fm), 0.5)
        cv.fill(shade(ear_col, -0.13), fm.minus(fm.soft(6)), 0.85)
        if e.fold is not None and e.upright is not None:
            cv.line(e.fold, shade(ear_col, -0.3), 1.6)
        cv.line(e.flap, shade(ear_col, -0.3), 1.4, closed=True)

    return cv.finish()


@dataclass
class _Face:
    es: float
    ey: float
    er: float
    mw: float
    nose_y: float
    nw: float
    nh: float
    lobe_rx: float
    lobe_ry: float
    lobe_y: float


def _background(cv: Canvas, tr: dict[str, float], bg_low: RGB, bg_accent: RGB, halo_col: RGB) -> None:
    grad = Image.linear_gradient("L").resize((W, W), Image.Resampling.BILINEAR)
    cv.img.paste(bg_low, (0, 0), grad)
    stripes = ramp(tr["bg_stripes"], 0.4, 1.0)
    if stripes > 0:
        polys = [
            np.array([[k * 56, 0], [k * 56 + 24, 0], [k * 56 + 24 + SIZE, SIZE], [k * 56 + SIZE, SIZE]])
            for k in range(-10, 10)
        ]
        cv.fill(bg_accent, mask(polys), 0.55 * stripes)
    dots = ramp(tr["bg_dots"], 0.4, 1.0)
    if dots > 0:
        r = 9.0 * dots
        polys = [ellipse(i * 44 + (22 if j % 2 else 0), j * 40 + 6, r, r, n=20) for j in range(14) for i in range(13)]
        cv.fill(bg_accent, mask(polys), 0.85)
    halo = ramp(tr["bg_halo"], 0.25, 1.0)
    if halo > 0:
        m = mask([ellipse(256, 236, 200, 200)], pad=20)
        cv.fill(halo_col, m.soft(6), 0.85 * halo)
    # vignette
    vig = (
        Image.radial_gradient("L")
        .resize((W + 400, W + 400), Image.Resampling.BILINEAR)
        .crop((200, 200, W + 200, W + 200))
    )
    cv.fill(shade(bg_low, -0.08), Layer(vig.point(lambda v: max(0, v - 150) * 2), 0, 0), 0.7)


def _body(
    cv: Canvas, tr: dict[str, float], g: _Geo, coat: RGB, coat_dark: RGB, second: RGB, fx: dict[str, np.ndarray]
) -> None:
    cx, cy, hw, hh = g.cx, g.cy, g.hw, g.hh
    ny = cy + hh * 0.55
    nwid = hw * 0.66
    swid = hw * 1.42
    tau = np.linspace(0, 1, 40)
    # a neck, then sloping shoulders
    wid = nwid + (swid - nwid) * (np.sin(np.clip(tau * 1.25 - 0.12, 0, 1) * math.pi / 2) ** 1.2)
    ys = ny + tau * (SIZE + 12 - ny)
    fl = tr["fur_length"]
    # neck ruff: zig-zag fur along the sides
    wid = wid + 7.0 * fl * tri(tau * 7.0) * (1 - tau)
    left = np.column_stack([cx - wid, ys])
    right = np.column_stack([cx + wid, ys])[::-1]
    body = np.concatenate([left, right])
    bm = mask([body], pad=20)
    cv.fill(coat, bm)
    bib = ramp(tr["chest_white"], 0.25, 1.0)
    if bib > 0:
        bib_top = ny + 34
        t = np.linspace(0, 2 * math.pi, 60, endpoint=False)
        bw_ = hw * 0.55 * (0.55 + 0.45 * bib)
        bh = (SIZE - bib_top) * (0.5 + 0.5 * bib)
        # teardrop: narrow under the collar, wide lower down
        x = np.sin(t) * bw_ * (0.45 + 0.55 * (1 - np.cos(t)) / 2)
        y = SIZE + 8 - bh + (1 - np.cos(t)) / 2 * bh * 1.4 - bh * 0.4
        poly = np.column_stack([cx + x, y])
        cv.fill((247, 243, 236), mask([poly], pad=10).soft(2.5).clip(bm), 0.95)
    sp = ramp(tr["spots"], 0.4, 1.0)
    if sp > 0:
        polys = [
            ellipse(cx + x * swid * 0.8, ny + y * (SIZE - ny), r * swid * 0.5 * sp, r * swid * 0.44 * sp)
            for x, y, r in fx["body_spots"]
        ]
        cv.fill(second, mask(polys).clip(bm))
    sd = ramp(tr["saddle"], 0.4, 1.0)
    if sd > 0:
        # bands growing in from both sides: a jacket over the shoulders
        band = sd * 0.62 * wid * np.clip(0.35 + tau * 1.2, 0, 1)
        wav = 4.0 * np.sin(tau * 9.0 + 1.0)
        for s_ in (-1, 1):
            inner_x = cx + s_ * (wid - band + wav)
            poly = np.concatenate([np.column_stack([cx + s_ * (wid + 8), ys]), np.column_stack([inner_x, ys])[::-1]])
            cv.fill(second, mask([poly], pad=4).soft(1.5).clip(bm))
    _brindle(cv, tr, coat, second, bm, cx, ny, swid, SIZE - ny, None)
    _fur(cv, fx["bfur"], coat, bm, cx, (SIZE + ny) / 2 + 10, swid * 0.85, (SIZE - ny) / 2 + 6, tr, None)
    cv.fill(coat_dark, bm.minus(bm.soft(16)), 0.8)
    cv.line(body[:-1], shade(coat, -0.3), 1.4)

    # collar
    cw = lerp(12.0, 22.0, tr["collar_width"])
    ncx = hw * 0.95
    ny0 = cy + hh * 0.74
    xs = np.linspace(-ncx, ncx, 40)
    sag = 15.0
    ycur = 1 - (xs / ncx) ** 2
    top = np.column_stack([cx + xs, ny0 + sag * ycur])
    bot = np.column_stack([cx + xs, ny0 + cw + sag * 1.15 * ycur])
    collar = np.concatenate([top, bot[::-1]])
    ccol = oklab(0.6, 0.16 * tr["collar_a"], 0.16 * tr["collar_b"])
    # the collar wraps round the neck, so it is clipped to the body outline
    cm = mask([collar], pad=2).clip(bm)
    cv.fill(shade(ccol, -0.22), cm)
    inner_c = mask([collar], pad=2).eroded(3).clip(bm).eroded(3)
    cv.fill(ccol, inner_c)
    cv.fill(shade(ccol, 0.08), mask([np.concatenate([top, (top + np.array([0, cw * 0.3]))[::-1]])]).clip(inner_c), 0.8)
    cv.fill(
        shade(ccol, -0.12), mask([np.concatenate([bot, (bot - np.array([0, cw * 0.28]))[::-1]])]).clip(inner_c), 0.8
    )
    # stitching, clipped to the visible band (shrunk once more so it keeps off the edge)
    mid = (top + bot) / 2
    st = blank_like(inner_c)
    sd_ = ImageDraw.Draw(st)
    for i in range(0, len(mid) - 1, 3):
        seg = [(float(x) * SS - inner_c.x0, float(y) * SS - inner_c.y0) for x, y in mid[i : i + 2]]
        sd_.line(seg, fill=255, width=stroke_width(1.1))
    keep = inner_c.eroded(5)
    cv.fill(shade(ccol, 0.17), Layer(st, inner_c.x0, inner_c.y0).clip(keep))
    ring_y = ny0 + cw + sag * 1.15
    metal = METAL(tr["tag_metal"])
    cv.line(ellipse(cx, ring_y + 3, 5, 6), shade(metal, -0.2), 2.0, closed=True)
    _tag(cv, tr, metal, cx, ring_y + 26)


def _tag(cv: Canvas, tr: dict[str, float], metal: RGB, x: float, y: float) -> None:
    r0 = 17.0
    th = np.linspace(0, 2 * math.pi, 100, endpoint=False) - math.pi / 2
    c, s = np.cos(th), np.sin(th)
    sq = tr["tag_square"]
    n = lerp(2.0, 5.0, sq)
    rs = (np.abs(c) ** n + np.abs(s) ** n) ** (-1.0 / n)  # circle -> rounded square
    star = 1.0 + 0.26 * ramp(tr["tag_points"], 0.3, 1.0) * np.cos(5 * (th + math.pi / 2))
    r = r0 * rs * star / (1.0 + 0.1 * sq)
    pts = np.column_stack([x + r * c, y + r * s])
    cv.poly(pts + np.array([1.5, 2.5]), shade(metal, -0.45), 0.3)
    cv.poly(pts, metal)
    m = mask([pts], pad=3)
    glint = mask([ellipse(x - r0 * 0.35, y - r0 * 0.4, r0 * 0.45, r0 * 0.3, rot=-0.5)], pad=6)
    cv.fill(shade(metal, 0.14), glint.soft(3).clip(m), 0.9)
    cv.fill(shade(metal, -0.2), m.minus(m.soft(3)), 0.9)
    cv.line(pts, shade(metal, -0.32), 1.0, closed=True)
    eng = shade(metal, -0.22)
    cv.poly(ellipse(x, y + 3.5, 4.6, 3.8), eng)
    for dx, dy in ((-5.2, -2.0), (-2.0, -5.4), (2.0, -5.4), (5.2, -2.0)):
        cv.poly(ellipse(x + dx, y + dy, 1.8, 2.1, n=16), eng)


def _fur(
    cv: Canvas,
    anchors: np.ndarray,
    coat: RGB,
    clip: Layer,
    cx: float,
    cy: float,
    hw: float,
    hh: float,
    tr: dict[str, float],
    g: _Geo | None,
) -> None:
    """Short fur strokes in a darker and a lighter tone, flowing out from the face."""
    fl = tr["fur_length"]
    a = anchors
    n = len(a)
    u, v, jit, ln, tone = a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4]
    x, y = cx + u * hw, cy + v * hh
    ang = np.arctan2(v + 0.3, u) + jit
    # fur falls downward, more so on the chest
    pull = 0.25 if g is not None else 0.6
    ang = np.arctan2(np.sin(ang) * (1 - pull) + pull, np.cos(ang) * (1 - pull))
    L = lerp(4.0, 10.0, fl) * ln
    dx, dy = np.cos(ang) * L, np.sin(ang) * L
    bend = 0.22
    p0 = np.column_stack([x, y])
    p1 = np.column_stack([x + dx * 0.5 - dy * bend, y + dy * 0.5 + dx * bend])
    p2 = np.column_stack([x + dx, y + dy])
    if g is not None:
        p0, p1, p2 = g.t(p0), g.t(p1), g.t(p2)
    dark, light = blank_like(clip), blank_like(clip)
    dd, dl = ImageDraw.Draw(dark), ImageDraw.Draw(light)
    w = stroke_width(1.1)
    ox, oy = clip.x0, clip.y0
    P = np.stack([p0, p1, p2], axis=1) * SS - np.array([ox, oy])
    for i in range(n):
        (dd if tone[i] > 0.5 else dl).line([tuple(q) for q in P[i].tolist()], fill=255, width=w)
    cl = lightness(coat)
    cv.fill(shade(coat, lerp(-0.05, -0.10, ramp(cl, 0.25, 0.35))), Layer(dark, ox, oy).clip(clip), 0.5)
    cv.fill(shade(coat, lerp(0.08, 0.02, ramp(cl, 0.85, 0.95))), Layer(light, ox, oy).clip(clip), 0.45)


def _brindle(
    cv: Canvas,
    tr: dict[str, float],
    coat: RGB,
    second: RGB,
    clip: Layer,
    cx: float,
    top: float,
    hw: float,
    h: float,
    g: _Geo | None,
) -> None:
    b = ramp(tr["brindle"], 0.5, 1.0)
    if b <= 0:
        return
    m = blank_like(clip)
    d = ImageDraw.Draw(m)
    col = mix(shade(coat, -0.25), second, 0.4)
    for xo, ph, wt in _fixed()["brindle"]:
        yy = np.linspace(-0.1, 1.1, 25)
        xx = xo + 0.05 * np.sin(yy * 7.0 + ph) + 0.1 * yy * xo
        pts = np.column_stack([cx + xx * hw, top + yy * h])
        if g is not None:
            pts = g.t(pts)
        # stripe width swells and vanishes along its length, so stripes break up
        wid = np.clip(np.sin(yy * 9.0 + ph * 1.7), 0, None) ** 0.7 * lerp(1.5, 4.0, b) * wt * SS
        q = [(float(a) * SS - clip.x0, float(c) * SS - clip.y0) for a, c in pts]
        for i in range(len(q) - 1):
            wi = round((wid[i] + wid[i + 1]) / 2)
            if wi > 0:
                d.line([q[i], q[i + 1]], fill=255, width=wi)
    cv.fill(col, Layer(m, clip.x0, clip.y0).soft(1.0).clip(clip), (0.4 if g is not None else 0.55) * b)


def _head_markings(
    cv: Canvas, g: _Geo, tr: dict[str, float], hm: Layer, coat: RGB, second: RGB, fc: _Face, fx: dict[str, np.ndarray]
) -> None:
    cx, cy, hw, hh = g.cx, g.cy, g.hw, g.hh
    sp = ramp(tr["spots"], 0.4, 1.0)
    if sp > 0:
        polys = []
        for (x, y, r), (p1, p2, _p3) in zip(fx["spots"], fx["spot_wob"]):
            t = np.linspace(0, 2 * math.pi, 36, endpoint=False)
            rr = r * sp * hw * (1 + 0.12 * np.sin(2 * t + p1) + 0.08 * np.sin(3 * t + p2))
            polys.append(g.t(np.column_stack([cx + x * hw + rr * np.cos(t), cy + y * hh + rr * np.sin(t) * 0.9])))
        cv.fill(second, mask(polys).clip(hm))
    _brindle(cv, tr, coat, second, hm, cx, cy - hh, hw, 2 * hh, g)
    ho = ramp(tr["hood"], 0.4, 1.0)
    if ho > 0:
        # the hood's lower edge descends from above the crown to below the
        # eyes as it grows, leaving a notch for the snout bridge
        xs = np.linspace(-1.3, 1.3, 40) * hw
        edge = lerp(cy - hh * 1.15, fc.ey + fc.er * 1.5, ho) + 0.1 * hh * (xs / hw) ** 2
        notch = (fc.er * 2.2 + hh * 0.12) * ho * np.exp(-((xs / (fc.mw * 0.6 + 4)) ** 2))
        crown = [[cx + 1.3 * hw, cy - hh * 1.4], [cx - 1.3 * hw, cy - hh * 1.4]]
        poly = np.concatenate([np.column_stack([cx + xs, edge - notch]), crown])
        cv.fill(second, mask([g.t(poly)], pad=4).soft(1.5).clip(hm))
    # eye patch: its centre slides from the left eye over the brow to the right eye
    ps = ramp(tr["patch_size"], 0.4, 1.0)
    if ps > 0:
        side = tr["patch_side"]
        px = cx + side * fc.es
        py = fc.ey - fc.er * 0.5 * (1 - abs(side))
        t = np.linspace(0, 2 * math.pi, 60, endpoint=False)
        R = fc.er * lerp(1.6, 3.0, ps)
        rr = R * (1 + 0.12 * np.sin(3 * t + 1.3) + 0.07 * np.sin(5 * t + 0.4))
        poly = g.t(np.column_stack([px + rr * np.cos(t) * 1.05, py + rr * np.sin(t) * 0.95 - R * 0.12]))
        cv.fill(second, mask([poly]).clip(hm))
    fm = ramp(tr["face_mask"], 0.5, 1.0)
    if fm > 0:
        polys = [
            g.t(ellipse(cx, (fc.ey + fc.nose_y) / 2 + 12, fc.mw * 1.1, (fc.nose_y - fc.ey) / 2 + 36)),
            g.t(ellipse(cx - fc.es, fc.ey, fc.er * 2.0, fc.er * 1.7)),
            g.t(ellipse(cx + fc.es, fc.ey, fc.er * 2.0, fc.er * 1.7)),
        ]
        cv.fill(shade(mix(second, (40, 36, 36), 0.5), -0.05), mask(polys, pad=20).soft(9).clip(hm), 0.9 * fm)
    bl = ramp(tr["blaze"], 0.35, 1.0)
    if bl > 0:
        wt = hw * 0.09 * bl
        wb = fc.mw * 0.75 * (0.4 + 0.6 * bl)
        yy = np.linspace(cy - hh * 1.1, fc.nose_y, 20)
        ww = wt + (wb - wt) * ((yy - yy[0]) / (yy[-1] - yy[0])) ** 2.4
        poly = g.t(np.concatenate([np.column_stack([cx - ww, yy]), np.column_stack([cx + ww, yy])[::-1]]))
        cv.fill(WHITE, mask([poly], pad=4).soft(1.5).clip(hm), 0.95)
    br = ramp(tr["brow_marks"], 0.45, 1.0)
    if br > 0:
        cl = lightness(coat)
        tan = mix((200, 132, 64), (118, 68, 40), ramp(cl, 0.5, 0.8))
        polys = [
            g.t(ellipse(cx + s * (fc.es - fc.er * 0.1), fc.ey - fc.er * 1.6, fc.er * 0.6, fc.er * 0.42, rot=s * 0.25))
            for s in (-1, 1)
        ]
        cv.fill(tan, mask(polys, pad=4).soft(1.5), 0.95 * br)


def _muzzle(cv: Canvas, g: _Geo, tr: dict[str, float], fc: _Face, coat: RGB, second: RGB, hm: Layer) -> None:
    cx = g.cx
    light = tr["muzzle_light"]
    muzzle_col = mix(coat, WHITE, lerp(0.05, 0.85, light))
    mask_dark = ramp(tr["face_mask"], 0.5, 1.0)
    if mask_dark > 0:
        muzzle_col = mix(muzzle_col, shade(mix(second, (40, 36, 36), 0.5), -0.05), 0.9 * mask_dark)
    # snout: narrow between the eyes, widening to the whisker pads
    yy = np.linspace(fc.ey + fc.er * 0.2, fc.lobe_y, 16)
    tt = (yy - yy[0]) / (yy[-1] - yy[0])
    ww = fc.lobe_rx * 1.7 * (0.32 + 0.68 * np.sin(tt * math.pi / 2) ** 1.3)
    arc_t = np.linspace(math.pi, 2 * math.pi, 10)
    top_arc = np.column_stack([cx + ww[0] * np.cos(arc_t), yy[0] + 8 * np.sin(arc_t)])
    snout = np.concatenate([np.column_stack([cx - ww, yy])[::-1], top_arc, np.column_stack([cx + ww, yy])])
    snout = g.t(snout)
    sm = mask([snout], pad=16)
    # the snout's flanks sit in shadow, whatever the colour
    cv.fill(shade(coat, -0.18), sm.soft(6).shifted(0, 2).minus(sm.soft(1)).clip(hm), 0.35)
    cv.fill(muzzle_col, sm.soft(4).clip(hm), 0.55 + 0.45 * max(light, mask_dark))
    chin_y = fc.lobe_y + fc.lobe_ry * 0.72
    cv.poly(g.t(ellipse(cx, chin_y, fc.lobe_rx * 0.95, fc.lobe_ry * 0.82)), shade(muzzle_col, -0.12))
    tongue = ramp(tr["tongue"], 0.42, 1.0)
    if tongue > 0:
        # at zero length the tip still sits behind the whisker pads
        tl = lerp(0.0, 50.0, tongue)
        tw = fc.lobe_rx * 0.72
        ty0 = fc.lobe_y
        tt = np.linspace(0, math.pi, 30)
        body = np.column_stack([cx - tw * np.cos(tt), ty0 + fc.lobe_ry * 0.4 + tl * np.sin(tt) ** 0.6])
        tpts = g.t(np.concatenate([[[cx - tw, ty0]], body, [[cx + tw, ty0]]]))
        tm = mask([tpts], pad=6)
        cv.fill(TONGUE, tm)
        sheen = mask([g.t(ellipse(cx - tw * 0.35, ty0 + fc.lobe_ry * 0.4 + tl * 0.45, tw * 0.25, tl * 0.3 + 3))], pad=6)
        cv.fill(shade(TONGUE, 0.1), sheen.soft(3).clip(tm), 0.7)
        cv.fill(shade(TONGUE, -0.12), tm.minus(tm.soft(3)), 0.8)
        crease = np.array([[cx, ty0 + fc.lobe_ry * 0.4], [cx, ty0 + fc.lobe_ry * 0.4 + tl * 0.7]])
        cv.line(g.t(crease), shade(TONGUE, -0.16), 1.5)
    lobes = [g.t(ellipse(cx + s * fc.lobe_rx * 0.82, fc.lobe_y, fc.lobe_rx, fc.lobe_ry)) for s in (-1, 1)]
    lm = mask(lobes, pad=8)
    cv.fill(muzzle_col, lm)
    cv.fill(shade(muzzle_col, -0.13), lm.minus(lm.shifted(0, -3).soft(4)), 0.6)
    dot = shade(muzzle_col, -0.3)
    for s in (-1, 1):
        for wx, wy in _fixed()["whiskers"]:
            p = g.tp(cx + s * fc.lobe_rx * wx, fc.lobe_y + wy * fc.lobe_ry)
            cv.poly(ellipse(p[0], p[1], 1.5, 1.5, n=10), dot)
    mouth_c = shade(muzzle_col, lerp(-0.2, -0.45, ramp(lightness(muzzle_col), 0.35, 0.45)))
    smile = tr["smile"]
    for s in (-1, 1):
        tt = np.linspace(0.0, 1.0, 16)
        mx = cx + s * tt * fc.lobe_rx * 1.75
        my = fc.lobe_y + fc.lobe_ry * (0.92 - 0.2 * tt**2) - tt**2 * fc.lobe_ry * lerp(0.0, 0.9, smile)
        cv.line(g.t(np.column_stack([mx, my])), mouth_c, 1.6)
    cv.line(g.t(np.array([[cx, fc.nose_y + fc.nh * 0.3], [cx, fc.lobe_y + fc.lobe_ry * 0.92]])), mouth_c, 1.6)


def _eye(cv: Canvas, g: _Geo, tr: dict[str, float], x: float, y: float, r: float, side: int, coat: RGB) -> None:
    rot = side * 0.22 * tr["eye_slant"] + g.tilt
    X, Y = g.tp(x, y)
    socket = mask([ellipse(X, Y + r * 0.1, r * 1.45, r * 1.3, rot)], pad=8)
    cv.fill(shade(coat, -0.22), socket.soft(4), 0.5)
    cv.poly(ellipse(X, Y, r * 1.1, r * 1.0, rot), INK)
    iris = IRIS(tr["iris_colour"])
    for k in range(7):
        f = 1.0 - k / 7
        col = mix(shade(iris, -0.12), shade(iris, 0.12), k / 6)
        # concentric rings, lighter towards the lower middle: a cheap radial gradient
        ring = ellipse(
            X + r * 0.08 * (1 - f), Y + r * 0.12 * (1 - f), r * (0.92 * f + 0.05), r * (0.86 * f + 0.05), rot
        )
        cv.poly(ring, col)
    cv.poly(ellipse(X, Y, r * 0.5, r * 0.5, rot, n=40), (16, 12, 12))
    lid = mask([ellipse(X, Y - r * 0.55, r * 1.0, r * 0.55, rot)], pad=6)
    eye = mask([ellipse(X, Y, r * 0.95, r * 0.9, rot)], pad=6)
    cv.fill(INK, lid.soft(2.5).clip(eye), 0.45)
    # upper lid in whatever colour the fur above the eye has (coat, patch or mask)
    c, s = math.cos(rot), math.sin(rot)
    edge = -r * 1.12 + tr["eyelids"] * r * 1.6
    lx, ly = X - s * (edge - r * 1.3), Y + c * (edge - r * 1.3)
    lid_mask = mask([ellipse(lx, ly, r * 1.7, r * 1.3, rot)], pad=6)
    lid_mask = lid_mask.clip(mask([ellipse(X, Y, r * 1.12, r * 1.02, rot)], pad=6))
    # average a patch rather than read one pixel, so a fur stroke passing the
    # sample point cannot flip the lid's colour
    fur = cv.mean_colour(X + s * r * 1.45, Y - c * r * 1.45, 3)
    cv.fill(fur, lid_mask)
    lash = lid_mask.minus(lid_mask.shifted(0, -1.6))
    cv.fill(INK, lash, 0.9)
    cv.poly(ellipse(X + r * 0.3, Y - r * 0.32, r * 0.26, r * 0.24, n=24), (255, 255, 255))
    cv.poly(ellipse(X - r * 0.32, Y + r * 0.36, r * 0.11, r * 0.1, n=16), (255, 255, 255), 0.85)


def _nose(cv: Canvas, g: _Geo, tr: dict[str, float], x: float, y: float, nw: float, nh: float) -> None:
    col = NOSE(tr["nose_colour"])
    t = np.linspace(0, 2 * math.pi, 60, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    px = np.sign(c) * np.abs(c) ** (2.0 / 3.0) * nw / 2 * (1 - 0.42 * np.clip(s, 0, None) ** 1.3)
    py = np.sign(s) * np.abs(s) ** 0.85 * nh / 2
    pts = g.t(np.column_stack([x + px, y + py]))
    cv.poly(pts, col)
    m = mask([pts], pad=4)
    cv.fill(shade(col, 0.12), mask([g.t(ellipse(x, y - nh * 0.25, nw * 0.42, nh * 0.3))], pad=6).soft(3).clip(m), 0.8)
    for s_ in (-1, 1):
        cv.poly(
            g.t(ellipse(x + s_ * nw * 0.2, y + nh * 0.08, nw * 0.1, nh * 0.13, rot=s_ * 0.6, n=20)), shade(col, -0.2)
        )
    shine = mask([g.t(ellipse(x - nw * 0.12, y - nh * 0.22, nw * 0.16, nh * 0.1, rot=-0.2))], pad=4)
    cv.fill((255, 255, 255), shine.soft(1.5), 0.75)
