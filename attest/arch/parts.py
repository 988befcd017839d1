"""The canonical parts of one transformer layer, as `attest.arch.assembly` hands them to the invariants.

Linear weights are `[out, in]` so that `y = x @ W.T`. Gains are kept apart
from the weights that read them; `attest.invariants` decides how to fold them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from attest.arch.mixers import SsmMixer
from attest.arch.mla import MlaAttention

Tensor = torch.Tensor


@dataclass
class Attention:
    q: Tensor  # [H*dh, d]
    k: Tensor  # [Hkv*dh, d]
    v: Tensor  # [Hkv*dh, d]
    o: Tensor  # [d, H*dh]
    n_heads: int
    n_kv_heads: int
    head_dim: int
    # gain applied to q after projection: [dh] (shared by every head) or [H*dh]
    # (one norm over the whole projection, OLMo-2); k_norm likewise with Hkv
    q_norm: Tensor | None = None
    k_norm: Tensor | None = None


@dataclass
class Mlp:
    up: Tensor  # [f, d]
    down: Tensor  # [d, f]
    gate: Tensor | None = None  # [f, d] when gated


@dataclass
class Layer:
    index: int
    attn: Attention | MlaAttention | None  # the attention kind's part (attest.arch.attention); None: no attention
    attn_norm: Tensor | None  # gain read by q/k/v, None = all ones
    ffn_norm: Tensor | None  # gain read by the FFN / router
    mlp: Mlp | None = None
    experts: list[Mlp] = field(default_factory=list)
    shared_experts: list[Mlp] = field(default_factory=list)
    router: Tensor | None = None  # [E, d]
    attn_out_norm: Tensor | None = None  # gain on attention output (Gemma-2 post-norm)
    ffn_out_norm: Tensor | None = None
    mixer: SsmMixer | None = None  # a state-space / linear-attention mixer, beside or instead of attention
