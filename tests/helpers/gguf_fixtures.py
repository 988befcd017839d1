"""Write tiny GGUF files the way llama.cpp's `convert_hf_to_gguf.py` does.

- `write_llama_gguf` converts a `transformers` LlamaForCausalLM: llama.cpp names,
  Q/K rows permuted by the converter's `LlamaModel.permute`, llama metadata and
  tokenizer metadata, 2-D weights quantized with `gguf.quants.quantize` and 1-D
  tensors kept in F32 (as llama.cpp does).
- `convert_hf_model` is a small re-implementation of the converter for the
  other families attest supports, following its per-family rules (cited below),
  so the GGUF tables can be checked against the HF tables on real models.
- `write_gguf` writes arbitrary tensors and metadata (corrupt-input tests).

Reference: llama.cpp `convert_hf_to_gguf.py` / `conversion/*.py` (llama.py,
olmo.py, gemma.py, gpt2.py, gpt_neox.py, bloom.py, falcon.py) and gguf-py's
`tensor_mapping.py` (used here through `gguf.get_tensor_name_map`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

SPECIAL_TOKEN = "<|endoftext|>"
TOKEN_NORMAL, TOKEN_CONTROL = 1, 3


# --------------------------------------------------------------------------- tokens
def _bytes_to_unicode() -> dict[int, str]:
    from attest.vocab.vocabulary import byte_encoder

    return dict(byte_encoder())


def byte_level_tokens(size: int = 512, seed: int = 7) -> list[str]:
    """Byte-level BPE token strings: the special token, the 256 byte symbols, then letters-only words."""
    alphabet = _bytes_to_unicode()
    tokens = [SPECIAL_TOKEN] + [alphabet[b] for b in range(256)]
    seen = set(tokens)
    rng = random.Random(seed)
    space = alphabet[ord(" ")]
    while len(tokens) < size:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 7)))
        piece = (space if rng.random() < 0.5 else "") + word
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
    return tokens


def token_types(tokens: Sequence[str]) -> list[int]:
    return [TOKEN_CONTROL if t == SPECIAL_TOKEN else TOKEN_NORMAL for t in tokens]


def write_tokenizer_json(folder: Path, tokens: Sequence[str]) -> Path:
    """A byte-level BPE `tokenizer.json` whose vocabulary is exactly `tokens` (ids in order)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(tokens) if t != SPECIAL_TOKEN}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    out = Path(folder) / "tokenizer.json"
    tok.save(str(out))
    # `add_special_tokens` would append the special token at a new id; pin it to its GGUF id.
    data = json.loads(out.read_text())
    data["added_tokens"] = [
        {
            "id": tokens.index(SPECIAL_TOKEN),
            "content": SPECIAL_TOKEN,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
    ]
    out.write_text(json.dumps(data))
    return out


# --------------------------------------------------------------------------- converter rules
def llama_cpp_permute(weights: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """`LlamaModel.permute` from llama.cpp's converter, verbatim in numpy."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _per_head_to_contiguous(w: np.ndarray, n_head: int) -> np.ndarray:
    """gpt_neox.py / bloom.py: rows [H, 3, dh] -> [q; k; v]."""
    dh = w.shape[0] // n_head // 3
    qkv = w.reshape(n_head, 3, dh, *w.shape[1:])
    return np.concatenate([qkv[:, j].reshape(-1, *w.shape[1:]) for j in range(3)], axis=0)


def _falcon_grouped_to_contiguous(w: np.ndarray, n_head: int, n_kv: int) -> np.ndarray:
    """falcon.py: rows [Hkv, g+2, dh] -> [q; k; v]."""
    dh = w.shape[0] // (n_head + 2 * n_kv)
    qkv = w.reshape(n_kv, n_head // n_kv + 2, dh, *w.shape[1:])
    q = qkv[:, :-2].reshape(n_head * dh, *w.shape[1:])
    k = qkv[:, [-2]].reshape(n_kv * dh, *w.shape[1:])
    v = qkv[:, [-1]].reshape(n_kv * dh, *w.shape[1:])
    return np.concatenate([q, k, v], axis=0)


def quantize(arr: np.ndarray, qtype: Any) -> tuple[np.ndarray, Any]:
    """(data, ggml type): 1-D tensors stay F32 as in llama.cpp, 2-D and 3-D weights take `qtype`."""
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.ndim < 2 or qtype == Q.F32:
        return arr, Q.F32
    return quants.quantize(arr, qtype), qtype


def write_gguf(
    path: Path,
    arch: str,
    tensors: Mapping[str, np.ndarray],
    *,
    metadata: Mapping[str, Any] | None = None,
    tokens: Sequence[str] | None = None,
    tokenizer_model: str = "gpt2",
    qtype: Any = None,
    raw: Mapping[str, tuple[np.ndarray, Any]] | None = None,
) -> Path:
    """Write a GGUF: `tensors` (float, quantized by `quantize`), `raw` (already encoded, with their type)."""
    import gguf

    qtype = gguf.GGMLQuantizationType.F16 if qtype is None else qtype
    w = gguf.GGUFWriter(str(path), arch)
    for key, value in (metadata or {}).items():
        _add_kv(w, key, value)
    if tokens is not None:
        w.add_tokenizer_model(tokenizer_model)
        w.add_token_list(list(tokens))
        w.add_token_types(token_types(tokens))
    for name, arr in tensors.items():
        data, dtype = quantize(arr, qtype)
        w.add_tensor(name, data, raw_dtype=dtype)
    for name, (data, dtype) in (raw or {}).items():
        w.add_tensor(name, data, raw_dtype=dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


def _add_kv(w: Any, key: str, value: Any) -> None:
    if isinstance(value, bool):
        w.add_bool(key, value)
    elif isinstance(value, int):
        w.add_uint32(key, value)
    elif isinstance(value, float):
        w.add_float32(key, value)
    elif isinstance(value, str):
        w.add_string(key, value)
    else:
        w.add_array(key, list(value))


# --------------------------------------------------------------------------- llama
def write_llama_gguf(hf_model: Any, tokenizer_strings: Sequence[str], path: Path, qtype: Any) -> Path:
    """Convert a `transformers` LlamaForCausalLM to a llama.cpp GGUF at `path`."""
    cfg = hf_model.config
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    sd = {k: v.detach().float().numpy() for k, v in hf_model.state_dict().items()}
    tensors: dict[str, np.ndarray] = {"token_embd.weight": sd["model.embed_tokens.weight"]}
    for i in range(cfg.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        tensors[b + "attn_norm.weight"] = sd[p + "input_layernorm.weight"]
        tensors[b + "attn_q.weight"] = llama_cpp_permute(sd[p + "self_attn.q_proj.weight"], n_head, n_head)
        tensors[b + "attn_k.weight"] = llama_cpp_permute(sd[p + "self_attn.k_proj.weight"], n_head, n_kv)
        tensors[b + "attn_v.weight"] = sd[p + "self_attn.v_proj.weight"]
        tensors[b + "attn_output.weight"] = sd[p + "self_attn.o_proj.weight"]
        tensors[b + "ffn_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
        tensors[b + "ffn_gate.weight"] = sd[p + "mlp.gate_proj.weight"]
        tensors[b + "ffn_up.weight"] = sd[p + "mlp.up_proj.weight"]
        tensors[b + "ffn_down.weight"] = sd[p + "mlp.down_proj.weight"]
    tensors["output_norm.weight"] = sd["model.norm.weight"]
    if "lm_head.weight" in sd and not cfg.tie_word_embeddings:
        tensors["output.weight"] = sd["lm_head.weight"]
    metadata = {
        "general.name": "tiny-llama",
        "llama.context_length": int(cfg.max_position_embeddings),
        "llama.embedding_length": int(cfg.hidden_size),
        "llama.block_count": int(cfg.num_hidden_layers),
        "llama.feed_forward_length": int(cfg.intermediate_size),
        "llama.attention.head_count": int(n_head),
        "llama.attention.head_count_kv": int(n_kv),
        "llama.rope.dimension_count": int(head_dim),
        "llama.rope.freq_base": float(getattr(cfg, "rope_theta", None) or 10000.0),
        "llama.attention.layer_norm_rms_epsilon": float(cfg.rms_norm_eps),
        "llama.vocab_size": len(tokenizer_strings),
    }
    return write_gguf(path, "llama", tensors, metadata=metadata, tokens=tokenizer_strings, qtype=qtype)


# --------------------------------------------------------------------------- other families
def _heads(cfg: Any) -> tuple[int, int]:
    n_head = int(cfg.num_attention_heads)
    if getattr(cfg, "model_type", "") == "falcon":
        # falcon.py reads num_kv_heads / n_head_kv and defaults to 1 (Falcon-7B's multi-query).
        return n_head, int(cfg.num_kv_heads) if cfg.new_decoder_architecture else 1
    if getattr(cfg, "model_type", "") == "mpt":
        return n_head, int(getattr(cfg.attn_config, "kv_n_heads", None) or n_head)
    kv = getattr(cfg, "num_key_value_heads", None)
    return n_head, int(kv or n_head)


def _rule_llama(name: str, w: np.ndarray, cfg: Any) -> np.ndarray:
    n_head, n_kv = _heads(cfg)
    if name.endswith(("q_proj.weight", "q_proj.bias")):
        return llama_cpp_permute(w, n_head, n_head)
    if name.endswith(("k_proj.weight", "k_proj.bias")):
        return llama_cpp_permute(w, n_head, n_kv)
    return w


def _rule_gemma(name: str, w: np.ndarray, cfg: Any) -> np.ndarray:
    return w + 1 if name.endswith("norm.weight") else w


def _rule_gpt2(name: str, w: np.ndarray, cfg: Any) -> np.ndarray:
    return w.T if name.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")) else w


def _rule_per_head_qkv(name: str, w: np.ndarray, cfg: Any) -> np.ndarray:
    return _per_head_to_contiguous(w, _heads(cfg)[0]) if "query_key_value" in name else w


def _rule_falcon(name: str, w: np.ndarray, cfg: Any) -> np.ndarray:
    return _falcon_grouped_to_contiguous(w, *_heads(cfg)) if "query_key_value" in name else w


def _identity(name: str, w: np.ndarray, cfg: Any) -> np.ndarray:
    return w


# model_type -> (GGUF architecture, per-tensor rule of its converter class)
CONVERTERS: dict[str, tuple[str, Callable[[str, np.ndarray, Any], np.ndarray]]] = {
    "llama": ("llama", _rule_llama),
    "mistral": ("llama", _rule_llama),
    "mixtral": ("llama", _rule_llama),
    "olmo": ("olmo", _rule_llama),
    "qwen2": ("qwen2", _identity),
    "qwen3": ("qwen3", _identity),
    "qwen2_moe": ("qwen2moe", _identity),
    "qwen3_moe": ("qwen3moe", _identity),
    "gemma": ("gemma", _rule_gemma),
    "gemma2": ("gemma2", _rule_gemma),
    "phi3": ("phi3", _identity),
    "gpt2": ("gpt2", _rule_gpt2),
    "gpt_neox": ("gptneox", _rule_per_head_qkv),
    "bloom": ("bloom", _rule_per_head_qkv),
    "falcon": ("falcon", _rule_falcon),
    "mpt": ("mpt", _identity),
    "starcoder2": ("starcoder2", _identity),
    "stablelm": ("stablelm", _identity),
    "bert": ("bert", _identity),
    "olmo2": ("olmo2", _identity),
    "olmo3": ("olmo2", _identity),
    "exaone4": ("exaone4", _identity),
    "granite": ("granite", _rule_llama),
    "seed_oss": ("seed_oss", _identity),
    "apertus": ("apertus", _identity),
    "cohere": ("command-r", _identity),
    "cohere2": ("cohere2", _identity),
    "phi": ("phi2", _identity),
    # llama.py SmolLM3Model and granite.py GraniteMoeModel inherit LlamaModel.permute
    "smollm3": ("smollm3", _rule_llama),
    "granitemoe": ("granitemoe", _rule_llama),
    # ernie.py, hunyuan.py, phi.py PhiMoeModel and glm.py Glm4MoeModel write rows unchanged
    "ernie4_5": ("ernie4_5", _identity),
    "ernie4_5_moe": ("ernie4_5-moe", _identity),
    "hunyuan_v1_dense": ("hunyuan-dense", _identity),
    "phimoe": ("phimoe", _identity),
    "glm4_moe": ("glm4moe", _identity),
    "deepseek_v2": ("deepseek2", _identity),
    "deepseek_v3": ("deepseek2", _identity),
    "gpt_oss": ("gpt-oss", _identity),
    "llama4_text": ("llama4", _identity),
}
# config keys of the expert count, as each converter reads it
_EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "moe_num_experts", "n_routed_experts")
# In-memory (transformers 5) names -> the checkpoint names the converter maps.
_ON_DISK = (
    (".mlp.gate.moe_statics.", ".mlp.moe_statics."),  # ERNIE-4.5-MoE
    (".block_sparse_moe.router.weight", ".block_sparse_moe.router.layer.weight"),  # GraniteMoE
    (".mlp.router.weight", ".block_sparse_moe.gate.weight"),  # PhiMoE
)

# Tensors the converter drops when they have no GGUF name: buffers, poolers, position
# ids, Gemma's lm_head (gemma.py filters it; the head is tied), and Apertus' xIELU
# scalars (apertus.py writes them into the metadata).
_SKIPPED = ("pooler.", "position_ids", "rotary_emb", ".attn.bias", ".attn.masked_bias", "lm_head.", ".act_fn.")
# Name prefixes a converter class strips before mapping (bloom.py, bert.py).
_STRIPPED = {"bloom": "transformer.", "bert": "bert."}


def _stacked_experts(name: str, w: np.ndarray, model_type: str) -> Iterable[tuple[str, np.ndarray]]:
    """transformers 5 stores experts stacked; the converter writes ffn_{gate,up,down}_exps [E, out, in].

    Mixtral/Qwen-MoE in memory: gate_up [E, 2f, d], gate half first, down [E, d, f].
    GPT-OSS (gpt_oss.py): gate_up [E, d, 2f] transposed, gate = rows ::2, up = rows 1::2, biases
    split the same way; down [E, f, d] transposed. Llama-4 (llama4.py): gate_up [E, d, 2f]
    transposed and split into halves, down transposed.
    """
    bid = name.split(".")[2]
    exps = f"blk.{bid}.ffn_{{}}_exps.{{}}"
    if model_type == "gpt_oss":
        if name.endswith("experts.gate_up_proj"):
            t = w.transpose(0, 2, 1)
            yield exps.format("gate", "weight"), t[:, 0::2]
            yield exps.format("up", "weight"), t[:, 1::2]
        elif name.endswith("experts.gate_up_proj_bias"):
            yield exps.format("gate", "bias"), w[..., 0::2]
            yield exps.format("up", "bias"), w[..., 1::2]
        elif name.endswith("experts.down_proj"):
            yield exps.format("down", "weight"), w.transpose(0, 2, 1)
        elif name.endswith("experts.down_proj_bias"):
            yield exps.format("down", "bias"), w
        return
    if model_type == "llama4_text":
        w = w.transpose(0, 2, 1)  # both tensors are [E, in, out] in memory
    if name.endswith("experts.gate_up_proj"):
        f = w.shape[1] // 2
        yield exps.format("gate", "weight"), w[:, :f]
        yield exps.format("up", "weight"), w[:, f:]
    elif name.endswith("experts.down_proj"):
        yield exps.format("down", "weight"), w


def _deepseek2_tensor(name: str, w: np.ndarray, cfg: Any) -> tuple[str, list[tuple[str, np.ndarray]]]:
    """DeepseekV2Model.modify_tensors: the router bias is renamed to `.bias`, and kv_b is split
    per head into k_b (each head's [d_n, r_kv] block transposed) and v_b [H, d_v, r_kv]."""
    if name.endswith("e_score_correction_bias"):
        return name.replace("e_score_correction_bias", "e_score_correction.bias"), []
    if not name.endswith("kv_b_proj.weight"):
        return name, []
    h, dn, dv = int(cfg.num_attention_heads), int(cfg.qk_nope_head_dim), int(cfg.v_head_dim)
    kv_b = w.reshape(h, dn + dv, w.shape[-1])
    k_b = np.ascontiguousarray(kv_b[:, :dn].transpose(0, 2, 1))
    v_b = np.ascontiguousarray(kv_b[:, dn:])
    return name, [(name.replace("kv_b_proj", "k_b_proj"), k_b), (name.replace("kv_b_proj", "v_b_proj"), v_b)]


def convert_hf_model(hf_model: Any, path: Path, tokens: Sequence[str], qtype: Any = None) -> Path:
    """Convert a tiny `transformers` model of a supported family to GGUF, as llama.cpp would."""
    import gguf

    cfg = hf_model.config
    arch, rule = CONVERTERS[cfg.model_type]
    n_layers = int(cfg.num_hidden_layers)
    tmap = gguf.get_tensor_name_map(next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch), n_layers)
    tensors: dict[str, np.ndarray] = {}
    for name, t in hf_model.state_dict().items():
        w = t.detach().float().numpy()
        name = name.removeprefix(_STRIPPED.get(arch, "\0"))
        for memory, disk in _ON_DISK:
            name = name.replace(memory, disk)
        # base.py filter_tensors: the routers' selection bias maps as `exp_probs_b.bias`
        name = name.replace("e_score_correction_bias", "e_score_correction.bias")
        if arch == "deepseek2":
            name, split = _deepseek2_tensor(name, w, cfg)
            if split:
                tensors.update((tmap.get_name(n, try_suffixes=(".weight",)), a) for n, a in split)
                continue
        if ".experts." in name and not name.endswith((".weight", ".bias")):
            tensors.update(_stacked_experts(name, w, cfg.model_type))
            continue
        if name.endswith(".sinks"):  # gpt_oss.py names the sinks as a weight
            name += ".weight"
        new = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            if any(s in name for s in _SKIPPED):
                continue
            raise ValueError(f"no GGUF name for {name}")
        tensors[new] = rule(name, w, cfg)
    n_head, n_kv = _heads(cfg)
    metadata: dict[str, Any] = {
        f"{arch}.embedding_length": int(cfg.hidden_size),
        f"{arch}.block_count": n_layers,
        f"{arch}.attention.head_count": n_head,
        f"{arch}.attention.head_count_kv": n_kv,
    }
    if getattr(cfg, "head_dim", None):
        metadata[f"{arch}.attention.key_length"] = int(cfg.head_dim)
    n_experts = next((getattr(cfg, k) for k in _EXPERT_COUNT_KEYS if getattr(cfg, k, None)), None)
    if n_experts:
        metadata[f"{arch}.expert_count"] = int(n_experts)
    # glm.py: block_count counts the NextN (MTP) blocks appended after the model's layers
    nextn = int(getattr(cfg, "num_nextn_predict_layers", 0) or 0) if arch == "glm4moe" else 0
    if nextn:
        metadata[f"{arch}.block_count"] = n_layers + nextn
        metadata[f"{arch}.nextn_predict_layers"] = nextn
        for name in [n for n in tensors if n.startswith("blk.0.")]:  # an MTP block: read by no table role
            tensors[f"blk.{n_layers}." + name.removeprefix("blk.0.")] = tensors[name]
        hidden = int(cfg.hidden_size)
        tensors[f"blk.{n_layers}.nextn.eh_proj.weight"] = np.zeros((hidden, 2 * hidden), dtype=np.float32)
    if arch == "deepseek2":  # DeepseekV2Model.set_gguf_parameters: MLA written as MQA with one KV head
        r, dr = int(cfg.kv_lora_rank), int(cfg.qk_rope_head_dim)
        metadata.update(
            {
                f"{arch}.attention.head_count_kv": 1,
                f"{arch}.attention.key_length": r + dr,
                f"{arch}.attention.value_length": r,
                f"{arch}.attention.kv_lora_rank": r,
                f"{arch}.leading_dense_block_count": int(cfg.first_k_dense_replace),
            }
        )
    return write_gguf(path, arch, tensors, metadata=metadata, tokens=tokens, qtype=qtype)
