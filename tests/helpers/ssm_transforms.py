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
