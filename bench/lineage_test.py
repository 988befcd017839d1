#!/usr/bin/env python
"""Measure the lineage test (attest/lineage) on the committed tiny fixtures and on synthetic nulls.

    PYTHONPATH=. python bench/lineage_test.py [--null-pairs 20] [--timing]

Prints markdown tables: per-case agreement and p-values (exact and bundle
paths), the null on independent synthetic pairs (plain, correlated channels,
shared anisotropic embedding, convergent features; with and without the
decorrelation, and the naive 1/f binomial), the payload size at 7B shape and,
with --timing, the time per layer at a 1.2B shape on random weights.
Nothing here asserts a number; tests/test_lineage.py holds the assertions.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import test_lineage as T
from helpers.lineage_synthetic import synthetic_embedding, synthetic_llama

from attest.lineage import build_payload, payload_size, test_against_payload, test_pair
from attest.lineage.matching import layer_test, prepare
from attest.lineage.stats import binom_sf
from attest.vocab.selection import align_pair, locate, select

TOK = REPO / "tests" / "fixtures" / "lineage" / "base" / "tokenizer.json"


def fmt_p(p: float) -> str:
    return "1" if p >= 0.995 else f"{p:.1e}"


def cases() -> None:
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="lineage-bench-"))
    folders = {n: T.FIXTURES / n for n in ("base", "finetune", "continued", "twin", "transplant", "wide")}
    folders["pruned"] = T._pruned(tmp / "pruned")
    folders["dropped"] = T._dropped(tmp / "dropped")
    folders["rotated"] = T._rotated(tmp / "rotated")
    models = {n: T.load_model(p) for n, p in folders.items()}
    base = models["base"]
    tokens = select(base.vocab, 1024)
    payload = build_payload(base, [i for i in locate(base.vocab, tokens) if i is not None])
    print(
        f"\nbase vocabulary: {len(tokens)} probe tokens; bundle payload {payload_size(payload)} bytes "
        f"({len(payload['token_positions']) // 2} tokens × 256 neurons × 4 layers)\n"
    )
    print(
        "| case | expected | exact: agreement per layer | exact p | bundle: agreement per layer | bundle p | exact / bundle conclusion |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in T.DERIVED + T.UNRELATED:
        s = models[name]
        al = align_pair(base.vocab, s.vocab, 1024)
        t0 = time.perf_counter()
        ex = test_pair(base, s, al.ids_a, al.ids_b)
        t1 = time.perf_counter()
        bu = test_against_payload(payload, s, locate(s.vocab, tokens))
        t2 = time.perf_counter()
        exp = "derived" if name in T.DERIVED else "unrelated"
        print(
            f"| {name} | {exp} | {' '.join(f'{x.agreement:.2f}' for x in ex.layers)} | {fmt_p(ex.p_value)} | "
            f"{' '.join(f'{x.agreement:.2f}' for x in bu.layers)} | {fmt_p(bu.p_value)} | "
            f"{ex.conclusion} / {bu.conclusion} |"
        )
        print(f"<!-- {name}: exact {t1 - t0:.2f}s bundle {t2 - t1:.2f}s -->", file=sys.stderr)


def null(n_pairs: int) -> None:
    settings: list[tuple[str, dict[str, Any]]] = [
        ("random init", {}),
        ("ρ(gate, up) = 0.9", {"gate_up_corr": 0.9}),
        ("shared embedding, anisotropy 10", {"anisotropy": 10.0, "shared": True}),
        ("shared anisotropic embedding + ρ = 0.9", {"anisotropy": 10.0, "gate_up_corr": 0.9, "shared": True}),
        ("convergent features (pool 16, weight 0.5)", {"features": 16, "feature_weight": 0.5, "shared": True}),
    ]
    print(
        "\n| independent pairs | pairs | test: median / min per-layer p | test: min combined p | "
        "without decorrelation: min combined p | naive Bin(k, 1/f): min per-layer p |"
    )
    print("|---|---|---|---|---|---|")
    for label, kw0 in settings:
        per_layer, combined, raw_combined, naive = [], [], [], []
        for s in range(n_pairs):
            kw = dict(kw0)
            shared = kw.pop("shared", False)
            if "features" in kw:
                kw["features"] = torch.randn(kw["features"], 64, generator=torch.Generator().manual_seed(77 + s))
            emb = synthetic_embedding(1024, 64, 900 + s, kw.get("anisotropy", 0.0)) if shared else None
            a = synthetic_llama(2 * s, TOK, embedding=emb, **kw)
            b = synthetic_llama(2 * s + 1, TOK, embedding=emb, **kw)
            al = align_pair(a.vocab, b.vocab, 1024)
            r = test_pair(a, b, al.ids_a, al.ids_b)
            raw = test_pair(a, b, al.ids_a, al.ids_b, decorrelated=False)
            per_layer += [x.p_value for x in r.layers]
            combined.append(r.p_value)
            raw_combined.append(raw.p_value)
            naive += [binom_sf(x.agree, x.neurons, 1.0 / x.suspect_neurons) for x in raw.layers]
        per_layer.sort()
        print(
            f"| {label} | {n_pairs} | {fmt_p(per_layer[len(per_layer) // 2])} / {fmt_p(per_layer[0])} | "
            f"{fmt_p(min(combined))} | {fmt_p(min(raw_combined))} | {fmt_p(min(naive))} |"
        )


def timing() -> None:
    """One layer at a 1.2B shape (d = 2048, f = 8192) on random weights: the suspect side of each path."""
    torch.manual_seed(0)
    d, f = 2048, 8192
    gate, up = torch.randn(f, d) * d**-0.5, torch.randn(f, d) * d**-0.5
    print("\n| path | tokens | base neurons | seconds per layer | × 16 layers |")
    print("|---|---|---|---|---|")
    for label, m, k in (("bundle", 457, 256), ("exact", 1024, 1024)):
        x = torch.randn(m, d)
        base = prepare(torch.randn(m, k), torch.randn(m, k))
        t0 = time.perf_counter()
        sp = prepare(x @ gate.t(), x @ up.t())
        layer_test(0, 0, base, sp)
        sec = time.perf_counter() - t0
        print(f"| {label} | {m} | {k} | {sec:.2f} | {16 * sec:.1f} |")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--null-pairs", type=int, default=10)
    ap.add_argument("--timing", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    cases()
    null(args.null_pairs)
    from test_lineage import test_payload_size_at_7b_shape

    test_payload_size_at_7b_shape()
    if args.timing:
        timing()
    _ = math
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
