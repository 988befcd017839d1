"""Invariant terms of a state-space (Mamba-2) mixer (docs/method.md, "State-space and linear-attention mixers").

The mixer's free symmetries, beyond the residual stream's rotation (gains folded):

* permuting channels within a head, heads within a group, and groups (with
  their B/C rows, conv kernels, norm gains, dt/A/D and out_proj columns);
* permuting state indices within a group, in B and C alike;
* rescaling a conv channel's in_proj row by s and its conv kernel by 1/s
  (the conv is linear and comes before the SiLU);
* rescaling a gated-norm gain by s and its out_proj column by 1/s.

Every term below is a sum over those permuted indices of products whose
factors are fixed by the rescalings: in_proj rows are read through their
conv kernel's current-token tap, out_proj columns through the norm gain.  So
each term is unchanged by every symmetry, exactly (tests/test_ssm.py).

    ssm_xo  (X W̃_xᵀ)(X W̃_out)ᵀ            x channel -> the out_proj column that reads it (like `up`)
    ssm_z   (X W_zᵀ) diag(c) (X W_zᵀ)ᵀ   z gate weighted by c_p = w̃_x,p · w̃_out,p (like `gate`)
    ssm_bc  (X W̃_Cᵀ)(X W̃_Bᵀ)ᵀ            state read-out vs write-in, summed over groups (like `qk`)
    ssm_dt  (X W_dtᵀ)(X W_dtᵀ)ᵀ          per-head step sizes (like `router`)

with W̃_x = diag(tap_x) W_x (likewise B, C) and W̃_out = W_out diag(w).
Not made into a term: A_log, D and dt_bias (per-head constants with no
token dependence: nothing to correlate over the probe), and the conv's earlier
taps (they act on other tokens, which a one-token probe does not see).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from attest.arch.mixers import SsmMixer
from attest.formats import MIXER_TERMS
from attest.invariants import terms as T

Tensor = torch.Tensor

__all__ = ["MIXER_TERMS", "folded", "mixer_terms"]


def folded(mixer: SsmMixer) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x, B, C rows through their conv taps and out_proj through the norm gain: the rescaling-free weights."""
    tx, tb, tc = mixer.taps()
    out = mixer.out.float()
    if mixer.norm is not None:
        out = out * mixer.norm.float()[None, :]
    return mixer.x.float() * tx[:, None], mixer.b.float() * tb[:, None], mixer.c.float() * tc[:, None], out


def mixer_terms(
    mixer: SsmMixer, x_in: Tensor, x_out: Tensor, gain_in: Tensor | None, wanted: set[str], dtype: torch.dtype
) -> Iterator[tuple[str, Tensor]]:
    """Raw n×n matrices of the wanted mixer terms; `x_in` carries the mixer's input gain, `x_out` the output side."""
    wx, wb, wc, wout = folded(mixer)
    if "ssm_xo" in wanted:
        yield "ssm_xo", T.bilinear(x_in, wx, wout, x_out, dtype)
    if "ssm_z" in wanted:
        c = T.neuron_coupling(wx, wout, gain_in, None, False)
        yield "ssm_z", T.weighted_gram(x_in, mixer.z, c, dtype)
    if "ssm_bc" in wanted:
        yield "ssm_bc", T.mm(T.mm(x_in, wc.t(), dtype), T.mm(x_in, wb.t(), dtype).t(), dtype)
    if "ssm_dt" in wanted:
        r = T.mm(x_in, mixer.dt.t(), dtype).float()
        yield "ssm_dt", T.mm(r, r.t(), torch.float32)
