"""The dog renderer's contract (DESIGN §7): deterministic, fast, smooth, diverse.

Smoothness is checked in trait space (200 latents) and in pixels (32 latents):
a latent at cosine 0.98 or 0.95 from z must give a dog much closer to z's dog
than an independent latent does. Diversity: among 1000 random latents no two
dogs are near-duplicates in trait space. All seeds are fixed, so a failure is
a real change in the renderer, not bad luck.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attest.errors import InputError
from attest.render import Renderer, get_renderer, register
from attest.render import gallery as gallery_mod
from attest.render.gallery import latent_at_cosine, make_gallery
from attest.render.metrics import min_pairwise_distance, pixel_distance, structural_distance
from attest.render.sheet import comparison_sheet, png_bytes, save_png
from attest.render.traits import LATENT_DIM, N_TRAITS, TRAIT_NAMES, raw_traits, trait_vector, traits

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return get_renderer()


def _z(seed: int) -> np.ndarray:
    return np.random.RandomState(seed).standard_normal(LATENT_DIM)


# --------------------------------------------------------------------------- basics


def test_registry_and_protocol() -> None:
    r = get_renderer("dog-v1")
    assert isinstance(r, Renderer)
    assert r.name == "dog-v1" and r.version
    with pytest.raises(InputError):
        get_renderer("no-such-renderer")

    class Flat:
        name = "flat-test"
        version = "0"

        def render(self, latent: np.ndarray) -> Image.Image:
            return Image.new("RGB", (512, 512), (1, 2, 3))

    register("flat-test", Flat)
    assert get_renderer("flat-test").render(_z(0)).getpixel((0, 0)) == (1, 2, 3)


def test_output_is_512_rgb(renderer: Renderer) -> None:
    img = renderer.render(_z(1))
    assert img.size == (512, 512) and img.mode == "RGB"


def test_same_latent_same_pixels(renderer: Renderer) -> None:
    z = _z(2)
    a = renderer.render(z).tobytes()
    assert renderer.render(z.copy()).tobytes() == a
    assert get_renderer().render(z).tobytes() == a  # fresh instance
    assert renderer.render(z.astype(np.float32)).size == (512, 512)
    assert png_bytes(renderer.render(z)) == png_bytes(get_renderer().render(z))


def test_same_pixels_in_a_fresh_process(renderer: Renderer) -> None:
    code = (
        "import hashlib, numpy as np\n"
        "from attest.render import get_renderer\n"
        "z = np.random.RandomState(3).standard_normal(512)\n"
        "print(hashlib.sha256(get_renderer().render(z).tobytes()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO, env=env)
    assert out.stdout.strip() == hashlib.sha256(renderer.render(_z(3)).tobytes()).hexdigest()


def test_only_direction_matters() -> None:
    z = _z(4)
    np.testing.assert_allclose(trait_vector(z), trait_vector(37.5 * z), atol=2e-7)
    np.testing.assert_allclose(trait_vector(z), trait_vector(1e-3 * z), atol=2e-7)


def test_bad_latents_are_input_errors(renderer: Renderer) -> None:
    with pytest.raises(InputError):
        renderer.render(np.zeros(511))
    with pytest.raises(InputError):
        renderer.render(np.full(512, np.nan))
    with pytest.raises(InputError):
        renderer.render(np.array([np.inf] + [0.0] * 511))
    # A degenerate all-zero latent draws the "average dog" instead of failing.
    assert traits(np.zeros(512)) == {k: 0.5 for k in TRAIT_NAMES}
    assert renderer.render(np.zeros(512)).size == (512, 512)


def test_render_time_under_half_a_second(renderer: Renderer) -> None:
    zs = [_z(100 + i) for i in range(6)]
    renderer.render(zs[0])  # warm caches (fixed seeds, projection)
    times = []
    for z in zs[1:]:
        t = time.perf_counter()
        renderer.render(z)
        times.append(time.perf_counter() - t)
    assert statistics.median(times) < 0.5, times


# --------------------------------------------------------------------------- traits


def test_traits_are_many_bounded_and_uniform() -> None:
    assert N_TRAITS >= 25
    zs = np.random.RandomState(5).standard_normal((2000, LATENT_DIM))
    u = trait_vector(zs)
    assert u.shape == (2000, N_TRAITS)
    assert u.min() >= 0.0 and u.max() <= 1.0
    # N(0, I) latents give ~N(0, 1) raw traits, hence ~uniform traits
    t = raw_traits(zs)
    assert np.all(np.abs(t.mean(axis=0)) < 0.1)
    assert np.all(np.abs(t.std(axis=0) - 1.0) < 0.07)
    assert np.all(np.abs(u.mean(axis=0) - 0.5) < 0.03)
    # independent of each other (orthonormal projection)
    c = np.corrcoef(t.T)
    assert np.max(np.abs(c - np.eye(N_TRAITS))) < 0.12
    # batch and single agree
    np.testing.assert_array_equal(trait_vector(zs[7]), u[7])
    d = traits(zs[7])
    assert list(d) == list(TRAIT_NAMES) and all(0.0 <= v <= 1.0 for v in d.values())


def test_latent_at_cosine() -> None:
    rng = np.random.RandomState(6)
    z = _z(6)  # same seed as rng on purpose: the first draw is parallel to z
    for c in (0.99, 0.95, 0.0, -0.5):
        w = latent_at_cosine(z, c, rng)
        assert abs(float(z @ w / np.linalg.norm(z) / np.linalg.norm(w)) - c) < 1e-9
        assert abs(np.linalg.norm(w) - np.linalg.norm(z)) < 1e-9


def _trait_distances(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    out: dict[str, list[float]] = {"0.98": [], "0.95": [], "ind": []}
    for _ in range(n):
        z = rng.standard_normal(LATENT_DIM)
        tz = trait_vector(z)
        out["0.98"].append(float(np.linalg.norm(trait_vector(latent_at_cosine(z, 0.98, rng)) - tz)))
        out["0.95"].append(float(np.linalg.norm(trait_vector(latent_at_cosine(z, 0.95, rng)) - tz)))
        out["ind"].append(float(np.linalg.norm(trait_vector(rng.standard_normal(LATENT_DIM)) - tz)))
    return {k: np.asarray(v) for k, v in out.items()}


def test_smooth_in_trait_space() -> None:
    d = _trait_distances(200, seed=7)
    p5_ind = np.percentile(d["ind"], 5)
    assert np.percentile(d["0.98"], 95) < np.percentile(d["0.95"], 95) < p5_ind
    # not just ordered: a cos-0.95 neighbour is several times closer than a stranger
    assert np.percentile(d["0.95"], 95) * 2.0 < p5_ind


def test_diverse_in_trait_space() -> None:
    zs = np.random.RandomState(8).standard_normal((1000, LATENT_DIM))
    dmin, _ = min_pairwise_distance(trait_vector(zs))
    # Stated bound: no two of 1000 random dogs are within 1.5 of each other
    # (Euclidean over all traits in [0, 1]); a cos-0.95 neighbour sits at ~0.7.
    assert dmin > 1.5, dmin
    p95_near = np.percentile(_trait_distances(200, seed=9)["0.95"], 95)
    assert dmin > 1.5 * p95_near, (dmin, p95_near)


# --------------------------------------------------------------------------- pixels


def test_smooth_in_pixel_space(renderer: Renderer) -> None:
    rng = np.random.RandomState(10)
    px: dict[str, list[float]] = {"0.98": [], "0.95": [], "ind": []}
    st: dict[str, list[float]] = {"0.98": [], "0.95": [], "ind": []}
    for _ in range(32):
        z = rng.standard_normal(LATENT_DIM)
        a = renderer.render(z)
        for k, w in (
            ("0.98", latent_at_cosine(z, 0.98, rng)),
            ("0.95", latent_at_cosine(z, 0.95, rng)),
            ("ind", rng.standard_normal(LATENT_DIM)),
        ):
            b = renderer.render(w)
            px[k].append(pixel_distance(a, b))
            st[k].append(structural_distance(a, b))
    for d in (px, st):
        p5_ind = np.percentile(d["ind"], 5)
        assert np.percentile(d["0.98"], 95) < p5_ind, d
        assert np.percentile(d["0.95"], 95) < p5_ind, d
        assert np.median(d["0.98"]) < np.median(d["0.95"]) < 0.5 * np.median(d["ind"])


def test_no_jumps_along_a_path(renderer: Renderer) -> None:
    """Walk 90 degrees from z to an orthogonal latent in 30 steps (cos 0.9986
    each): a trait that switched discretely would show up as one big step."""
    a, b = _z(11), _z(12)
    b = b - (a @ b) / (a @ a) * a
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    ims = [renderer.render(np.cos(t) * a + np.sin(t) * b) for t in np.linspace(0, np.pi / 2, 31)]
    steps = np.array([pixel_distance(ims[i], ims[i + 1]) for i in range(30)])
    total = pixel_distance(ims[0], ims[-1])
    assert steps.max() < 4.0 * np.median(steps), steps
    assert steps.max() < 0.25 * total, (steps.max(), total)


# --------------------------------------------------------------------------- sheet, png, gallery


def _png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc
        kinds.append(kind)
        pos += 12 + length
    return kinds


def test_png_bytes_carry_no_metadata(tmp_path: Path, renderer: Renderer) -> None:
    img = renderer.render(_z(13))
    img.info["dpi"] = (300, 300)  # must not leak into the file
    data = png_bytes(img)
    assert set(_png_chunks(data)) <= {b"IHDR", b"IDAT", b"IEND"}
    save_png(img, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes() == data
    assert Image.open(tmp_path / "a.png").convert("RGB").tobytes() == img.tobytes()


def test_comparison_sheet(renderer: Renderer) -> None:
    z = _z(14)
    per_layer = [(str(i), v) for i, v in enumerate((0.99, 0.5, -0.3, -1.5, float("nan"), 0.0))]
    kw = dict(verdict="match", score=0.97, ci=(0.95, 0.98), per_layer=per_layer, title="base vs suspect")
    img = comparison_sheet(z, latent_at_cosine(z, 0.99, np.random.RandomState(0)), renderer=renderer, **kw)
    assert img.mode == "RGB" and img.width >= 1000
    again = comparison_sheet(z, latent_at_cosine(z, 0.99, np.random.RandomState(0)), **kw)
    assert png_bytes(img) == png_bytes(again)
    # hostile or missing values do not crash it
    comparison_sheet(z, z, verdict="<weird>\x00", score=float("nan"), ci=None, per_layer=[], title="\n" * 3 + "x" * 500)


def test_make_gallery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gallery_mod, "PAIR_ROWS", 1)
    paths = make_gallery(tmp_path / "g", n=3, seed=1)
    assert [p.name for p in paths] == ["gallery.png", "gallery-pairs.png"]
    for p in paths:
        assert Image.open(p).size[0] > 300
    before = [p.read_bytes() for p in paths]
    make_gallery(tmp_path / "g", n=3, seed=1)
    assert [p.read_bytes() for p in paths] == before


def test_gallery_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from attest.cli.app import build_app

    app = build_app()  # the real command set, as `attest` builds it
    monkeypatch.setattr(gallery_mod, "PAIR_ROWS", 1)
    res = CliRunner().invoke(app, ["gallery", "--out", str(tmp_path / "cli"), "--n", "2", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cli" / "gallery.png").exists() and (tmp_path / "cli" / "gallery-pairs.png").exists()
    for bad in (["--n", "5000"], ["--seed", "-1"]):
        res = CliRunner().invoke(app, ["gallery", "--out", str(tmp_path / "cli"), *bad])
        assert isinstance(res.exception, InputError), res.output


@pytest.mark.parametrize("args", [["--n", "0"], ["--out-is-file"]])
def test_gallery_cli_bad_input_exits_4(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "out"
    if args == ["--out-is-file"]:
        out.write_text("x")
        args = []
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run(
        [sys.executable, "-m", "attest", "gallery", "--out", str(out), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    assert res.returncode == 4, res.stderr
    assert "error:" in res.stderr
