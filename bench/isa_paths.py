"""Matmul paths on a CPU without native bf16: is anything faster than plain fp32?

    python bench/isa_paths.py [--seconds 5] [--sizes 1024x2048x2048,1024x4096x4096]

Runs each path in a fresh process twice: natively, and with the CPU limited
to AVX2 by the libraries' own switches (ATEN_CPU_CAPABILITY=avx2,
ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2), which is how an
AVX2-only machine (no avx512_bf16, no VNNI) runs the same torch build.

Paths, for the product X[n, d] · W[d, f] that dominates attest's work:
- fp32: both operands float32 (what `--precision auto` picks without native bf16);
- bf16: both bfloat16, fp32 accumulation (the path with avx512_bf16/amx_bf16);
- fp16: both float16 through torch.matmul;
- fp16-storage: W held in float16, cast to float32 per product, fp32 matmul (time includes the cast);
- int8: per-row symmetric int8 quantisation of X and W, torch._int_mm (int32 accumulation;
  uses VNNI where present), rescaled to float32 (time includes quantising both);
- int8-kernel: torch._int_mm alone on pre-quantised operands (the kernel's best case).
Reports GFLOP per CPU-second and per wall second, and the relative Frobenius error
against the float64 product.  Results: printed markdown (bench/RESULTS-isa.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import cpu_flags  # noqa: E402

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
PATHS = ("fp32", "bf16", "fp16", "fp16-storage", "int8", "int8-kernel")

CHILD = r"""
import json, os, sys, time, torch
torch.set_num_threads(len(os.sched_getaffinity(0)))
path, n, d, f, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
g = torch.Generator().manual_seed(0)
x = torch.randn(n, d, generator=g)
w = torch.randn(d, f, generator=g)
rows = min(n, 256)  # the error is measured on the first rows: a float64 product of the whole is slow
exact = x[:rows].double() @ w.double()

def q8(t, dim):
    s = t.abs().amax(dim=dim, keepdim=True).clamp_min(1e-12) / 127.0
    return (t / s).round_().clamp_(-127, 127).to(torch.int8), s

if path == "fp32":
    op = lambda: x @ w
elif path == "bf16":
    xb, wb = x.bfloat16(), w.bfloat16()
    op = lambda: xb @ wb
elif path == "fp16":
    xh, wh = x.half(), w.half()
    op = lambda: xh @ wh
elif path == "fp16-storage":
    wh = w.half()
    op = lambda: x @ wh.float()
elif path == "int8":
    def op():
        xq, sx = q8(x, 1)
        wq, sw = q8(w, 0)
        return torch._int_mm(xq, wq).float() * sx * sw
elif path == "int8-kernel":
    # torch._int_mm alone on operands quantised beforehand: the kernel's best case, not a usable path
    # (attest's second product reads an n×f intermediate that would need quantising every time).
    xq, sx = q8(x, 1)
    wq, sw = q8(w, 0)
    op = lambda: torch._int_mm(xq, wq)
else:
    raise SystemExit(path)
out = op()
err = float((out[:rows].double() - exact).norm() / exact.norm())
op()
# Time-bounded: as many products as fit in `budget` seconds of wall time (at least one).  The rate
# is per CPU-second of this process as well as per wall second: on a shared machine the first
# does not depend on how many cores other jobs took.
budget = float(reps)
c0, t0, count = time.process_time(), time.perf_counter(), 0
while count == 0 or time.perf_counter() - t0 < budget:
    op()
    count += 1
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
flop = 2 * n * d * f * count
cores = len(os.sched_getaffinity(0))
print(json.dumps({"gflops": flop / wall / 1e9, "per_cpu_s": flop / cpu / 1e9, "err": err,
                  "share": cpu / (wall * cores), "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def run(path: str, n: int, d: int, f: int, reps: int, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, path, str(n), str(d), str(f), str(reps)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5, help="wall seconds of products per cell")
    ap.add_argument("--sizes", default="1024x2048x2048")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS-isa.md")
    args = ap.parse_args()
    t0 = time.perf_counter()
    lines = [
        "# Matmul paths with and without native bf16 (AVX2 emulation)",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- CPU: {cpu_flags()}",
        f"- command: `python bench/isa_paths.py {' '.join(sys.argv[1:])}`; each cell a fresh process, "
        f"{args.seconds} s of products after one warm-up; rates per CPU-second of the process (robust to "
        "other jobs on the shared machine) and per wall second",
        "- AVX2 emulation: " + " ".join(f"{k}={v}" for k, v in AVX2.items()),
        "",
        "| n×d×f | ISA | ATen capability | path | GFLOP per CPU-s | GFLOP/s (wall) | vs fp32 same ISA "
        "| rel. error | core share | load avg |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for size in args.sizes.split(","):
        n, d, f = (int(v) for v in size.split("x"))
        for isa, env in (("native", {}), ("AVX2 only", AVX2)):
            rows = {p: run(p, n, d, f, args.seconds, env) for p in PATHS}
            base = rows["fp32"]["per_cpu_s"]
            for p, r in rows.items():
                lines.append(
                    f"| {size} | {isa} | {r['capability']} | {p} | {r['per_cpu_s']:.1f} | {r['gflops']:.1f} | "
                    f"{r['per_cpu_s'] / base:.2f}x | "
                    f"{r['err']:.1e} | {r['share']:.2f} | {loadavg()} |"
                )
                print(lines[-1], flush=True)
    lines += ["", f"Total: {time.perf_counter() - t0:.0f} s."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
