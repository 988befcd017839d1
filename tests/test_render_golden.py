"""Golden digests of dog-v1 portraits: the renderer's pixels must never drift.

Bundles record the renderer name and version next to the image digest, and a
verifier redraws the dog to compare. Any refactoring of the renderer (such as
moving its raster toolkit into `attest.render.raster`) must therefore keep
every pixel. These digests were computed once from the renderer as it stood
before that split; a change to any of them is a change to dog-v1 and needs a
new renderer version, not a new digest.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from attest.render import get_renderer
from attest.render.sheet import png_bytes
from attest.render.traits import LATENT_DIM

# seed of the standard-normal latent -> (SHA-256 of the PNG bytes, SHA-256 of
# the raw RGB pixels). Golden values, see above. The pixel digest is there so a
# failure says whether the drawing changed or only the PNG encoder did.
GOLDEN: dict[int, tuple[str, str]] = {
    0: (
        "96ddd300fedfb5f24b5dc32281d71aa4aef3bd579856b39d6cce0f5c8fdd8ba4",
        "bd8edb00ebe34c1763654810d499d05f62ed707109e83c2785397039d46f6638",
    ),
    1: (
        "2567373baac9608d1e26c7097e66416442f6b6db178a15612ab1701baca9b784",
        "d419f4966c8bf1f8de25d762c401a7abf9f767dc925054244538c7a90d54a8e6",
    ),
    7: (
        "c1c1fed186b19ac2a17f7e714c92b644409a386bbf588ab4be4e15b54d9c3570",
        "b3fb91ead8731ffe9220cf00537d7a7810f7f6adb1c55be7d52801e54ea49292",
    ),
    42: (
        "4bfaa3d750de5bd471ba3c1b1a7e9eeca1ba570e803e5d87324bebe427a1badb",
        "65b4dd4254159182688ac8fb8181d4191a323251bcdde0f7045b179b422be700",
    ),
    2024: (
        "0bce1aa54d1cc2614ae5667ea60447c47090b51e9eb4e38bde9b502131cb2852",
        "af7bde49ca9c168a7dbd973764473186d728c29974d260110c242a07eb52944c",
    ),
    31337: (
        "c2a4cd4b3ad89257df8317bbc0b8eebf4b769d271cd5d715d64488ab0de5e8b9",
        "82af043989d6b52b01cc011c72903fe0ad9ea22d160d1a01e0a23921563c1fdf",
    ),
}


def _latent(seed: int) -> np.ndarray:
    return np.random.RandomState(seed).standard_normal(LATENT_DIM)


@pytest.mark.parametrize("seed", sorted(GOLDEN))
def test_dog_v1_png_digest_is_pinned(seed: int) -> None:
    image = get_renderer("dog-v1").render(_latent(seed))
    png_digest, pixel_digest = GOLDEN[seed]
    assert hashlib.sha256(image.tobytes()).hexdigest() == pixel_digest, "dog-v1 pixels changed"
    assert hashlib.sha256(png_bytes(image)).hexdigest() == png_digest, "PNG encoding changed"


def test_latent_scale_does_not_change_the_picture() -> None:
    # only the latent's direction counts, so a scaled copy must hit the same digest
    image = get_renderer("dog-v1").render(3.5 * _latent(0))
    assert hashlib.sha256(png_bytes(image)).hexdigest() == GOLDEN[0][0]
