"""The canonical roles a checkpoint tensor can play: one enum shared by every naming scheme.

A family table (`attest.arch.spec.ArchSpec`) maps roles to tensor names; the
HF tables (`attest.arch.families`) and the GGUF tables
(`attest.arch.gguf_families`) fill the same roles, so a GGUF table can be
derived from an HF one role by role. Each role has a scope:

- `MODEL`: a whole tensor outside the layers (embedding, final norm, head);
- `LAYER`: a name relative to the layer prefix (`model.layers.{i}.`);
- `EXPERT`: a name of one MoE expert's FFN, relative to `ExpertNames.prefix`
  (per-expert storage) or to the layer prefix (stacked storage).

A layer or model role's value is the `ArchSpec` field that holds its names; an
expert role's `field` is the `ExpertNames` field.
"""

from __future__ import annotations

from enum import Enum


class Scope(str, Enum):
    MODEL = "model"
    LAYER = "layer"
    EXPERT = "expert"


class Role(str, Enum):
    # model level
    EMBED = "embed"
    EMBED_NORM = "embed_norm"  # LayerNorm right after the embedding (BLOOM, BERT)
    FINAL_NORM = "final_norm"
    LM_HEAD = "lm_head"
    # attention
    Q = "q"
    K = "k"
    V = "v"
    QKV = "qkv"  # fused; cut by the table's `qkv_layout` (attest.arch.layouts)
    O = "o"  # noqa: E741 (the attention output projection; named as the paper names it)
    Q_NORM = "q_norm"
    K_NORM = "k_norm"
    # norms that read (or write) the residual stream
    ATTN_NORM = "attn_norm"
    FFN_NORM = "ffn_norm"
    ATTN_OUT_NORM = "attn_out_norm"
    FFN_OUT_NORM = "ffn_out_norm"
    # dense FFN
    UP = "up"
    GATE = "gate"
    DOWN = "down"
    GATE_UP = "gate_up"  # fused rows [gate; up] (Phi-3)
    # mixture of experts (the layer-level parts)
    ROUTER = "router"
    SHARED_UP = "shared_up"
    SHARED_GATE = "shared_gate"
    SHARED_DOWN = "shared_down"
    # tensors the family has but no invariant reads: claimed, never reported as junk
    KNOWN_UNUSED = "known_unused"
    # one expert's FFN (stored per expert or stacked, see attest.arch.layouts.EXPERT_LAYOUTS)
    EXPERT_UP = "expert_up"
    EXPERT_GATE = "expert_gate"
    EXPERT_DOWN = "expert_down"
    EXPERT_GATE_UP = "expert_gate_up"  # stacked gate and up in one tensor

    @property
    def scope(self) -> Scope:
        if self in _MODEL:
            return Scope.MODEL
        if self.value.startswith("expert_"):
            return Scope.EXPERT
        return Scope.LAYER

    @property
    def field(self) -> str:
        """The table field holding this role's names (`ArchSpec` or, for experts, `ExpertNames`)."""
        return self.value.removeprefix("expert_") if self.scope is Scope.EXPERT else self.value


_MODEL = frozenset({Role.EMBED, Role.EMBED_NORM, Role.FINAL_NORM, Role.LM_HEAD})

MODEL_ROLES: tuple[Role, ...] = tuple(r for r in Role if r.scope is Scope.MODEL)
LAYER_ROLES: tuple[Role, ...] = tuple(r for r in Role if r.scope is Scope.LAYER)
EXPERT_ROLES: tuple[Role, ...] = tuple(r for r in Role if r.scope is Scope.EXPERT)
