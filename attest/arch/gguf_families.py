"""Per-architecture tensor tables for GGUF files written by llama.cpp's converter.

Pure data, like `attest.arch.families`: `attest.arch.canonical` interprets the
`ArchSpec`s; `GGUFArch` adds the GGUF-only choice of a MoE table. How the
converter reordered tensor rows is storage knowledge and lives with the reader
(`attest.sources.gguf_layout`), which undoes it before any table sees a tensor.

Facts taken from llama.cpp (gguf-py `constants.py` / `tensor_mapping.py` for the
names, `convert_hf_to_gguf.py` and its `conversion/*.py` split for the layouts):
- tensor names are `token_embd`, `blk.{i}.attn_q`, ... , `output_norm`, `output`;
- linear weights are stored with GGUF dims [in, out], i.e. torch [out, in];
  GPT-2's Conv1D weights are transposed by the converter, so no table is `transposed`;
- fused QKV is always written contiguous [q; k; v]: the converter reorders
  GPT-NeoX's and BLOOM's per-head interleave and Falcon's grouped layout;
- Phi-3's fused gate_up is written as `ffn_up` [2f, d], gate half first;
- Gemma, Gemma-2 and Gemma-3 norm weights (including q/k norms) are written
  with the +1 already added, so the tables use `norm_gain_offset=0.0`;
- Falcon's `attn_norm` is `input_layernorm` (7B) or `ln_mlp` (40B) and is read by
  the FFN; `attn_norm_2` (`ln_attn`, 40B only) is read by attention;
- llama (also Mistral and Mixtral) and OLMo rows of Q and K are permuted by
  `LlamaModel.permute` for llama.cpp's interleaved ("normal") RoPE (undone by
  the reader, see `attest.sources.gguf_layout`);
- MoE experts are stacked: `ffn_{gate,up,down}_exps` [E, f, d] / [E, d, f];
- state-space mixers (mamba2, falcon-h1, qwen3next) are `ssm_*` tensors whose sizes
  are the header's `{arch}.ssm.*` keys (the file has no config.json); the vectors
  Mamba2Model reshaped are read back flat by the reader (see the tables below).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from attest.arch import families as hf
from attest.arch.roles import LAYER_ROLES, MODEL_ROLES, Role
from attest.arch.spec import ArchSpec, ConfigKeys, ExpertNames, MixerNames, MlaNames, Names, QKVLayout
from attest.errors import UnsupportedModelError
from attest.sources.base import WeightSource
from attest.sources.gguf_layout import LAYER_PREFIX


@dataclass(frozen=True)
class GGUFArch:
    """One `general.architecture` value and how to read it."""

    name: str
    spec: ArchSpec
    # Used instead of `spec` when `{arch}.expert_count` > 0 (Mixtral is arch "llama").
    moe_spec: ArchSpec | None = None
    # Metadata key (under `{arch}.`) counting blocks appended after the model's own layers,
    # which `block_count` includes (GLM-4.5's NextN / MTP block): they are not layers of the model.
    extra_blocks_key: str | None = None

    def spec_for(self, n_experts: int) -> ArchSpec:
        return self.moe_spec if n_experts > 0 and self.moe_spec is not None else self.spec


# llama.cpp's name for each role (gguf-py `constants.py` TENSOR_NAMES), relative to
# `blk.{i}.` for layer roles. A role the HF table fills gets this name in the GGUF table.
LLAMA_CPP_NAMES: dict[Role, Names] = {
    Role.EMBED: ("token_embd.weight",),
    Role.EMBED_NORM: ("token_embd_norm.weight",),
    Role.FINAL_NORM: ("output_norm.weight",),
    Role.LM_HEAD: ("output.weight",),
    Role.Q: ("attn_q.weight",),
    Role.K: ("attn_k.weight",),
    Role.V: ("attn_v.weight",),
    Role.QKV: ("attn_qkv.weight",),
    Role.O: ("attn_output.weight",),
    Role.Q_NORM: ("attn_q_norm.weight",),
    Role.K_NORM: ("attn_k_norm.weight",),
    Role.ATTN_NORM: ("attn_norm.weight",),
    # gguf-py maps Falcon-H1's `pre_ff_layernorm.weight` whole to `blk.{i}.ffn_norm` (no suffix),
    # which llama.cpp loads under that name: the bare name is the fallback.
    Role.FFN_NORM: ("ffn_norm.weight", "ffn_norm"),
    Role.ATTN_OUT_NORM: ("post_attention_norm.weight",),
    Role.FFN_OUT_NORM: ("post_ffw_norm.weight",),
    Role.UP: ("ffn_up.weight",),
    Role.GATE: ("ffn_gate.weight",),
    Role.DOWN: ("ffn_down.weight",),
    Role.GATE_UP: ("ffn_up.weight",),  # Phi-3's fused [gate; up] is written as ffn_up [2f, d]
    Role.ROUTER: ("ffn_gate_inp.weight",),
    Role.SHARED_UP: ("ffn_up_shexp.weight",),
    Role.SHARED_GATE: ("ffn_gate_shexp.weight",),
    Role.SHARED_DOWN: ("ffn_down_shexp.weight",),
}
# The converter stacks every expert layout into ffn_{up,gate,down}_exps [E, f, d] / [E, d, f].
_STACKED_EXPERTS = ExpertNames(
    stacked_up=("ffn_up_exps.weight",),
    stacked_gate=("ffn_gate_exps.weight",),
    stacked_down=("ffn_down_exps.weight",),
)
# Header dimensions come from the GGUF metadata (`recorded_dims`), never from config keys.
_NO_CONFIG_KEYS = ConfigKeys(hidden=(), layers=(), heads=(), kv_heads=(), head_dim=(), experts=())


def from_hf(table: ArchSpec, **differences: Any) -> ArchSpec:
    """The GGUF table of an HF family: llama.cpp's name for every role the HF table fills, then `differences`.

    What carries over is what the converter keeps: the family, the norm kind,
    the q/k norm scope and post-LN wiring. What does not is storage: GGUF
    linear weights are never transposed, fused QKV is always written
    contiguous, experts always stacked, Gemma's gains already carry the +1,
    and the header (not a config) gives the dimensions and the MoE layers
    (a layer is MoE when its router is present). A role whose HF names are
    those of an earlier role (a parallel block's one input norm) reads that
    role's GGUF tensor too.
    """
    fields: dict[str, Any] = {}
    seen: dict[Names, Names] = {}
    for role in (*MODEL_ROLES, *LAYER_ROLES):
        names = table.names(role)
        if not names or role is Role.KNOWN_UNUSED:
            continue
        fields[role.field] = seen.setdefault(names, LLAMA_CPP_NAMES[role])
    if table.qkv:
        fields["qkv_layout"] = QKVLayout.CONTIGUOUS
    spec = ArchSpec(
        family=table.family,
        hf_model_types=(),
        norm=table.norm,
        layer_prefix=(LAYER_PREFIX,),
        qk_norm_scope=table.qk_norm_scope,
        qk_norm_kind=table.qk_norm_kind,
        attn_norm_from_previous_layer=table.attn_norm_from_previous_layer,
        attention=table.attention,
        experts=_STACKED_EXPERTS if table.experts is not None else None,
        config_keys=_NO_CONFIG_KEYS,
        source_format="gguf",
        **fields,
    )
    return replace(spec, **differences)


# Family names match `attest.arch.families` so a GGUF and its HF original report one family.
LLAMA = from_hf(hf.LLAMA)
MIXTRAL = from_hf(hf.MIXTRAL)
QWEN2 = from_hf(hf.QWEN2)
QWEN3 = from_hf(hf.QWEN3)
# the shared expert's sigmoid gate: read by no invariant
_SHARED_EXPERT_GATE: dict[str, Any] = dict(known_unused=("ffn_gate_inp_shexp.weight",))
QWEN2_MOE = from_hf(hf.QWEN2_MOE, **_SHARED_EXPERT_GATE)
QWEN3_MOE = from_hf(hf.QWEN3_MOE, **_SHARED_EXPERT_GATE)
GEMMA = from_hf(hf.GEMMA)
GEMMA2 = from_hf(hf.GEMMA2)  # HF's gemma2 table also covers gemma3 (q/k norms, absent in Gemma-2 files)
# Some Phi-3 GGUFs carry split q/k/v; the fused form is the fallback.
PHI3 = from_hf(hf.PHI3, **{r.field: LLAMA_CPP_NAMES[r] for r in (Role.Q, Role.K, Role.V)})
GPT2 = from_hf(hf.GPT2)
GPT_NEOX = from_hf(hf.GPT_NEOX)
# falcon.py: `attn_norm` is input_layernorm (7B) or ln_mlp (40B) and is read by the FFN;
# `attn_norm_2` (ln_attn, 40B only) is read by attention.
FALCON = from_hf(hf.FALCON, attn_norm=("attn_norm_2.weight", "attn_norm.weight"), ffn_norm=("attn_norm.weight",))
BLOOM = from_hf(hf.BLOOM)
MPT = from_hf(hf.MPT)
STARCODER2 = from_hf(hf.STARCODER2)
OLMO = from_hf(hf.OLMO)  # OLMo-1's LayerNorm has no parameters: there are no norm tensors to read
STABLELM = from_hf(hf.STABLELM)
# bert.py fuses q/k/v when it can; post-LN as in the HF table, under bert.py's names.
BERT = from_hf(
    hf.BERT,
    qkv=LLAMA_CPP_NAMES[Role.QKV],
    qkv_layout=QKVLayout.CONTIGUOUS,
    attn_norm=("layer_output_norm.weight",),
    ffn_norm=("attn_output_norm.weight",),
)

# 2025-26 families. Converters checked: Olmo2Model (also OLMo-3), Exaone4Model, SeedOssModel,
# CommandR2Model, Cohere2Model and Phi2Model write HF rows unchanged; GraniteModel inherits
# LlamaModel.permute (undone by the reader); ApertusModel sets undo_permute=False and moves
# xIELU's scalars into the metadata.
OLMO2 = from_hf(hf.OLMO2)
EXAONE4 = from_hf(hf.EXAONE4)
GRANITE = from_hf(hf.GRANITE)
# gguf-py maps Seed-OSS's (and GLM-4.5's) post_attention_layernorm, their pre-FFN norm, to `post_attention_norm`.
_PRE_FFN_AS_POST_ATTENTION: dict[str, Any] = dict(ffn_norm=("post_attention_norm.weight",))
SEED_OSS = from_hf(hf.SEED_OSS, **_PRE_FFN_AS_POST_ATTENTION)
APERTUS = from_hf(hf.APERTUS)
COHERE = from_hf(hf.COHERE)  # parallel block: attention and FFN both read `attn_norm`
PHI = from_hf(hf.PHI)
# Checked in conversion/llama.py (SmolLM3Model: LlamaModel, rows permuted), ernie.py
# (Ernie4_5Model splits a fused qkv_proj / up_gate_proj into q, k, v / gate, up;
# Ernie4_5MoeModel stacks experts), hunyuan.py (HunYuanModel, rows unchanged,
# query/key_layernorm -> attn_q/k_norm), granite.py (GraniteMoeModel: LlamaModel's
# permutation, input_linear split into ffn_gate_exps then ffn_up_exps), phi.py (PhiMoeModel:
# Phi-3's converter with Mixtral's w1/w2/w3 experts stacked) and glm.py (Glm4MoeModel: rows
# unchanged, NextN blocks appended to block_count).
SMOLLM3 = from_hf(hf.SMOLLM3)
ERNIE4_5 = from_hf(hf.ERNIE4_5)
# the routers' selection-only bias (`e_score_correction_bias`), written as exp_probs_b
_SELECTION_BIAS: dict[str, Any] = dict(known_unused=("exp_probs_b.bias",))
ERNIE4_5_MOE = from_hf(hf.ERNIE4_5_MOE, **_SELECTION_BIAS)
HUNYUAN_DENSE = from_hf(hf.HUNYUAN_DENSE)
GRANITEMOE = from_hf(hf.GRANITEMOE)
PHIMOE = from_hf(hf.PHIMOE)
GLM4_MOE = from_hf(hf.GLM4_MOE, **_PRE_FFN_AS_POST_ATTENTION, **_SELECTION_BIAS)

# DeepSeek-V2/V3 and Kimi-K2 are all arch "deepseek2" (DeepseekV2Model in llama.cpp's conversion/deepseek.py):
# rows are written unchanged (no RoPE permutation); kv_b is either written as is (`attn_kv_b`,
# older converters) or split per head into `attn_k_b` (each head's [d_n, r_kv] block transposed)
# and `attn_v_b` [H, d_v, r_kv]; the leading dense layers have no router; V3's router correction
# bias is `exp_probs_b.bias`.  The file does not say which DeepSeek generation it holds: one table.
DEEPSEEK2 = from_hf(
    hf.DEEPSEEK_V3,
    **_SELECTION_BIAS,
    mla=MlaNames(
        q=("attn_q.weight",),
        q_a=("attn_q_a.weight",),
        q_a_norm=("attn_q_a_norm.weight",),
        q_b=("attn_q_b.weight",),
        kv_a=("attn_kv_a_mqa.weight",),
        kv_a_norm=("attn_kv_a_norm.weight",),
        kv_b=("attn_kv_b.weight",),
        k_b=("attn_k_b.weight",),
        v_b=("attn_v_b.weight",),
        o=("attn_output.weight",),
        input_eps=(),
        k_b_per_head_transposed=True,
    ),
)
# Frontier architectures. GptOssModel (conversion/gpt_oss.py) writes the bf16 stacked experts
# transposed to [E, 2f, d] and de-interleaved (gate = rows ::2, up = rows 1::2) as
# ffn_{gate,up}_exps with their biases, down as ffn_down_exps [E, d, f]; MXFP4 experts are
# repacked as GGML MXFP4 with the same names; the pre-FFN norm is `post_attention_norm`; the
# sinks become `attn_sinks.weight`; no row permutation (a TextModel, not LlamaModel).
# Llama4Model (conversion/llama4.py, a LlamaModel with undo_permute=False) drops the
# `language_model.` prefix and vision tensors, splits gate_up [E, d, 2f] into halves and
# transposes both to ffn_{gate,up}_exps [E, f, d] and down to [E, d, f]; dense layers keep
# ffn_{gate,up,down}, the shared expert is *_shexp.
GPT_OSS = from_hf(hf.GPT_OSS, **_PRE_FFN_AS_POST_ATTENTION, known_unused=("attn_sinks.weight",))
LLAMA4 = from_hf(hf.LLAMA4)


# State-space and hybrid families. The file has no config.json: a mixer's sizes are the header's
# `{arch}.ssm.*` keys (looked up nested, attest.arch.assembly). Mamba2Model (conversion/mamba.py)
# writes in_proj / out_proj unchanged as ssm_in / ssm_out, the conv1d kernels squeezed to
# [C + 2GS, K] as ssm_conv1d (+ .bias), dt_bias as ssm_dt.bias, A_log as ssm_a = -exp(A_log)
# [H, 1], D as ssm_d [H, 1] and the gated norm's gain as ssm_norm [G, C/G] (the last three read
# back flat, attest.sources.gguf_layout); the header's ssm.time_step_rank is the head count H,
# ssm.group_count G, ssm.state_size S, ssm.inner_size C, ssm.conv_kernel K.
def _mamba2_mixer(arch: str) -> MixerNames:
    return MixerNames(
        in_proj=("ssm_in.weight",),
        conv=("ssm_conv1d.weight",),
        out=("ssm_out.weight",),
        norm=("ssm_norm.weight",),
        params=("ssm_dt.bias", "ssm_a", "ssm_d"),
        heads=(f"{arch}.ssm.time_step_rank",),
        head_dim=(),
        state=(f"{arch}.ssm.state_size",),
        groups=(f"{arch}.ssm.group_count",),
    )


MAMBA2 = from_hf(hf.MAMBA2, mixer=_mamba2_mixer("mamba2"))
# FalconH1Model (conversion/falcon_h1.py, a Mamba2Model) folds every muP multiplier into the weights:
# embedding, lm_head, q/v (attention_in), k (key x attention_in), o (attention_out), ffn_gate and
# ffn_down (mlp_multipliers), ssm_out (ssm_out_multiplier) and ssm_in (ssm_in_multiplier times the
# five per-segment ssm_multipliers, which the HF table folds the same way): no multiplier is left to
# read. Attention rows are not permuted; the pre-FFN norm is the suffix-less `ffn_norm` (above).
FALCON_H1 = from_hf(hf.FALCON_H1, mixer=_mamba2_mixer("falcon-h1"))
# Qwen3NextModel (conversion/qwen.py, a Qwen2MoeModel): A_log as ssm_a = -exp(A_log), dt_bias as
# ssm_dt.bias, conv1d squeezed to [2*Hk*dk + Hv*dv, K], every RMSNorm gain but the DeltaNet's gated
# one written as 1+gamma (so the table's offset is 0), and in_proj_qkvz regrouped from per-key-head
# [q, k, v, z] into `attn_qkv` [q; k; v] (each over all heads, in head order) and `attn_gate` z;
# in_proj_ba is `ssm_ba` unchanged; the gated q_proj (query and gate per head) is `attn_q`
# unchanged; post_attention_layernorm, the pre-FFN norm, is `post_attention_norm`; experts stacked.
# Header: ssm.state_size = key head size, ssm.group_count = key heads, ssm.time_step_rank = value
# heads, ssm.inner_size = value heads x value head size. Files from before the split ("legacy GGUF"
# in llama.cpp's loader) hold in_proj_qkvz unchanged as `ssm_in`; both are read. A layer is a
# DeltaNet layer when it has one of them (the header has full_attention_interval, not layer_types).
QWEN3_NEXT = from_hf(
    hf.QWEN3_NEXT,
    **_PRE_FFN_AS_POST_ATTENTION,
    **_SHARED_EXPERT_GATE,
    q_gated=True,
    mixer=MixerNames(
        layout="gated_deltanet",
        in_proj=("attn_qkv.weight", "ssm_in.weight"),
        in_proj_z=("attn_gate.weight",),
        in_proj_ba=("ssm_ba.weight",),
        conv=("ssm_conv1d.weight",),
        out=("ssm_out.weight",),
        norm=("ssm_norm.weight",),
        params=("ssm_dt.bias", "ssm_a"),
        heads=("qwen3next.ssm.time_step_rank",),
        head_dim=(),
        state=("qwen3next.ssm.state_size",),
        groups=("qwen3next.ssm.group_count",),
        layer_types=("layer_types", "linear_attention"),
    ),
)
GGUF_ARCHS: dict[str, GGUFArch] = {
    a.name: a
    for a in (
        GGUFArch("llama", LLAMA, moe_spec=MIXTRAL),
        GGUFArch("qwen2", QWEN2),
        GGUFArch("qwen3", QWEN3),
        GGUFArch("qwen2moe", QWEN2_MOE),
        GGUFArch("deepseek2", DEEPSEEK2),
        GGUFArch("qwen3moe", QWEN3_MOE),
        GGUFArch("gemma", GEMMA),
        GGUFArch("gemma2", GEMMA2),
        GGUFArch("gemma3", GEMMA2),
        GGUFArch("phi3", PHI3),
        GGUFArch("gpt2", GPT2),
        GGUFArch("gptneox", GPT_NEOX),
        GGUFArch("falcon", FALCON),
        GGUFArch("bloom", BLOOM),
        GGUFArch("mpt", MPT),
        GGUFArch("starcoder2", STARCODER2),
        GGUFArch("olmo", OLMO),
        GGUFArch("stablelm", STABLELM),
        GGUFArch("bert", BERT),
        GGUFArch("olmo2", OLMO2),
        GGUFArch("exaone4", EXAONE4),
        GGUFArch("granite", GRANITE),
        GGUFArch("seed_oss", SEED_OSS),
        GGUFArch("apertus", APERTUS),
        GGUFArch("command-r", COHERE),
        GGUFArch("cohere2", COHERE),
        GGUFArch("phi2", PHI),
        GGUFArch("smollm3", SMOLLM3),
        GGUFArch("ernie4_5", ERNIE4_5),
        GGUFArch("ernie4_5-moe", ERNIE4_5_MOE),
        GGUFArch("hunyuan-dense", HUNYUAN_DENSE),
        GGUFArch("granitemoe", GRANITEMOE),
        GGUFArch("phimoe", PHIMOE),
        GGUFArch("glm4moe", GLM4_MOE, extra_blocks_key="nextn_predict_layers"),
        GGUFArch("gpt-oss", GPT_OSS),
        GGUFArch("llama4", LLAMA4),
        GGUFArch("mamba2", MAMBA2),
        GGUFArch("falcon-h1", FALCON_H1),
        GGUFArch("qwen3next", QWEN3_NEXT),
    )
}


def supported_gguf_archs() -> list[str]:
    return list(GGUF_ARCHS)


def gguf_table(root: object, architecture: str) -> GGUFArch:
    """The table for a GGUF file's `general.architecture`; UnsupportedModelError listing the supported ones."""
    entry = GGUF_ARCHS.get(architecture)
    if entry is None:
        raise UnsupportedModelError(
            f"{root}: GGUF architecture '{architecture}' is not supported; "
            f"supported GGUF architectures: {', '.join(supported_gguf_archs())}"
        )
    return entry


def resolve_gguf(source: WeightSource, architecture: str) -> tuple[ArchSpec, dict[str, int]]:
    """The family table and the header's dimensions of a GGUF source whose file names `architecture`."""
    entry = gguf_table(source.root, architecture)
    dims = source.recorded_dims()
    if entry.extra_blocks_key is not None and "layers" in dims:
        extra = source.metadata().get(f"{architecture}.{entry.extra_blocks_key}")
        if isinstance(extra, int) and not isinstance(extra, bool) and 0 < extra < dims["layers"]:
            dims["layers"] -= extra
    return entry.spec_for(dims.get("experts", 0)), dims
