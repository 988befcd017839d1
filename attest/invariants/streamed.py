"""The layer terms accumulated block by block over their inner axis (docs/scale.md, "Constant memory").

Each term of docs/method.md is a sum over an axis that no symmetry mixes
with the probe side: neurons for up/gate/ffn, KV groups for qk/vo, experts
(concatenated along the neuron axis) for MoE.  For a neuron block a:b,

    up  = Σ_blocks (X_f · W_up[a:b]ᵀ) (X_o · W_down[:, a:b])ᵀ
    gate = Σ_blocks (X_f · W_gate[a:b]ᵀ) diag(c[a:b]) (X_f · W_gate[a:b]ᵀ)ᵀ

and for a block of KV groups the grouped query rows, key rows, value rows
and grouped output columns of those groups only.  Blocks are read as views of
the memory-mapped checkpoint and their pages dropped after use
(`attest.sources.pages`), so the resident set holds one block whatever the
layer's size.  The products are the whole-matrix ones of `terms.py` cut
along the summed axis: same FLOPs, and each block's products are still
large GEMMs.  The left-hand projections that share a probe (q, k and v;
up and gate) are one GEMM over their stacked rows, which keeps narrow
GQA/KV and small-expert products from running at a fraction of the
machine's matmul rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attest.arch.assembly import Attention, Mlp
from attest.invariants import blocks as B
from attest.invariants import terms as T
from attest.sources import pages

Tensor = torch.Tensor


#: Bytes the kernel maps around each faulting page of a file mapping ("fault-around", 64 KiB by
#: default on Linux), plus the page itself: a strided read maps this much per row it touches.
FAULT_AROUND = 68 << 10


def _on(t: Tensor, device: torch.device | None) -> Tensor:
    return t if device is None or t.device == device else t.to(device)


def _read(view: Tensor, device: torch.device | None) -> Tensor:
    """A block of a weight, on `device`; a strided (column) block is first copied out in row chunks.

    Touching one segment of a row maps up to 64 KiB around it, so reading a
    column block of a wide matrix at once would map most of the matrix; chunk
    by chunk, with each chunk's pages dropped, the resident set holds one chunk.
    """
    if view.is_contiguous() or view.dim() != 2 or not pages.is_mapped(view):
        return _on(view, device)
    rows = max(1, B.budget() // (FAULT_AROUND + view.shape[1] * view.element_size()))
    out = torch.empty(view.shape, dtype=view.dtype)
    for r0, r1 in B.spans(view.shape[0], rows):
        out[r0:r1] = view[r0:r1]
        pages.release(view[r0:r1])
    return _on(out, device)


def _head_gains(gain: Tensor | None, n_heads: int, dh: int) -> Tensor | None:
    """A q/k norm gain as [heads, dh, 1] (a shared [dh] gain repeated), or None."""
    if gain is None:
        return None
    return T._head_gain(gain, n_heads, dh).expand(n_heads, dh, 1)


def _grouped_rows(
    q: Tensor, groups: int, grp: int, dh: int, gains: Tensor | None, device: torch.device | None
) -> Tensor:
    """Σ over the `grp` query heads of each of `groups` KV groups, rows [groups*dh, d]; gains [groups*grp, dh, 1]."""
    d = q.shape[1]
    if grp == 1 and gains is None:
        return _on(q, device)
    heads = q.reshape(groups, grp, dh, d)
    acc = torch.zeros(groups, dh, d, dtype=torch.float32, device=device)
    g = None if gains is None else _on(gains.reshape(groups, grp, dh, 1), device)
    for j in range(grp):
        part = _on(heads[:, j], device).float()
        acc += part if g is None else part * g[:, j]
    return acc.reshape(groups * dh, d)


def _grouped_cols(o: Tensor, groups: int, grp: int, dh: int, device: torch.device | None) -> Tensor:
    """Σ over the query heads of each KV group of output columns: [d, groups*dh]."""
    if grp == 1:
        return _on(o, device)
    d = o.shape[0]
    heads = o.reshape(d, groups, grp, dh)
    acc = torch.zeros(d, groups, dh, dtype=torch.float32, device=device)
    for j in range(grp):
        acc += _on(heads[:, :, j], device).float()
    return acc.reshape(d, groups * dh)


#: Weight rows from which a projection is a large enough GEMM on its own.  Narrower parts
#: (GQA's k and v, small experts) are stacked into one GEMM; wider ones are not, since the
#: stacking copy of their weights cost more than it gained (bench/RESULTS-perf-amx.md).
WIDE_ROWS = 2048


def _stacked_left(x: Tensor, parts: Sequence[Tensor], dtype: torch.dtype) -> list[Tensor]:
    """x · [p₁; p₂; …]ᵀ as one GEMM, split back per part (one GEMM per part when they are wide)."""
    if len(parts) == 1 or min(p.shape[0] for p in parts) >= WIDE_ROWS:
        return [T.mm(x, p.t(), dtype) for p in parts]
    rows = torch.cat([p.to(dtype) for p in parts], 0)
    out = T.mm(x, rows.t(), dtype)
    return list(out.split([p.shape[0] for p in parts], dim=1))


def attention_terms(
    x_attn: Tensor,
    x_attn_out: Tensor,
    attn: Attention,
    dtype: torch.dtype,
    want_qk: bool,
    want_vo: bool,
    device: torch.device | None = None,
) -> dict[str, Tensor]:
    """qk and vo accumulated over blocks of KV groups (float32 n×n each)."""
    h, hkv, dh = attn.n_heads, attn.n_kv_heads, attn.head_dim
    grp = h // hkv
    d = attn.q.shape[1]
    q_gains = _head_gains(attn.q_norm, h, dh)
    k_gains = _head_gains(attn.k_norm, hkv, dh)
    qk: Tensor | None = None
    vo: Tensor | None = None
    # One group: its summed query rows in float32 plus its heads' pages (2 bytes each) and k, v, o.
    per = B.items_per_block(dh * d * (4 + 2 * grp) + 3 * dh * d * 2)
    for g0, g1 in B.spans(hkv, per):
        gb = g1 - g0
        qr = slice(g0 * grp * dh, g1 * grp * dh)
        kr = slice(g0 * dh, g1 * dh)
        q_blk, k_blk, v_blk = _read(attn.q[qr], None), _read(attn.k[kr], None), _read(attn.v[kr], None)
        left: list[Tensor] = []
        if want_qk:
            qg = _grouped_rows(q_blk, gb, grp, dh, None if q_gains is None else q_gains[g0 * grp : g1 * grp], device)
            kg = _on(k_blk, device)
            if k_gains is not None:
                kg = (kg.float().reshape(gb, dh, d) * _on(k_gains[g0:g1], device)).reshape(gb * dh, d)
            left += [qg, kg]
        if want_vo:
            left.append(_on(v_blk, device))
        products = _stacked_left(x_attn, left, dtype)
        if want_qk:
            qk = T.accumulate(qk, products[0], products[1].t(), dtype)
        if want_vo:
            o_blk = attn.o[:, qr]
            ox = T.mm(x_attn_out, _grouped_cols(_read(o_blk, device), gb, grp, dh, device), dtype)
            vo = T.accumulate(vo, products[-1], ox.t(), dtype)
            pages.release(o_blk)
        del products, left
        pages.release(q_blk, k_blk, v_blk)
    out: dict[str, Tensor] = {}
    if qk is not None:
        out["qk"] = qk
    if vo is not None:
        out["vo"] = vo
    return out


def _neuron_blocks(pieces: Sequence[Mlp], per_block: int) -> list[list[tuple[Mlp, int, int]]]:
    """Neuron ranges of the pieces (dense FFN, experts, shared experts) cut or joined into blocks.

    Only pieces narrower than WIDE_ROWS are joined with others (their products
    would be small GEMMs); a wide piece's blocks are views of its own weights,
    so no copy is made of them.
    """
    out: list[list[tuple[Mlp, int, int]]] = []
    pending: list[tuple[Mlp, int, int]] = []
    count = 0
    for p in pieces:
        f = p.up.shape[0]
        if f >= WIDE_ROWS and pending:
            out.append(pending)
            pending, count = [], 0
        a = 0
        while a < f:
            take = min(f - a, per_block - count)
            pending.append((p, a, a + take))
            count += take
            a += take
            if count == per_block or (f >= WIDE_ROWS and a == f):
                out.append(pending)
                pending, count = [], 0
    if pending:
        out.append(pending)
    return out


def _join(parts: list[Tensor], dim: int, device: torch.device | None) -> Tensor:
    return _read(parts[0], device) if len(parts) == 1 else torch.cat([_read(p, device) for p in parts], dim)


def ffn_terms(
    x_ffn: Tensor,
    x_ffn_out: Tensor,
    pieces: Sequence[Mlp],
    dtype: torch.dtype,
    wanted: set[str],
    huref: bool,
    gain_in: Tensor | None,
    gain_out: Tensor | None,
    center: bool,
    device: torch.device | None = None,
) -> dict[str, Tensor]:
    """up and gate (or HuRef's single ffn term) accumulated over neuron blocks (float32 n×n each).

    `pieces` are summed as if concatenated along the neuron axis (the experts
    of an MoE layer with its shared experts): Σ_e of a term = the term of the stack.
    """
    n, d = x_ffn.shape
    dev = x_ffn.device
    has_gate = all(p.gate is not None for p in pieces)
    want_up = ("ffn" if huref else "up") in wanted
    want_gate = (not huref) and "gate" in wanted and has_gate
    if not (want_up or want_gate):
        return {}
    f_total = sum(p.up.shape[0] for p in pieces)
    # The association of terms.bilinear / terms.weighted_gram, decided on the whole layer's width.
    up_by_neurons = 2 * n * f_total * d + n * n * f_total <= d * d * f_total + n * d * d + n * n * d
    gate_by_neurons = n * f_total * d + n * n * f_total <= d * d * f_total + n * d * d + n * n * d
    # None until the first block's product: `terms.accumulate` allocates it then.
    up_acc: Tensor | None = None
    gate_acc: Tensor | None = None
    g_in = None if gain_in is None else _on(gain_in, device)
    g_out = None if gain_out is None else _on(gain_out, device)
    for block in _neuron_blocks(pieces, B.items_per_block(d * 4)):
        up = _join([p.up[a:b] for p, a, b in block], 0, device)
        down = _join([p.down[:, a:b] for p, a, b in block], 1, device)
        gate = _join([p.gate[a:b] for p, a, b in block], 0, device) if has_gate else None  # type: ignore[index]
        if huref:
            w_in = up.to(dtype) * gate.to(dtype) if gate is not None else up
            if up_by_neurons:
                a_up = T.mm(x_ffn, w_in.t(), dtype)
                up_acc = T.accumulate(up_acc, a_up, T.mm(x_ffn_out, down, dtype).t(), dtype)
            else:
                up_acc = T.accumulate(up_acc, w_in.t(), down.t(), dtype)
        else:
            left: list[Tensor] = []
            if want_up and up_by_neurons:
                left.append(up)
            if want_gate and gate_by_neurons:
                left.append(gate)  # type: ignore[arg-type]
            products = _stacked_left(x_ffn, left, dtype) if left else []
            if want_up:
                if up_by_neurons:
                    up_acc = T.accumulate(up_acc, products[0], T.mm(x_ffn_out, down, dtype).t(), dtype)
                else:
                    up_acc = T.accumulate(up_acc, up.t(), down.t(), dtype)
            if want_gate:
                assert gate is not None
                c = T.neuron_coupling(up, down, g_in, g_out, center)
                if gate_by_neurons:
                    a_g = products[-1]
                    gate_acc = T.accumulate(gate_acc, a_g * c.to(a_g.dtype), a_g.t(), dtype)
                else:
                    gate_acc = T.accumulate(gate_acc, gate.t(), gate * c[:, None].to(gate.dtype), dtype)
            del products, left
        del up, down, gate
        for p, a, b in block:
            pages.release(p.up[a:b], p.down[:, a:b], None if p.gate is None else p.gate[a:b])
    if want_up and up_acc is None:  # no neurons at all
        up_acc = torch.zeros((n, n) if up_by_neurons else (d, d), dtype=torch.float32, device=dev)
    if want_gate and gate_acc is None:
        gate_acc = torch.zeros((n, n) if gate_by_neurons else (d, d), dtype=torch.float32, device=dev)
    out: dict[str, Tensor] = {}
    if up_acc is not None:
        out["ffn" if huref else "up"] = (
            up_acc if up_by_neurons else T.accumulate(None, T.mm(x_ffn, up_acc, dtype), x_ffn_out.t(), dtype)
        )
    if gate_acc is not None:
        out["gate"] = (
            gate_acc if gate_by_neurons else T.accumulate(None, T.mm(x_ffn, gate_acc, dtype), x_ffn.t(), dtype)
        )
    return out
