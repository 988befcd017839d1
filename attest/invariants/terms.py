"""The invariant terms as tensor algebra (docs/method.md).

Every function returns an n×n matrix for n probe tokens.  Norm gains are
folded into the probe rows (X ⊙ γ), which is the same as folding them into the
weights that read them and costs n·d instead of f·d.  Each product picks the
cheaper association by FLOP count.

Grouped-query attention: the score sum Σ_h Q_h K_{g(h)}ᵀ equals
(Σ_{h∈group} Q_h) K_groupᵀ, so query heads are summed within their KV group
before the product; V/O likewise.  This is exact and divides the cost by the
group size.
"""

from __future__ import annotations

import math

import torch

from attest.arch.assembly import Attention

Tensor = torch.Tensor


class FlopCounter:
    """Multiply-add work done by `mm`, for the benchmarks' GFLOP/s figures."""

    def __init__(self) -> None:
        self.flops = 0

    def reset(self) -> int:
        done, self.flops = self.flops, 0
        return done


FLOPS = FlopCounter()


def mm(a: Tensor, b: Tensor, dtype: torch.dtype) -> Tensor:
    """a @ b with inputs in `dtype` (accumulation is fp32 inside torch's CPU kernels)."""
    FLOPS.flops += 2 * a.shape[0] * a.shape[1] * b.shape[1]
    return torch.matmul(a if a.dtype == dtype else a.to(dtype), b if b.dtype == dtype else b.to(dtype))


def _head_gain(gain: Tensor, n_heads: int, dh: int) -> Tensor:
    """A q/k norm gain as [heads, dh, 1]: one [dh] gain for every head, or a projection-wide [heads*dh] one."""
    g = gain.float()
    return g.reshape(1, dh, 1) if g.numel() == dh else g.reshape(n_heads, dh, 1)


def grouped_queries(attn: Attention) -> Tensor:
    """Query weights summed within each KV group: [Hkv*dh, d]."""
    h, hkv, dh = attn.n_heads, attn.n_kv_heads, attn.head_dim
    if h == hkv and attn.q_norm is None:
        return attn.q
    q = attn.q.float().reshape(h, dh, -1)
    if attn.q_norm is not None:
        q = q * _head_gain(attn.q_norm, h, dh)
    return q.reshape(hkv, h // hkv, dh, -1).sum(1).reshape(hkv * dh, -1)


def keys(attn: Attention) -> Tensor:
    k = attn.k.float()
    if attn.k_norm is None:
        return k
    dh = attn.head_dim
    hkv = k.shape[0] // dh
    return (k.reshape(hkv, dh, k.shape[1]) * _head_gain(attn.k_norm, hkv, dh)).reshape(k.shape)


def grouped_outputs(attn: Attention) -> Tensor:
    """Output-projection columns summed within each KV group: [d, Hkv*dh]."""
    h, hkv, dh = attn.n_heads, attn.n_kv_heads, attn.head_dim
    if h == hkv:
        return attn.o
    o = attn.o.float()
    return o.reshape(o.shape[0], hkv, h // hkv, dh).sum(2).reshape(o.shape[0], hkv * dh)


def qk(x_in: Tensor, attn: Attention, dtype: torch.dtype) -> Tensor:
    q = mm(x_in, grouped_queries(attn).t(), dtype)
    k = mm(x_in, keys(attn).t(), dtype)
    return mm(q, k.t(), dtype)


def vo(x_in: Tensor, x_out: Tensor, attn: Attention, dtype: torch.dtype) -> Tensor:
    v = mm(x_in, attn.v.t(), dtype)
    o = mm(x_out, grouped_outputs(attn), dtype)
    return mm(v, o.t(), dtype)


def bilinear(x_left: Tensor, w_left: Tensor, w_right: Tensor, x_right: Tensor, dtype: torch.dtype) -> Tensor:
    """(x_left · w_leftᵀ)(x_right · w_right)ᵀ for w_left [f, d] and w_right [d, f]."""
    n, d = x_left.shape
    f = w_left.shape[0]
    via_neurons = 2 * n * f * d + n * n * f
    via_hidden = d * d * f + n * d * d + n * n * d
    if via_neurons <= via_hidden:
        a = mm(x_left, w_left.t(), dtype)
        b = mm(x_right, w_right, dtype)
        return mm(a, b.t(), dtype)
    m = mm(w_left.t(), w_right.t(), dtype)
    return mm(mm(x_left, m, dtype), x_right.t(), dtype)


def weighted_gram(x: Tensor, w: Tensor, c: Tensor, dtype: torch.dtype) -> Tensor:
    """(x·wᵀ) diag(c) (x·wᵀ)ᵀ for w [f, d]."""
    n, d = x.shape
    f = w.shape[0]
    via_neurons = n * f * d + n * n * f
    via_hidden = d * d * f + n * d * d + n * n * d
    if via_neurons <= via_hidden:
        a = mm(x, w.t(), dtype)
        return mm(a * c.to(a.dtype), a.t(), dtype)
    m = mm(w.t(), w * c[:, None].to(w.dtype), dtype)
    return mm(mm(x, m, dtype), x.t(), dtype)


def neuron_coupling(up: Tensor, down: Tensor, gain_in: Tensor | None, gain_out: Tensor | None, center: bool) -> Tensor:
    """c_i = û_i · d_i, the per-neuron invariant of a gated FFN.

    Rescaling neuron i's up row by s and its down column by 1/s (a free
    symmetry of gated FFNs) leaves c_i unchanged, and c_i is rotation-invariant
    once gains are folded, so c weights the gate term without breaking either.
    """
    # d_i as rows: one contiguous transpose instead of a strided product.  Always a
    # copy: `down` may be a view of the mapped checkpoint, which is never written.
    d_rows = down.t().to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    if gain_out is not None:
        d_rows.mul_(gain_out.float())
    if center:
        # LayerNorm reads only the centred stream: the reachable part of û is û·C.
        d_rows.sub_(d_rows.mean(1, keepdim=True))
    if gain_in is not None:
        d_rows.mul_(gain_in.float())
    return (up.float() * d_rows).sum(1)


def standardise(
    m: Tensor, drop_diagonal: bool = False, out_dtype: torch.dtype = torch.float16, rows: int = 1024
) -> Tensor | None:
    """Zero mean, unit (population) std over the n² entries, as `out_dtype`; None if constant.

    With `drop_diagonal`, statistics use only the off-diagonal entries, the
    diagonal is set to 0 and the rest scaled by sqrt(n²/(n²-n)), so that
    mean(z_a * z_b) over all n² entries is still exactly the Pearson
    correlation of the off-diagonal entries.  The diagonal of a Gram-like term
    holds squared norms, which correlate between unrelated models.

    Works in blocks of `rows` rows with float64 sums, so a 4096×4096 bf16
    matrix never gets a float32 (64 MB) or float64 copy.  float16 keeps ~3
    significant digits of values that are ~N(0, 1); similarities built from
    them move by < 1e-5.
    """
    n_rows = m.shape[0]
    total = 0.0
    total_sq = 0.0
    for a in range(0, n_rows, rows):
        block = m[a : a + rows].float().reshape(-1)
        total += float(block.sum(dtype=torch.float64))
        total_sq += float(torch.dot(block, block))
        del block
    count = m.numel()
    square = m.dim() == 2 and m.shape[0] == m.shape[1] and n_rows > 1
    drop = drop_diagonal and square
    if drop:
        diag = m.diagonal().double()
        total -= float(diag.sum())
        total_sq -= float(diag.pow(2).sum())
        count -= n_rows
    mean = total / count
    var = total_sq / count - mean * mean
    if not math.isfinite(var) or var <= 1e-300 * max(1.0, mean * mean):
        return None
    scale = (1.0 / math.sqrt(var)) * ((m.numel() / count) ** 0.5 if drop else 1.0)
    out = torch.empty(m.shape, dtype=out_dtype)
    for a in range(0, n_rows, rows):
        out[a : a + rows] = m[a : a + rows].float().sub_(mean).mul_(scale)
    if drop:
        out.fill_diagonal_(0.0)
    return out
