#!/usr/bin/env python
"""Where does the attention-head channel add power to the FFN lineage test?  (issue 11)

    PYTHONPATH=. python bench/lineage_heads.py [--cache DIR] [--out bench/RESULTS-lineage-heads.md]

For each pair it runs, on the exact path (both models held), the FFN neuron
test (`attest.lineage.pair.test_pair`, what `compare` decides with) and the
head channel (`attest.lineage.heads.test_heads`), and reports each one's
combined p-value, its best possible p-value (full agreement: the power), the
per-layer agreement and the conclusion at α = 1e-6.

Pairs:
- the committed lineage fixtures (tests/fixtures/lineage: tiny trained llamas,
  4 heads): fine-tune, long continued pretraining, independent twin, embedding
  transplant, a wider model on the same data;
- real models of the demo extra: all-MiniLM-L6-v2 (12 heads, 6 layers) against
  its disguised copy (`attest demo`'s copier) and against the unrelated
  paraphrase-MiniLM-L3 (which shares its word embeddings);
- synthetic llamas with H = 8, 16, 32 and 64 heads (4 layers, random init):
  a copy whose FFNs were all re-initialised (attention kept, 5% drift), and an
  independent twin.  The FFN channel is blind to the first by construction.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, cpu_flags, use_repo_imports  # noqa: E402

use_repo_imports()
sys.path.insert(0, str(REPO / "tests"))

from attest.arch.detect import load_model  # noqa: E402
from attest.lineage.heads import HEAD_TOKENS, test_heads  # noqa: E402
from attest.lineage.pair import test_pair  # noqa: E402
from attest.lineage.result import DEFAULT_ALPHA, LineageResult  # noqa: E402
from attest.vocab.selection import align_pair  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "lineage"
FFN_TOKENS = 256  # as compare's default probe count for tiny vocabularies


def _fmt(r: LineageResult) -> str:
    per = " ".join(f"{c.agreement:.2f}" for c in r.layers) or "—"
    return f"{r.p_value:.1e} | {r.p_full:.1e} | {per} | {r.conclusion}"


def measure(name: str, relation: str, a_path: Path, b_path: Path, tokenizer: Path | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    a, b = load_model(a_path), load_model(b_path, tokenizer)
    al = align_pair(a.vocab, b.vocab, FFN_TOKENS)
    ffn = test_pair(a, b, al.ids_a, al.ids_b)
    heads = test_heads(a, b, al.ids_a, al.ids_b)
    n_heads = next((layer.attn.n_heads for layer in [a.layer(0)] if layer.attn is not None), 0)  # type: ignore[union-attr]
    row = {
        "pair": name,
        "relation": relation,
        "heads": n_heads,
        "layers": a.n_layers,
        "tokens": len(al.ids_a),
        "ffn": _fmt(ffn),
        "head": _fmt(heads),
        "ffn_lineage": ffn.conclusion,
        "head_lineage": heads.conclusion,
        "head_p": heads.p_value,
        "head_p_full": heads.p_full,
        "seconds": time.perf_counter() - t0,
    }
    print(f"{name}: ffn {row['ffn']} | heads {row['head']} ({row['seconds']:.1f} s)", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS-lineage-heads.md")
    args = ap.parse_args(argv)
    cache = args.cache or Path(tempfile.mkdtemp(prefix="lineage-heads-"))
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    load = os.getloadavg()
    rows: list[dict[str, Any]] = []
    base = FIXTURES / "base"
    for other, relation in (
        ("finetune", "derived: fine-tune"),
        ("continued", "derived: long continued pretraining"),
        ("twin", "unrelated: independent twin, same data"),
        ("transplant", "unrelated: embedding transplant"),
        ("wide", "unrelated: another width, same tokenizer and data"),
    ):
        rows.append(measure(f"fixture base / {other}", relation, base, FIXTURES / other))
    try:
        from attest.demo import models as demo
        from attest.demo.story import make_disguised_copy

        minilm = demo.MINILM_L6.locate().parent
        disguised = cache / "minilm-disguised"
        if not (disguised / "model.safetensors").exists():
            make_disguised_copy(minilm, disguised)
        rows.append(measure("all-MiniLM-L6-v2 / disguised copy", "derived: disguise + 2% drift", minilm, disguised))
        l3 = demo.PARAPHRASE_L3_ONNX.locate()
        rows.append(
            measure(
                "all-MiniLM-L6-v2 / paraphrase-MiniLM-L3",
                "unrelated: shares the word embeddings",
                minilm,
                l3,
                minilm / "vocab.txt",
            )
        )
    except Exception as exc:  # the demo extra is optional
        print(f"real models skipped: {exc}", flush=True)
    from helpers import many_heads as mh

    for heads in (8, 16, 32, 64):
        model = mh.many_heads(heads, 0)
        b = mh.save(model, cache / f"syn-{heads}" / "base")
        d = mh.save(mh.ffn_replaced(model, heads), cache / f"syn-{heads}" / "ffn-replaced")
        t = mh.save(mh.many_heads(heads, 31), cache / f"syn-{heads}" / "twin")
        rows.append(measure(f"synthetic H={heads} / FFNs replaced", "derived: attention kept, FFNs new", b, d))
        rows.append(measure(f"synthetic H={heads} / twin", "unrelated: another seed", b, t))
    lines = [
        "# The attention-head channel beside the FFN lineage test",
        "",
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        "- command: `PYTHONPATH=. python bench/lineage_heads.py`",
        f"- machine: {cpu_flags()}; load average at start {' '.join(f'{x:.1f}' for x in load)}",
        f"- total time: {time.perf_counter() - t0:.0f} s",
        f"- exact path (both models held); FFN channel: up to {FFN_TOKENS} aligned probe tokens, "
        f"1,024 sampled neurons per layer; head channel: the first {HEAD_TOKENS} of those tokens "
        f"(m² = {HEAD_TOKENS**2} entries per head and channel); α = {DEFAULT_ALPHA:.0e}.",
        "- each channel: combined p (Rüger over layers, Chatterjee tail per layer) | the combined p at full "
        "agreement (its power; the factorial-moment bound) | agreement per layer | conclusion",
        "",
        "| pair | relation | heads × layers | FFN: p | FFN: p at full agreement | FFN: agreement | FFN: conclusion "
        "| heads: p | heads: p at full agreement | heads: agreement | heads: conclusion | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pair']} | {r['relation']} | {r['heads']} × {r['layers']} | {r['ffn']} | {r['head']} | "
            f"{r['seconds']:.1f} |"
        )
    unrelated = [r for r in rows if r["relation"].startswith("unrelated")]
    lines += [
        "",
        "Unrelated pairs, head channel: smallest p "
        + (f"{min(r['head_p'] for r in unrelated):.2g}" if unrelated else "—")
        + "; any concluded lineage: "
        + (", ".join(r["pair"] for r in unrelated if r["head_lineage"] == "lineage") or "none")
        + ".",
        "Derived pairs the FFN channel misses and the head channel finds: "
        + (
            ", ".join(
                r["pair"]
                for r in rows
                if r["relation"].startswith("derived")
                and r["ffn_lineage"] != "lineage"
                and r["head_lineage"] == "lineage"
            )
            or "none"
        )
        + ".",
    ]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
