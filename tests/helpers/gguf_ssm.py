"""Write tiny state-space / hybrid GGUF files the way llama.cpp's converter does.

A small re-implementation of three converter classes, following their rules
(llama.cpp `conversion/mamba.py` Mamba2Model, `conversion/falcon_h1.py`
FalconH1Model, `conversion/qwen.py` Qwen3NextModel; names from gguf-py's
`tensor_mapping.py`, used here through `gguf.get_tensor_name_map`):

- Mamba2Model: `dt_bias` renamed to `dt_proj.bias` (-> `ssm_dt.bias`), conv1d
  kernels squeezed [C, 1, K] -> [C, K], A_log -> A = -exp(A_log) and D
  reshaped [H] -> [H, 1], the gated norm's gain reshaped [C] -> [G, C/G];
  header `ssm.{conv_kernel, inner_size, state_size, time_step_rank (= C / head
  size), group_count}`, `attention.head_count` 0 and `feed_forward_length` 0.
- FalconH1Model: Mamba2Model's rules, then every muP multiplier folded into
  the weights (embedding, lm_head, q/k/v, o, ffn gate/down, ssm out, ssm in with
  its five per-segment factors); the real head counts in the header.
- Qwen3NextModel: A_log -> -exp(A_log), dt_bias -> `ssm_dt.bias`, conv1d
  squeezed, every `*norm.weight` but the DeltaNet's gated norm written as 1+γ,
  `in_proj_qkvz` regrouped from per-key-head [q, k, v, z] to [q (all key heads);
  k; v] as `attn_qkv` and z as `attn_gate`, experts stacked (Qwen2MoeModel);
  header `ssm.{conv_kernel, state_size (= key head size), group_count (= key
  heads), time_step_rank (= value heads), inner_size (= value heads x size)}`.

Conv kernels and the reshaped vectors stay F32 (llama.cpp never quantizes them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from helpers.gguf_fixtures import quantize, write_gguf

# GGUF architecture per model_type
SSM_ARCHS = {"mamba2": "mamba2", "falcon_h1": "falcon-h1", "qwen3_next": "qwen3next"}
# Name suffixes that the converter keeps in F32 whatever the file type.
_KEEP_F32 = ("ssm_conv1d.weight", "ssm_a", "ssm_d", "ssm_norm.weight")


def _mamba2_rule(name: str, w: np.ndarray, n_group: int, d_inner: int) -> np.ndarray:
    """Mamba2Model.modify_tensors on one (already renamed) tensor."""
    if name.endswith("conv1d.weight"):
        w = w.squeeze()
    elif name.endswith((".A_log", ".D")):
        w = w.reshape(*w.shape, 1)
    elif name.endswith("norm.weight") and (".mixer." in name or ".mamba." in name):
        w = w.reshape(n_group, d_inner // n_group)
    if name.endswith(".A_log"):
        w = -np.exp(w)
    return w


def _falcon_h1_rule(name: str, w: np.ndarray, h: dict[str, Any]) -> np.ndarray:
    """FalconH1Model.modify_tensors: the multipliers, in the converter's order of tests on the HF name."""
    if "down_proj" in name:
        return w * h["mlp_multipliers"][1]
    if "gate_proj" in name:
        return w * h["mlp_multipliers"][0]
    if "k_proj" in name:
        return w * h["key_multiplier"] * h["attention_in_multiplier"]
    if "q_proj" in name or "v_proj" in name:
        return w * h["attention_in_multiplier"]
    if "o_proj" in name:
        return w * h["attention_out_multiplier"]
    if "out_proj" in name:
        return w * h["ssm_out_multiplier"]
    if "in_proj" in name:
        w = w * h["ssm_in_multiplier"]
        c, gs = h["mamba_d_ssm"], h["mamba_n_groups"] * h["mamba_d_state"]
        bounds = [0, c, 2 * c, 2 * c + gs, 2 * c + 2 * gs, w.shape[0]]
        for j, m in enumerate(h["ssm_multipliers"]):
            w[bounds[j] : bounds[j + 1]] *= m
        return w
    if "lm_head" in name:
        return w * h["lm_head_multiplier"]
    if "embed_tokens" in name:
        return w * h["embedding_multiplier"]
    return w


def _qwen3_next_qkvz(w: np.ndarray, h: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Qwen3NextModel: per key head [q, k, v, z] -> attn_qkv [q; k; v] (each over all key heads), attn_gate z."""
    dk, dv = h["linear_key_head_dim"], h["linear_value_head_dim"]
    hk, hv = h["linear_num_key_heads"], h["linear_num_value_heads"]
    d = h["hidden_size"]
    split = [dk, dk, hv // hk * dv, hv // hk * dv]
    t = w.T.reshape(d, hk, sum(split))  # (n_embd, head_count, [q+k+v+z])
    q, k, v, z = np.split(t, np.cumsum(split)[:-1], axis=-1)
    qkv = np.concatenate([p.reshape(d, -1) for p in (q, k, v)], axis=-1).T
    return np.ascontiguousarray(qkv), np.ascontiguousarray(z.reshape(d, -1).T)


def _stacked_experts(name: str, w: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Qwen2MoeModel: transformers 5's gate_up [E, 2f, d] split in halves, down [E, d, f] as is."""
    bid = name.split(".")[2]
    if name.endswith("experts.gate_up_proj"):
        f = w.shape[1] // 2
        return [(f"blk.{bid}.ffn_gate_exps.weight", w[:, :f]), (f"blk.{bid}.ffn_up_exps.weight", w[:, f:])]
    return [(f"blk.{bid}.ffn_down_exps.weight", w)]


def convert_ssm_model(
    hf_model: Any, path: Path, tokens: Sequence[str], qtype: Any = None, *, legacy_qkvz: bool = False
) -> Path:
    """Convert a tiny `transformers` Mamba-2, Falcon-H1 or Qwen3-Next model to GGUF, as llama.cpp would.

    `legacy_qkvz`: Qwen3-Next as converters before the attn_qkv / attn_gate split wrote it
    (in_proj_qkvz unchanged as `ssm_in`, which llama.cpp's loader still reads).
    """
    import gguf

    cfg = hf_model.config
    h = cfg.to_dict()
    mtype = cfg.model_type
    arch = SSM_ARCHS[mtype]
    n_layers = int(cfg.num_hidden_layers)
    tmap = gguf.get_tensor_name_map(next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch), n_layers)
    out: dict[str, np.ndarray] = {}
    for name, t in hf_model.state_dict().items():
        w = t.detach().float().numpy().copy()
        if name.endswith(".dt_bias"):
            name = name.removesuffix(".dt_bias") + ".dt_proj.bias"
        if mtype == "qwen3_next":
            if name.endswith(".A_log"):
                w = -np.exp(w)
            elif "conv1d" in name:
                w = w.squeeze()
            elif name.endswith("norm.weight") and not name.endswith("linear_attn.norm.weight"):
                w = w + 1
            if "in_proj_qkvz.weight" in name and not legacy_qkvz:
                bid = name.split(".")[2]
                out[f"blk.{bid}.attn_qkv.weight"], out[f"blk.{bid}.attn_gate.weight"] = _qwen3_next_qkvz(w, h)
                continue
            if ".experts." in name and not name.endswith(".weight"):
                out.update(_stacked_experts(name, w))
                continue
        else:
            n_group = int(h["mamba_n_groups"] if mtype == "falcon_h1" else h["n_groups"])
            d_inner = int(h["mamba_d_ssm"] if mtype == "falcon_h1" else h["num_heads"] * h["head_dim"])
            w = _mamba2_rule(name, w, n_group, d_inner)
            if mtype == "falcon_h1":
                w = _falcon_h1_rule(name, w, h)
        new = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ValueError(f"no GGUF name for {name}")
        out[new] = w
    meta = _metadata(arch, h, n_layers)
    tensors = {n: a for n, a in out.items() if not n.endswith(_KEEP_F32)}
    raw = {n: quantize(a, gguf.GGMLQuantizationType.F32) for n, a in out.items() if n.endswith(_KEEP_F32)}
    return write_gguf(path, arch, tensors, metadata=meta, tokens=tokens, qtype=qtype, raw=raw)


def _attention_header(arch: str, h: dict[str, Any]) -> dict[str, Any]:
    """The attention and context keys the converter writes for a hybrid model (Falcon-H1, Qwen3-Next)."""
    return {
        f"{arch}.context_length": int(h["max_position_embeddings"]),
        f"{arch}.feed_forward_length": int(h["intermediate_size"]),
        f"{arch}.attention.head_count": int(h["num_attention_heads"]),
        f"{arch}.attention.head_count_kv": int(h["num_key_value_heads"]),
        f"{arch}.attention.key_length": int(h["head_dim"]),
        f"{arch}.attention.value_length": int(h["head_dim"]),
    }


def _metadata(arch: str, h: dict[str, Any], n_layers: int) -> dict[str, Any]:
    meta: dict[str, Any] = {f"{arch}.embedding_length": int(h["hidden_size"]), f"{arch}.block_count": n_layers}
    ssm = f"{arch}.ssm."
    if arch == "mamba2":
        d_inner = int(h["num_heads"] * h["head_dim"])
        meta.update(
            {
                f"{arch}.context_length": 2**20,
                f"{arch}.feed_forward_length": 0,
                f"{arch}.attention.head_count": 0,  # "unused, but seemingly required when loading"
                ssm + "conv_kernel": int(h["conv_kernel"]),
                ssm + "inner_size": d_inner,
                ssm + "state_size": int(h["state_size"]),
                ssm + "time_step_rank": d_inner // int(h["head_dim"]),
                ssm + "group_count": int(h["n_groups"]),
                f"{arch}.attention.layer_norm_rms_epsilon": float(h["layer_norm_epsilon"]),
            }
        )
    elif arch == "falcon-h1":
        d_inner = int(h["mamba_d_ssm"])
        meta.update(
            {
                **_attention_header(arch, h),
                ssm + "conv_kernel": int(h["mamba_d_conv"]),
                ssm + "inner_size": d_inner,
                ssm + "state_size": int(h["mamba_d_state"]),
                ssm + "time_step_rank": d_inner // int(h["mamba_d_head"]),
                ssm + "group_count": int(h["mamba_n_groups"]),
                f"{arch}.attention.layer_norm_rms_epsilon": float(h["rms_norm_eps"]),
            }
        )
    else:  # qwen3next: Qwen2MoeModel's header, then the DeltaNet's sizes
        meta.update(
            {
                **_attention_header(arch, h),
                f"{arch}.expert_count": int(h["num_experts"]),
                f"{arch}.expert_used_count": int(h["num_experts_per_tok"]),
                f"{arch}.expert_feed_forward_length": int(h["moe_intermediate_size"]),
                f"{arch}.expert_shared_feed_forward_length": int(h["shared_expert_intermediate_size"]),
                ssm + "conv_kernel": int(h["linear_conv_kernel_dim"]),
                ssm + "state_size": int(h["linear_key_head_dim"]),
                ssm + "group_count": int(h["linear_num_key_heads"]),
                ssm + "time_step_rank": int(h["linear_num_value_heads"]),
                ssm + "inner_size": int(h["linear_value_head_dim"] * h["linear_num_value_heads"]),
                f"{arch}.full_attention_interval": int(h.get("full_attention_interval") or 4),
                f"{arch}.attention.layer_norm_rms_epsilon": float(h["rms_norm_eps"]),
            }
        )
    return meta
