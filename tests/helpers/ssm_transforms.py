"""Function-preserving transforms of a real `transformers` Mamba-2 mixer (and of a pure Mamba-2 model).

These are the mixer's symmetries that docs/method.md ("State-space and
linear-attention mixers") lists, applied to the module's own parameters:

- `permute_mixer`: groups permuted, heads within each group, channels within
  each head (z, x, conv, gated-norm gain, out_proj columns, dt/A/D), and state
  indices within each group (B and C rows and conv channels alike);
- `rescale_mixer`: every conv channel's in_proj row times s and its kernel
  divided by s; every gated-norm gain times t and its out_proj column divided by t;
- `rotate_mamba2`: the residual stream of a whole Mamba-2 model rotated by a
  random orthogonal Q after the block and final norm gains were folded into
  the weights that read them.

The tests check the logits are unchanged before any score is looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class MixerShape:
    channels: int  # C = heads * head_dim
    heads: int
    head_dim: int
    groups: int
    state: int

    @staticmethod
    def of(mixer: Any) -> MixerShape:
        return MixerShape(
            mixer.intermediate_size, mixer.num_heads, mixer.head_dim, mixer.n_groups, mixer.ssm_state_size
        )


def _perm(n: int, gen: torch.Generator) -> Tensor:
    p = torch.randperm(n, generator=gen)
    if n > 1 and torch.equal(p, torch.arange(n)):
        p = p.roll(1)
    return p


def mixer_permutations(s: MixerShape, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(channel order [C], head order [H], B/C row order [G*S]) of one random symmetry."""
    hpg = s.heads // s.groups
    groups = _perm(s.groups, gen)
    heads = torch.cat([g * hpg + _perm(hpg, gen) for g in groups.tolist()])
    channels = torch.cat([h * s.head_dim + _perm(s.head_dim, gen) for h in heads.tolist()])
    states = torch.cat([g * s.state + _perm(s.state, gen) for g in groups.tolist()])
    return channels, heads, states


def _in_proj_order(s: MixerShape, channels: Tensor, heads: Tensor, states: Tensor) -> Tensor:
    gs = s.groups * s.state
    c = s.channels
    return torch.cat([channels, c + channels, 2 * c + states, 2 * c + gs + states, 2 * c + 2 * gs + heads])


def _conv_order(s: MixerShape, channels: Tensor, states: Tensor) -> Tensor:
    gs = s.groups * s.state
    return torch.cat([channels, s.channels + states, s.channels + gs + states])


@torch.no_grad()
def permute_mixer(mixer: Any, gen: torch.Generator) -> None:
    s = MixerShape.of(mixer)
    channels, heads, states = mixer_permutations(s, gen)
    rows = _in_proj_order(s, channels, heads, states)
    mixer.in_proj.weight.copy_(mixer.in_proj.weight[rows])
    conv = _conv_order(s, channels, states)
    mixer.conv1d.weight.copy_(mixer.conv1d.weight[conv])
    if mixer.conv1d.bias is not None:
        mixer.conv1d.bias.copy_(mixer.conv1d.bias[conv])
    for p in (mixer.dt_bias, mixer.A_log, mixer.D):
        p.copy_(p[heads])
    norm = getattr(mixer.norm, "weight", None)
    if norm is not None:
        norm.copy_(norm[channels])
    mixer.out_proj.weight.copy_(mixer.out_proj.weight[:, channels])


@torch.no_grad()
def rescale_mixer(mixer: Any, gen: torch.Generator) -> None:
    s = MixerShape.of(mixer)
    conv_dim = mixer.conv1d.weight.shape[0]
    scale = torch.exp(torch.randn(conv_dim, generator=gen) * 0.7) * torch.where(
        torch.rand(conv_dim, generator=gen) < 0.3, -1.0, 1.0
    )
    mixer.in_proj.weight[s.channels : s.channels + conv_dim] *= scale[:, None]
    mixer.conv1d.weight /= scale[:, None, None]
    norm = getattr(mixer.norm, "weight", None)
    if norm is not None:
        t = torch.exp(torch.randn(s.channels, generator=gen) * 0.7)
        norm *= t
        mixer.out_proj.weight /= t[None, :]


def random_orthogonal(n: int, gen: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))[None, :]).float()


@torch.no_grad()
def rotate_mamba2(model: Any, gen: torch.Generator) -> None:
    """Fold every residual-reading RMSNorm gain, then rotate the residual stream by Q (untied head only)."""
    assert not model.config.tie_word_embeddings, "rotating a tied head is not function preserving here"
    bb = model.backbone
    d = model.config.hidden_size
    q = random_orthogonal(d, gen)
    for block in bb.layers:
        block.mixer.in_proj.weight.mul_(block.norm.weight[None, :])
        block.norm.weight.fill_(1.0)
        block.mixer.in_proj.weight.copy_(block.mixer.in_proj.weight @ q)
        block.mixer.out_proj.weight.copy_(q.t() @ block.mixer.out_proj.weight)
    model.lm_head.weight.mul_(bb.norm_f.weight[None, :])
    bb.norm_f.weight.fill_(1.0)
    model.lm_head.weight.copy_(model.lm_head.weight @ q)
    bb.embeddings.weight.copy_(bb.embeddings.weight @ q)


def mixers(model: Any) -> list[Any]:
    """The Mamba-2 mixer modules of a Mamba-2 or Falcon-H1 model."""
    if hasattr(model, "backbone"):
        return [b.mixer for b in model.backbone.layers]
    return [layer.mamba for layer in model.model.layers]


# --------------------------------------------------------------------------- Qwen3-Next's gated DeltaNet
@dataclass(frozen=True)
class DeltaShape:
    k_heads: int
    v_heads: int
    dk: int
    dv: int

    @staticmethod
    def of(m: Any) -> DeltaShape:
        return DeltaShape(m.num_k_heads, m.num_v_heads, m.head_k_dim, m.head_v_dim)

    @property
    def g(self) -> int:
        return self.v_heads // self.k_heads


def _unpack_qkvz(w: Tensor, s: DeltaShape) -> list[Tensor]:
    """in_proj_qkvz rows, grouped per key head, as flat [q; k; v; z] blocks (head-major, as the model reads them)."""
    per = w.reshape(s.k_heads, 2 * s.dk + 2 * s.g * s.dv, -1)
    sizes = [s.dk, s.dk, s.g * s.dv, s.g * s.dv]
    return [t.reshape(-1, w.shape[1]) for t in torch.split(per, sizes, 1)]


def _pack_qkvz(parts: list[Tensor], s: DeltaShape) -> Tensor:
    q, k, v, z = parts
    d = q.shape[1]
    grouped = [
        q.reshape(s.k_heads, s.dk, d),
        k.reshape(s.k_heads, s.dk, d),
        v.reshape(s.k_heads, s.g * s.dv, d),
        z.reshape(s.k_heads, s.g * s.dv, d),
    ]
    return torch.cat(grouped, 1).reshape(-1, d)


def delta_permutations(s: DeltaShape, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(key channel order [Hk*dk], value head order [Hv], value channel order [Hv*dv], shared dv order)."""
    kh = _perm(s.k_heads, gen)
    keys = torch.cat([h * s.dk + _perm(s.dk, gen) for h in kh.tolist()])
    vheads = torch.cat([h * s.g + _perm(s.g, gen) for h in kh.tolist()])
    mu = _perm(s.dv, gen)  # one order for every value head: the gated norm's [dv] gain is shared
    values = torch.cat([h * s.dv + mu for h in vheads.tolist()])
    return keys, vheads, values, mu


@torch.no_grad()
def permute_deltanet(m: Any, gen: torch.Generator) -> None:
    s = DeltaShape.of(m)
    keys, vheads, values, mu = delta_permutations(s, gen)
    q, k, v, z = _unpack_qkvz(m.in_proj_qkvz.weight, s)
    m.in_proj_qkvz.weight.copy_(_pack_qkvz([q[keys], k[keys], v[values], z[values]], s))
    per = m.in_proj_ba.weight.reshape(s.k_heads, 2 * s.g, -1)
    b, a = (t.reshape(s.v_heads, -1) for t in torch.split(per, [s.g, s.g], 1))
    b, a = b[vheads], a[vheads]
    m.in_proj_ba.weight.copy_(
        torch.cat([b.reshape(s.k_heads, s.g, -1), a.reshape(s.k_heads, s.g, -1)], 1).reshape(-1, b.shape[1])
    )
    kd = s.k_heads * s.dk
    conv = torch.cat([keys, kd + keys, 2 * kd + values])
    m.conv1d.weight.copy_(m.conv1d.weight[conv])
    for p in (m.dt_bias, m.A_log):
        p.copy_(p[vheads])
    m.norm.weight.copy_(m.norm.weight[mu])
    m.out_proj.weight.copy_(m.out_proj.weight[:, values])


@torch.no_grad()
def rescale_deltanet(m: Any, gen: torch.Generator) -> None:
    s = DeltaShape.of(m)
    kd, vd = s.k_heads * s.dk, s.v_heads * s.dv
    scale = torch.exp(torch.randn(2 * kd + vd, generator=gen) * 0.7) * torch.where(
        torch.rand(2 * kd + vd, generator=gen) < 0.3, -1.0, 1.0
    )
    q, k, v, z = _unpack_qkvz(m.in_proj_qkvz.weight, s)
    q, k, v = q * scale[:kd, None], k * scale[kd : 2 * kd, None], v * scale[2 * kd :, None]
    m.in_proj_qkvz.weight.copy_(_pack_qkvz([q, k, v, z], s))
    m.conv1d.weight /= scale[:, None, None]
    t = torch.exp(torch.randn(s.dv, generator=gen) * 0.7)
    m.norm.weight *= t
    m.out_proj.weight /= t.repeat(s.v_heads)[None, :]


def deltanets(model: Any) -> list[Any]:
    return [layer.linear_attn for layer in model.model.layers if hasattr(layer, "linear_attn")]
