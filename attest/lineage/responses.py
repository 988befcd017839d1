"""FFN neuron responses over the probe rows: the units whose identity the lineage test follows.

An FFN's hidden neurons are a privileged basis: the element-wise nonlinearity
leaves only their permutation (and, for up/down, a per-neuron rescaling) free.
Neuron i's response to the probe rows is a column of X_f·Wᵀ, with the FFN
norm's gain folded into the rows as the invariant terms fold it
(`attest.invariants.compute`), so a rotation or permutation of the residual
stream, and moving scale between a gain and the weights that read it, leave
every response unchanged.  Rescaling a neuron's up row (and its down column
inversely) scales its response by a constant, which the test's correlations
ignore.

Two channels per neuron, so that a neuron can be found twice independently:

* gated FFN (SwiGLU/GeGLU): gate response X_f·gate_iᵀ and up response X_f·up_iᵀ;
* plain FFN: up response X_f·up_iᵀ and the down column's response X_o·down_i
  (X_o carries a post-FFN norm's gain when the family has one);
* mixture of experts: every expert's (and the shared experts') neurons pooled
  into one neuron axis, like the invariant terms' stacking.  Pooling needs no
  expert matching, is unchanged by an expert permutation (which only permutes
  the pool), and the test's chance rate is estimated from the data whatever the
  pool size; matching experts first would add a step whose errors the null
  would have to account for;
* state-space mixer without an FFN (Mamba-2; attention kind: ssm): the d_inner
  channels are a privileged basis too (the output is gated element-wise by
  SiLU(z), the x channel passes a per-channel conv and SiLU), so channel p is
  found by its z response X_a·z_pᵀ and its x response X_a·x_pᵀ, X_a carrying
  the mixer's input-norm gain.  Rescaling x_p against its conv kernel scales
  its response by a constant; permuting channels (within heads, heads, groups)
  permutes both responses alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attest.arch.canonical import Layer
from attest.arch.parts import Attention
from attest.invariants.compute import _stack_mlps
from attest.invariants.terms import keys, mm

Tensor = torch.Tensor

GATED_CHANNELS = ("gate", "up")
PLAIN_CHANNELS = ("up", "down")
MIXER_CHANNELS = ("z", "x")  # attention kind: ssm


@dataclass
class NeuronResponses:
    """Two response matrices [tokens, neurons] of one layer's FFN, and their channel names."""

    first: Tensor
    second: Tensor
    channels: tuple[str, str]

    @property
    def neurons(self) -> int:
        return int(self.first.shape[1])


def _rows(x: Tensor, gain: Tensor | None) -> Tensor:
    return x * gain.float() if gain is not None else x


def layer_responses(
    layer: Layer, x: Tensor, dtype: torch.dtype = torch.float32, neurons: Tensor | None = None
) -> NeuronResponses | None:
    """Responses of a layer's FFN neurons (all, or the `neurons` indices) to the probe rows x [n, d].

    None when the layer has no FFN.
    """
    mlps = layer.experts + layer.shared_experts if layer.experts else ([layer.mlp] if layer.mlp else [])
    if not mlps:
        return mixer_responses(layer, x, dtype, neurons)  # attention kind: ssm
    ffn = _stack_mlps(mlps)
    x_in = _rows(x, layer.ffn_norm)
    if ffn.gate is not None:
        gate, up = ffn.gate, ffn.up
        if neurons is not None:
            gate, up = gate[neurons], up[neurons]
        return NeuronResponses(mm(x_in, gate.t(), dtype).float(), mm(x_in, up.t(), dtype).float(), GATED_CHANNELS)
    up, down = ffn.up, ffn.down
    if neurons is not None:
        up, down = up[neurons], down[:, neurons]
    x_out = _rows(x, layer.ffn_out_norm)
    return NeuronResponses(mm(x_in, up.t(), dtype).float(), mm(x_out, down, dtype).float(), PLAIN_CHANNELS)


def mixer_responses(
    layer: Layer, x: Tensor, dtype: torch.dtype = torch.float32, channels: Tensor | None = None
) -> NeuronResponses | None:
    """z and x responses of a mixer's channels (all, or the `channels` indices); None without a mixer."""
    mixer = layer.mixer
    if mixer is None:
        return None
    x_in = _rows(x, layer.attn_norm)
    z, xr = (mixer.z, mixer.x) if channels is None else (mixer.z[channels], mixer.x[channels])
    return NeuronResponses(mm(x_in, z.t(), dtype).float(), mm(x_in, xr.t(), dtype).float(), MIXER_CHANNELS)


def ffn_width(layer: Layer) -> int:
    """Number of pooled FFN neurons of a layer (its mixer channels without an FFN; 0 with neither)."""
    mlps = layer.experts + layer.shared_experts if layer.experts else ([layer.mlp] if layer.mlp else [])
    if not mlps and layer.mixer is not None:  # attention kind: ssm
        return layer.mixer.channels
    return sum(int(m.up.shape[0]) for m in mlps)


def _queries(attn: Attention) -> Tensor:
    """Query weights as [H, dh, d], with a q-norm gain folded in (as `grouped_queries` folds it)."""
    h, dh = attn.n_heads, attn.head_dim
    q = attn.q.float().reshape(h, dh, -1)
    if attn.q_norm is not None:
        g = attn.q_norm.float()
        q = q * (g.reshape(1, dh, 1) if g.numel() == dh else g.reshape(h, dh, 1))
    return q


def head_responses(layer: Layer, x: Tensor) -> tuple[Tensor, Tensor] | None:
    """The (qk, vo) responses of every query head of the layer to the probe rows x [m, d]: two [m², H].

    Entry i·m + j of a column is the head's score of token i against token j
    (qk), or what it writes for token j when attending to token i (vo).  None
    when the layer has no standard attention (a mixer layer, or MLA, whose
    heads share a latent projection and are left to the FFN channel).  See
    `attest.lineage.heads` for why these survive every disguise.
    """
    attn = layer.attn
    if not isinstance(attn, Attention):
        return None
    h, hkv, dh = attn.n_heads, attn.n_kv_heads, attn.head_dim
    m = int(x.shape[0])
    x_in = _rows(x.float(), layer.attn_norm)
    x_out = _rows(x.float(), layer.attn_out_norm)
    group = torch.arange(h) // (h // hkv)  # each query head's KV group
    q = torch.einsum("nd,hed->hne", x_in, _queries(attn))  # [H, m, dh]
    k = torch.einsum("nd,ged->gne", x_in, keys(attn).float().reshape(hkv, dh, -1))[group]
    v = torch.einsum("nd,ged->gne", x_in, attn.v.float().reshape(hkv, dh, -1))[group]
    o = torch.einsum("nd,dhe->hne", x_out, attn.o.float().reshape(-1, h, dh))  # [H, m, dh]
    qk = (q @ k.transpose(1, 2)).reshape(h, m * m).t().contiguous()
    vo = (v @ o.transpose(1, 2)).reshape(h, m * m).t().contiguous()
    return qk, vo
