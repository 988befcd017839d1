"""Long structural fuzz run: mutate field values and types of valid documents, histogram the exit codes.

    python bench/fuzz_structure.py [--cases 24000] [--seed 1] [--out bench/RESULTS-fuzz.md]

Same engine and targets as tests/test_structural_fuzz.py (tests/structural_fuzz.py),
driven by a seeded random.Random instead of hypothesis, spread evenly over
config.json, tokenizer.json, shard index, safetensors header, re-signed bundles
and re-signed evidence.  Exit code 5 in the histogram means an exception other
than an AttestError escaped (a crash); each one is printed with its place.
The script exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=24_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="append a result section to this Markdown file")
    args = ap.parse_args()

    from helpers.models import save_tiny_model
    from helpers.structural_fuzz import build_targets

    work = Path(tempfile.mkdtemp(prefix="attest-fuzz-"))
    targets = build_targets(work / "targets", save_tiny_model("llama", work / "model", 0))
    names = targets.names()
    per_target = -(-args.cases // len(names))
    hist: dict[str, collections.Counter[int]] = {n: collections.Counter() for n in names}
    crashes: list[str] = []
    t0 = time.perf_counter()
    for k, name in enumerate(names):
        rnd = random.Random(args.seed * 1000 + k)
        for i in range(per_target):
            try:
                code = targets.case(name, rnd)
            except Exception as exc:  # noqa: BLE001 - the bug class being hunted
                code = 5
                where = traceback.extract_tb(exc.__traceback__)[-1]
                crashes.append(
                    f"{name} #{i}: {type(exc).__name__}: {str(exc)[:160]} ({Path(where.filename).name}:{where.lineno})"
                )
            hist[name][code] += 1
        print(f"{name:20s} {dict(sorted(hist[name].items()))}", flush=True)
    seconds = time.perf_counter() - t0
    total = collections.Counter[int]()
    for c in hist.values():
        total.update(c)
    lines = [
        f"## Structural fuzz, {datetime.date.today().isoformat()}",
        "",
        (
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}; seed {args.seed}; {sum(total.values()):,} cases in "
            f"{seconds:.0f} s.  Exit codes: 0 accepted, 3 bundle refused, 4 input refused, 5 crash."
        ),
        "",
        "| target | cases | exit 0 | exit 3 | exit 4 | exit 5 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in [*names, "total"]:
        c = total if name == "total" else hist[name]
        lines.append(f"| {name} | {sum(c.values()):,} | {c[0]:,} | {c[3]:,} | {c[4]:,} | {c[5]:,} |")
    if crashes:
        lines += ["", "Crashes:", *[f"- {c}" for c in crashes[:50]]]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out is not None:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write("\n" + report)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
