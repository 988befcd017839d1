#!/usr/bin/env python
"""Continued-training sweep: where do the invariant score and the lineage test stop detecting?

    PYTHONPATH=. python bench/lineage_sweep.py [--mults 1 2 4 8 16] [--lrs 1 2] [--rows FILE]

Continues the committed base (tests/fixtures/lineage/base: 400 steps at 2e-3 on
the Python text) for mult × 400 steps at lr × 2e-3 with a fresh warm-up, the
recipe of tests/fixtures/make_lineage_models.py's `continued` case, and
compares each result with the base as `attest compare` does: the invariant
score, the lineage test (as verify runs it against a bundle) and the verdict.
Prints a markdown table; nothing here asserts a number.  With --rows each row is
also appended to FILE (flushed) as soon as its point finishes, so a long sweep
interrupted part-way keeps the points it measured; the wall time and the load
average at the end of the point go into the row too.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

import make_lineage_models as M

BASE = REPO / "tests" / "fixtures" / "lineage" / "base"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mults", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--lrs", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--rows", type=Path, help="append each finished row to this file")
    args = ap.parse_args()
    import corpus
    import torch
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    import attest
    from attest.scoring.decision import DEFAULT_POLICY

    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    tok_json = (BASE / "tokenizer.json").read_text(encoding="utf-8")
    p_text, _ = corpus.python_source(M.TEXT_BYTES)
    p_ids = np.asarray(corpus.encode(tok_json, p_text), dtype=np.int64)
    base = LlamaForCausalLM.from_pretrained(BASE, dtype=torch.float32).eval()
    print(f"threshold {DEFAULT_POLICY.threshold}, α {DEFAULT_POLICY.lineage_alpha:.0e}\n")
    head = "| steps (× base) | lr (× base) | loss last 10 | score | lineage agreement per layer | lineage p | verdict |"
    print(head + " wall s | load avg |")
    print("|---|---|---|---|---|---|---|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for lr in args.lrs:
            for mult in args.mults:
                t0 = time.perf_counter()
                model = copy.deepcopy(base)
                losses = M.train(model, p_ids, mult * M.STEPS, lr * M.LR, seed=100 + mult)
                folder = Path(tmp) / f"c{mult}-{lr}"
                M.save(model, tok_json, folder)
                c = attest.compare(BASE, folder)
                lin = c.lineage
                per_layer = " ".join(f"{x.agreement:.2f}" for x in lin.layers) if lin else "-"
                p = f"{lin.p_value:.1e}" if lin else "-"
                load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "-"
                row = (
                    f"| {mult}× | {lr:g}× | {np.mean(losses[-10:]):.3f} | {c.score:.3f} | {per_layer} | {p} | "
                    f"{c.verdict.value} | {time.perf_counter() - t0:.0f} | {load} |"
                )
                print(row, flush=True)
                if args.rows is not None:
                    with args.rows.open("a", encoding="utf-8") as fh:
                        fh.write(row + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
