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

from attest.arch.roles import EXPERT_ROLES, LAYER_ROLES, MODEL_ROLES, Role, Scope

Names = tuple[str, ...]


class NormKind(str, Enum):
    RMS = "rms"
    LAYER = "layer"


class QKVLayout(str, Enum):
    SEPARATE = "separate"  # q, k, v are their own tensors
    CONTIGUOUS = "contiguous"  # rows [q(H*dh); k(Hkv*dh); v(Hkv*dh)] (Phi-3, MPT, GPT-2 after transpose)
    PER_HEAD = "per_head"  # rows [H, 3, dh]: q,k,v interleaved per head (GPT-NeoX, BLOOM, Falcon-RW)
    GROUPED = "grouped"  # rows [Hkv, g+2, dh]: g query heads then k then v per group (Falcon)


class ExpertLayout(str, Enum):
    """How a layer's MoE experts are stored; each kind is read by an entry of
    `attest.arch.experts.EXPERT_LAYOUTS` (d = hidden size, f = expert FFN width)."""

    PER_EXPERT = "per_expert"  # one tensor per expert and role: up/gate [f, d], down [d, f] (Mixtral on disk)
    STACKED = "stacked"  # up and gate [E, f, d], down [E, d, f] (GGUF `ffn_*_exps`)
    STACKED_HALVES = "stacked_halves"  # gate_up [E, 2f, d] gate half first, down [E, d, f] (transformers 5)
    # gate_up [E, d, 2f] with gate and up columns alternating, down [E, f, d] (gpt_oss)
    STACKED_INTERLEAVED = "stacked_interleaved"
    STACKED_TRANSPOSED = "stacked_transposed"  # gate_up [E, d, 2f] gate half first, down [E, f, d] (llama4)


class AttentionKind(str, Enum):
    """How a layer mixes tokens; each kind is read by an entry of `attest.arch.attention.ATTENTION_KINDS`."""

    STANDARD = "standard"  # q, k, v, o projections (separate or fused): MHA, GQA and MQA
    MLA = "mla"  # multi-head latent attention (DeepSeek-V2/V3): the table's `mla` names


class QKNormScope(str, Enum):
    """What a q/k norm normalises, and so how wide its gain is."""

    HEAD = "head"  # each head on its own, one [dh] gain shared by every head (Qwen3, Gemma-3, Apertus)
    PROJECTION = "projection"  # the whole q (k) projection at once, a [H*dh] ([Hkv*dh]) gain (OLMo-2/3)
    # each head on its own, with a gain of its own: stored [H, dh] ([Hkv, dh]), read as [H*dh] (Cohere use_qk_norm)
    HEAD_GAINS = "head_gains"


@dataclass(frozen=True)
class MoeLayerRule:
    """Which layers of a MoE model carry experts, read from config.json (each field lists config keys).

    Layer i is a MoE layer when `first <= i <= last`, `(i + 1) % every == 0` and i is
    not in `dense`; an absent key leaves its condition out (first 0, last the last
    layer or -1, every 1, no dense list). A config list of the MoE layers
    themselves (`listed`, Llama-4's `moe_layers`) overrides all of them when set
    (Llama-4's `interleave_moe_layer_step` is `every`). The others are dense FFN
    layers read through the table's dense roles (GLM-4.5's `first_k_dense_replace`, ERNIE-4.5's
    `moe_layer_start_index`, Qwen-MoE's `decoder_sparse_step` / `mlp_only_layers`).
    Without a config (GGUF) a layer is MoE when its router tensor is present.
    """

    first: Names = ()
    last: Names = ()
    every: Names = ()
    dense: Names = ()
    listed: Names = ()


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
    """Where MoE experts are stored: one tensor per expert, or stacked [E, ...].

    `layouts` lists the storage kinds this family's checkpoints come in, tried
    in order (the first whose down tensor is present wins); empty means the
    kinds whose names are given here, stacked before per-expert
    (`storage_kinds`). `stacked_layout` says how `stacked_gate_up` and
    `stacked_down` are laid out.
    """

    prefix: str = ""  # relative to the layer prefix, contains {e}
    up: Names = ()
    gate: Names = ()
    down: Names = ()
    # Stacked forms, relative to the layer prefix: `stacked_gate_up` and `stacked_down`
    # as `stacked_layout` says; `stacked_up` / `stacked_gate` are [E, f, d] (ExpertLayout.STACKED).
    # A name ending in `_blocks` is MXFP4 (with `_scales` beside it, attest.arch.mxfp4).
    stacked_gate_up: Names = ()
    stacked_up: Names = ()
    stacked_gate: Names = ()
    stacked_down: Names = ()
    stacked_layout: ExpertLayout = ExpertLayout.STACKED_HALVES
    layouts: tuple[ExpertLayout, ...] = ()

    def names(self, role: Role) -> Names:
        """Per-expert names of an expert role, relative to `prefix` (none for the fused gate_up)."""
        return getattr(self, role.field, ())  # type: ignore[no-any-return]

    def stacked(self, role: Role) -> Names:
        """Stacked names of an expert role, relative to the layer prefix."""
        return getattr(self, "stacked_" + role.field)  # type: ignore[no-any-return]

    def stacked_names(self) -> Names:
        return tuple(n for role in EXPERT_ROLES for n in self.stacked(role))

    def storage_kinds(self) -> tuple[ExpertLayout, ...]:
        if self.layouts:
            return self.layouts
        kinds: list[ExpertLayout] = []
        if self.stacked_gate_up:
            kinds.append(self.stacked_layout)
        if self.stacked_up:
            kinds.append(ExpertLayout.STACKED)
        if self.down:
            kinds.append(ExpertLayout.PER_EXPERT)
        return tuple(kinds)


@dataclass(frozen=True)
class MlaNames:
    """Multi-head latent attention (DeepSeek-V2/V3) tensors, relative to the layer prefix.

    q is either one projection (`q`, DeepSeek-V2-Lite) or a low-rank pair
    `q_a` -> RMSNorm(`q_a_norm`) -> `q_b`; `kv_a` writes [c_kv; k_pe], c_kv goes
    through RMSNorm(`kv_a_norm`) into `kv_b` (rows per head [k_nope; v]), or into
    the split `k_b` / `v_b` pair some GGUF converters write.  `input_eps` lists the
    config keys of the pre-attention RMSNorm's epsilon (`latent_eps` when none is
    set); the latent norms use `latent_eps`, which transformers and DeepSeek's
    reference code hard-code (the RMSNorm default, 1e-6).
    """

    q: Names = ()
    q_a: Names = ()
    q_a_norm: Names = ()
    q_b: Names = ()
    kv_a: Names = ()
    kv_a_norm: Names = ()
    kv_b: Names = ()
    k_b: Names = ()
    v_b: Names = ()
    o: Names = ()
    input_eps: Names = ("rms_norm_eps",)
    latent_eps: float = 1e-6
    # llama.cpp writes k_b per head transposed, [H, r_kv, d_n] (for its absorbed kernel), and v_b as [H, d_v, r_kv]
    k_b_per_head_transposed: bool = False

    def roles(self) -> Names:
        """Every tensor name the attention may read (for the layer census)."""
        groups = (self.q, self.q_a, self.q_a_norm, self.q_b, self.kv_a, self.kv_a_norm, self.kv_b, self.k_b, self.v_b)
        return tuple(n for g in (*groups, self.o) for n in g)


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
    value head.  `in_proj_z`, when a layer has it, holds the gated DeltaNet's z
    rows apart and `in_proj` then holds [q; k; v], each over all key (value)
    heads in order (llama.cpp's `attn_gate` / `attn_qkv`).  The size keys name
    config keys, or for a GGUF table header keys (`mamba2.ssm.group_count`).
    `segment_multipliers` / `input_multiplier` name config keys of muP
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
    in_proj_z: Names = ()
    layer_types: tuple[str, str] | None = None

    @property
    def roles(self) -> Names:
        return (*self.in_proj, *self.in_proj_ba, *self.in_proj_z, *self.conv, *self.out, *self.norm, *self.params)


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
    attention: AttentionKind = AttentionKind.STANDARD
    o: Names = ()
    q_norm: Names = ()  # gains applied to q after projection (Qwen3 per head, OLMo-2 over the projection)
    k_norm: Names = ()
    qk_norm_scope: QKNormScope = QKNormScope.HEAD
    # RMS, or a LayerNorm that also centres each head (Phi qk_layernorm, Cohere use_qk_norm):
    # the centring is folded into the q (k) rows, so the canonical q is what the gain reads
    qk_norm_kind: NormKind = NormKind.RMS
    mla: MlaNames | None = None  # the tensors of AttentionKind.MLA (the q/k/v/o roles above stay empty)
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
    def has_attention(self) -> bool:
        """Whether the layers have an attention part (a pure state-space model, Mamba-2, has none)."""
        return bool(self.q or self.qkv or self.mla is not None)

    @property
    def is_moe(self) -> bool:
        return self.experts is not None

    def names(self, role: Role) -> Names:
        """The names a model or layer role takes in this table (expert roles: `ExpertNames.names`)."""
        if role.scope is Scope.EXPERT:
            raise ValueError(f"{role} is an expert role: read it from ArchSpec.experts")
        return getattr(self, role.field)  # type: ignore[no-any-return]


# Kept for importers of the old string tuples: the fields are the roles' values.
LAYER_ROLE_FIELDS: tuple[str, ...] = tuple(r.field for r in LAYER_ROLES)
MODEL_ROLE_FIELDS: tuple[str, ...] = tuple(r.field for r in MODEL_ROLES)
