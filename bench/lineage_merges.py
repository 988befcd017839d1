#!/usr/bin/env python
"""Model merges through the lineage verdict: is a merge derived from its base(s)?

    PYTHONPATH=. python bench/lineage_merges.py [--cache DIR]

Same base: two fine-tunes of the committed base (tests/fixtures/lineage/base)
on different text, at two strengths:

- light: the committed fixtures ``finetune`` (licence prose) and ``finetune_code``
  (stdlib Python the base never saw), each 100 steps at lr/6
  (tests/fixtures/make_lineage_models.py);
- strong: the same two texts, 400 steps (the base's own count) at the base's lr,
  trained here with the fixture script's recipe and cached in
  $ATTEST_BENCH_CACHE/lineage-merges/.

Merged by task arithmetic (λ = 0.5 and 1), TIES (top 20% per tensor, λ = 1) and
SLERP (t = 0.5); recipes in tests/helpers/merging.py.  Each merge is a real
checkpoint (float16 safetensors, config, tokenizer), `compare`d with the base and
verified against a bundle issued from it, and put to `identify` against a
registry of the base's and the twin's bundles.

Two bases: the committed base and its independent twin (seed 2, same data and
recipe) merged by LERP and SLERP at t = 0.25, 0.4, 0.5, 0.6, 0.75 (t is the twin's weight),
verified against each base's bundle and identified against the same registry.

Each row also gives the model's loss on held-out Python (stdlib text no model
here trained on), to show whether a merge is still a working model.

Prints markdown tables; nothing here asserts a number.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
sys.path.insert(0, str(REPO / "bench"))

import common

common.use_repo_imports()

import make_lineage_models as M
from helpers import merging as G

FIX = REPO / "tests" / "fixtures" / "lineage"
STRONG = {"prose": 21, "code": 22}  # training seeds of the strong fine-tunes


def load_avg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "-"


def strong_finetunes(cache: Path) -> dict[str, Path]:
    """The strong fine-tunes (base's steps and lr), trained once and cached."""
    out = {t: cache / f"ft-{t}-strong" for t in STRONG}
    if all((p / "model.safetensors").exists() for p in out.values()):
        return out
    import corpus
    import torch
    from transformers import LlamaForCausalLM

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    tok_json = (FIX / "base" / "tokenizer.json").read_text(encoding="utf-8")
    s_text, _ = corpus.prose(M.TEXT_BYTES // 3)
    data = {"prose": np.asarray(corpus.encode(tok_json, s_text), dtype=np.int64), "code": M.unseen_code(tok_json)}
    base = LlamaForCausalLM.from_pretrained(FIX / "base", dtype=torch.float32)
    for text, seed in STRONG.items():
        if (out[text] / "model.safetensors").exists():
            continue
        t0 = time.perf_counter()
        model = copy.deepcopy(base)
        losses = M.train(model, data[text], M.STEPS, M.LR, seed=seed)
        M.save(model, tok_json, out[text])
        print(
            f"<!-- strong {text}: loss {np.mean(losses[:10]):.3f} -> {np.mean(losses[-10:]):.3f}, "
            f"{time.perf_counter() - t0:.0f} s, load {load_avg()} -->",
            flush=True,
        )
    return out


def held_out_ids(tok_json: str) -> np.ndarray:
    """Stdlib Python after everything the base and the fine-tunes trained on (4/3 and 5/3 TEXT_BYTES)."""
    import corpus

    text, _ = corpus.python_source(M.TEXT_BYTES * 2)
    lo = M.TEXT_BYTES + M.TEXT_BYTES // 3
    return np.asarray(corpus.encode(tok_json, text[lo : lo + 200_000]), dtype=np.int64)


def held_out_loss(folder: Path, ids: np.ndarray, batches: int = 8) -> float:
    """Mean next-token loss over fixed windows of `ids` (the same windows for every model)."""
    import torch
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    starts = np.random.default_rng(0).integers(0, len(ids) - M.SEQ - 1, size=(batches, M.BATCH))
    losses = []
    with torch.no_grad():
        for row in starts:
            x = torch.from_numpy(np.stack([ids[s : s + M.SEQ] for s in row]))
            losses.append(float(model(input_ids=x, labels=x).loss))
    return float(np.mean(losses))


def lineage_cells(lin: Any) -> tuple[str, str]:
    if lin is None:
        return "-", "-"
    return f"{lin.p_value:.1e}", " ".join(f"{x.agreement:.2f}" for x in lin.layers)


def identify_cell(answer: Any) -> str:
    """The registry's answer: its verdict and base, then every candidate's verdict and Holm p."""
    base = answer.base.entry.name if answer.base is not None else "none"
    rest = ", ".join(f"{c.entry.name} {c.evidence.verdict.value} {c.p_holm:.0e}" for c in answer.candidates)
    return f"{answer.verdict.value}: {base} ({rest})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, help="benchmark cache (default $ATTEST_BENCH_CACHE or bench/cache)")
    args = ap.parse_args()
    from transformers.utils import logging as hf_logging

    import attest
    from attest.crypto.keys import TrustStore, generate_keypair
    from attest.registry import add
    from attest.scoring.decision import DEFAULT_POLICY

    hf_logging.set_verbosity_error()
    cache = common.cache_root(args.cache) / "lineage-merges"
    print(f"{common.cpu_flags()}; threshold {DEFAULT_POLICY.threshold}, α {DEFAULT_POLICY.lineage_alpha:.0e}\n")
    strong = strong_finetunes(cache)
    pairs = {
        "light": (FIX / "finetune", FIX / "finetune_code"),
        "strong": (strong["prose"], strong["code"]),
    }
    base_sd, twin_sd = G.load_state(FIX / "base"), G.load_state(FIX / "twin")
    ids = held_out_ids((FIX / "base" / "tokenizer.json").read_text(encoding="utf-8"))
    print(f"held-out loss: base {held_out_loss(FIX / 'base', ids):.3f}, twin {held_out_loss(FIX / 'twin', ids):.3f}\n")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_keypair(root / "k", None)
        bundles = {}
        for name in ("base", "twin"):
            bundles[name] = root / f"{name}.attest"
            attest.issue(FIX / name, root / "k.key", bundles[name], name=name, issuer="k")
        registry = root / "reg"
        add(registry, list(bundles.values()), TrustStore.from_pubkey(root / "k.pub"))

        def judge(folder: Path, against: str) -> tuple[str, str]:
            """compare and verify cells against one base: score | p | agreement | verdict, each side."""
            c = attest.compare(FIX / against, folder)
            v = attest.verify(folder, bundles[against], trust=root / "k.pub")
            cp, ca = lineage_cells(c.lineage)
            vp, va = lineage_cells(v.lineage)
            return (
                f"{c.score:.3f} | {cp} | {ca} | {c.verdict.value}",
                f"{v.score:.3f} | {vp} | {va} | {v.verdict.value}",
            )

        print("### Merges of two fine-tunes of the base (against the base)\n")
        print(
            "| fine-tunes | model | LERP fallbacks | held-out loss | compare: score | p | agreement per layer | verdict "
            "| verify: score | p | agreement per layer | verdict | identify (base, twin registered) | s | load |"
        )
        print("|---|---|---|---:|---|---|---|---|---|---|---|---|---|---:|---|")
        for strength, (fa, fb) in pairs.items():
            sa, sb = G.load_state(fa), G.load_state(fb)
            slerped, fell = G.slerp(sa, sb, 0.5)
            models: list[tuple[str, Path | G.StateDict, str]] = [
                ("fine-tune: prose", fa, "-"),
                ("fine-tune: code", fb, "-"),
                ("task arithmetic λ 0.5", G.task_arithmetic(base_sd, [sa, sb], 0.5), "-"),
                ("task arithmetic λ 1", G.task_arithmetic(base_sd, [sa, sb], 1.0), "-"),
                ("TIES k 20%, λ 1", G.ties(base_sd, [sa, sb], 0.2, 1.0), "-"),
                ("SLERP t 0.5", slerped, f"{fell}/{len(sa)}"),
            ]
            for label, model, fallbacks in models:
                t0 = time.perf_counter()
                folder = (
                    model
                    if isinstance(model, Path)
                    else G.save_merge(model, FIX / "base", root / f"{strength}-{label.replace(' ', '_')}")
                )
                comp, ver = judge(folder, "base")
                who = identify_cell(attest.identify(folder, registry, trust=root / "k.pub"))
                print(
                    f"| {strength} | {label} | {fallbacks} | {held_out_loss(folder, ids):.3f} | {comp} | {ver} | {who} | "
                    f"{time.perf_counter() - t0:.0f} | {load_avg()} |",
                    flush=True,
                )

        print("\n### Merges of two independent bases (base ⊕ twin; t is the twin's weight)\n")
        print(
            "| merge | t | against | LERP fallbacks | held-out loss | compare: score | p | agreement per layer | verdict "
            "| verify: score | p | agreement per layer | verdict | identify (base, twin registered) | s | load |"
        )
        print("|---|---|---|---|---:|---|---|---|---|---|---|---|---|---|---:|---|")
        for t in (0.25, 0.4, 0.5, 0.6, 0.75):
            for kind in ("LERP", "SLERP"):
                t0 = time.perf_counter()
                if kind == "LERP":
                    sd, fallbacks = G.lerp(base_sd, twin_sd, t), "-"
                else:
                    sd, fell = G.slerp(base_sd, twin_sd, t)
                    fallbacks = f"{fell}/{len(sd)}"
                folder = G.save_merge(sd, FIX / "base", root / f"two-{kind}-{t}")
                who = identify_cell(attest.identify(folder, registry, trust=root / "k.pub"))
                loss = held_out_loss(folder, ids)
                for against in ("base", "twin"):
                    comp, ver = judge(folder, against)
                    print(
                        f"| {kind} | {t:g} | {against} | {fallbacks} | {loss:.3f} | {comp} | {ver} | {who} | "
                        f"{time.perf_counter() - t0:.0f} | {load_avg()} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
