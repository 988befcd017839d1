"""Smoothness and diversity of the dog renderer, measured.

For random N(0, I) latents z, it compares z with a latent at cosine 0.98 and
0.95 from it, and with an independent latent, in trait space and in pixels
(mean abs RGB difference on a 64x64 downsample, and 1 - SSIM on grayscale),
then reports the smallest pairwise trait distance over many random latents
and the render time.

    python bench/render_stats.py [--pixel-n 100] [--trait-n 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attest.render import get_renderer  # noqa: E402
from attest.render.gallery import latent_at_cosine  # noqa: E402
from attest.render.metrics import (  # noqa: E402
    min_pairwise_distance,
    pixel_distance,
    structural_distance,
    trait_distance,
)
from attest.render.traits import LATENT_DIM, N_TRAITS, trait_vector  # noqa: E402

KINDS = ("cos 0.98", "cos 0.95", "independent")


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def _summary(xs: list[float]) -> str:
    a = np.asarray(xs)
    return f"median {np.median(a):7.3f}   p5 {np.percentile(a, 5):7.3f}   p95 {np.percentile(a, 95):7.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pixel-n", type=int, default=100, help="base latents rendered for the pixel metrics")
    ap.add_argument("--trait-n", type=int, default=1000, help="latents for trait-space statistics")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    r = get_renderer()
    print(f"renderer: {r.name} {r.version}; {N_TRAITS} traits")
    print(
        f"date: {time.strftime('%Y-%m-%d')}; cpu: {_cpu_model()}; cores: {os.cpu_count()}; python {platform.python_version()}"
    )
    rng = np.random.RandomState(args.seed)

    # trait space, many latents
    tr: dict[str, list[float]] = {k: [] for k in KINDS}
    for _ in range(args.trait_n):
        z = rng.standard_normal(LATENT_DIM)
        tr["cos 0.98"].append(trait_distance(z, latent_at_cosine(z, 0.98, rng)))
        tr["cos 0.95"].append(trait_distance(z, latent_at_cosine(z, 0.95, rng)))
        tr["independent"].append(trait_distance(z, rng.standard_normal(LATENT_DIM)))
    print(f"\ntrait distance (Euclidean over {N_TRAITS} traits in [0,1]), n={args.trait_n}")
    for k in KINDS:
        print(f"  {k:12s} {_summary(tr[k])}")
    sep = np.percentile(tr["independent"], 5) / np.percentile(tr["cos 0.95"], 95)
    print(f"  p5(independent) / p95(cos 0.95) = {sep:.2f}")

    zs = rng.standard_normal((args.trait_n, LATENT_DIM))
    dmin, (i, j) = min_pairwise_distance(trait_vector(zs))
    cos_ij = float(zs[i] @ zs[j] / np.linalg.norm(zs[i]) / np.linalg.norm(zs[j]))
    print(
        f"  min pairwise trait distance over {args.trait_n} random latents: {dmin:.3f} (latent cosine of that pair {cos_ij:+.3f})"
    )

    # pixel space, fewer latents (each costs four renders)
    px: dict[str, list[float]] = {k: [] for k in KINDS}
    st: dict[str, list[float]] = {k: [] for k in KINDS}
    times: list[float] = []
    for _ in range(args.pixel_n):
        z = rng.standard_normal(LATENT_DIM)
        t0 = time.perf_counter()
        a = r.render(z)
        times.append(time.perf_counter() - t0)
        others = {
            "cos 0.98": latent_at_cosine(z, 0.98, rng),
            "cos 0.95": latent_at_cosine(z, 0.95, rng),
            "independent": rng.standard_normal(LATENT_DIM),
        }
        for k, w in others.items():
            b = r.render(w)
            px[k].append(pixel_distance(a, b))
            st[k].append(structural_distance(a, b))
    print(f"\npixel distance (mean |RGB diff| on 64x64, 0..255), n={args.pixel_n}")
    for k in KINDS:
        print(f"  {k:12s} {_summary(px[k])}")
    print(
        f"  p5(independent) / p95(cos 0.95) = {np.percentile(px['independent'], 5) / np.percentile(px['cos 0.95'], 95):.2f}"
    )
    print(f"\nstructural distance (1 - SSIM, grayscale 128x128), n={args.pixel_n}")
    for k in KINDS:
        print(f"  {k:12s} {_summary(st[k])}")
    print(
        f"  p5(independent) / p95(cos 0.95) = {np.percentile(st['independent'], 5) / np.percentile(st['cos 0.95'], 95):.2f}"
    )

    # render time, also as CPU time: the wall clock suffers when the cores are shared
    z = rng.standard_normal(LATENT_DIM)
    cpu: list[float] = []
    for _ in range(10):
        c0 = time.process_time()
        r.render(z)
        cpu.append(time.process_time() - c0)
    print(
        f"\nrender time 512x512: wall median {statistics.median(times):.3f} s, max {max(times):.3f} s "
        f"(n={len(times)}); CPU median {statistics.median(cpu):.3f} s (n=10)"
    )


if __name__ == "__main__":
    main()
