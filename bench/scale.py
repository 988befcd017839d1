"""Peak RSS and time of one frontier-size layer, extrapolated to the whole model.

    python bench/scale.py [--cache /work/cache/scale] [--shapes llama3-405b-layer,dsv3-moe-layer] [--tokens 1024]

For each one-layer synthetic checkpoint (bench/make_checkpoint.py) one fresh
process does what `attest fingerprint` computes (open, token selection, probe
rows, global terms, then the layer's terms; no output files) and reports the
time of each part; its peak RSS comes from the kernel (wait4).  The fixed
part is paid once per model, the layer part once per layer:
time per model = fixed + layers × time per layer.  `--fingerprint` also runs
the real `attest fingerprint` command in a fresh process for its peak RSS.
Results are printed as markdown and written to bench/RESULTS-scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import cpu_flags  # noqa: E402
from peak_rss import measure  # noqa: E402

#: the full model each one-layer shape stands for: (name, layers)
MODELS = {
    "llama3-405b-layer": ("Llama-3.1-405B", 126),
    "dsv3-moe-layer": ("DeepSeek-V3 (61 layers, 58 of them MoE)", 61),
    "dsv3-moe-tiny": ("tiny smoke test", 61),
    # every layer counted as this MoE layer: an upper bound, since 3 of V3's 61 are dense (and cheaper)
    "dsv3-mla-layer-256e": ("DeepSeek-V3 (61 layers, all counted as MoE)", 61),
    "llama-tiny": ("tiny smoke test", 126),
}

LAYER_TIMER = r"""
import json, sys, time, torch
from attest.arch.detect import load_model
from attest.invariants.compute import iter_layers, make_probe, global_matrices
from attest.invariants.methods import get_method
from attest.invariants.precision import compute_dtype, available_cores
from attest.invariants.terms import FLOPS
from attest.vocab.selection import DEFAULT_SELECTION_KEY, select
torch.set_num_threads(available_cores())
path, method_name, n, result = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
method = get_method(method_name).with_options(n_tokens=n)
dtype = compute_dtype("auto")
t0 = time.perf_counter()
model = load_model(path)
strings = select(model.vocab, method.n_tokens, DEFAULT_SELECTION_KEY)
ids = [model.vocab.index()[s] for s in strings]
probe = make_probe(model, ids, method)
global_matrices(model, probe, method, dtype)
fixed = time.perf_counter() - t0
FLOPS.reset()
t1 = time.perf_counter()
cpu1 = time.process_time()
for _ in iter_layers(model, probe, method, [0], dtype):
    pass
layer = time.perf_counter() - t1
cpu = time.process_time() - cpu1
open(result, "w").write(json.dumps({"fixed_s": fixed, "layer_s": layer, "layer_cpu_s": cpu, "flops": FLOPS.reset(),
                  "dtype": str(dtype), "tokens": len(ids)}))
"""


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("/work/cache/scale"))
    ap.add_argument("--shapes", default="llama3-405b-layer,dsv3-moe-layer")
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--method", default="attest-v1")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS-scale.md")
    ap.add_argument("--fingerprint", action="store_true", help="also measure the `attest fingerprint` command")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    cores = len(os.sched_getaffinity(0))
    lines = [
        "# Frontier layer shapes: peak RSS and time",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- CPU: {cpu_flags()}; {cores} cores usable",
        f"- command: `python bench/scale.py {' '.join(sys.argv[1:])}`; method {args.method}, {args.tokens} probe tokens",
        f"- block budget: {os.environ.get('ATTEST_BLOCK_BYTES', 'default')} (attest/invariants/blocks.py)",
        "",
        "| shape | checkpoint GB | peak RSS GB | `attest fingerprint` peak RSS GB | wall s | layer s | layer GFLOP | GFLOP/s "
        "| core share | fixed s | model | layers | model h (extrapolated) | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for shape in args.shapes.split(","):
        ckpt = args.cache / shape
        subprocess.run(
            [sys.executable, str(HERE / "make_checkpoint.py"), shape, "--out", str(ckpt), "--no-verify"],
            check=True,
            env=env,
        )
        size = sum(p.stat().st_size for p in ckpt.iterdir() if p.is_file())
        load_before = loadavg()
        result = Path(tempfile.mkdtemp(prefix="attest-scale-")) / "layer.json"
        run = measure(
            [sys.executable, "-c", LAYER_TIMER, str(ckpt), args.method, str(args.tokens), str(result)], env=env
        )
        t = json.loads(result.read_text())
        fp_rss = "not run"
        if args.fingerprint:
            out = result.parent / "fp"
            cmd = [sys.executable, "-m", "attest", "fingerprint", str(ckpt), "--out", str(out), "--method", args.method]
            cmd += ["--tokens", str(args.tokens)]
            fp_rss = f"{measure(cmd, env=env, quiet=True).peak_rss_bytes / 1e9:.2f}"
        name, layers = MODELS.get(shape, (shape, 1))
        share = t["layer_cpu_s"] / (t["layer_s"] * cores)
        hours = (t["fixed_s"] + layers * t["layer_s"]) / 3600
        lines.append(
            f"| {shape} | {size / 1e9:.1f} | {run.peak_rss_bytes / 1e9:.2f} | {fp_rss} | {run.wall_s:.0f} | {t['layer_s']:.1f} | "
            f"{t['flops'] / 1e9:.0f} | {t['flops'] / 1e9 / t['layer_s']:.0f} | {share:.2f} | {t['fixed_s']:.1f} | "
            f"{name} | {layers} | {hours:.2f} | {load_before} → {loadavg()} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        "*layer s* is one layer's terms in a fresh process after the fixed part (open, token selection, probe rows, "
        "global terms); *model h* = (fixed + layers × layer s) / 3600 on these 2 shared cores, at the core share "
        "shown (a share below 1 means other processes took the cores; the time is then pessimistic).",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
