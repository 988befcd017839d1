"""Continuous dog traits derived from a 512-d latent.

Each trait is one fixed, seeded linear projection of the latent's direction,
squashed through the normal CDF. For a latent drawn from N(0, I) every raw
projection is ~N(0, 1), so every trait is ~uniform on [0, 1]: all looks are
equally likely and no region of "trait space" is wasted. Because the map is
linear then smooth, a latent at cosine c from another moves each raw trait by
about sqrt(2(1-c)) standard deviations, and nothing can jump.

The projection rows are orthonormal, so traits are independent for N(0, I)
latents; that is what spreads random dogs apart (see tests/test_render.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from attest.errors import InputError
from attest.formats import LATENT_DIM

# Changing the seed or the trait list changes every dog: bump the renderer
# version in dog.py if you do.
_PROJECTION_SEED = 0x5EED_D06


@dataclass(frozen=True)
class TraitSpec:
    name: str
    lo: float
    hi: float
    doc: str

    def scale(self, u: float) -> float:
        return self.lo + (self.hi - self.lo) * u


# Ranges are in the renderer's 512-px coordinate system unless the doc says
# otherwise; colour traits are positions along a palette (0..1).
TRAITS: tuple[TraitSpec, ...] = (
    # head
    TraitSpec("head_width", 100.0, 136.0, "half-width of the skull, px"),
    TraitSpec("head_height", 96.0, 120.0, "half-height of the skull, px"),
    TraitSpec("jaw_taper", 0.0, 0.34, "how much the head narrows towards the jaw"),
    TraitSpec("skull_squareness", 2.0, 2.9, "superellipse exponent of the skull (round -> boxy)"),
    TraitSpec("cheek_fluff", 0.0, 1.0, "size of the fur tufts on the cheeks"),
    TraitSpec("fur_length", 0.0, 1.0, "length and density of fur strokes"),
    TraitSpec("head_tilt", -5.0, 5.0, "head tilt, degrees"),
    # ears
    TraitSpec("ear_floppiness", 0.0, 1.0, "0 pricked and pointed, 1 hanging; in between the tip folds over"),
    TraitSpec("ear_angle", 4.0, 40.0, "outward splay of the upright part, degrees"),
    TraitSpec("ear_length", 0.75, 1.25, "ear length relative to the head"),
    TraitSpec("ear_width", 0.62, 1.0, "ear base width relative to the head"),
    TraitSpec("ear_tip", 0.0, 1.0, "0 sharp tip, 1 rounded tip"),
    TraitSpec("ear_set", 0.0, 1.0, "0 ears set high on the crown, 1 set wide on the sides"),
    TraitSpec("ear_darkness", 0.0, 1.0, "how much the ears take the secondary colour"),
    # muzzle and mouth
    TraitSpec("muzzle_length", 0.0, 1.0, "how far the muzzle reaches down"),
    TraitSpec("muzzle_width", 0.0, 1.0, "width of the whisker pads"),
    TraitSpec("muzzle_light", 0.0, 1.0, "how much lighter the muzzle is than the coat"),
    TraitSpec("tongue", 0.0, 1.0, "how far the tongue hangs out (low values: hidden)"),
    TraitSpec("smile", 0.0, 1.0, "upward curve of the mouth"),
    # eyes
    TraitSpec("eye_size", 0.0, 1.0, "eye radius"),
    TraitSpec("eye_spacing", 0.0, 1.0, "distance between the eyes"),
    TraitSpec("eye_height", 0.0, 1.0, "vertical placement of the eyes"),
    TraitSpec("eye_slant", -1.0, 1.0, "almond slant of the eyes"),
    TraitSpec("iris_colour", 0.0, 1.0, "dark brown -> amber -> hazel -> blue"),
    TraitSpec("eyelids", 0.0, 0.42, "how far the upper lids come down: alert .. soulful"),
    TraitSpec("brow_marks", 0.0, 1.0, "strength of tan brow pips"),
    # nose
    TraitSpec("nose_size", 0.0, 1.0, "nose width"),
    TraitSpec("nose_colour", 0.0, 1.0, "black -> liver -> pink"),
    # coat
    # Colours use two linear axes rather than one hue angle: a hue circle
    # wraps, so it changes as fast as a line but spreads dogs apart less.
    TraitSpec("coat_light", 0.0, 1.0, "coat lightness: white .. black"),
    TraitSpec("coat_warmth", 0.0, 1.0, "coat warmth: blue-grey .. grey .. golden / red"),
    TraitSpec("second_light", 0.0, 1.0, "marking colour: darker .. lighter than the coat"),
    TraitSpec("second_warmth", 0.0, 1.0, "marking colour warmth"),
    TraitSpec("blaze", 0.0, 1.0, "width of the white blaze on the forehead"),
    TraitSpec("chest_white", 0.0, 1.0, "size of the white bib"),
    TraitSpec("patch_size", 0.0, 1.0, "size of the eye patch"),
    TraitSpec("patch_side", -1.0, 1.0, "eye patch position from the left to the right eye"),
    TraitSpec("spots", 0.0, 1.0, "size of coat spots"),
    TraitSpec("brindle", 0.0, 1.0, "strength of brindle striping"),
    TraitSpec("face_mask", 0.0, 1.0, "strength of a dark face mask"),
    TraitSpec("hood", 0.0, 1.0, "marking colour creeping down from the crown over the eyes"),
    TraitSpec("saddle", 0.0, 1.0, "marking colour spreading in from the sides of the chest"),
    # collar
    TraitSpec("collar_a", -1.0, 1.0, "collar colour, green .. red axis (OKLab a)"),
    TraitSpec("collar_b", -1.0, 1.0, "collar colour, blue .. yellow axis (OKLab b)"),
    TraitSpec("collar_width", 0.0, 1.0, "collar band width"),
    TraitSpec("tag_square", 0.0, 1.0, "tag shape: round -> rounded square"),
    TraitSpec("tag_points", 0.0, 1.0, "tag shape: smooth -> star badge"),
    TraitSpec("tag_metal", 0.0, 1.0, "gold -> silver -> copper"),
    # background
    TraitSpec("bg_a", -1.0, 1.0, "background colour, green .. red axis (OKLab a)"),
    TraitSpec("bg_b", -1.0, 1.0, "background colour, blue .. yellow axis (OKLab b)"),
    TraitSpec("bg_light", 0.0, 1.0, "background lightness"),
    TraitSpec("bg_low_a", -1.0, 1.0, "colour shift towards the bottom of the background, a axis"),
    TraitSpec("bg_low_b", -1.0, 1.0, "colour shift towards the bottom of the background, b axis"),
    TraitSpec("bg_dots", 0.0, 1.0, "strength of polka dots"),
    TraitSpec("bg_stripes", 0.0, 1.0, "strength of diagonal stripes"),
    TraitSpec("bg_halo", 0.0, 1.0, "strength of the halo behind the head"),
)

TRAIT_NAMES: tuple[str, ...] = tuple(t.name for t in TRAITS)
N_TRAITS = len(TRAITS)
_SPEC = {t.name: t for t in TRAITS}


@lru_cache(maxsize=1)
def projection() -> np.ndarray:
    """The fixed (N_TRAITS, 512) projection with orthonormal rows.

    Legacy RandomState is used on purpose: NumPy freezes its stream (NEP 19),
    while Generator streams may change between releases, and a changed stream
    would silently redraw every published dog.
    """
    rs = np.random.RandomState(_PROJECTION_SEED)
    g = rs.standard_normal((N_TRAITS, LATENT_DIM))
    # Explicit Gram-Schmidt rather than np.linalg.qr: its sign convention and
    # rounding depend on the LAPACK build.
    q = np.zeros_like(g)
    for i in range(N_TRAITS):
        v = g[i].copy()
        for j in range(i):
            v -= float(np.sum(q[j] * v)) * q[j]
        q[i] = v / math.sqrt(float(np.sum(v * v)))
    q.setflags(write=False)
    return q


def _as_directions(latent: np.ndarray) -> np.ndarray:
    z = np.asarray(latent, dtype=np.float64)
    single = z.ndim == 1
    z2 = z[None, :] if single else z
    if z2.ndim != 2 or z2.shape[1] != LATENT_DIM:
        raise InputError(f"latent must have shape ({LATENT_DIM},), got {tuple(z.shape)}")
    if not np.all(np.isfinite(z2)):
        raise InputError("latent contains NaN or infinite values")
    norms = np.sqrt(np.sum(z2 * z2, axis=1))
    # An all-zero latent (a degenerate sketch) has no direction; it maps to the
    # centre of trait space, the "average dog", rather than failing an issue.
    safe = np.where(norms > 1e-12, norms, np.inf)
    return z2 / safe[:, None] * math.sqrt(LATENT_DIM)


def raw_traits(latent: np.ndarray) -> np.ndarray:
    """Gaussian trait coordinates, ~N(0,1) each for a N(0, I) latent.

    Accepts one latent (512,) or a batch (n, 512); the latent's scale is
    ignored, only its direction matters. NaN or infinite entries, or a wrong
    shape, raise InputError.
    """
    z = _as_directions(latent)
    # Row-by-row sums rather than a BLAS matmul: results then do not depend on
    # the BLAS build or its thread count.
    q = projection()
    t = np.stack([np.sum(q * zi[None, :], axis=1) for zi in z])
    return t[0] if np.asarray(latent).ndim == 1 else t


_erf = np.vectorize(math.erf, otypes=[np.float64])


def trait_vector(latent: np.ndarray) -> np.ndarray:
    """Traits in [0, 1] in TRAIT_NAMES order; (n, N_TRAITS) for a batch."""
    u = 0.5 * (1.0 + _erf(raw_traits(latent) / math.sqrt(2.0)))
    # Rounding makes a last-bit difference in the projection (another CPU or
    # BLAS) almost never reach the pixels.
    return np.round(u, 7)


def traits(latent: np.ndarray) -> dict[str, float]:
    """Named traits in [0, 1] for one latent."""
    u = trait_vector(latent)
    if u.ndim != 1:
        raise InputError("traits() takes a single latent; use trait_vector() for a batch")
    return {name: float(v) for name, v in zip(TRAIT_NAMES, u)}


def scaled_traits(latent: np.ndarray) -> dict[str, float]:
    """Traits mapped onto their visual ranges (TraitSpec.lo .. hi)."""
    return {k: _SPEC[k].scale(v) for k, v in traits(latent).items()}
