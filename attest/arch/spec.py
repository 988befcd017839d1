"""The vocabulary of architecture tables: what a family's checkpoint looks like.

A family is *data*: tensor-name templates per canonical role and a few layout
flags.  `attest.arch.canonical` is the only code that interprets them, so adding
a family means adding a table in `attest.arch.families`, not new branches.

Templates:
- model-level names are full tensor names;
- layer-level names are relative to `layer_prefix` (alternatives, each containing `{i}`);
- expert names contain `{e}`.
Each role takes a tuple of alternatives; the first one present in the
checkpoint wins (checkpoints of one family are saved under several namings).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Callable

Names = tuple[str, ...]


class NormKind(str, Enum):
    RMS = "rms"
    LAYER = "layer"


class QKVLayout(str, Enum):
    SEPARATE = "separate"  # q, k, v are their own tensors
    CONTIGUOUS = "contiguous"  # rows [q(H*dh); k(Hkv*dh); v(Hkv*dh)] (Phi-3, MPT, GPT-2 after transpose)
    PER_HEAD = "per_head"  # rows [H, 3, dh]: q,k,v interleaved per head (GPT-NeoX, BLOOM, Falcon-RW)
    GROUPED = "grouped"  # rows [Hkv, g+2, dh]: g query heads then k then v per group (Falcon)


@dataclass(frozen=True)
class ConfigKeys:
    """Where a family's config.json keeps each dimension (dotted paths allowed)."""

    hidden: Names = ("hidden_size",)
    layers: Names = ("num_hidden_layers",)
    heads: Names = ("num_attention_heads",)
    kv_heads: Names = ("num_key_value_heads",)
    head_dim: Names = ("head_dim",)
    experts: Names = ("num_local_experts", "num_experts")


@dataclass(frozen=True)
class ExpertNames:
    """How MoE experts are stored: one tensor per expert, or stacked [E, ...]."""

    prefix: str = ""  # relative to the layer prefix, contains {e}
    up: Names = ()
    gate: Names = ()
    down: Names = ()
    # Stacked forms, relative to the layer prefix.  `stacked_gate_up` is [E, 2f, d]
    # with the gate half first; the others are [E, f, d] / [E, d, f].
    stacked_gate_up: Names = ()
    stacked_up: Names = ()
    stacked_gate: Names = ()
    stacked_down: Names = ()


@dataclass(frozen=True)
class Variant:
    """Overrides applied when `when(config)` holds (e.g. Falcon's two decoders)."""

    when: Callable[[dict[str, Any]], bool]
    overrides: dict[str, Any]
    label: str = ""


@dataclass(frozen=True)
class ArchSpec:
    family: str
    hf_model_types: Names
    norm: NormKind
    embed: Names
    layer_prefix: Names
    # attention
    q: Names = ()
    k: Names = ()
    v: Names = ()
    qkv: Names = ()
    qkv_layout: QKVLayout = QKVLayout.SEPARATE
    o: Names = ()
    q_norm: Names = ()  # per-head-dim gains applied to q after projection (Qwen3, OLMo-2)
    k_norm: Names = ()
    # norms that read the residual stream (gains folded into the weights that follow)
    attn_norm: Names = ()
    ffn_norm: Names = ()
    attn_norm_from_previous_layer: bool = False  # post-LN (BERT): layer i reads layer i-1's output norm
    embed_norm: Names = ()  # LayerNorm right after the embedding (BLOOM, BERT)
    attn_out_norm: Names = ()  # norms on a sublayer's output before the residual add (Gemma-2)
    ffn_out_norm: Names = ()
    norm_gain_offset: float = 0.0  # Gemma stores gamma-1
    # dense FFN
    up: Names = ()
    gate: Names = ()
    down: Names = ()
    gate_up: Names = ()  # fused rows [gate; up] (Phi-3)
    # mixture of experts
    experts: ExpertNames | None = None
    router: Names = ()
    shared_up: Names = ()
    shared_gate: Names = ()
    shared_down: Names = ()
    # model level
    final_norm: Names = ()
    lm_head: Names = ()
    transposed: bool = False  # GPT-2 Conv1D stores [in, out]
    config_keys: ConfigKeys = field(default_factory=ConfigKeys)
    # tensor names (relative to layer 0) whose presence identifies the family without a config
    detect: Names = ()
    variants: tuple[Variant, ...] = ()
    source_format: str = "hf"  # "hf" or "gguf": which naming the table describes

    def resolve(self, config: dict[str, Any] | None) -> "ArchSpec":
        spec = self
        for variant in self.variants:
            if config is not None and variant.when(config):
                spec = replace(spec, **variant.overrides)
        return spec

    @property
    def is_moe(self) -> bool:
        return self.experts is not None
