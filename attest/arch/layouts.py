"""Fused-QKV layouts: how each kind of fused [q; k; v] weight is cut into canonical q, k and v.

A table of layout -> `FusedQKV`, so a new layout is a new entry, not a new
branch: `split` cuts a fused `[rows, d]` weight given the head counts, and
`widths` guesses the q and KV widths from the row count alone (used only
when the metadata has no head count).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from attest.arch.spec import QKVLayout
from attest.errors import InputError

Tensor = torch.Tensor
QKV = tuple[Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class FusedQKV:
    """One fused layout: how to split it, and how to read q/KV widths off its row count."""

    split: Callable[[Tensor, int, int, int], QKV]  # (fused, n_heads, n_kv_heads, head_dim) -> q, k, v
    widths: Callable[[int, int], tuple[int, int]]  # (fused rows, hidden) -> (q rows, k rows)


def _split_contiguous(fused: Tensor, n_heads: int, n_kv: int, dh: int) -> QKV:
    qd, kd = n_heads * dh, n_kv * dh
    return fused[:qd], fused[qd : qd + kd], fused[qd + kd :]


def _split_per_head(fused: Tensor, n_heads: int, n_kv: int, dh: int) -> QKV:
    if n_kv != n_heads:
        raise InputError("per-head interleaved QKV with grouped KV heads is not a known layout")
    d = fused.shape[1]
    w = fused.reshape(n_heads, 3, dh, d)
    return w[:, 0].reshape(-1, d), w[:, 1].reshape(-1, d), w[:, 2].reshape(-1, d)


def _split_grouped(fused: Tensor, n_heads: int, n_kv: int, dh: int) -> QKV:
    d = fused.shape[1]
    g = n_heads // n_kv
    w = fused.reshape(n_kv, g + 2, dh, d)
    return w[:, :g].reshape(-1, d), w[:, g].reshape(-1, d), w[:, g + 1].reshape(-1, d)


def _widths_q_is_hidden(rows: int, hidden: int) -> tuple[int, int]:
    """[q; k; v] in H*dh + 2*Hkv*dh rows, with q taken to be `hidden` wide (H*dh = d holds for every such family)."""
    if rows > hidden and (rows - hidden) % 2 == 0:
        return hidden, (rows - hidden) // 2
    return _widths_thirds(rows, hidden)


def _widths_thirds(rows: int, hidden: int) -> tuple[int, int]:
    """q, k and v equally wide (plain multi-head attention)."""
    return rows // 3, rows // 3


FUSED_QKV: dict[QKVLayout, FusedQKV] = {
    QKVLayout.CONTIGUOUS: FusedQKV(_split_contiguous, _widths_q_is_hidden),
    QKVLayout.PER_HEAD: FusedQKV(_split_per_head, _widths_thirds),
    QKVLayout.GROUPED: FusedQKV(_split_grouped, _widths_q_is_hidden),
}


def split_qkv(fused: Tensor, layout: QKVLayout, n_heads: int, n_kv: int, dh: int) -> QKV:
    """Split a fused QKV weight [rows, d] into canonical q, k, v."""
    entry = FUSED_QKV.get(layout)
    if entry is None:
        raise InputError(f"unknown QKV layout {layout}")
    return entry.split(fused, n_heads, n_kv, dh)


def fused_widths(layout: QKVLayout, rows: int, hidden: int) -> tuple[int, int]:
    """The q and k widths of a fused tensor of `rows` rows, guessed without a head count."""
    entry = FUSED_QKV.get(layout)
    return (entry.widths if entry is not None else _widths_thirds)(rows, hidden)
