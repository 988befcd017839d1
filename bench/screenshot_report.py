"""Render an HTML report to a PNG with headless Chromium (not run by CI).

    python bench/screenshot_report.py REPORT.html OUT.png [--width 1200] [--height 2000]

Also: `--sample DIR` writes DIR/sample-report.html from fake but plausible data
(the page title says it is a sample) and screenshots it to DIR/sample-report.png.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def _chromium() -> str:
    for c in CHROMIUM_CANDIDATES:
        p = shutil.which(c)
        if p:
            return p
    raise SystemExit("chromium not found (Debian: apt-get install -y chromium)")


def screenshot(html: Path, out: Path, width: int = 1200, height: int = 2000, timeout: float = 120.0) -> None:
    exe = _chromium()
    with tempfile.TemporaryDirectory(prefix="attest-shot-") as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={out.resolve()}",
            f"--window-size={width},{height}",
            html.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"chromium failed ({proc.returncode}):\n{proc.stderr[-2000:]}")


def sample_report() -> tuple[dict, bytes, bytes, bytes]:
    """Fake but plausible verification data for the docs; clearly labelled a sample."""
    import numpy as np

    from attest.render import get_renderer
    from attest.render.gallery import latent_at_cosine
    from attest.render.sheet import comparison_sheet, png_bytes

    rng = np.random.RandomState(2024)
    base = rng.standard_normal(512)
    suspect = latent_at_cosine(base, 0.97, rng)
    terms = ("embed_qk", "embed_vo", "embed_ffn")
    layers = []
    for i in range(12):
        layers.append(
            {
                "a": i,
                "b": i,
                "terms": {
                    t: float(np.clip(0.985 - 0.004 * i - 0.01 * k + rng.normal(0, 0.004), -1, 1))
                    for k, t in enumerate(terms)
                },
            }
        )
    report = {
        "title": "SAMPLE report (fake data): acme-7b vs suspect-chat-7b",
        "verdict": "match",
        "score": 0.962,
        "ci": [0.951, 0.972],
        "z": 48.3,
        "p_value": 1.2e-38,
        "threshold": 0.5,
        "coverage": 0.973,
        "method": "huref-ics default (4096 tokens, layers 0..11, 3 terms)",
        "layers": layers,
        "signature": {
            "valid": True,
            "kid": "6b1f0c8e4d2a9b7f3e5c1a0d8f6b4e2c9a7d5f3b1e0c8a6f4d2b0e9c7a5f3d1b",
            "issuer": "ACME AI Labs <models@acme.example>",
            "subject": "acme-7b",
        },
        "subject": {
            "base": {
                "files": [
                    {"name": "model-00001-of-00002.safetensors", "sha256": "3f2a" + "9c" * 30},
                    {"name": "model-00002-of-00002.safetensors", "sha256": "a1d0" + "4e" * 30},
                ],
                "root": "0b5e" + "7a" * 30,
            },
            "suspect": {
                "files": [{"name": "suspect-chat-7b.Q8_0.gguf", "sha256": "d94c" + "18" * 30}],
                "root": "77c1" + "e3" * 30,
            },
        },
        "notes": [
            "This is a sample page with invented numbers, made to show the report layout.",
            "The suspect is a GGUF Q8_0 file; its vocabulary covers 97.3% of the attested tokens.",
        ],
        "tool_version": "0.1.0",
        "time": "2026-01-15T12:00:00+00:00",
    }
    r = get_renderer()
    per_layer = [(str(layer["a"]), float(np.mean(list(layer["terms"].values())))) for layer in layers]
    sheet = comparison_sheet(
        base,
        suspect,
        verdict="match",
        score=0.962,
        ci=(0.951, 0.972),
        per_layer=per_layer,
        title="SAMPLE: acme-7b vs suspect-chat-7b",
        renderer=r,
    )
    return report, png_bytes(r.render(base)), png_bytes(r.render(suspect)), png_bytes(sheet)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html", nargs="?", type=Path, help="HTML file to screenshot")
    ap.add_argument("out", nargs="?", type=Path, help="PNG to write")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=2000)
    ap.add_argument("--sample", type=Path, metavar="DIR", help="write and screenshot DIR/sample-report.html")
    args = ap.parse_args()
    if args.sample is not None:
        from attest.report.html import render_report

        args.sample.mkdir(parents=True, exist_ok=True)
        report, a, b, sheet = sample_report()
        html = args.sample / "sample-report.html"
        html.write_text(render_report(report, a, b, sheet), encoding="utf-8")
        screenshot(html, args.sample / "sample-report.png", args.width, args.height)
        print(args.sample / "sample-report.png")
        return
    if args.html is None or args.out is None:
        ap.error("give HTML and OUT, or --sample DIR")
    screenshot(args.html, args.out, args.width, args.height)
    print(args.out)


if __name__ == "__main__":
    main()
