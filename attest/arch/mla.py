"""Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2): one layer's MLA tensors, read and shape-checked.

MLA replaces q/k/v by low-rank paths through small RMSNorms:

    q    = W_qb · RMSNorm_qa(W_qa · x)            (or q = W_q · x without a q rank, DeepSeek-V2-Lite)
    c    = W_kva · x = [c_kv (r_kv); k_pe (d_r)]  (k_pe is one key shared by every head)
    kv   = W_kvb · RMSNorm_kv(c_kv)               (per head [k_nope (d_n); v (d_v)])
    out  = W_o · [v_1 … v_H]                      (each query head splits into q_nope (d_n), q_pe (d_r))

Every width is read off the tensors' shapes (so a GGUF file without those keys
works) and cross-checked against config.json when it names them; a mismatch is
an input error naming the tensor.  `kv_b` is split here into `k_b` [H·d_n, r_kv]
and `v_b` [H·d_v, r_kv], the form the invariant terms read (and the one newer
llama.cpp files store directly).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from attest.arch.names import TensorNames
from attest.arch.spec import MlaNames
from attest.documents.model_docs import config_value
from attest.errors import InputError

if TYPE_CHECKING:  # attest.arch.dims reads attention kinds, which read this module
    from attest.arch.dims import Dims

Tensor = torch.Tensor


@dataclass
class MlaAttention:
    """One layer's latent attention; linear weights are [out, in]."""

    kv_a: Tensor  # [r_kv + d_r, d]: rows [c_kv; k_pe]
    kv_a_norm: Tensor  # [r_kv]
    k_b: Tensor  # [H·d_n, r_kv]
    v_b: Tensor  # [H·d_v, r_kv]
    o: Tensor  # [d, H·d_v]
    n_heads: int
    nope_dim: int  # d_n
    rope_dim: int  # d_r
    v_dim: int  # d_v
    kv_rank: int  # r_kv
    input_eps: float  # the pre-attention RMSNorm's epsilon
    latent_eps: float  # the q_a / kv_a RMSNorms' epsilon
    q: Tensor | None = None  # [H·(d_n + d_r), d] when there is no q rank
    q_a: Tensor | None = None  # [r_q, d]
    q_a_norm: Tensor | None = None  # [r_q]
    q_b: Tensor | None = None  # [H·(d_n + d_r), r_q]


class _Reader(Protocol):
    """What the layer assembler offers to the MLA reader."""

    names: TensorNames
    dims: Dims

    @property
    def root(self) -> object: ...

    def weight(self, name: str) -> Tensor: ...

    def gain(self, name: str | None, width: int | None = None) -> Tensor | None: ...

    def check(self, t: Tensor, shape: tuple[int, ...], what: str) -> Tensor: ...


# config.json keys of the MLA widths (DeepSeek's names; Kimi-K2 keeps them)
_CONFIG_WIDTHS = (
    ("kv_lora_rank", "kv_rank"),
    ("qk_rope_head_dim", "rope_dim"),
    ("qk_nope_head_dim", "nope_dim"),
    ("v_head_dim", "v_dim"),
)


def _per_head(rows: int, n_heads: int, minus: int, what: str, root: object) -> int:
    """A per-head width from a [H·(w + minus), ...] row count; an input error unless it is whole and positive."""
    if rows % n_heads != 0 or rows // n_heads <= minus:
        raise InputError(f"{root}: {what} has {rows} rows, which do not split into {n_heads} heads")
    return rows // n_heads - minus


def _eps(config: Mapping[str, Any] | None, keys: tuple[str, ...], default: float, root: object) -> float:
    value = config_value(config, keys)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= float(value) < 1:
        raise InputError(f"{root}: config RMSNorm epsilon must be a number in [0, 1), got {value!r}")
    return float(value)


def read_mla(reader: _Reader, names: MlaNames, i: int, config: Mapping[str, Any] | None) -> MlaAttention:
    """Layer i's MLA tensors, with every width derived from the shapes and checked."""
    tn, d, root = reader.names, reader.dims, reader.root
    h = d.n_heads

    def need(role: tuple[str, ...], what: str) -> Tensor:
        return reader.weight(tn.in_layer(i, role, what))

    kv_a = need(names.kv_a, "MLA kv_a")
    norm_name = tn.in_layer(i, names.kv_a_norm, "MLA kv_a norm")
    norm_shape = tuple(reader.weight(norm_name).shape)
    kv_rank = int(norm_shape[0]) if len(norm_shape) == 1 else -1
    if kv_rank <= 0 or kv_a.dim() != 2 or kv_a.shape[0] <= kv_rank:
        raise InputError(f"{root}: layer {i} MLA kv_a {tuple(kv_a.shape)} and its norm do not fit together")
    rope = int(kv_a.shape[0]) - kv_rank
    reader.check(kv_a, (kv_rank + rope, d.hidden), f"layer {i} MLA kv_a")
    kv_a_norm = reader.gain(norm_name, kv_rank)
    assert kv_a_norm is not None
    attn_q: dict[str, Tensor | None] = {}
    q_name = tn.find_in_layer(i, names.q) if names.q else None
    if q_name:
        q = reader.weight(q_name)
        nope = _per_head(int(q.shape[0]), h, rope, f"layer {i} MLA q", root)
        reader.check(q, (h * (nope + rope), d.hidden), f"layer {i} MLA q")
        attn_q["q"] = q
    else:
        q_a = need(names.q_a, "MLA q_a (or q)")
        q_rank = int(q_a.shape[0])
        reader.check(q_a, (q_rank, d.hidden), f"layer {i} MLA q_a")
        q_b = need(names.q_b, "MLA q_b")
        nope = _per_head(int(q_b.shape[0]), h, rope, f"layer {i} MLA q_b", root)
        reader.check(q_b, (h * (nope + rope), q_rank), f"layer {i} MLA q_b")
        attn_q.update(q_a=q_a, q_b=q_b, q_a_norm=reader.gain(tn.in_layer(i, names.q_a_norm, "MLA q_a norm"), q_rank))
        _match_config(config, "q_lora_rank", q_rank, f"layer {i} MLA q_a", root)
    kv_b_name = tn.find_in_layer(i, names.kv_b) if names.kv_b else None
    if kv_b_name:
        kv_b = reader.weight(kv_b_name)
        v_dim = _per_head(int(kv_b.shape[0]), h, nope, f"layer {i} MLA kv_b", root)
        reader.check(kv_b, (h * (nope + v_dim), kv_rank), f"layer {i} MLA kv_b")
        per_head = kv_b.reshape(h, nope + v_dim, kv_rank)
        k_b = per_head[:, :nope].reshape(h * nope, kv_rank)
        v_b = per_head[:, nope:].reshape(h * v_dim, kv_rank)
    else:
        k_b = need(names.k_b, "MLA kv_b (or k_b)")
        v_b = need(names.v_b, "MLA v_b")
        if names.k_b_per_head_transposed:
            reader.check(k_b, (h, kv_rank, nope), f"layer {i} MLA k_b")
            k_b = k_b.transpose(1, 2).reshape(h * nope, kv_rank)
            if v_b.dim() != 3 or v_b.shape[0] != h or v_b.shape[2] != kv_rank:
                raise InputError(
                    f"{root}: layer {i} MLA v_b has shape {tuple(v_b.shape)}, expected [{h}, d_v, {kv_rank}]"
                )
            v_b = v_b.reshape(-1, kv_rank)
        reader.check(k_b, (h * nope, kv_rank), f"layer {i} MLA k_b")
        v_dim = _per_head(int(v_b.shape[0]), h, 0, f"layer {i} MLA v_b", root)
        reader.check(v_b, (h * v_dim, kv_rank), f"layer {i} MLA v_b")
    o = need(names.o, "attention output")
    reader.check(o, (d.hidden, h * v_dim), f"layer {i} attention output")
    widths = {"kv_rank": kv_rank, "rope_dim": rope, "nope_dim": nope, "v_dim": v_dim}
    for key, ours in _CONFIG_WIDTHS:
        _match_config(config, key, widths[ours], f"layer {i} MLA tensors", root)
    return MlaAttention(
        kv_a=kv_a,
        kv_a_norm=kv_a_norm,
        k_b=k_b,
        v_b=v_b,
        o=o,
        n_heads=h,
        nope_dim=nope,
        rope_dim=rope,
        v_dim=v_dim,
        kv_rank=kv_rank,
        input_eps=_eps(config, names.input_eps, names.latent_eps, root),
        latent_eps=names.latent_eps,
        **attn_q,
    )


def _match_config(config: Mapping[str, Any] | None, key: str, found: int, what: str, root: object) -> None:
    """config.json's value for `key` must be what the tensors say (an absent or null key checks nothing)."""
    declared = config_value(config, (key,))
    if declared is not None and declared != found:
        raise InputError(f"{root}: config {key}={declared!r} but the {what} imply {found}")
