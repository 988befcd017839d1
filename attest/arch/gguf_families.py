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
- MoE experts are stacked: `ffn_{gate,up,down}_exps` [E, f, d] / [E, d, f].
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from attest.arch.spec import ArchSpec, ConfigKeys, ExpertNames, NormKind, QKNormScope, QKVLayout
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

    def spec_for(self, n_experts: int) -> ArchSpec:
        return self.moe_spec if n_experts > 0 and self.moe_spec is not None else self.spec


_MODEL: dict[str, Any] = dict(
    embed=("token_embd.weight",),
    layer_prefix=(LAYER_PREFIX,),
    final_norm=("output_norm.weight",),
    lm_head=("output.weight",),
    source_format="gguf",
    config_keys=ConfigKeys(hidden=(), layers=(), heads=(), kv_heads=(), head_dim=(), experts=()),
)
_ATTN: dict[str, Any] = dict(
    q=("attn_q.weight",),
    k=("attn_k.weight",),
    v=("attn_v.weight",),
    o=("attn_output.weight",),
)
_FUSED_QKV: dict[str, Any] = dict(
    qkv=("attn_qkv.weight",),
    qkv_layout=QKVLayout.CONTIGUOUS,
)
_O: dict[str, Any] = dict(o=("attn_output.weight",))
_QK_NORM: dict[str, Any] = dict(
    q_norm=("attn_q_norm.weight",),
    k_norm=("attn_k_norm.weight",),
)
_GATED_FFN: dict[str, Any] = dict(
    up=("ffn_up.weight",),
    gate=("ffn_gate.weight",),
    down=("ffn_down.weight",),
)
_PLAIN_FFN: dict[str, Any] = dict(
    up=("ffn_up.weight",),
    down=("ffn_down.weight",),
)
_NORMS: dict[str, Any] = dict(
    attn_norm=("attn_norm.weight",),
    ffn_norm=("ffn_norm.weight",),
)
_STACKED_EXPERTS = ExpertNames(
    stacked_up=("ffn_up_exps.weight",),
    stacked_gate=("ffn_gate_exps.weight",),
    stacked_down=("ffn_down_exps.weight",),
)
_MOE: dict[str, Any] = dict(
    experts=_STACKED_EXPERTS,
    router=("ffn_gate_inp.weight",),
)
_SHARED_EXPERT: dict[str, Any] = dict(
    shared_up=("ffn_up_shexp.weight",),
    shared_gate=("ffn_gate_shexp.weight",),
    shared_down=("ffn_down_shexp.weight",),
    # the shared expert's sigmoid gate: read by no invariant
    known_unused=("ffn_gate_inp_shexp.weight",),
)


def _spec(family: str, norm: NormKind, **fields: object) -> ArchSpec:
    return ArchSpec(family=family, hf_model_types=(), norm=norm, **{**_MODEL, **fields})  # type: ignore[arg-type]


# Family names match `attest.arch.families` so a GGUF and its HF original report one family.
LLAMA = _spec("llama", NormKind.RMS, **_ATTN, **_GATED_FFN, **_NORMS)
MIXTRAL = _spec("mixtral", NormKind.RMS, **_ATTN, **_NORMS, **_MOE)
QWEN2 = replace(LLAMA, family="qwen2")
QWEN3 = replace(LLAMA, family="qwen3", **_QK_NORM)
QWEN2_MOE = _spec("qwen2_moe", NormKind.RMS, **_ATTN, **_NORMS, **_MOE, **_SHARED_EXPERT)
QWEN3_MOE = _spec("qwen3_moe", NormKind.RMS, **_ATTN, **_NORMS, **_MOE, **_QK_NORM)
GEMMA = replace(LLAMA, family="gemma", norm_gain_offset=0.0)
GEMMA2 = replace(
    GEMMA,
    family="gemma2",
    attn_out_norm=("post_attention_norm.weight",),
    ffn_out_norm=("post_ffw_norm.weight",),
)
GEMMA3 = replace(GEMMA2, **_QK_NORM)  # HF's gemma2 table also covers gemma3
PHI3 = _spec(
    "phi3",
    NormKind.RMS,
    **_ATTN,  # some Phi-3 GGUFs carry split q/k/v; the fused form is the fallback
    **_FUSED_QKV,
    gate_up=("ffn_up.weight",),
    down=("ffn_down.weight",),
    **_NORMS,
)
GPT2 = _spec("gpt2", NormKind.LAYER, **_FUSED_QKV, **_O, **_PLAIN_FFN, **_NORMS)
GPT_NEOX = replace(GPT2, family="gpt_neox")
FALCON = _spec(
    "falcon",
    NormKind.LAYER,
    **_FUSED_QKV,
    **_O,
    **_PLAIN_FFN,
    attn_norm=("attn_norm_2.weight", "attn_norm.weight"),
    ffn_norm=("attn_norm.weight",),
)
BLOOM = replace(GPT2, family="bloom", embed_norm=("token_embd_norm.weight",))
MPT = replace(GPT2, family="mpt")
STARCODER2 = _spec("starcoder2", NormKind.LAYER, **_ATTN, **_PLAIN_FFN, **_NORMS)
# OLMo-1's LayerNorm has no parameters: there are no norm tensors to read.
OLMO = _spec("olmo", NormKind.LAYER, **_ATTN, **_GATED_FFN)
STABLELM = replace(LLAMA, family="stablelm", norm=NormKind.LAYER)
BERT = _spec(
    "bert",
    NormKind.LAYER,
    **_ATTN,
    **_FUSED_QKV,
    **_PLAIN_FFN,
    embed_norm=("token_embd_norm.weight",),
    # Post-LN, as in the HF table: attention reads the previous layer's output
    # norm (the embedding norm for layer 0); the FFN reads the attention output norm.
    attn_norm=("layer_output_norm.weight",),
    attn_norm_from_previous_layer=True,
    ffn_norm=("attn_output_norm.weight",),
    final_norm=(),
    lm_head=(),
)

# 2025-26 families. Converters checked: Olmo2Model (also OLMo-3), Exaone4Model, SeedOssModel,
# CommandR2Model, Cohere2Model and Phi2Model write HF rows unchanged; GraniteModel inherits
# LlamaModel.permute (undone by the reader); ApertusModel sets undo_permute=False and moves
# xIELU's scalars into the metadata.
_POST_NORMS: dict[str, Any] = dict(
    attn_out_norm=("post_attention_norm.weight",),
    ffn_out_norm=("post_ffw_norm.weight",),
)
OLMO2 = _spec(
    "olmo2", NormKind.RMS, **_ATTN, **_GATED_FFN, **_QK_NORM, **_POST_NORMS, qk_norm_scope=QKNormScope.PROJECTION
)
EXAONE4 = _spec("exaone4", NormKind.RMS, **_ATTN, **_GATED_FFN, **_QK_NORM, **_POST_NORMS)
GRANITE = replace(LLAMA, family="granite")
# gguf-py maps Seed-OSS's post_attention_layernorm (its pre-FFN norm) to `post_attention_norm`.
SEED_OSS = _spec(
    "seed_oss",
    NormKind.RMS,
    **_ATTN,
    **_GATED_FFN,
    attn_norm=("attn_norm.weight",),
    ffn_norm=("post_attention_norm.weight",),
)
APERTUS = _spec("apertus", NormKind.RMS, **_ATTN, **_PLAIN_FFN, **_NORMS, **_QK_NORM)
# Parallel blocks: attention and FFN both read `attn_norm`.
COHERE = _spec(
    "cohere", NormKind.LAYER, **_ATTN, **_GATED_FFN, attn_norm=("attn_norm.weight",), ffn_norm=("attn_norm.weight",)
)
PHI = _spec(
    "phi", NormKind.LAYER, **_ATTN, **_PLAIN_FFN, attn_norm=("attn_norm.weight",), ffn_norm=("attn_norm.weight",)
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
GPT_OSS = _spec(
    "gpt_oss",
    NormKind.RMS,
    **_ATTN,
    attn_norm=("attn_norm.weight",),
    ffn_norm=("post_attention_norm.weight",),
    **_MOE,
    known_unused=("attn_sinks.weight",),
)
LLAMA4 = _spec(
    "llama4",
    NormKind.RMS,
    **_ATTN,
    **_GATED_FFN,
    **_NORMS,
    **_MOE,
    shared_up=("ffn_up_shexp.weight",),
    shared_gate=("ffn_gate_shexp.weight",),
    shared_down=("ffn_down_shexp.weight",),
)

GGUF_ARCHS: dict[str, GGUFArch] = {
    a.name: a
    for a in (
        GGUFArch("llama", LLAMA, moe_spec=MIXTRAL),
        GGUFArch("qwen2", QWEN2),
        GGUFArch("qwen3", QWEN3),
        GGUFArch("qwen2moe", QWEN2_MOE),
        GGUFArch("qwen3moe", QWEN3_MOE),
        GGUFArch("gemma", GEMMA),
        GGUFArch("gemma2", GEMMA2),
        GGUFArch("gemma3", GEMMA3),
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
        GGUFArch("gpt-oss", GPT_OSS),
        GGUFArch("llama4", LLAMA4),
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
    return entry.spec_for(dims.get("experts", 0)), dims
