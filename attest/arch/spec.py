"""The vocabulary of architecture tables: what a family's checkpoint looks like.

A family is *data*: tensor-name templates per canonical role and a few layout
flags.  `attest.arch` (names, dims, layouts, assembly) is the only code that reads them, so adding
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
from typing import Any

Names = tuple[str, ...]


class NormKind(str, Enum):
    RMS = "rms"
    LAYER = "layer"


class QKVLayout(str, Enum):
    SEPARATE = "separate"  # q, k, v are their own tensors
    CONTIGUOUS = "contiguous"  # rows [q(H*dh); k(Hkv*dh); v(Hkv*dh)] (Phi-3, MPT, GPT-2 after transpose)
    PER_HEAD = "per_head"  # rows [H, 3, dh]: q,k,v interleaved per head (GPT-NeoX, BLOOM, Falcon-RW)
    GROUPED = "grouped"  # rows [Hkv, g+2, dh]: g query heads then k then v per group (Falcon)


class QKNormScope(str, Enum):
    """What a q/k norm normalises, and so how wide its gain is."""

    HEAD = "head"  # each head on its own, one [dh] gain shared by every head (Qwen3, Gemma-3, Apertus)
    PROJECTION = "projection"  # the whole q (k) projection at once, a [H*dh] ([Hkv*dh]) gain (OLMo-2/3)


@dataclass(frozen=True)
class MoeLayerRule:
    """Which layers of a MoE model carry experts, read from config.json (each field lists config keys).

    Layer i is a MoE layer when `first <= i <= last`, `(i + 1) % every == 0` and i is
    not in `dense`; an absent key leaves its condition out (first 0, last the last
    layer or -1, every 1, no dense list). The others are dense FFN layers read
    through the table's dense roles (GLM-4.5's `first_k_dense_replace`, ERNIE-4.5's
    `moe_layer_start_index`, Qwen-MoE's `decoder_sparse_step` / `mlp_only_layers`).
    Without a config (GGUF) a layer is MoE when its router tensor is present.
    """

    first: Names = ()
    last: Names = ()
    every: Names = ()
    dense: Names = ()


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
class ConfigTest:
    """One condition on config.json: `bool(config.get(key, default)) is truthy`."""

    key: str
    truthy: bool
    default: Any = None

    def holds(self, config: dict[str, Any]) -> bool:
        return bool(config.get(self.key, self.default)) is self.truthy


@dataclass(frozen=True)
class Variant:
    """Overrides applied when every test in `when` holds for the config (e.g. Falcon's decoders)."""

    when: tuple[ConfigTest, ...]
    overrides: dict[str, Any]
    label: str = ""

    def applies(self, config: dict[str, Any]) -> bool:
        return all(test.holds(config) for test in self.when)


@dataclass(frozen=True)
class MixerNames:
    """A state-space mixer's tensors and where its config keeps its sizes (`attest.arch.mixers`).

    layout "mamba2": `in_proj` is the fused [z (C); x (C); B (G*S); C (G*S); dt (H)]
    projection, `conv` the depthwise causal conv1d over the x, B and C channels, `norm`
    the gated RMSNorm's gain over the C mixer channels (absent in Falcon-H1 without
    `mamba_rms_norm`).  layout "gated_deltanet" (Qwen3-Next): `in_proj` is
    `in_proj_qkvz`, grouped per key head, `in_proj_ba` the per-value-head beta/decay
    rows, `conv` runs over [q; k; v], and `norm` is one [d_v] gain shared by every
    value head.  `segment_multipliers` / `input_multiplier` name config keys of muP
    scalars folded into the canonical weights (five per-segment factors z, x, B, C, dt,
    and one input factor).  `layer_types` = (config key, value): the layers whose
    entry has that value are mixer layers *instead of* attention (None: every layer
    has a mixer, beside its attention if the table has one).
    """

    in_proj: Names
    conv: Names
    out: Names
    norm: Names = ()
    params: Names = ()  # per-head dt_bias, A_log, D: read by no term (docs/method.md)
    heads: Names = ("num_heads",)
    head_dim: Names = ("head_dim",)
    state: Names = ("state_size",)
    groups: Names = ("n_groups",)
    segment_multipliers: Names = ()
    input_multiplier: Names = ()
    layout: str = "mamba2"
    in_proj_ba: Names = ()
    layer_types: tuple[str, str] | None = None

    @property
    def roles(self) -> Names:
        return (*self.in_proj, *self.in_proj_ba, *self.conv, *self.out, *self.norm, *self.params)


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
    q_norm: Names = ()  # gains applied to q after projection (Qwen3 per head, OLMo-2 over the projection)
    k_norm: Names = ()
    qk_norm_scope: QKNormScope = QKNormScope.HEAD
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
    moe_layers: MoeLayerRule | None = None  # None: every layer is MoE
    # model level
    final_norm: Names = ()
    lm_head: Names = ()
    transposed: bool = False  # GPT-2 Conv1D stores [in, out]
    config_keys: ConfigKeys = field(default_factory=ConfigKeys)
    # KV-head count fixed by the architecture whatever config.json says (Falcon-7B's
    # multi-query decoder has one KV head even when a re-saved config carries num_kv_heads)
    fixed_kv_heads: int | None = None
    # layer tensors the family has but no invariant reads (Qwen2-MoE's shared-expert gate):
    # claimed, so they are neither counted as junk nor reported as ignored
    known_unused: Names = ()
    # tensor names (relative to layer 0) whose presence identifies the family without a config
    detect: Names = ()
    variants: tuple[Variant, ...] = ()
    source_format: str = "hf"  # "hf" or "gguf": which naming the table describes
    # attention kind: ssm -- a state-space mixer (reads attn_norm), beside or instead of attention
    mixer: MixerNames | None = None
    # q_proj rows are [H, 2, dh]: each head's query, then its output gate (Qwen3-Next gated attention)
    q_gated: bool = False

    def resolve(self, config: dict[str, Any] | None) -> ArchSpec:
        spec = self
        for variant in self.variants:
            if config is not None and variant.applies(config):
                spec = replace(spec, **variant.overrides)
        return spec

    @property
    def is_moe(self) -> bool:
        return self.experts is not None


# The ArchSpec fields that name tensors relative to a layer prefix (the roles a
# layer's tensors can play); experts are described by `ArchSpec.experts`.
LAYER_ROLE_FIELDS: tuple[str, ...] = (
    "q", "k", "v", "qkv", "o", "q_norm", "k_norm", "attn_norm", "ffn_norm", "attn_out_norm", "ffn_out_norm",
    "up", "gate", "down", "gate_up", "router", "shared_up", "shared_gate", "shared_down", "known_unused",
)  # fmt: skip
# The ArchSpec fields that name whole tensors outside the layers.
MODEL_ROLE_FIELDS: tuple[str, ...] = ("embed", "embed_norm", "final_norm", "lm_head")
