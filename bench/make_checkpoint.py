"""Write synthetic checkpoints with real shapes and on-disk layouts.

    python bench/make_checkpoint.py SHAPE --out DIR [--seed N] [--force]
    python bench/make_checkpoint.py SHAPE --out DIR --verify-only
    python bench/make_checkpoint.py --list

The output is what a Hugging Face hub folder looks like: bf16 safetensors
shards named model-0000i-of-0000n.safetensors with model.safetensors.index.json
(or a single model.safetensors when everything fits one shard), a config.json
in the format transformers 4.x writes for the family, generation_config.json,
and a byte-level BPE tokenizer.json with the family's vocabulary size.

Weights are random, seeded, i.i.d. N(0, 0.02^2) for matrices and 1 + N(0,
0.02^2) for norm gains, rounded to bf16.  Each shard is written by streaming
one tensor at a time, chunk by chunk, straight into a hand-written safetensors
container, so memory stays at one chunk (<= 64 MB) whatever the model size.

Running again on a complete folder is a no-op; an interrupted run resumes,
keeping shards that were finished.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import re
import struct
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

GENERATOR_VERSION = 1
MARKER = ".make_checkpoint.json"
WEIGHT_STD = 0.02
NORM_NOISE_STD = 0.02
CHUNK_ELEMS = 16 * 1024 * 1024
DEFAULT_SHARD_BYTES = 2_000_000_000  # HF's "2GB" (decimal, as transformers parses it)


@dataclass(frozen=True)
class Shape:
    family: str  # "llama" or "mixtral"
    hidden: int
    ffn: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    max_position: int
    rope_theta: float
    experts: int = 0
    experts_per_tok: int = 0
    tie_embeddings: bool = False
    shard_bytes: int = DEFAULT_SHARD_BYTES
    head_dim_override: int = 0  # 0: hidden // heads
    shared_ffn: int = 0  # qwen2_moe: the shared expert's width
    # deepseek_v3 (multi-head latent attention): q and kv low ranks, per-head no-RoPE / RoPE / value widths
    q_rank: int = 0
    kv_rank: int = 0
    nope_dim: int = 0
    rope_dim: int = 0
    v_dim: int = 0

    @property
    def head_dim(self) -> int:
        return self.head_dim_override or self.hidden // self.heads


def _dsv3_mla_layer(experts: int) -> Shape:
    return Shape(
        "deepseek_v3",
        7168,
        2048,
        1,
        128,
        128,
        32000,
        163840,
        10000.0,
        experts=experts,
        experts_per_tok=min(8, experts),
        tie_embeddings=True,
        shared_ffn=2048,
        q_rank=1536,
        kv_rank=512,
        nope_dim=128,
        rope_dim=64,
        v_dim=128,
    )


# DeepSeek-V3's MoE widths in the qwen2_moe layout (the stand-in measured before MLA was readable)
_DSV3_STAND_IN = Shape(
    "qwen2_moe",
    7168,
    2048,
    1,
    128,
    128,
    32000,
    4096,
    10000.0,
    experts=256,
    experts_per_tok=8,
    tie_embeddings=True,
    head_dim_override=128,
    shared_ffn=2048,
)

SHAPES: dict[str, Shape] = {
    # LLaMA-2-7B
    "llama-7b": Shape("llama", 4096, 11008, 32, 32, 32, 32000, 4096, 10000.0),
    # TinyLlama-1.1B's dimensions, with full multi-head attention ...
    "llama-1.2b": Shape("llama", 2048, 5632, 22, 32, 32, 32000, 2048, 10000.0),
    # ... and with its real grouped-query attention (4 KV heads)
    "llama-1.2b-gqa": Shape("llama", 2048, 5632, 22, 32, 4, 32000, 2048, 10000.0),
    # Mixtral-8x7B's layout scaled down to ~1.6 GB; 1 GB shards so the sharded
    # path with an index is exercised, as for real Mixtral checkpoints.
    "mixtral-small": Shape(
        "mixtral", 1024, 3584, 8, 16, 8, 32000, 32768, 1e6, experts=8, experts_per_tok=2, shard_bytes=1_000_000_000
    ),
    # Seconds to generate; for smoke tests of the bench itself (single-file layout).
    "llama-tiny": Shape("llama", 256, 688, 4, 8, 4, 4096, 2048, 10000.0),
    "mixtral-tiny": Shape("mixtral", 256, 512, 2, 8, 4, 4096, 32768, 1e6, experts=4, experts_per_tok=2),
    # One layer of Llama-3.1-405B (hidden 16384, FFN 53248, 128 heads / 8 KV heads, head_dim 128);
    # a small tied vocabulary, since only the probe rows of the embedding are ever read.  ~7.5 GB.
    "llama3-405b-layer": Shape("llama", 16384, 53248, 1, 128, 8, 32000, 8192, 500000.0, tie_embeddings=True),
    # One MoE layer of DeepSeek-V3 (hidden 7168, 256 routed experts of 2048, one shared expert of 2048)
    # in the qwen2_moe layout, with standard multi-head attention of the same projection widths as
    # DeepSeek-V3's MLA up-projections (128 heads x 128).  ~24 GB.
    "dsv3-moe-layer": _DSV3_STAND_IN,
    # The same layer with 8 of its 256 routed experts (~2.1 GB): the block-streamed peak RSS does not
    # depend on the expert count, and the time per expert extrapolates linearly (bench/scale.py).
    "dsv3-moe-layer-8e": replace(_DSV3_STAND_IN, experts=8),
    # One MoE layer of DeepSeek-V3 in its own layout (model_type deepseek_v3, MLA attention, per-expert
    # tensors as the hub stores them) at its real widths: hidden 7168, 128 heads, q rank 1536, kv rank 512,
    # no-RoPE / RoPE / value head widths 128 / 64 / 128, one shared expert and routed experts of 2048.
    # Only 8 of the 256 routed experts are written and config.json says n_routed_experts = 8 (the reader
    # checks the count against the tensors); first_k_dense_replace = 0 makes the one layer MoE.  ~1.6 GB.
    # 4 and 32 experts (1.3 and 3.7 GB) show what grows with the expert count (time) and what does not (peak RSS);
    # 256 (~23 GB) is the whole layer.
    **{f"dsv3-mla-layer-{e}e": _dsv3_mla_layer(e) for e in (8, 4, 32, 256)},
    # The same two layouts at a few MB, for smoke tests of the scale bench.
    "dsv3-moe-tiny": Shape(
        "qwen2_moe", 256, 64, 1, 8, 8, 4096, 4096, 10000.0, experts=16, experts_per_tok=2, shared_ffn=64
    ),
}


# --------------------------------------------------------------------------
# tensor inventory


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    kind: str  # "weight" or "norm"

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return 2 * self.numel


def tensor_specs(s: Shape) -> list[TensorSpec]:
    """Tensors in the order transformers' state_dict lists them (which sets sharding)."""
    d, f, dh = s.hidden, s.ffn, s.head_dim
    out = [TensorSpec("model.embed_tokens.weight", (s.vocab, d), "weight")]
    for i in range(s.layers):
        p = f"model.layers.{i}."
        if s.family == "deepseek_v3":
            out += _deepseek_v3_layer(s, p)
            continue
        out += [
            TensorSpec(p + "self_attn.q_proj.weight", (s.heads * dh, d), "weight"),
            TensorSpec(p + "self_attn.k_proj.weight", (s.kv_heads * dh, d), "weight"),
            TensorSpec(p + "self_attn.v_proj.weight", (s.kv_heads * dh, d), "weight"),
            TensorSpec(p + "self_attn.o_proj.weight", (d, s.heads * dh), "weight"),
        ]
        if s.family == "qwen2_moe":
            out.append(TensorSpec(p + "mlp.gate.weight", (s.experts, d), "weight"))
            for e in range(s.experts):
                q = f"{p}mlp.experts.{e}."
                out += [
                    TensorSpec(q + "gate_proj.weight", (f, d), "weight"),
                    TensorSpec(q + "up_proj.weight", (f, d), "weight"),
                    TensorSpec(q + "down_proj.weight", (d, f), "weight"),
                ]
            q = f"{p}mlp.shared_expert."
            out += [
                TensorSpec(q + "gate_proj.weight", (s.shared_ffn, d), "weight"),
                TensorSpec(q + "up_proj.weight", (s.shared_ffn, d), "weight"),
                TensorSpec(q + "down_proj.weight", (d, s.shared_ffn), "weight"),
                TensorSpec(p + "mlp.shared_expert_gate.weight", (1, d), "weight"),
            ]
        elif s.family == "mixtral":
            out.append(TensorSpec(p + "block_sparse_moe.gate.weight", (s.experts, d), "weight"))
            for e in range(s.experts):
                q = f"{p}block_sparse_moe.experts.{e}."
                out += [
                    TensorSpec(q + "w1.weight", (f, d), "weight"),
                    TensorSpec(q + "w2.weight", (d, f), "weight"),
                    TensorSpec(q + "w3.weight", (f, d), "weight"),
                ]
        else:
            out += [
                TensorSpec(p + "mlp.gate_proj.weight", (f, d), "weight"),
                TensorSpec(p + "mlp.up_proj.weight", (f, d), "weight"),
                TensorSpec(p + "mlp.down_proj.weight", (d, f), "weight"),
            ]
        out += [
            TensorSpec(p + "input_layernorm.weight", (d,), "norm"),
            TensorSpec(p + "post_attention_layernorm.weight", (d,), "norm"),
        ]
    out.append(TensorSpec("model.norm.weight", (d,), "norm"))
    if not s.tie_embeddings:
        out.append(TensorSpec("lm_head.weight", (s.vocab, d), "weight"))
    return out


def _deepseek_v3_layer(s: Shape, p: str) -> list[TensorSpec]:
    """One MoE layer of DeepSeek-V3 under the hub's names, in module order (MLA, router, experts, shared)."""
    d, f, h = s.hidden, s.ffn, s.heads
    a = p + "self_attn."
    out = [
        TensorSpec(a + "q_a_proj.weight", (s.q_rank, d), "weight"),
        TensorSpec(a + "q_a_layernorm.weight", (s.q_rank,), "norm"),
        TensorSpec(a + "q_b_proj.weight", (h * (s.nope_dim + s.rope_dim), s.q_rank), "weight"),
        TensorSpec(a + "kv_a_proj_with_mqa.weight", (s.kv_rank + s.rope_dim, d), "weight"),
        TensorSpec(a + "kv_a_layernorm.weight", (s.kv_rank,), "norm"),
        TensorSpec(a + "kv_b_proj.weight", (h * (s.nope_dim + s.v_dim), s.kv_rank), "weight"),
        TensorSpec(a + "o_proj.weight", (d, h * s.v_dim), "weight"),
        TensorSpec(p + "mlp.gate.weight", (s.experts, d), "weight"),
        # selection-only router bias; F32 on the hub, bf16 here (this writer has one dtype; no term reads it)
        TensorSpec(p + "mlp.gate.e_score_correction_bias", (s.experts,), "weight"),
    ]
    for e in range(s.experts):
        q = f"{p}mlp.experts.{e}."
        out += [
            TensorSpec(q + "gate_proj.weight", (f, d), "weight"),
            TensorSpec(q + "up_proj.weight", (f, d), "weight"),
            TensorSpec(q + "down_proj.weight", (d, f), "weight"),
        ]
    q = f"{p}mlp.shared_experts."
    out += [
        TensorSpec(q + "gate_proj.weight", (s.shared_ffn, d), "weight"),
        TensorSpec(q + "up_proj.weight", (s.shared_ffn, d), "weight"),
        TensorSpec(q + "down_proj.weight", (d, s.shared_ffn), "weight"),
        TensorSpec(p + "input_layernorm.weight", (d,), "norm"),
        TensorSpec(p + "post_attention_layernorm.weight", (d,), "norm"),
    ]
    return out


def plan_shards(specs: list[TensorSpec], max_bytes: int) -> list[list[TensorSpec]]:
    """Greedy split in state_dict order, like huggingface_hub's split_*_into_shards."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for t in specs:
        if shards[-1] and size + t.nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards


def shard_names(n: int) -> list[str]:
    if n == 1:
        return ["model.safetensors"]
    return [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


# --------------------------------------------------------------------------
# random bf16 values


def _bf16_normal_table(std: float, mean: float) -> np.ndarray:
    """65536 bf16 bit patterns: the N(mean, std^2) quantiles at (i + 0.5) / 65536.

    Indexing this table with uniform 16-bit integers samples the normal
    distribution at bf16 resolution, about 5x faster than randn on this
    2-core machine (bf16 has fewer distinct values than the table anyway).
    """
    import torch

    p = (torch.arange(65536, dtype=torch.float64) + 0.5) / 65536
    vals = torch.special.ndtri(p) * std + mean
    return vals.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16).copy()


def _rng_for(seed: int, name: str) -> np.random.Generator:
    # Per-tensor streams: a tensor's values depend only on (seed, name), not on
    # sharding, write order, or which tensors were generated before it.
    words = np.frombuffer(hashlib.sha256(name.encode()).digest(), dtype=np.uint32)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *words.tolist()])))


def tensor_chunks(t: TensorSpec, seed: int, tables: dict[str, np.ndarray]) -> Iterator[np.ndarray]:
    """The tensor's bf16 bit patterns (uint16, little-endian), in row-major chunks."""
    rng = _rng_for(seed, t.name)
    table = tables[t.kind]
    left = t.numel
    while left:
        n = min(left, CHUNK_ELEMS)
        idx = np.frombuffer(rng.bytes(2 * n), dtype="<u2")
        yield table[idx]
        left -= n


# --------------------------------------------------------------------------
# safetensors writer


def _safetensors_header(tensors: list[TensorSpec]) -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in tensors:
        header[t.name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads the header to 8-byte alignment
    return struct.pack("<Q", len(raw)) + raw


def _ordered_for_file(tensors: list[TensorSpec]) -> list[TensorSpec]:
    # The safetensors library lays same-dtype tensors out sorted by name.
    return sorted(tensors, key=lambda t: t.name)


def shard_file_size(tensors: list[TensorSpec]) -> int:
    return len(_safetensors_header(_ordered_for_file(tensors))) + sum(t.nbytes for t in tensors)


def write_shard(path: Path, tensors: list[TensorSpec], seed: int, tables: dict[str, np.ndarray]) -> None:
    ordered = _ordered_for_file(tensors)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as fh:
        fh.write(_safetensors_header(ordered))
        for t in ordered:
            for chunk in tensor_chunks(t, seed, tables):
                fh.write(memoryview(chunk).cast("B"))
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# config, tokenizer


def config_json(s: Shape) -> dict[str, Any]:
    """config.json as transformers 4.x writes it for LLaMA-2 / TinyLlama / Mixtral / Qwen2-MoE / DeepSeek-V3."""
    cfg: dict[str, Any] = {
        "architectures": ["MixtralForCausalLM" if s.family == "mixtral" else "LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": s.hidden,
        "initializer_range": 0.02,
        "intermediate_size": s.ffn,
        "max_position_embeddings": s.max_position,
        "model_type": s.family,
        "num_attention_heads": s.heads,
        "num_hidden_layers": s.layers,
        "num_key_value_heads": s.kv_heads,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": s.rope_theta,
        "tie_word_embeddings": s.tie_embeddings,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.40.0",
        "use_cache": True,
        "vocab_size": s.vocab,
    }
    if s.family == "llama":
        cfg["mlp_bias"] = False
        cfg["pretraining_tp"] = 1
    elif s.family == "qwen2_moe":
        cfg["architectures"] = ["Qwen2MoeForCausalLM"]
        del cfg["rope_scaling"]
        cfg.update(
            {
                "decoder_sparse_step": 1,
                "mlp_only_layers": [],
                "moe_intermediate_size": s.ffn,
                "shared_expert_intermediate_size": s.shared_ffn,
                "num_experts": s.experts,
                "num_experts_per_tok": s.experts_per_tok,
                "norm_topk_prob": False,
                "head_dim": s.head_dim,
                "sliding_window": None,
                "use_sliding_window": False,
            }
        )
    elif s.family == "deepseek_v3":
        cfg.update(_deepseek_v3_config(s))
    else:
        del cfg["attention_bias"], cfg["rope_scaling"]
        cfg.update(
            {
                "num_experts_per_tok": s.experts_per_tok,
                "num_local_experts": s.experts,
                "output_router_logits": False,
                "router_aux_loss_coef": 0.02,
                "sliding_window": None,
            }
        )
    return dict(sorted(cfg.items()))


def _deepseek_v3_config(s: Shape) -> dict[str, Any]:
    """DeepSeek-V3's own config.json keys and values, except the expert count, the layer count and the
    vocabulary (set by the shape) and the expert groups (one group, since 8 experts cannot form V3's 8
    groups of 4 selected)."""
    return {
        "architectures": ["DeepseekV3ForCausalLM"],
        "aux_loss_alpha": 0.001,
        "ep_size": 1,
        "first_k_dense_replace": 0,  # the one layer is MoE (V3 has 3 dense layers first)
        "intermediate_size": 18432,  # V3's dense FFN width; no dense layer here
        "kv_lora_rank": s.kv_rank,
        "moe_intermediate_size": s.ffn,
        "moe_layer_freq": 1,
        "n_group": 1,
        "n_routed_experts": s.experts,
        "n_shared_experts": s.shared_ffn // s.ffn,
        "norm_topk_prob": True,
        "num_experts_per_tok": s.experts_per_tok,
        "num_nextn_predict_layers": 0,
        "q_lora_rank": s.q_rank,
        "qk_nope_head_dim": s.nope_dim,
        "qk_rope_head_dim": s.rope_dim,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {
            "beta_fast": 32,
            "beta_slow": 1,
            "factor": 40,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "original_max_position_embeddings": 4096,
            "type": "yarn",
        },
        "routed_scaling_factor": 2.5,
        "scoring_func": "sigmoid",
        "seq_aux": True,
        "topk_group": 1,
        "topk_method": "noaux_tc",
        "v_head_dim": s.v_dim,
    }


def _bytes_to_unicode() -> dict[int, str]:
    from attest.vocab.vocabulary import byte_encoder

    return dict(byte_encoder())


def _stdlib_words(limit_bytes: int = 24 << 20) -> list[str]:
    """Words of Python's own standard-library source and docstrings, most frequent first.

    The list depends on the Python version on disk; the vocabulary's size and
    structure do not, and weights do not depend on it at all.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    counts: collections.Counter[str] = collections.Counter()
    read = 0
    # Whole words only, lower or capitalised: identifiers such as CamelCase
    # names or Unicode table entries (LATIN SMALL LETTER) read nothing like a
    # natural-language vocabulary.
    word = re.compile(r"\b[A-Z]?[a-z]{1,15}\b")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in ("site-packages", "dist-packages", "test", "tests", "idlelib", "encodings", "lib2to3")
        )
        for fn in sorted(filenames):
            if not fn.endswith(".py"):
                continue
            try:
                text = (Path(dirpath) / fn).read_text(encoding="utf-8", errors="ignore")
            except OSError:
                continue
            counts.update(word.findall(text))
            read += len(text)
            if read >= limit_bytes:
                break
        if read >= limit_bytes:
            break
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _synthetic_words(rng: random.Random) -> Iterator[str]:
    onsets = [
        "",
        "b",
        "c",
        "d",
        "f",
        "g",
        "h",
        "j",
        "k",
        "l",
        "m",
        "n",
        "p",
        "r",
        "s",
        "t",
        "v",
        "w",
        "z",
        "br",
        "ch",
        "cl",
        "dr",
        "fl",
        "gr",
        "pl",
        "pr",
        "sh",
        "st",
        "str",
        "th",
        "tr",
    ]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "io", "ou", "y"]
    codas = ["", "", "n", "r", "s", "l", "m", "nd", "ng", "st", "x"]
    while True:
        k = rng.choice((1, 2, 2, 3, 3, 4))
        w = "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(k))
        # Random syllables occasionally spell something rude; a vocabulary
        # people will read in reports should not.
        if not any(b in w for b in _BLOCKED):
            yield w


_BLOCKED = (
    "shit",
    "fuc",
    "cunt",
    "dick",
    "cock",
    "slut",
    "whor",
    "nigg",
    "fag",
    "rape",
    "porn",
    "tit",
    "pis",
    "ass",
    "anal",
    "sex",
    "nazi",
    "kill",
)


SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]


def build_vocab(size: int) -> dict[str, int]:
    """A plausible byte-level BPE vocabulary of exactly `size` unique tokens.

    Ids 0-2 are <unk> <s> </s> (LLaMA's ids), then the 256 byte symbols, a few
    numbers and whitespace runs, then word pieces with and without the leading
    space marker 'Ġ', then synthetic letter strings to fill up.
    """
    b2u = _bytes_to_unicode()
    space, newline = b2u[ord(" ")], b2u[ord("\n")]
    tokens: dict[str, None] = dict.fromkeys(SPECIAL_TOKENS)
    tokens.update(dict.fromkeys(b2u[b] for b in range(256)))
    extras = [space * k for k in range(2, 16)] + [newline + space * k for k in range(1, 16)]
    extras += [space + str(i) for i in range(1000)] + [str(i) for i in range(10, 100)]
    tokens.update(dict.fromkeys(extras[: max(0, size // 20)]))

    words = _stdlib_words()
    budget = int(size * 0.7)
    for w in words:
        if len(tokens) >= budget:
            break
        tokens[space + w] = None
        if len(tokens) < budget:
            tokens[w] = None
    gen = _synthetic_words(random.Random(20240917))
    while len(tokens) < size:
        w = next(gen)
        tokens[space + w if len(tokens) % 3 else w] = None
    return {t: i for i, t in enumerate(list(tokens)[:size])}


def tokenizer_json(vocab_size: int) -> dict[str, Any]:
    vocab = build_vocab(vocab_size)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": vocab[t],
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for t in SPECIAL_TOKENS
        ],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": {**byte_level, "trim_offsets": False},
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [],
        },
    }


def tokenizer_config_json(s: Shape) -> dict[str, Any]:
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "model_max_length": s.max_position,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "<unk>",
    }


# --------------------------------------------------------------------------
# folder


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def expected_files(s: Shape) -> dict[str, int | None]:
    """Every output file name with its exact size (None: small metadata file)."""
    shards = plan_shards(tensor_specs(s), s.shard_bytes)
    names = shard_names(len(shards))
    out: dict[str, int | None] = {n: shard_file_size(ts) for n, ts in zip(names, shards)}
    if len(shards) > 1:
        out["model.safetensors.index.json"] = None
    for n in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ):
        out[n] = None
    return out


def _plan_record(shape: str, seed: int) -> dict[str, Any]:
    fields = asdict(SHAPES[shape])
    # Fields added later are recorded only when set, so existing folders stay complete.
    for late in ("head_dim_override", "shared_ffn", "q_rank", "kv_rank", "nope_dim", "rope_dim", "v_dim"):
        if not fields[late]:
            del fields[late]
    return {"generator": GENERATOR_VERSION, "shape": shape, "seed": seed, **fields}


def is_complete(out: Path, shape: str, seed: int) -> bool:
    try:
        marker = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if not marker.get("complete") or marker.get("plan") != _plan_record(shape, seed):
        return False
    for name, size in expected_files(SHAPES[shape]).items():
        p = out / name
        if not p.is_file() or (size is not None and p.stat().st_size != size):
            return False
    return True


def make_checkpoint(shape: str, out: Path, seed: int = 0, force: bool = False, log: Any = print) -> dict[str, Any]:
    """Create (or resume, or skip) the checkpoint; returns {"seconds", "bytes", "skipped"}."""
    if shape not in SHAPES:
        raise SystemExit(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    s = SHAPES[shape]
    out = Path(out)
    if is_complete(out, shape, seed):
        return {"skipped": True, "seconds": 0.0, "bytes": _folder_bytes(out)}

    plan = _plan_record(shape, seed)
    expected = expected_files(s)
    if out.exists():
        try:
            marker = json.loads((out / MARKER).read_text())
        except (OSError, ValueError):
            marker = None
        ours = set(expected) | {MARKER}
        foreign = [p.name for p in out.iterdir() if p.name.removesuffix(".partial") not in ours]
        same_plan = marker is not None and marker.get("plan") == plan
        if not force and (foreign or (marker is not None and not same_plan)):
            raise SystemExit(f"{out} holds other files or another checkpoint; use --force to overwrite")
        if not same_plan:
            for p in out.iterdir():
                if p.is_file() and p.name.removesuffix(".partial") in ours:
                    p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / MARKER, {"complete": False, "plan": plan})

    t0 = time.perf_counter()
    tables = {"weight": _bf16_normal_table(WEIGHT_STD, 0.0), "norm": _bf16_normal_table(NORM_NOISE_STD, 1.0)}
    specs = tensor_specs(s)
    shards = plan_shards(specs, s.shard_bytes)
    names = shard_names(len(shards))
    for i, (name, tensors) in enumerate(zip(names, shards)):
        path = out / name
        if path.is_file() and path.stat().st_size == expected[name]:
            log(f"  {name}: kept from an earlier run")
            continue
        ts = time.perf_counter()
        write_shard(path, tensors, seed, tables)
        log(f"  {name}: {expected[name] / 1e9:.2f} GB in {time.perf_counter() - ts:.1f} s ({i + 1}/{len(shards)})")
    if len(shards) > 1:
        _write_json(
            out / "model.safetensors.index.json",
            {
                "metadata": {"total_size": sum(t.nbytes for t in specs)},
                "weight_map": {t.name: n for n, ts in zip(names, shards) for t in ts},
            },
        )
    _write_json(out / "config.json", config_json(s))
    _write_json(
        out / "generation_config.json",
        {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2, "transformers_version": "4.40.0"},
    )
    _write_json(out / "tokenizer.json", tokenizer_json(s.vocab))
    _write_json(out / "tokenizer_config.json", tokenizer_config_json(s))
    _write_json(out / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    seconds = time.perf_counter() - t0
    _write_json(
        out / MARKER, {"complete": True, "plan": plan, "python": sys.version.split()[0], "seconds": round(seconds, 1)}
    )
    return {"skipped": False, "seconds": seconds, "bytes": _folder_bytes(out)}


def _folder_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in out.iterdir() if p.is_file())


# --------------------------------------------------------------------------
# verification


def verify_checkpoint(out: Path, shape: str) -> dict[str, Any]:
    """Load the folder the way consumers do and check it against the shape.

    Lazily: safetensors.safe_open reads only headers and the slices asked for.
    Raises AssertionError on any mismatch.
    """
    from safetensors import safe_open
    from tokenizers import Tokenizer
    from transformers import AutoConfig

    s = SHAPES[shape]
    specs = {t.name: t for t in tensor_specs(s)}
    index_path = out / "model.safetensors.index.json"
    if index_path.exists():
        index = json.loads(index_path.read_text())
        weight_map: dict[str, str] = index["weight_map"]
        assert index["metadata"]["total_size"] == sum(t.nbytes for t in specs.values())
    else:
        weight_map = {n: "model.safetensors" for n in specs}
    assert set(weight_map) == set(specs), "index does not list exactly the expected tensors"

    seen: set[str] = set()
    stats: dict[str, float] = {}
    for shard in sorted(set(weight_map.values())):
        with safe_open(str(out / shard), framework="pt") as f:
            keys = set(f.keys())
            assert keys == {n for n, sh in weight_map.items() if sh == shard}, shard
            for name in keys:
                sl = f.get_slice(name)
                assert tuple(sl.get_shape()) == specs[name].shape, name
                assert sl.get_dtype() == "BF16", name
            seen |= keys
            # Spot-check values on a few rows only: stays lazy on multi-GB shards.
            for name in sorted(keys)[:3]:
                rows = f.get_slice(name)[:64].float()
                if specs[name].kind == "norm":
                    stats["norm_mean"] = float(rows.mean())
                else:
                    stats["weight_std"] = float(rows.std())
    assert seen == set(specs)
    if "weight_std" in stats:
        assert 0.015 < stats["weight_std"] < 0.025, stats
    if "norm_mean" in stats:
        assert 0.97 < stats["norm_mean"] < 1.03, stats

    cfg = AutoConfig.from_pretrained(str(out))
    assert cfg.model_type == s.family
    ffn = cfg.moe_intermediate_size if s.family == "deepseek_v3" else cfg.intermediate_size
    assert (cfg.hidden_size, ffn, cfg.num_hidden_layers) == (s.hidden, s.ffn, s.layers)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size) == (s.heads, s.kv_heads, s.vocab)
    if s.family == "mixtral":
        assert cfg.num_local_experts == s.experts
    if s.family == "qwen2_moe":
        assert (cfg.num_experts, cfg.shared_expert_intermediate_size) == (s.experts, s.shared_ffn)
    if s.family == "deepseek_v3":
        assert (cfg.n_routed_experts, cfg.q_lora_rank, cfg.kv_lora_rank) == (s.experts, s.q_rank, s.kv_rank)

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tok.get_vocab_size(with_added_tokens=True) == s.vocab, tok.get_vocab_size()
    ids = tok.encode("Hello world").ids
    assert tok.decode(ids) == "Hello world"
    return {"tensors": len(seen), "shards": len(set(weight_map.values())), **stats}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shape", nargs="?", choices=sorted(SHAPES))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="overwrite a folder holding something else")
    ap.add_argument("--verify-only", action="store_true")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--list", action="store_true", help="list shapes with parameter counts and sizes")
    a = ap.parse_args(argv)
    if a.list:
        for name, s in SHAPES.items():
            specs = tensor_specs(s)
            params = sum(t.numel for t in specs)
            print(
                f"{name:16s} {params / 1e9:6.2f} B params  {2 * params / 1e9:6.2f} GB  "
                f"{len(plan_shards(specs, s.shard_bytes))} shard(s)"
            )
        return 0
    if a.shape is None or a.out is None:
        ap.error("SHAPE and --out are required")
    if not a.verify_only:
        r = make_checkpoint(a.shape, a.out, a.seed, a.force)
        if r["skipped"]:
            print(f"{a.out}: already complete ({r['bytes'] / 1e9:.2f} GB), skipped")
        else:
            print(f"{a.out}: {r['bytes'] / 1e9:.2f} GB in {r['seconds']:.1f} s")
    if not a.no_verify:
        t = time.perf_counter()
        info = verify_checkpoint(a.out, a.shape)
        print(f"verified in {time.perf_counter() - t:.1f} s: {info}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
