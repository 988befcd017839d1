"""Wall time, peak RSS and GFLOP/s of fingerprinting real-shape checkpoints.

    python bench/perf.py [--cache DIR (default $ATTEST_BENCH_CACHE or bench/cache)] [--runs 3] [--shapes llama-1.2b,llama-7b] [--no-baseline]

Every measured run is its own fresh process (bench/peak_rss.py reads the
kernel's peak RSS for it); figures are medians.  Measured:
- `attest fingerprint` with the default method and with huref-2024;
- a full-model-load baseline that mirrors the HuRef reference code
  (`AutoModelForCausalLM.from_pretrained` in float32, then the paper's
  formulas on the last two layers), only where float32 weights fit in RAM;
- plain torch.matmul GFLOP/s at the same dtype and sizes, in the same run;
- how much bf16 changes scores against fp32.
Results are printed as markdown and written to bench/RESULTS-perf.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import cache_root  # noqa: E402
from peak_rss import median_of  # noqa: E402

FP32_BYTES_PER_PARAM = 4


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def attest_env(root: Path | None) -> dict[str, str] | None:
    """The environment that makes `python -m attest` import the tree at `root` (None: this one).

    PYTHONSAFEPATH keeps the working directory off sys.path: run from another
    checkout, `-m attest` would otherwise import that checkout, not `root`.
    """
    return {**os.environ, "PYTHONPATH": str(root or HERE.parent), "PYTHONSAFEPATH": "1"}


def ensure_checkpoint(shape: str, cache: Path) -> Path:
    out = cache / shape
    subprocess.run([sys.executable, str(HERE / "make_checkpoint.py"), shape, "--out", str(out)], check=True)
    return out


def fingerprint_cmd(
    ckpt: Path, method: str, out: Path, precision: str = "auto", layers: str | None = None, device: str | None = None
) -> list[str]:
    extra = (["--layers", layers] if layers else []) + (["--device", device] if device else [])
    return [
        sys.executable,
        "-m",
        "attest",
        "fingerprint",
        str(ckpt),
        "--out",
        str(out),
        "--method",
        method,
        "--precision",
        precision,
        "--json",
        *extra,
    ]


def run_fingerprint(
    ckpt: Path,
    method: str,
    runs: int,
    precision: str = "auto",
    root: Path | None = None,
    layers: str | None = None,
    device: str | None = None,
) -> dict[str, object]:
    summaries: list[dict[str, object]] = []
    outs: list[Path] = []

    def fresh_out() -> Path:
        d = Path(tempfile.mkdtemp(prefix="attest-perf-")) / "fp"
        outs.append(d)
        return d

    walls, rss, shares = [], [], []
    cores = len(os.sched_getaffinity(0))
    for _ in range(runs):
        out = fresh_out()
        cmd = fingerprint_cmd(ckpt, method, out, precision, layers, device)
        m = median_of(cmd, runs=1, env=attest_env(root))
        walls.append(m.wall_s)
        rss.append(m.peak_rss_bytes)
        run = m.runs[0]
        shares.append((run.user_s + run.sys_s) / (run.wall_s * cores))
        summaries.append(json.loads((out / "summary.json").read_text()))
    walls.sort()
    rss.sort()
    compute = sorted(summaries, key=lambda s: s["compute"]["seconds"])[len(summaries) // 2]["compute"]  # type: ignore[index]
    shares.sort()
    return {
        "wall_s": walls[len(walls) // 2],
        "peak_rss": rss[len(rss) // 2],
        "compute": compute,
        "core_share": shares[len(shares) // 2],
        "matrices": outs[-1] / "invariants.safetensors",
        "params": summaries[0]["model"]["parameters"],
    }  # type: ignore[index]


BASELINE = r"""
import sys, time, torch
from transformers import AutoModelForCausalLM
torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
path, n = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
x = model.model.embed_tokens.weight[torch.randperm(model.config.vocab_size, generator=torch.Generator().manual_seed(0))[:n]]
cfg = model.config
g = cfg.num_attention_heads // cfg.num_key_value_heads
dh = cfg.hidden_size // cfg.num_attention_heads
mats = []
with torch.no_grad():
    for layer in model.model.layers[-2:]:
        a, m = layer.self_attn, layer.mlp
        k = a.k_proj.weight.reshape(-1, dh, cfg.hidden_size).repeat_interleave(g, 0).reshape(-1, cfg.hidden_size)
        v = a.v_proj.weight.reshape(-1, dh, cfg.hidden_size).repeat_interleave(g, 0).reshape(-1, cfg.hidden_size)
        mats.append(x @ a.q_proj.weight.T @ k @ x.T)
        mats.append(x @ v.T @ a.o_proj.weight.T @ x.T)
        mats.append(x @ (m.gate_proj.weight.T * m.up_proj.weight.T) @ m.down_proj.weight.T @ x.T)
    mats = [(s - s.mean()) / s.std() for s in mats]
print(time.perf_counter() - t0)
"""


def run_baseline(ckpt: Path, runs: int) -> dict[str, float]:
    script = Path(tempfile.mkdtemp()) / "baseline.py"
    script.write_text(BASELINE)
    m = median_of([sys.executable, str(script), str(ckpt), "4096"], runs=runs)
    return {"wall_s": m.wall_s, "peak_rss": m.peak_rss_bytes}


MATMUL = r"""
import sys, time, torch, os
torch.set_num_threads(len(os.sched_getaffinity(0)))
n, d, f, dt = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), getattr(torch, sys.argv[4])
a, b = torch.randn(n, d).to(dt), torch.randn(d, f).to(dt)
a @ b
ts = []
for _ in range(5):
    t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
ts.sort()
print(2 * n * d * f / ts[2] / 1e9)
"""


def plain_matmul_gflops(n: int, d: int, f: int, dtype: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", MATMUL, str(n), str(d), str(f), dtype], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def precision_effect(ckpt_a: Path, ckpt_b: Path) -> dict[str, float]:
    """Score of A vs B and of A's bf16 vs fp32 fingerprint, at both precisions."""
    sys.path.insert(0, str(HERE.parent))
    import attest
    from attest.invariants.methods import DEFAULT, HUREF_2024

    out: dict[str, float] = {}
    for method in (DEFAULT.with_options(layers="first:4"), HUREF_2024):
        s32 = attest.compare(ckpt_a, ckpt_b, method=method, precision="fp32").score
        s16 = attest.compare(ckpt_a, ckpt_b, method=method, precision="bf16").score
        out[f"{method.name} score fp32"] = s32
        out[f"{method.name} score bf16"] = s16
        out[f"{method.name} |diff|"] = abs(s32 - s16)
    return out


def self_precision(fp32: Path, bf16: Path) -> float:
    """Minimum over cells of the similarity between a model's fp32 and bf16 matrices."""
    from safetensors.torch import load_file

    a, b = load_file(str(fp32)), load_file(str(bf16))
    worst = 1.0
    for k in a:
        x, y = a[k].double().reshape(-1), b[k].double().reshape(-1)
        worst = min(worst, float(x @ y / (x.norm() * y.norm())))
    return worst


def torch_device_line(device: str | None) -> str:
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return (
        f"torch {torch.__version__}; attest --device {device or 'auto (the default)'}; "
        f"cuda available: {cuda}{' (' + torch.cuda.get_device_name(0) + ')' if cuda else ''}; mps available: {mps}"
    )


def before_after(args: argparse.Namespace) -> int:
    """This tree against `--before`, back to back on the same checkpoints, beside the plain-matmul probe.

    Each repeat runs both trees in a fresh process each, alternating which goes
    first, so that both see the same load; the plain matmul is probed after
    every pair.  Medians over the repeats.
    """
    from common import cpu_flags

    t_start = time.perf_counter()
    lines = [
        "# attest against the plain matmul rate, before and after",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- CPU: {cpu_flags()}",
        f"- device: {torch_device_line(args.device)}",
        f"- command: `python bench/perf.py {' '.join(sys.argv[1:])}`",
        f"- before: {args.before}; after: {HERE.parent}; {args.runs} repeats each, alternating order; "
        "medians; the machine is shared with other jobs (load average per row)",
        "",
        "| shape | kind | method | tree | compute s | GFLOP | GFLOP/s | plain matmul GFLOP/s | % of plain "
        "| core share | peak RSS GB | load avg (start) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    kinds = {"llama-1.2b": "dense", "llama-7b": "dense", "llama-1.2b-gqa": "GQA", "mixtral-small": "MoE"}
    for shape in args.shapes.split(","):
        ckpt = ensure_checkpoint(shape, args.cache)
        cfg = json.loads((ckpt / "config.json").read_text())
        d, f = cfg["hidden_size"], cfg["intermediate_size"]
        for method in args.methods.split(","):
            n = 1024 if method == "attest-v1" else 4096
            load = loadavg()
            got: dict[str, list[dict[str, object]]] = {"before": [], "after": []}
            plains: list[float] = []
            for rep in range(args.runs):
                order = ("before", "after") if rep % 2 == 0 else ("after", "before")
                for tree in order:
                    root = args.before if tree == "before" else None
                    device = args.device if tree == "after" else None
                    got[tree].append(run_fingerprint(ckpt, method, 1, root=root, layers=args.layers, device=device))
                plains.append(plain_matmul_gflops(n, d, f, "bfloat16"))
            plain = sorted(plains)[len(plains) // 2]
            for tree in ("before", "after"):
                rs = got[tree]
                rates = sorted(
                    (r["compute"]["flops"] / 1e9 / r["compute"]["seconds"], r)  # type: ignore[index]
                    for r in rs
                )
                rate, r = rates[len(rates) // 2]
                comp = r["compute"]
                lines.append(
                    f"| {shape} | {kinds.get(shape, '?')} | {method} | {tree} | {comp['seconds']:.1f} | "  # type: ignore[index]
                    f"{comp['flops'] / 1e9:.0f} | {rate:.0f} | {plain:.0f} | {100 * rate / plain:.0f}% | "  # type: ignore[index]
                    f"{r['core_share']:.2f} | {r['peak_rss'] / 1e9:.2f} | {load} |"  # type: ignore[operator]
                )
                print(lines[-1], flush=True)
    lines += [
        "",
        "*% of plain* = attest's GFLOP/s (FLOPs counted by attest.invariants.terms.mm, over its compute seconds) / "
        "torch.matmul's GFLOP/s at [n, d] x [d, f] in bf16, probed in the same run.",
        "",
        f"Total benchmark time: {time.perf_counter() - t_start:.0f} s; load average at the end: {loadavg()}.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=cache_root())
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--shapes", default="llama-1.2b,llama-1.2b-gqa,llama-7b,mixtral-small")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS-perf.md")
    ap.add_argument(
        "--before", type=Path, help="another attest source tree (e.g. main's) to measure beside this one, interleaved"
    )
    ap.add_argument("--methods", default="attest-v1,huref-2024")
    ap.add_argument("--layers", help="fingerprint only these layers (e.g. first:6) to keep a before/after run short")
    ap.add_argument("--device", help="pass --device to attest fingerprint (this tree only)")
    args = ap.parse_args()
    if args.before is not None:
        return before_after(args)
    t_start = time.perf_counter()
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    lines = [
        "# Performance",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- CPU: {cpu_model()}, {len(os.sched_getaffinity(0))} cores, {mem_total / 2**30:.0f} GiB RAM",
        f"- command: `python bench/perf.py {' '.join(sys.argv[1:])}`",
        f"- each figure: median of {args.runs} fresh processes; peak RSS from the kernel (wait4)",
        f"- device: {torch_device_line(args.device)}",
        "",
        "*core share* = CPU seconds / (wall seconds × cores) of the measured process: 1.0 means it had the machine;"
        " lower means other work on the machine took cores (the wall time is then pessimistic).",
        "",
        "| shape | params | method | wall s | compute s | peak RSS GB | GFLOP | GFLOP/s | plain matmul GFLOP/s | % of plain | core share |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    results: dict[str, dict[str, object]] = {}
    for shape in args.shapes.split(","):
        ckpt = ensure_checkpoint(shape, args.cache)
        cfg = json.loads((ckpt / "config.json").read_text())
        d, f = cfg["hidden_size"], cfg["intermediate_size"]
        for method, n in (("attest-v1", 1024), ("huref-2024", 4096)):
            r = run_fingerprint(ckpt, method, args.runs, layers=args.layers, device=args.device)
            results[f"{shape}/{method}"] = r
            comp = r["compute"]
            gflop = comp["flops"] / 1e9  # type: ignore[index]
            rate = gflop / comp["seconds"]  # type: ignore[index]
            plain = plain_matmul_gflops(n, d, f, "bfloat16")
            lines.append(
                f"| {shape} | {r['params'] / 1e9:.2f}B | {method} | {r['wall_s']:.1f} | {comp['seconds']:.1f} | "  # type: ignore[index]
                f"{r['peak_rss'] / 1e9:.2f} | {gflop:.0f} | {rate:.0f} | {plain:.0f} | {100 * rate / plain:.0f}% | {r['core_share']:.2f} |"
            )
            print(lines[-1], flush=True)
    if not args.no_baseline:
        lines += [
            "",
            "## Full-model-load baseline (HuRef reference code path: float32 `from_pretrained`, last two layers, 4096 tokens)",
            "",
            "| shape | baseline wall s | baseline peak RSS GB | attest huref-2024 wall s | peak RSS GB | speed-up | memory ratio |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for shape in args.shapes.split(","):
            key = f"{shape}/huref-2024"
            if key not in results:
                continue
            params = int(results[key]["params"])  # type: ignore[arg-type]
            if params * FP32_BYTES_PER_PARAM * 1.3 > mem_total or "mixtral" in shape:
                lines.append(
                    f"| {shape} | skipped: {params * 4 / 1e9:.0f} GB of float32 weights do not fit in RAM (or not a llama layout) | | | | | |"
                )
                continue
            b = run_baseline(args.cache / shape, args.runs)
            r = results[key]
            lines.append(
                f"| {shape} | {b['wall_s']:.1f} | {b['peak_rss'] / 1e9:.2f} | {r['wall_s']:.1f} | {r['peak_rss'] / 1e9:.2f} | "  # type: ignore[operator]
                f"{b['wall_s'] / r['wall_s']:.1f}× | {b['peak_rss'] / r['peak_rss']:.1f}× |"
            )  # type: ignore[operator]
            print(lines[-1], flush=True)
    shapes = args.shapes.split(",")
    if "llama-1.2b" in shapes and "llama-1.2b-gqa" in shapes:
        eff = precision_effect(args.cache / "llama-1.2b", args.cache / "llama-1.2b-gqa")
        lines += [
            "",
            "## bf16 against fp32",
            "",
            "Scores of llama-1.2b vs llama-1.2b-gqa (independent random weights) at both precisions "
            "(attest-v1 on the first 4 layers to keep the fp32 run short, and huref-2024):",
            "",
            "| quantity | value |",
            "|---|---:|",
        ]
        lines += [f"| {k} | {v:.6f} |" for k, v in eff.items()]
        for shape in ("llama-1.2b",):
            r32 = run_fingerprint(args.cache / shape, "huref-2024", 1, precision="fp32")
            worst = self_precision(Path(r32["matrices"]), Path(results[f"{shape}/huref-2024"]["matrices"]))  # type: ignore[arg-type]
            lines.append(f"| {shape} huref-2024: min over cells of sim(bf16 matrices, fp32 matrices) | {worst:.7f} |")
    lines += ["", f"Total benchmark time: {time.perf_counter() - t_start:.0f} s."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
