"""The qk and vo terms of multi-head latent attention (docs/method.md, "MLA").

MLA's queries, keys and values pass through small RMSNorms inside the
attention (on the q latent and on the kv latent), so they are not linear in
the probe rows and the weight products of `attest.invariants.terms` do not
apply.  They can still be computed exactly per probe row: each norm divides a
token's latent by its rms, a positive scalar per token that depends only on
W·x, which a rotation of the residual stream (gains folded) leaves unchanged.
So each row is taken through the model's own path at position 0 (where RoPE is
the identity):

    X_a   = RMSNorm_eps_in(X) ⊙ γ_attn          (the attention's input, as the model sees it)
    Q     = RMSNorm_eps(X_a W_qaᵀ) ⊙ γ_qa · W_qbᵀ   (or X_a W_qᵀ)       -> per head [q_nope; q_pe]
    C     = X_a W_kvaᵀ = [C_kv ; K_pe]
    C_n   = RMSNorm_eps(C_kv) ⊙ γ_kv
    K_nope,h = C_n W_kb,hᵀ,   V_h = C_n W_vb,hᵀ

    qk = Σ_h Q_nope,h K_nope,hᵀ + (Σ_h Q_pe,h) K_peᵀ
    vo = Σ_h V_h (X_o W_o,h)ᵀ

The head sums are formed inside the products: Σ_h Q_nope,h W_kb,h is one
[n, r_kv] matrix (the latent is narrower than H·d_n), and the shared key K_pe
lets the query heads' rope parts be summed first, as grouped-query attention
sums its query heads.  Without gain folding (the paper preset) the gains are
left out, as the other terms leave them out.
"""

from __future__ import annotations

import torch

from attest.arch.mla import MlaAttention
from attest.invariants.terms import mm

Tensor = torch.Tensor


def _rms_rows(x: Tensor, eps: float) -> Tensor:
    """Each row divided by its rms (the RMSNorm without its gain), in float32."""
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + eps)


def _gained(x: Tensor, gain: Tensor | None, fold: bool) -> Tensor:
    return x * gain.float() if (fold and gain is not None) else x


def _chain(x: Tensor, a: Tensor, b: Tensor, dtype: torch.dtype) -> Tensor:
    """x·a·b by whichever association costs fewer multiply-adds (x [n, p], a [p, q], b [q, r])."""
    n, p = x.shape
    q, r = b.shape
    if n * p * q + n * q * r <= p * q * r + n * p * r:
        return mm(mm(x, a, dtype), b, dtype)
    return mm(x, mm(a, b, dtype), dtype)


class MlaStates:
    """One layer's per-row MLA states for the probe rows: queries and the normalised kv latent."""

    def __init__(self, x: Tensor, attn_gain: Tensor | None, attn: MlaAttention, fold: bool, dtype: torch.dtype):
        self.attn, self.dtype = attn, dtype
        x_a = _gained(_rms_rows(x, attn.input_eps), attn_gain, fold)
        if attn.q is not None:
            q = mm(x_a, attn.q.t(), dtype)
        else:
            assert attn.q_a is not None and attn.q_b is not None
            q_lat = _gained(_rms_rows(mm(x_a, attn.q_a.t(), dtype), attn.latent_eps), attn.q_a_norm, fold)
            q = mm(q_lat, attn.q_b.t(), dtype)
        h, dn, dr = attn.n_heads, attn.nope_dim, attn.rope_dim
        q = q.float().reshape(-1, h, dn + dr)
        self.q_nope = q[:, :, :dn].reshape(-1, h * dn)  # [n, H·d_n]
        self.q_pe_sum = q[:, :, dn:].sum(1)  # [n, d_r]: Σ_h q_pe,h
        c = mm(x_a, attn.kv_a.t(), dtype).float()
        self.k_pe = c[:, attn.kv_rank :]  # [n, d_r], shared by every head
        self.c_kv = _gained(_rms_rows(c[:, : attn.kv_rank], attn.latent_eps), attn.kv_a_norm, fold)  # [n, r_kv]


def qk(states: MlaStates) -> Tensor:
    """Σ_h Q_nope,h K_nope,hᵀ + (Σ_h Q_pe,h) K_peᵀ, with K_nope,h = C_n W_kb,hᵀ formed through the latent."""
    s, dtype = states, states.dtype
    # Σ_h Q_nope,h W_kb,h: [n, H·d_n] · [H·d_n, r_kv]
    absorbed = mm(s.q_nope, s.attn.k_b, dtype)
    return mm(absorbed, s.c_kv.t(), dtype).float() + mm(s.q_pe_sum, s.k_pe.t(), dtype).float()


def vo(states: MlaStates, x_out: Tensor) -> Tensor:
    """Σ_h V_h (X_o W_o,h)ᵀ = C_n · (W_o W_vb)ᵀ · X_oᵀ, associated by cost."""
    s = states
    # (X_o W_o) W_vb: [n, d] · [d, H·d_v] · [H·d_v, r_kv]
    out_latent = _chain(x_out, s.attn.o, s.attn.v_b, s.dtype)  # [n, r_kv]
    return mm(s.c_kv, out_latent.t(), s.dtype).float()
