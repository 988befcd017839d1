#!/usr/bin/env python
"""Null calibration of the aggregate score (DESIGN §9, docs/calibration.md).

The null distribution is the aggregate score `compare_models` gives two models
that do not share weights.  Its samples here:

1. real independent pairs scored by bench/lineage.py (read from
   bench/cache/ (or $ATTEST_BENCH_CACHE)/lineage/results.json; run that first): all-MiniLM-L6-v2,
   paraphrase-MiniLM-L3-v2, all-mpnet-base-v2, SmolLM2-135M and Gemma-3-270M
   against each other, except the MiniLM-L6/L3 siblings (common ancestor);
2. tiny llama-family models trained here from independent initialisations on
   local text with one shared tokenizer (the hard case for token-similarity
   structure): four on English prose, two on Python source, and two whose
   embedding and head are copied from one of the prose models and frozen while
   their layers are trained from their own initialisation (shared embeddings,
   unrelated layers: the paraphrase-MiniLM-L3 situation, controlled).

It fits mean and standard deviation, checks normality crudely (skewness,
excess kurtosis, a normal Q-Q plot), lists the per-cell (single layer × term)
extremes next to the aggregates, proposes the policy numbers, writes them to
bench/cache/ (or $ATTEST_BENCH_CACHE)/lineage/calibration.json, and re-renders
bench/RESULTS-lineage.md (lineage table under the proposed policy + this
section) and the plots in bench/img/.

    python bench/calibrate.py [--fresh] [--precision auto]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
for _p in (str(REPO), str(REPO / "bench"), str(REPO / "tests")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import lineage  # noqa: E402

TINY = lineage.CACHE / "tiny"
VOCAB = 4096
HIDDEN, INTER, LAYERS, HEADS, KV = 256, 768, 4, 4, 2
SEQ, BATCH, STEPS, LR = 64, 8, 150, 3e-3
# name -> (corpus, seed, embedding donor or None)
TINY_MODELS: dict[str, tuple[str, int, str | None]] = {
    "prose-s0": ("prose", 0, None),
    "prose-s1": ("prose", 1, None),
    "prose-s2": ("prose", 2, None),
    "prose-s3": ("prose", 3, None),
    "code-s10": ("code", 10, None),
    "code-s11": ("code", 11, None),
    "sharedemb-s20": ("prose", 20, "prose-s0"),
    "sharedemb-s21": ("prose", 21, "prose-s0"),
}
log = lineage.log
SHARED = "tiny, shared embedding"


# =============================================================================
# tiny models
# =============================================================================


def code_text(max_bytes: int = 1_500_000) -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    out, total = [], 0
    for p in sorted(root.rglob("*.py")):
        if "site-packages" in p.parts or "test" in p.parts:
            continue
        try:
            t = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out.append(t)
        total += len(t)
        if total >= max_bytes:
            break
    return "\n\n".join(out)[:max_bytes]


def tokenizer(texts: list[str]) -> Path:
    path = TINY / "tokenizer.json"
    if path.is_file():
        return path
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    TINY.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([t[i : i + 10_000] for t in texts for i in range(0, len(t), 10_000)], trainer)
    tok.save(str(path))
    return path


def train_tiny(name: str, corpus: str, seed: int, donor: str | None, tok_path: Path, text: str) -> Path:
    out = TINY / name
    if (out / "train.json").is_file():
        return out
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=INTER,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV,
        max_position_embeddings=SEQ,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    model = LlamaForCausalLM(cfg)
    frozen: list[str] = []
    if donor is not None:
        src = lineage.load_llama(TINY / donor)
        with torch.no_grad():
            model.model.embed_tokens.weight.copy_(src.model.embed_tokens.weight)
            model.lm_head.weight.copy_(src.lm_head.weight)
        model.model.embed_tokens.weight.requires_grad_(False)
        model.lm_head.weight.requires_grad_(False)
        frozen = ["embed_tokens", "lm_head"]
    batches, held = lineage.lm_batches(tok_path, text, SEQ, BATCH, STEPS, seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 15) * 0.5 * (1 + math.cos(math.pi * min(s, STEPS) / STEPS))
    )
    t0 = time.perf_counter()
    model.train()
    first = None
    for b in batches:
        loss = model(input_ids=b, labels=b).loss
        first = first if first is not None else float(loss)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        held_loss = float(model(input_ids=held, labels=held).loss)
    tmp = out.with_name(name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    shutil.copy(tok_path, tmp / "tokenizer.json")
    info = {
        "corpus": corpus,
        "seed": seed,
        "embedding_from": donor,
        "frozen": frozen,
        "steps": STEPS,
        "first_loss": first,
        "heldout_loss": held_loss,
        "seconds": time.perf_counter() - t0,
    }
    (tmp / "train.json").write_text(json.dumps(info, indent=1))
    tmp.rename(out)
    log(f"    trained {name}: loss {first:.2f} -> held-out {held_loss:.2f} in {info['seconds']:.0f}s")
    return out


def tiny_kind(a: str, b: str) -> str:
    ea = TINY_MODELS[a][2] or a
    eb = TINY_MODELS[b][2] or b
    if ea == eb:
        return SHARED
    if TINY_MODELS[a][0] != TINY_MODELS[b][0]:
        return "tiny, different corpus"
    return "tiny, same corpus"


TINY_PAIRS_JSON = lineage.CACHE / "tiny_pairs.json"


def tiny_pairs(precision: str) -> list[dict[str, Any]]:
    """Train (cached) and score every tiny pair; the scored pairs are cached too (`--fresh` redoes both)."""
    if TINY_PAIRS_JSON.is_file():
        cached = json.loads(TINY_PAIRS_JSON.read_text())
        if cached.get("precision") == precision and all("lineage" in r for r in cached["pairs"]):
            return list(cached["pairs"])
    out = _score_tiny_pairs(precision)
    TINY_PAIRS_JSON.write_text(json.dumps({"precision": precision, "pairs": out}, indent=1, default=float))
    return out


def _score_tiny_pairs(precision: str) -> list[dict[str, Any]]:
    import torch

    from attest.arch.detect import load_model

    torch.set_num_threads(2)
    texts = {"prose": lineage.prose(), "code": code_text()}
    tok = tokenizer(list(texts.values()))
    for name, (corpus, seed, donor) in TINY_MODELS.items():
        train_tiny(name, corpus, seed, donor, tok, texts[corpus])
    models = {n: load_model(TINY / n) for n in TINY_MODELS}
    out = []
    for a, b in itertools.combinations(TINY_MODELS, 2):
        r = lineage.score_pair(models[a], models[b], precision)
        r.update(name=f"{a} / {b}", a=a, b=b, kind=tiny_kind(a, b))
        out.append(r)
        lin = r.get("lineage") or {}
        log(
            f"    {r['kind']:24s} {a:14s} {b:14s} score {r['score']:.4f} emb {r['global'].get('emb', 0):.3f} "
            f"lineage p {lin.get('p_value', float('nan')):.2g} agree {lin.get('agreement') or float('nan'):.3f}"
        )
    return out


# =============================================================================
# fit and policy
# =============================================================================


def moments(x: np.ndarray) -> dict[str, float]:
    m, s = float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else float("nan")
    z = (x - m) / s if s and s > 0 else x * 0
    return {
        "n": int(len(x)),
        "mean": m,
        "std": s,
        "min": float(x.min()),
        "max": float(x.max()),
        "skew": float((z**3).mean()),
        "excess_kurtosis": float((z**4).mean() - 3),
    }


def chi2_quantile(p: float, k: int) -> float:
    """Wilson–Hilferty approximation of the chi-square quantile (no scipy here)."""
    zq = _norm_ppf(p)
    return k * (1 - 2 / (9 * k) + zq * math.sqrt(2 / (9 * k))) ** 3


def _norm_ppf(p: float) -> float:
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def ceil_to(x: float, step: float) -> float:
    return round(math.ceil(x / step - 1e-9) * step, 6)


def propose(
    null_rows: list[dict[str, Any]], derived: list[dict[str, Any]], related: list[dict[str, Any]]
) -> dict[str, Any]:
    """Policy numbers from the measured null (see docs/calibration.md for the rule)."""
    scores = np.array([r["score"] for r in null_rows])
    groups: dict[str, list[float]] = {}
    for r in null_rows:
        groups.setdefault(r["group"], []).append(r["score"])
    pooled = moments(scores)
    n = pooled["n"]
    std_upper = pooled["std"] * math.sqrt((n - 1) / chi2_quantile(0.05, n - 1))  # one-sided 95% upper bound
    # per group: the one-sided 95% upper confidence bound of its std (groups of >= 3 pairs), and its
    # mean (groups of >= 2 pairs: the real same-tokenizer-family pairs are few and the highest)
    group_std = max(
        float(np.std(v, ddof=1)) * math.sqrt((len(v) - 1) / chi2_quantile(0.05, len(v) - 1))
        for v in groups.values()
        if len(v) >= 3
    )
    group_mean = max(float(np.mean(v)) for v in groups.values() if len(v) >= 2)
    null_mean = max(0.0, ceil_to(max(pooled["mean"], group_mean), 0.005))
    null_std = ceil_to(1.25 * max(std_upper, group_std), 0.005)
    max_null = float(scores.max())
    max_related = max((r["score"] for r in related), default=-1.0)
    # threshold: at least 6 inflated null standard deviations above the null mean, 0.10 above every
    # independent pair and every related-but-not-derived pair (siblings, shared embeddings), on a 0.05 grid
    need = max(null_mean + 6 * null_std, max_null + 0.10, max_related + 0.10)
    threshold = ceil_to(need, 0.05)
    # no-match bound: 4 inflated standard deviations above the null mean, 0.05 above every independent pair
    no_match = ceil_to(max(null_mean + 4 * null_std, max_null + 0.05), 0.05)
    if no_match >= threshold:
        no_match = round(threshold - 0.05, 6)
    z_derived = [(r["score"] - null_mean) / null_std for r in derived]
    return {
        "threshold": threshold,
        "no_match_below": no_match,
        "null_mean": null_mean,
        "null_std": null_std,
        "pooled": pooled,
        "std_upper95": std_upper,
        "max_group_std": group_std,
        "max_group_mean": group_mean,
        "max_null_score": max_null,
        "max_related_score": max_related,
        "min_derived_z": min(z_derived) if z_derived else float("nan"),
        "z_at_threshold": (threshold - null_mean) / null_std,
    }


# =============================================================================
# diagnostic: the embedding's common mode
# =============================================================================


def emb_residual_diagnostic(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Score with each standardised layer term's projection on the model's own standardised `emb`
    matrix removed (a partial correlation given the embedding Gram structure).  Uses attest's
    internals read-only; same tokens, layers, alignment and terms as compare_models."""
    import torch

    from attest.arch.detect import load_model
    from attest.invariants.compute import global_terms, iter_layers, make_probe, standardised
    from attest.invariants.methods import DEFAULT
    from attest.scoring.layer_alignment import monotone_pairs
    from attest.vocab.selection import DEFAULT_SELECTION_KEY, align_pair

    def mats(m: Any, ids: list[int]) -> tuple[Any, dict[int, dict[str, Any]]]:
        pr = make_probe(m, ids, DEFAULT)
        g, _ = standardised(global_terms(m, pr, DEFAULT, torch.float32), DEFAULT)
        out = {
            r.index: {t: z.reshape(-1).double() for t, z in r.terms.items()}
            for r in iter_layers(m, pr, DEFAULT, list(range(m.n_layers)), torch.float32, lambda _i: None)
        }
        return g["emb"].reshape(-1).double(), out

    def cos(a: Any, b: Any) -> float:
        return float(a @ b / (a.norm() * b.norm()))

    models = results["models"]
    vocab_txt = Path(models["minilm-l6"]["path"]) / "vocab.txt"
    todo = [
        ("prose-s0 / sharedemb-s20", TINY / "prose-s0", TINY / "sharedemb-s20", None, SHARED),
        ("sharedemb-s20 / sharedemb-s21", TINY / "sharedemb-s20", TINY / "sharedemb-s21", None, SHARED),
        ("prose-s0 / prose-s1", TINY / "prose-s0", TINY / "prose-s1", None, "tiny, same corpus"),
        (
            "minilm-l3 / minilm-l6",
            Path(models["minilm-l3"]["path"]),
            Path(models["minilm-l6"]["path"]),
            vocab_txt,
            "real siblings",
        ),
        (
            "minilm-l6 / mpnet",
            Path(models["minilm-l6"]["path"]),
            Path(models["mpnet"]["path"]),
            None,
            "real independent",
        ),
        (
            "minilm-l6 / minilm-mlm-lr0.0001",
            Path(models["minilm-l6"]["path"]),
            Path(models["minilm-mlm-lr0.0001"]["path"]),
            None,
            "derived",
        ),
    ]
    out = []
    for name, pa, pb, tok, kind in todo:
        a = load_model(pa, tokenizer=tok if pa.suffix == ".onnx" else None)
        b = load_model(pb, tokenizer=tok if pb.suffix == ".onnx" else None)
        if b.n_layers < a.n_layers:
            a, b = b, a
        al = align_pair(a.vocab, b.vocab, DEFAULT.n_tokens, DEFAULT_SELECTION_KEY)
        ea, A = mats(a, al.ids_a)
        eb, B = mats(b, al.ids_b)
        terms = [t for t in DEFAULT.terms if t in A[0] and t in B[0]]
        raw_m = np.array([[np.mean([cos(A[i][t], B[j][t]) for t in terms]) for j in B] for i in A])
        pairs = [(k, k) for k in range(len(A))] if len(A) == len(B) else monotone_pairs(raw_m)

        def res(z: Any, e: Any) -> Any:
            return z - (z @ e) / (e @ e) * e

        ka, kb = sorted(A), sorted(B)
        raw = np.mean([cos(A[ka[i]][t], B[kb[j]][t]) for i, j in pairs for t in terms])
        resid = np.mean([cos(res(A[ka[i]][t], ea), res(B[kb[j]][t], eb)) for i, j in pairs for t in terms])
        corr = np.mean([abs(cos(A[i][t], ea)) for i in A for t in terms])
        out.append(
            {
                "name": name,
                "kind": kind,
                "raw": float(raw),
                "residual": float(resid),
                "emb": cos(ea, eb),
                "term_emb_corr": float(corr),
            }
        )
        log(f"    diag {name:34s} raw {raw:.4f} emb-residual {resid:.4f}")
    return out


# =============================================================================
# report
# =============================================================================


def null_rows_from(results: dict[str, Any], tiny: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results["rows"]:
        if r["kind"] != "independent":
            continue
        la, lb = results["models"][r["a"]]["lineage"], results["models"][r["b"]]["lineage"]
        bert = {"minilm", "l3", "mpnet"}
        group = "real, one tokenizer family (BERT WordPiece)" if la in bert and lb in bert else "real, cross-family"
        rows.append(dict(r, group=group, name=f"{r['a']} / {r['b']}"))
    for r in tiny:
        if r["kind"] != SHARED:
            rows.append(dict(r, group=r["kind"]))
    return rows


def related_rows_from(results: dict[str, Any], tiny: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pairs that share something without the layers being derived: the real MiniLM siblings and the
    tiny models trained on one frozen embedding.  Not samples of the null; the threshold must clear them."""
    rows = [
        dict(r, group="real siblings (common ancestor)", name=f"{r['a']} / {r['b']}")
        for r in results["rows"]
        if r["kind"] == "related"
    ]
    rows += [dict(r, group=SHARED) for r in tiny if r["kind"] == SHARED]
    return rows


def cell_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    vals = np.array([c[3] for r in rows for c in r["cells"]])
    return {
        "n": int(len(vals)),
        "std": float(vals.std(ddof=1)),
        "min": float(vals.min()),
        "max": float(vals.max()),
        "frac_abs_over_0.2": float((np.abs(vals) > 0.2).mean()),
    }


def markdown(
    null_rows: list[dict[str, Any]],
    related: list[dict[str, Any]],
    prop: dict[str, Any],
    results: dict[str, Any],
    timings: dict[str, float],
    diag: list[dict[str, Any]],
) -> str:
    from attest.scoring.decision import DEFAULT_POLICY

    L: list[str] = ["## Null calibration (bench/calibrate.py)\n"]
    fams = sorted({g for g in (r["group"] for r in null_rows)})
    L.append(
        f"{len(null_rows)} independent pairs in {len(fams)} groups. Every row: the aggregate score (mean over "
        "matched layer × term cells), and the most extreme single cells of that pair.\n"
    )
    L.append("| group | pair | families | layers A×B | cells | coverage | score | min cell | max cell | emb |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(null_rows, key=lambda r: (r["group"], -r["score"])):
        v = [c[3] for c in r["cells"]]
        L.append(
            f"| {r['group']} | {r['name']} | {'/'.join(r['families'])} | {r['layers'][0]}×{r['layers'][1]} | {len(v)} | "
            f"{r['coverage']:.2f} | {r['score']:+.4f} | {min(v):+.3f} | {max(v):+.3f} | {r['global'].get('emb', float('nan')):+.3f} |"
        )
    L.append("")
    L.append(
        "| group | n | mean | std | min | max | per-cell std | per-cell min | per-cell max | cells with abs > 0.2 |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in null_rows:
        groups.setdefault(r["group"], []).append(r)
    for g, rs in sorted(groups.items()) + [("all", null_rows)]:
        m = moments(np.array([r["score"] for r in rs]))
        c = cell_stats(rs)
        std = f"{m['std']:.4f}" if m["n"] > 1 else "–"
        L.append(
            f"| {g} | {m['n']} | {m['mean']:+.4f} | {std} | {m['min']:+.4f} | {m['max']:+.4f} | "
            f"{c['std']:.3f} | {c['min']:+.3f} | {c['max']:+.3f} | {c['frac_abs_over_0.2']:.1%} |"
        )
    p = prop["pooled"]
    L.append("")
    L.append(
        f"Pooled: mean {p['mean']:+.4f}, std {p['std']:.4f} (one-sided 95% upper bound {prop['std_upper95']:.4f}), "
        f"skewness {p['skew']:+.2f}, excess kurtosis {p['excess_kurtosis']:+.2f}; largest one-sided 95% upper "
        f"bound of a group std (groups of ≥ 3 pairs) {prop['max_group_std']:.4f}, largest group mean (groups of ≥ 2) "
        f"{prop['max_group_mean']:+.4f}. "
        "Q-Q plot: img/null-qq.png; histogram: img/null-hist.png.\n"
    )
    L.append("Related but not derived (excluded from the null fit; the threshold must clear them):\n")
    L.append("| group | pair | score | min cell | max cell | emb |\n|---|---|---|---|---|---|")
    for r in related:
        v = [c[3] for c in r["cells"]]
        L.append(
            f"| {r['group']} | {r['name']} | {r['score']:+.4f} | {min(v):+.3f} | {max(v):+.3f} | {r['global'].get('emb', float('nan')):+.3f} |"
        )
    L.append("")
    L.append(
        "Diagnostic: does the shared-embedding excess come from the embedding's own Gram matrix? Each layer "
        "term with its projection on the same model's `emb` matrix removed, then correlated as usual:\n"
    )
    L.append(
        "| pair | kind | score | score with emb projected out | emb | mean abs corr(term, own emb) |\n|---|---|---|---|---|---|"
    )
    for d in diag:
        L.append(
            f"| {d['name']} | {d['kind']} | {d['raw']:+.4f} | {d['residual']:+.4f} | {d['emb']:+.3f} | {d['term_emb_corr']:.3f} |"
        )
    L.append("")
    L.extend(lineage_null_markdown(null_rows, related))
    L.append("**Proposed policy** (rule in docs/calibration.md):\n")
    L.append("| | current (attest/decision.py) | proposed |\n|---|---|---|")
    for k in ("threshold", "no_match_below", "null_mean", "null_std"):
        L.append(f"| {k} | {getattr(DEFAULT_POLICY, k)} | **{prop[k]}** |")
    L.append("")
    L.append(
        f"z at the threshold: {prop['z_at_threshold']:.1f}; largest independent score {prop['max_null_score']:+.4f} "
        f"(margin to the threshold {prop['threshold'] - prop['max_null_score']:.3f}, to the no-match bound "
        f"{prop['no_match_below'] - prop['max_null_score']:.3f}); related (sibling) pair "
        f"{prop['max_related_score']:+.4f}; smallest derived z (coverage above minimum) {prop['min_derived_z']:.1f}.\n"
    )
    L.append("![null](img/null-hist.png)\n")
    L.append("![qq](img/null-qq.png)\n")
    L.append("Calibration runtime (seconds): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + ".\n")
    return "\n".join(L)


def lineage_null_markdown(null_rows: list[dict[str, Any]], related: list[dict[str, Any]]) -> list[str]:
    """The lineage test on every null pair (as `compare` runs it: A's payload, B tested against it)."""
    L = ["The lineage test on the same pairs (the verdict's test; α = 1e-6, i.e. −log10 p = 6):\n"]
    L.append(
        "| group | pairs | layer tests | mean agreement | max agreement | max layer agreement | mean chance rate "
        "| largest −log10 p (non-matches) | matches | conclusions |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in null_rows + related:
        groups.setdefault(r["group"], []).append(r)
    for g, rs in sorted(groups.items()) + [("all null pairs", null_rows)]:
        st = lineage.null_stats(rs, "compare")
        L.append(
            f"| {g} | {st['tested']} of {st['pairs']} | {st['layer_tests']} | {st['mean_agreement']:.4f} | "
            f"{st['max_agreement']:.4f} | {st['max_layer_agreement']:.4f} | {st['mean_chance_rate']:.4f} | "
            f"{lineage.fmt_neglog(st['max_neglog10_p_non_match'])} | {st['matches']} | "
            f"{', '.join(st['conclusions'])} |"
        )
    L.append("")
    L.append("| group | pair | score | score alone | lineage p | agreement | per-layer agreement (%) | verdict |")
    L.append("|---|---|---|---|---|---|---|---|")
    for r in sorted(null_rows + related, key=lambda r: (r["group"], r["name"])):
        lin = r.get("lineage")
        agree = lin["agreement"] if lin else None
        L.append(
            f"| {r['group']} | {r['name']} | {r['score']:+.4f} | {r.get('score_verdict', '–')} | "
            f"{lineage.fmt_p(lin['p_value']) if lin else '–'} | {'–' if agree is None else f'{agree:.3f}'} | "
            f"{lineage.per_layer(lin)} | {r['verdict_current']} |"
        )
    L.append("")
    return L


def null_plots(null_rows: list[dict[str, Any]], prop: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lineage.IMG.mkdir(parents=True, exist_ok=True)
    scores = np.array([r["score"] for r in null_rows])
    cells = np.array([c[3] for r in null_rows if r["group"].startswith("real") for c in r["cells"]])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bins = np.linspace(-0.45, 0.45, 61)
    ax.hist(
        cells,
        bins=bins,
        density=True,
        alpha=0.35,
        color="tab:blue",
        label=f"single cells of the real pairs (n={len(cells)})",
    )
    ax.hist(scores, bins=bins, density=True, alpha=0.7, color="tab:red", label=f"aggregate scores (n={len(scores)})")
    xs = np.linspace(-0.45, 0.45, 400)
    m, s = prop["null_mean"], prop["null_std"]
    ax.plot(
        xs,
        np.exp(-0.5 * ((xs - m) / s) ** 2) / (s * math.sqrt(2 * math.pi)),
        color="k",
        lw=1,
        label=f"null N({m}, {s}²)",
    )
    ax.axvline(prop["threshold"], color="k", ls="--", lw=1, label=f"threshold {prop['threshold']}")
    ax.axvline(prop["no_match_below"], color="k", ls=":", lw=1, label=f"no-match bound {prop['no_match_below']}")
    ax.set_yscale("log")
    ax.set_ylim(0.05, 100)
    ax.set_xlabel("similarity of independent pairs (density, log scale)")
    ax.legend(fontsize=7)
    ax.set_title("Null: single cells vs aggregate score", fontsize=9)
    fig.tight_layout()
    fig.savefig(lineage.IMG / "null-hist.png", dpi=130)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4, 4))
    x = np.sort(scores)
    n = len(x)
    q = np.array([_norm_ppf((i + 0.5) / n) for i in range(n)])
    ax.scatter(q, (x - x.mean()) / x.std(ddof=1), s=12)
    ax.plot([-3, 3], [-3, 3], color="gray", lw=0.7)
    ax.set_xlabel("normal quantile")
    ax.set_ylabel("standardised aggregate score")
    ax.set_title(f"Normal Q-Q, {n} independent pairs", fontsize=9)
    fig.tight_layout()
    fig.savefig(lineage.IMG / "null-qq.png", dpi=130)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fresh", action="store_true", help="retrain the tiny models")
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.fresh:
        shutil.rmtree(TINY, ignore_errors=True)
    if not lineage.RESULTS_JSON.is_file():
        raise SystemExit(f"{lineage.RESULTS_JSON} missing: run bench/lineage.py first")
    results = json.loads(lineage.RESULTS_JSON.read_text())
    t = time.perf_counter()
    tiny = tiny_pairs(args.precision)
    timings = {"tiny_models_and_pairs": time.perf_counter() - t}
    null_rows = null_rows_from(results, tiny)
    # derived pairs whose coverage is above the policy minimum must reach z > 12
    from attest.scoring.decision import DEFAULT_POLICY

    derived = [r for r in results["rows"] if r["kind"] == "derived" and r["coverage"] >= DEFAULT_POLICY.min_coverage]
    related = related_rows_from(results, tiny)
    prop = propose(null_rows, derived, related)
    t = time.perf_counter()
    diag = emb_residual_diagnostic(results)
    timings["emb_residual_diagnostic"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    policy = {
        "threshold": prop["threshold"],
        "no_match_below": prop["no_match_below"],
        "min_coverage": DEFAULT_POLICY.min_coverage,
        "min_tokens": DEFAULT_POLICY.min_tokens,
        "null_mean": prop["null_mean"],
        "null_std": prop["null_std"],
        "calibration": "lineage-2026-11",
    }
    cal = {
        "policy": policy,
        "proposal": prop,
        "tiny_pairs": [{"name": r["name"], "kind": r["kind"], "score": r["score"]} for r in tiny],
        "null_rows": [
            {k: r[k] for k in ("name", "group", "score", "coverage", "families", "layers", "cells", "global")}
            for r in null_rows
        ],
        "timings": timings,
    }
    lineage.CALIBRATION_JSON.write_text(json.dumps(cal, indent=1, default=float))
    try:
        null_plots(null_rows, prop)
    except ImportError:  # matplotlib is a benchmark-only extra; the tables do not need it
        print("  matplotlib missing: the null plots in bench/img/ were not redrawn (they are from an earlier run)")
    cal["emb_residual"] = diag
    cal["markdown"] = markdown(null_rows, related, prop, results, timings, diag)
    lineage.CALIBRATION_JSON.write_text(json.dumps(cal, indent=1, default=float))
    lineage.write_report(results)
    log(json.dumps(policy))
    log(f"wrote {lineage.RESULTS_MD} ({timings['total']:.0f} s)")


if __name__ == "__main__":
    main()
