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


#: float32 bytes of one chunk of the elementwise passes (`standardise`,
#: `accumulate`, `neuron_coupling`): small enough to stay in a core's L2
#: cache, so each pass reads its operands from memory once (whole-matrix passes ran 4-15x slower
#: on a 4096x4096 matrix, bench/RESULTS-perf-amx.md).
CHUNK_BYTES = 1 << 20


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


#: Largest product `accumulate` keeps a scratch buffer for between calls (bytes).  A fresh
#: n×n buffer costs a page fault per 4 kB on its first write, which on a 4096×4096 bf16
#: product took longer than the product itself (12 ms against 3.5 ms into a reused buffer).
SCRATCH_KEEP_BYTES = 64 << 20

SCRATCH_KEPT = 2

_scratch: dict[tuple[tuple[int, ...], torch.dtype, torch.device], Tensor] = {}


def _product_buffer(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    key = (shape, dtype, device)
    buf = _scratch.get(key)
    if buf is None:
        buf = torch.empty(shape, dtype=dtype, device=device)
        if buf.numel() * buf.element_size() <= SCRATCH_KEEP_BYTES:
            while len(_scratch) >= SCRATCH_KEPT:  # oldest first: a run uses one or two product shapes
                del _scratch[next(iter(_scratch))]
            _scratch[key] = buf
    return buf


def accumulate(acc: Tensor | None, a: Tensor, b: Tensor, dtype: torch.dtype) -> Tensor:
    """acc + a @ b in float32 (acc None: a new float32 tensor), with inputs in `dtype`.

    The product goes into a reused scratch buffer and is added to `acc` chunk
    by chunk, so each chunk of it is still in cache when it is added (a
    whole-matrix mixed-precision add ran 4x slower).  Same sums as
    `acc += mm(a, b)`, in the same order.
    """
    FLOPS.flops += 2 * a.shape[0] * a.shape[1] * b.shape[1]
    a = a if a.dtype == dtype else a.to(dtype)
    b = b if b.dtype == dtype else b.to(dtype)
    shape = (a.shape[0], b.shape[1])
    if acc is not None and dtype == torch.float32:
        return acc.addmm_(a, b)
    prod = _product_buffer(shape, dtype, a.device)
    torch.matmul(a, b, out=prod)
    if acc is None:
        acc = torch.empty(shape, dtype=torch.float32, device=a.device)
        if a.device.type != "cpu":
            return acc.copy_(prod)
        for r0, r1 in _chunks(prod):
            acc[r0:r1].copy_(prod[r0:r1])
        return acc
    if a.device.type != "cpu":
        return acc.add_(prod)
    for r0, r1 in _chunks(prod):
        acc[r0:r1].add_(prod[r0:r1])
    return acc


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
    f, d = up.shape
    g_out = None if gain_out is None else gain_out.float()
    g_in = None if gain_in is None else gain_in.float()
    out = torch.empty(f, dtype=torch.float32, device=up.device)
    # Neuron by neuron chunk, each chunk's float32 rows small enough to stay in cache: one
    # read of the weights instead of whole-block float32 copies (same sums, row by row).
    # a quarter chunk: the strided reads of `down` touch a page per row (256 kB ran 1.4x faster than 1 MB)
    step = max(1, CHUNK_BYTES // (16 * d))
    for a in range(0, f, step):
        b = min(f, a + step)
        # d_i as rows, kept in down's layout: a contiguous transpose ran 7x slower than the
        # strided product.  Always a copy: `down` may be a view of the mapped checkpoint,
        # which is never written.
        d_rows = down[:, a:b].t().to(torch.float32, copy=True)
        if g_out is not None:
            d_rows.mul_(g_out)
        if center:
            # LayerNorm reads only the centred stream: the reachable part of û is û·C.
            d_rows.sub_(d_rows.mean(1, keepdim=True))
        if g_in is not None:
            d_rows.mul_(g_in)
        out[a:b] = (up[a:b].float() * d_rows).sum(1)
    return out


def _chunks(m: Tensor) -> list[tuple[int, int]]:
    """Row ranges of about CHUNK_BYTES of float32 each (`m` has at least one row and entry)."""
    rows = max(1, CHUNK_BYTES // (4 * (m.numel() // m.shape[0])))
    return [(a, min(m.shape[0], a + rows)) for a in range(0, m.shape[0], rows)]


def standardise(m: Tensor, drop_diagonal: bool = False, out_dtype: torch.dtype = torch.float16) -> Tensor | None:
    """Zero mean, unit (population) std over the n² entries, as `out_dtype`; None if constant.

    With `drop_diagonal`, statistics use only the off-diagonal entries, the
    diagonal is set to 0 and the rest scaled by sqrt(n²/(n²-n)), so that
    mean(z_a * z_b) over all n² entries is still exactly the Pearson
    correlation of the off-diagonal entries.  The diagonal of a Gram-like term
    holds squared norms, which correlate between unrelated models.

    `m` (float32, bf16 or fp16) is read, never written.  Both passes go chunk
    by chunk through one float32 scratch chunk that stays in cache: the first
    sums each chunk (and its squares about a shift) in float32 and the chunks
    in float64; the second writes (m - mean) * scale straight into the output.
    float16 keeps ~3 significant digits of values that are ~N(0, 1);
    similarities built from them move by < 1e-5.
    """
    if m.dim() == 0 or m.numel() == 0:
        return None
    m = m.contiguous()
    spans = _chunks(m)
    scratch = torch.empty(m[: spans[0][1]].shape, dtype=torch.float32)

    def chunk(a: int, b: int) -> Tensor:
        part = m[a:b]
        if part.dtype == torch.float32:
            return part
        s = scratch[: b - a]
        s.copy_(part)
        return s

    n_rows = m.shape[0]
    # Squares are summed around `shift` (the first chunk's mean), not 0: float32 sums of
    # x² lose the variance when |mean| >> std (0.8% off at mean/std = 20 over 490k entries).
    shift = float(chunk(*spans[0]).mean())
    total = 0.0
    total_sq = 0.0
    for a, b in spans:
        c = chunk(a, b)
        total += float(c.sum())
        centred = torch.sub(c, shift, out=scratch[: b - a]).reshape(-1)
        total_sq += float(torch.dot(centred, centred))
    count = m.numel()
    square = m.dim() == 2 and m.shape[0] == m.shape[1] and n_rows > 1
    drop = drop_diagonal and square
    if drop:
        diag = m.diagonal().double()
        total -= float(diag.sum())
        total_sq -= float((diag - shift).pow(2).sum())
        count -= n_rows
    mean = total / count
    var = total_sq / count - (mean - shift) ** 2
    if not math.isfinite(var) or var <= 1e-300 * max(1.0, mean * mean):
        return None
    scale = (1.0 / math.sqrt(var)) * ((m.numel() / count) ** 0.5 if drop else 1.0)
    out = torch.empty(m.shape, dtype=out_dtype)
    for a, b in spans:
        part = m[a:b]
        s = scratch[: b - a]
        if part.dtype == torch.float32:
            torch.sub(part, mean, out=s)
        else:
            s.copy_(part).sub_(mean)
        out[a:b] = s.mul_(scale)
    if drop:
        out.fill_diagonal_(0.0)
    return out
