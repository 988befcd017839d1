"""Attention kinds: how each kind of token mixer is read into its canonical part.

A registry, `ATTENTION_KINDS`, from `AttentionKind` (the table's `attention`
field) to an `AttentionReader`; `attest.arch.assembly` and `attest.arch.dims`
dispatch through it and never branch on the kind. Today there is one kind,
standard multi-head attention (MHA, GQA and MQA alike, q/k/v separate or fused)
and multi-head latent attention (MLA, DeepSeek; attest.arch.mla).

To add a kind: add a member to `attest.arch.spec.AttentionKind`, write its
`read` (and `widths`, if its q/KV widths can be read off layer 0 when the
metadata has no head count), register it below, and set `attention=` on the
families that use it. The part it returns is what the invariant terms read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from attest.arch.layouts import fused_widths, split_qkv
from attest.arch.mla import read_mla
from attest.arch.names import TensorNames
from attest.arch.parts import Attention
from attest.arch.spec import ArchSpec, AttentionKind, NormKind, QKNormScope
from attest.errors import InputError
from attest.sources.base import WeightSource

Tensor = torch.Tensor


class LayerTensors(Protocol):
    """What a reader may use to read one layer (the `LayerAssembler` provides it)."""

    spec: ArchSpec
    names: TensorNames
    dims: Any  # attest.arch.dims.Dims
    source: WeightSource

    config: Any  # config.json as a mapping, or None

    @property
    def root(self) -> object: ...

    def weight(self, name: str) -> Tensor: ...

    def gain(self, name: str | None, width: int | None = None) -> Tensor | None: ...

    def check(self, t: Tensor, shape: tuple[int, ...], what: str) -> Tensor: ...

    def optional_gain(self, i: int, rel: Sequence[str], width: int | None = None) -> Tensor | None: ...


@dataclass(frozen=True)
class AttentionReader:
    """One attention kind: how to read layer i's part, and (optionally) its q/KV widths from shapes alone."""

    read: Callable[[LayerTensors, int], Any]  # -> the canonical part (attest.arch.parts.Attention for STANDARD)
    # (source, spec, names, hidden) -> (q rows, KV rows) of layer 0; used only when the metadata has no head count
    widths: Callable[[WeightSource, ArchSpec, TensorNames, int], tuple[int, int]] | None = None


def _read_standard(t: LayerTensors, i: int) -> Attention:
    d = t.dims
    qd, kd = d.n_heads * d.head_dim, d.n_kv_heads * d.head_dim
    spec, names = t.spec, t.names
    q_name = names.find_in_layer(i, spec.q) if spec.q else None
    if q_name:
        q = t.weight(q_name)
        if spec.q_gated:  # [H, (query, output gate), dh]: the gate half is read by no term (a warning says so)
            q = t.check(q, (2 * qd, d.hidden), f"layer {i} gated q").reshape(d.n_heads, 2, d.head_dim, -1)
            q = q[:, 0].reshape(qd, d.hidden)
        k = t.weight(names.in_layer(i, spec.k, "k"))
        v = t.weight(names.in_layer(i, spec.v, "v"))
    else:
        fused = t.weight(names.in_layer(i, spec.qkv, "fused qkv"))
        t.check(fused, (qd + 2 * kd, d.hidden), f"layer {i} fused qkv")
        q, k, v = split_qkv(fused, spec.qkv_layout, d.n_heads, d.n_kv_heads, d.head_dim)
    o = t.weight(names.in_layer(i, spec.o, "attention output"))
    t.check(q, (qd, d.hidden), f"layer {i} q")
    t.check(k, (kd, d.hidden), f"layer {i} k")
    t.check(v, (kd, d.hidden), f"layer {i} v")
    t.check(o, (d.hidden, qd), f"layer {i} attention output")
    q_norm = _qk_gain(t, i, spec.q_norm, d.n_heads, d.head_dim)
    k_norm = _qk_gain(t, i, spec.k_norm, d.n_kv_heads, d.head_dim)
    if spec.qk_norm_kind is NormKind.LAYER:
        # A LayerNorm over each head subtracts the head's mean first: a linear map of the
        # projection's rows, folded into them (the norm's bias, like every bias, enters no term).
        q = _centre_heads(q, d.n_heads, d.head_dim) if q_norm is not None else q
        k = _centre_heads(k, d.n_kv_heads, d.head_dim) if k_norm is not None else k
    return Attention(q, k, v, o, d.n_heads, d.n_kv_heads, d.head_dim, q_norm, k_norm)


# q/k norm scope -> (stored shape, read width) for n heads of size dh
_QK_GAIN_SHAPES: dict[QKNormScope, Callable[[int, int], tuple[tuple[int, ...], int]]] = {
    QKNormScope.HEAD: lambda n, dh: ((dh,), dh),
    QKNormScope.PROJECTION: lambda n, dh: ((n * dh,), n * dh),
    QKNormScope.HEAD_GAINS: lambda n, dh: ((n, dh), n * dh),
}


def _qk_gain(t: LayerTensors, i: int, rel: Sequence[str], n: int, dh: int) -> Tensor | None:
    stored, width = _QK_GAIN_SHAPES[t.spec.qk_norm_scope](n, dh)
    if len(stored) == 1 or not rel:
        return t.optional_gain(i, rel, width)
    name = t.names.find_in_layer(i, rel)
    if name is None:
        return None
    g = t.check(t.source.get(name).float(), stored, f"q/k norm gain '{name}'").reshape(width)
    return g + t.spec.norm_gain_offset if t.spec.norm_gain_offset else g


def _centre_heads(w: Tensor, n: int, dh: int) -> Tensor:
    rows = w.float().reshape(n, dh, -1)
    return (rows - rows.mean(1, keepdim=True)).reshape(w.shape)


def _standard_widths(source: WeightSource, spec: ArchSpec, names: TensorNames, hidden: int) -> tuple[int, int]:
    """Widths of q and of k (= v) in layer 0."""
    axis = 0 if not spec.transposed else 1
    name = names.find_in_layer(0, spec.q) if spec.q else None
    if name:
        k_name = names.in_layer(0, spec.k, "k")
        return source.shape(name)[axis], source.shape(k_name)[axis]
    fused = names.in_layer(0, spec.qkv, "qkv")
    return fused_widths(spec.qkv_layout, source.shape(fused)[axis], hidden)


def _read_mla(t: LayerTensors, i: int) -> Any:
    if t.spec.mla is None:
        raise InputError(f"{t.root}: attention kind 'mla' needs the table's MLA names")
    return read_mla(t, t.spec.mla, i, t.config)


# MLA has no `widths`: without a head count, dims reads it from the latent shapes (attest.arch.mla_dims).
ATTENTION_KINDS: dict[AttentionKind, AttentionReader] = {
    AttentionKind.STANDARD: AttentionReader(_read_standard, _standard_widths),
    AttentionKind.MLA: AttentionReader(_read_mla),
}


def attention_reader(kind: AttentionKind, root: object) -> AttentionReader:
    entry = ATTENTION_KINDS.get(kind)
    if entry is None:
        raise InputError(f"{root}: no reader for attention kind '{kind.value}'")
    return entry
