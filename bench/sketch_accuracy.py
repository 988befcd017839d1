"""How many sketch pairs m does a bundle need?  Sketch estimate vs exact score.

    python bench/sketch_accuracy.py [--out bench/RESULTS-sketch.md]

For a base model and suspects spanning the whole score range (noisy copies
from 0% to 300% relative noise, and unrelated models), compute the exact
score with `compare_models` and the bundle's estimate with `issue_bundle` +
`verify_suspect` at several m.  Reports the worst |estimate - exact|, the CI
coverage and the bundle size per m.  Models: real all-MiniLM-L6-v2 (if the
demo extra is installed) and a tiny llama built here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import attest  # noqa: E402
from attest.crypto.keys import TrustStore, generate_keypair, load_private_key  # noqa: E402
from attest.invariants.methods import DEFAULT  # noqa: E402

NOISE = (0.0, 0.1, 0.3, 0.6, 1.0, 1.5, 2.0, 3.0)
PAIRS = (1024, 2048, 4096, 8192)


def noisy_copy(src: Path, dst: Path, rel: float, seed: int) -> Path:
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    g = torch.Generator().manual_seed(seed)
    for f in src.glob("*.safetensors"):
        t = load_file(str(f))
        out = {
            k: (v + rel * v.float().std() * torch.randn(v.shape, generator=g)).to(v.dtype)
            if v.is_floating_point() and v.numel() > 1
            else v
            for k, v in t.items()
        }
        save_file(out, str(dst / f.name))
    return dst


def bases(work: Path) -> list[tuple[str, Path, list[Path]]]:
    from helpers.models import save_tiny_model

    out = []
    tiny = save_tiny_model("llama", work / "tiny-base", 0, num_hidden_layers=4)
    unrelated = [save_tiny_model("llama", work / f"tiny-other{s}", s, num_hidden_layers=4) for s in (1, 2)]
    out.append(("tiny llama (4 layers)", tiny, unrelated))
    try:
        from attest.demo.models import MINILM_L6

        out.append(("all-MiniLM-L6-v2", MINILM_L6.locate().parent, []))
    except Exception as exc:  # the demo extra is optional
        print(f"skipping MiniLM: {exc}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS-sketch.md")
    ap.add_argument("--tokens", type=int, default=1024)
    args = ap.parse_args()
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="attest-sketch-"))
    generate_keypair(work / "k", None)
    key = load_private_key(work / "k.key", None)
    trust = TrustStore.from_pubkey(work / "k.pub")
    method = DEFAULT.with_options(n_tokens=args.tokens)
    rows = []
    for label, base, unrelated in bases(work):
        suspects = [(f"noise {r:.0%}", noisy_copy(base, work / f"{base.name}-n{r}", r, 7)) for r in NOISE]
        suspects += [(f"unrelated {i}", p) for i, p in enumerate(unrelated)]
        exact = {name: attest.compare(base, p, method=method).score for name, p in suspects}
        for m in PAIRS:
            bundle = work / f"{base.name}-{m}.attest"
            issued = attest.issue(base, key, bundle, method=method, name=label, issuer="bench", pairs=m)
            opened = attest.open_bundle(bundle, trust)
            errs, covered = [], 0
            for name, p in suspects:
                v = attest.verify(p, opened)
                errs.append(abs(v.score - exact[name]))
                covered += v.ci[0] <= exact[name] <= v.ci[1]
            rows.append(
                (
                    label,
                    m,
                    issued.sketch_shape[0],
                    issued.bundle_bytes - issued.png_path.stat().st_size,
                    max(errs),
                    float(np.mean(errs)),
                    covered,
                    len(suspects),
                    min(exact.values()),
                    max(exact.values()),
                )
            )
            print(rows[-1], flush=True)
    lines = [
        "# Sketch size against estimate error",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; command: `python bench/sketch_accuracy.py`; {time.perf_counter() - t0:.0f} s",
        f"- method attest-v1, {args.tokens} tokens; suspects: noisy copies ({', '.join(f'{r:.0%}' for r in NOISE)} relative Gaussian noise per tensor) and unrelated models",
        "- exact = `attest compare` on the full n×n matrices; estimate = `attest verify` on the bundle's sketch",
        "",
        "| base | pairs m | cells | bundle bytes (without PNG) | max abs error | mean abs error | exact inside 95% CI | exact scores span |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, m, cells, size, mx, mean, cov, n, lo, hi in rows:
        lines.append(
            f"| {label} | {m} | {cells} | {size:,} | {mx:.4f} | {mean:.4f} | {cov}/{n} | {lo:+.3f} .. {hi:+.3f} |"
        )
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
