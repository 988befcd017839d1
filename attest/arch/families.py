"""Per-family tensor tables for Hugging Face checkpoints.

Each entry is pure data (see `attest.arch.spec`).  GGUF tables live in
`attest.arch.gguf_families`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from attest.arch.spec import (
    ArchSpec,
    AttentionKind,
    ConfigKeys,
    ConfigTest,
    ExpertLayout,
    ExpertNames,
    MixerNames,
    MlaNames,
    MoeLayerRule,
    NormKind,
    QKNormScope,
    QKVLayout,
    Variant,
)

_LLAMA_ATTN: dict[str, Any] = dict(
    q=("self_attn.q_proj.weight",),
    k=("self_attn.k_proj.weight",),
    v=("self_attn.v_proj.weight",),
    o=("self_attn.o_proj.weight",),
)
_LLAMA_MLP: dict[str, Any] = dict(
    up=("mlp.up_proj.weight",),
    gate=("mlp.gate_proj.weight",),
    down=("mlp.down_proj.weight",),
)
_LLAMA_NORMS: dict[str, Any] = dict(
    attn_norm=("input_layernorm.weight",),
    ffn_norm=("post_attention_layernorm.weight",),
)
_LLAMA_MODEL: dict[str, Any] = dict(
    embed=("model.embed_tokens.weight",),
    layer_prefix=("model.layers.{i}.",),
    final_norm=("model.norm.weight",),
    lm_head=("lm_head.weight",),
)

LLAMA = ArchSpec(
    family="llama",
    hf_model_types=("llama",),
    norm=NormKind.RMS,
    **_LLAMA_MODEL,
    **_LLAMA_ATTN,
    **_LLAMA_MLP,
    **_LLAMA_NORMS,
    detect=("self_attn.q_proj.weight", "mlp.gate_proj.weight", "input_layernorm.weight"),
)

MISTRAL = replace(LLAMA, family="mistral", hf_model_types=("mistral",), detect=())
QWEN2 = replace(LLAMA, family="qwen2", hf_model_types=("qwen2",), detect=())
QWEN3 = replace(
    LLAMA,
    family="qwen3",
    hf_model_types=("qwen3",),
    q_norm=("self_attn.q_norm.weight",),
    k_norm=("self_attn.k_norm.weight",),
    detect=("self_attn.q_norm.weight", "mlp.gate_proj.weight"),
)
GEMMA = replace(
    LLAMA,
    family="gemma",
    hf_model_types=("gemma",),
    norm_gain_offset=1.0,
    detect=(),
)
GEMMA2 = replace(
    GEMMA,
    family="gemma2",
    hf_model_types=("gemma2", "gemma3_text", "gemma3"),
    ffn_norm=("pre_feedforward_layernorm.weight",),
    attn_out_norm=("post_attention_layernorm.weight",),
    ffn_out_norm=("post_feedforward_layernorm.weight",),
    # Gemma-3 adds per-head q/k norms; absent names are simply skipped.
    q_norm=("self_attn.q_norm.weight",),
    k_norm=("self_attn.k_norm.weight",),
    detect=("pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight"),
)
PHI3 = ArchSpec(
    family="phi3",
    hf_model_types=("phi3",),
    norm=NormKind.RMS,
    **_LLAMA_MODEL,
    qkv=("self_attn.qkv_proj.weight",),
    qkv_layout=QKVLayout.CONTIGUOUS,
    o=("self_attn.o_proj.weight",),
    gate_up=("mlp.gate_up_proj.weight",),
    down=("mlp.down_proj.weight",),
    **_LLAMA_NORMS,
    detect=("self_attn.qkv_proj.weight", "mlp.gate_up_proj.weight"),
)
GPT2 = ArchSpec(
    family="gpt2",
    hf_model_types=("gpt2",),
    norm=NormKind.LAYER,
    embed=("transformer.wte.weight", "wte.weight"),
    layer_prefix=("transformer.h.{i}.", "h.{i}."),
    qkv=("attn.c_attn.weight",),
    qkv_layout=QKVLayout.CONTIGUOUS,
    o=("attn.c_proj.weight",),
    up=("mlp.c_fc.weight",),
    down=("mlp.c_proj.weight",),
    attn_norm=("ln_1.weight",),
    ffn_norm=("ln_2.weight",),
    final_norm=("transformer.ln_f.weight", "ln_f.weight"),
    lm_head=("lm_head.weight",),
    transposed=True,
    config_keys=ConfigKeys(hidden=("n_embd",), layers=("n_layer",), heads=("n_head",), kv_heads=()),
    detect=("attn.c_attn.weight", "mlp.c_fc.weight"),
)
GPT_NEOX = ArchSpec(
    family="gpt_neox",
    hf_model_types=("gpt_neox",),
    norm=NormKind.LAYER,
    embed=("gpt_neox.embed_in.weight",),
    layer_prefix=("gpt_neox.layers.{i}.",),
    qkv=("attention.query_key_value.weight",),
    qkv_layout=QKVLayout.PER_HEAD,
    o=("attention.dense.weight",),
    up=("mlp.dense_h_to_4h.weight",),
    down=("mlp.dense_4h_to_h.weight",),
    attn_norm=("input_layernorm.weight",),
    ffn_norm=("post_attention_layernorm.weight",),
    final_norm=("gpt_neox.final_layer_norm.weight",),
    lm_head=("embed_out.weight", "lm_head.weight"),
    config_keys=ConfigKeys(kv_heads=()),
    detect=("attention.query_key_value.weight", "mlp.dense_h_to_4h.weight", "input_layernorm.weight"),
)
GPTJ = ArchSpec(
    family="gptj",
    hf_model_types=("gptj",),
    norm=NormKind.LAYER,
    embed=("transformer.wte.weight",),
    layer_prefix=("transformer.h.{i}.",),
    q=("attn.q_proj.weight",),
    k=("attn.k_proj.weight",),
    v=("attn.v_proj.weight",),
    o=("attn.out_proj.weight",),
    up=("mlp.fc_in.weight",),
    down=("mlp.fc_out.weight",),
    # Parallel block: attention and MLP both read ln_1.
    attn_norm=("ln_1.weight",),
    ffn_norm=("ln_1.weight",),
    final_norm=("transformer.ln_f.weight",),
    lm_head=("lm_head.weight",),
    config_keys=ConfigKeys(hidden=("n_embd",), layers=("n_layer",), heads=("n_head",), kv_heads=()),
    detect=("attn.q_proj.weight", "mlp.fc_in.weight"),
)
OPT = ArchSpec(
    family="opt",
    hf_model_types=("opt",),
    norm=NormKind.LAYER,
    embed=("model.decoder.embed_tokens.weight", "decoder.embed_tokens.weight"),
    layer_prefix=("model.decoder.layers.{i}.", "decoder.layers.{i}."),
    q=("self_attn.q_proj.weight",),
    k=("self_attn.k_proj.weight",),
    v=("self_attn.v_proj.weight",),
    o=("self_attn.out_proj.weight",),
    up=("fc1.weight",),
    down=("fc2.weight",),
    attn_norm=("self_attn_layer_norm.weight",),
    ffn_norm=("final_layer_norm.weight",),
    final_norm=("model.decoder.final_layer_norm.weight", "decoder.final_layer_norm.weight"),
    lm_head=("lm_head.weight",),
    config_keys=ConfigKeys(kv_heads=()),
    detect=("self_attn_layer_norm.weight", "fc1.weight"),
)
FALCON = ArchSpec(
    family="falcon",
    hf_model_types=("falcon", "RefinedWeb", "RefinedWebModel"),
    norm=NormKind.LAYER,
    embed=("transformer.word_embeddings.weight",),
    layer_prefix=("transformer.h.{i}.",),
    qkv=("self_attention.query_key_value.weight",),
    qkv_layout=QKVLayout.GROUPED,
    o=("self_attention.dense.weight",),
    up=("mlp.dense_h_to_4h.weight",),
    down=("mlp.dense_4h_to_h.weight",),
    attn_norm=("input_layernorm.weight", "ln_attn.weight"),
    ffn_norm=("post_attention_layernorm.weight", "input_layernorm.weight", "ln_mlp.weight"),
    final_norm=("transformer.ln_f.weight",),
    lm_head=("lm_head.weight",),
    config_keys=ConfigKeys(
        hidden=("hidden_size", "n_embed"),
        layers=("num_hidden_layers", "n_layer"),
        heads=("num_attention_heads", "n_head"),
        kv_heads=("num_kv_heads", "n_head_kv"),
    ),
    detect=("self_attention.query_key_value.weight",),
    variants=(
        # Falcon-40B/180B decoder: separate norms for the parallel attention and MLP;
        # Falcon2-11B (num_ln_in_parallel_attn=1) has one input_layernorm for both.
        Variant(
            when=(ConfigTest("new_decoder_architecture", True),),
            overrides=dict(
                attn_norm=("ln_attn.weight", "input_layernorm.weight"),
                ffn_norm=("ln_mlp.weight", "input_layernorm.weight"),
            ),
            label="new_decoder_architecture",
        ),
        # Falcon-RW: plain MHA with per-head interleaved q,k,v.
        Variant(
            when=(ConfigTest("new_decoder_architecture", False), ConfigTest("multi_query", False, default=True)),
            overrides=dict(qkv_layout=QKVLayout.PER_HEAD),
            label="falcon-rw",
        ),
        # Falcon-7B: the old decoder with multi_query has one KV head, as transformers'
        # FalconAttention reads it, even when a re-saved config.json carries num_kv_heads.
        Variant(
            when=(ConfigTest("new_decoder_architecture", False), ConfigTest("multi_query", True, default=True)),
            overrides=dict(fixed_kv_heads=1),
            label="multi_query",
        ),
    ),
)
BLOOM = ArchSpec(
    family="bloom",
    hf_model_types=("bloom",),
    norm=NormKind.LAYER,
    embed=("transformer.word_embeddings.weight", "word_embeddings.weight"),
    embed_norm=("transformer.word_embeddings_layernorm.weight", "word_embeddings_layernorm.weight"),
    layer_prefix=("transformer.h.{i}.",),
    qkv=("self_attention.query_key_value.weight",),
    qkv_layout=QKVLayout.PER_HEAD,
    o=("self_attention.dense.weight",),
    up=("mlp.dense_h_to_4h.weight",),
    down=("mlp.dense_4h_to_h.weight",),
    attn_norm=("input_layernorm.weight",),
    ffn_norm=("post_attention_layernorm.weight",),
    final_norm=("transformer.ln_f.weight", "ln_f.weight"),
    lm_head=("lm_head.weight",),
    config_keys=ConfigKeys(
        layers=("n_layer", "num_hidden_layers"), heads=("n_head", "num_attention_heads"), kv_heads=()
    ),
    detect=("self_attention.query_key_value.weight", "post_attention_layernorm.weight", "mlp.dense_h_to_4h.bias"),
)
MPT = ArchSpec(
    family="mpt",
    hf_model_types=("mpt",),
    norm=NormKind.LAYER,
    embed=("transformer.wte.weight",),
    layer_prefix=("transformer.blocks.{i}.",),
    qkv=("attn.Wqkv.weight",),
    qkv_layout=QKVLayout.CONTIGUOUS,
    o=("attn.out_proj.weight",),
    up=("ffn.up_proj.weight",),
    down=("ffn.down_proj.weight",),
    attn_norm=("norm_1.weight",),
    ffn_norm=("norm_2.weight",),
    final_norm=("transformer.norm_f.weight",),
    lm_head=("lm_head.weight",),
    config_keys=ConfigKeys(
        hidden=("d_model",), layers=("n_layers",), heads=("n_heads",), kv_heads=("attn_config.kv_n_heads",)
    ),
    detect=("attn.Wqkv.weight", "norm_1.weight"),
)
STARCODER2 = ArchSpec(
    family="starcoder2",
    hf_model_types=("starcoder2",),
    norm=NormKind.LAYER,
    **_LLAMA_MODEL,
    **_LLAMA_ATTN,
    up=("mlp.c_fc.weight",),
    down=("mlp.c_proj.weight",),
    **_LLAMA_NORMS,
    detect=("self_attn.q_proj.weight", "mlp.c_fc.weight"),
)
OLMO = ArchSpec(
    family="olmo",
    hf_model_types=("olmo",),
    # OLMo-1 uses a LayerNorm without any parameters: no gains to fold.
    norm=NormKind.LAYER,
    **_LLAMA_MODEL,
    **_LLAMA_ATTN,
    **_LLAMA_MLP,
    detect=(),
)
STABLELM = replace(
    LLAMA,
    family="stablelm",
    hf_model_types=("stablelm", "stablelm_epoch"),
    norm=NormKind.LAYER,
    detect=(),
)
MIXTRAL = ArchSpec(
    family="mixtral",
    hf_model_types=("mixtral",),
    norm=NormKind.RMS,
    **_LLAMA_MODEL,
    **_LLAMA_ATTN,
    **_LLAMA_NORMS,
    experts=ExpertNames(
        prefix="block_sparse_moe.experts.{e}.",
        gate=("w1.weight",),
        up=("w3.weight",),
        down=("w2.weight",),
        stacked_gate_up=("mlp.experts.gate_up_proj", "block_sparse_moe.experts.gate_up_proj"),
        stacked_down=("mlp.experts.down_proj", "block_sparse_moe.experts.down_proj"),
    ),
    router=("block_sparse_moe.gate.weight", "mlp.gate.weight"),
    detect=("block_sparse_moe.gate.weight",),
)
_QWEN_EXPERTS = ExpertNames(
    prefix="mlp.experts.{e}.",
    gate=("gate_proj.weight",),
    up=("up_proj.weight",),
    down=("down_proj.weight",),
    stacked_gate_up=("mlp.experts.gate_up_proj",),
    stacked_down=("mlp.experts.down_proj",),
)
QWEN2_MOE = ArchSpec(
    family="qwen2_moe",
    hf_model_types=("qwen2_moe",),
    norm=NormKind.RMS,
    **_LLAMA_MODEL,
    **_LLAMA_ATTN,
    **_LLAMA_NORMS,
    **_LLAMA_MLP,  # dense layers: those in mlp_only_layers or off the decoder_sparse_step
    experts=_QWEN_EXPERTS,
    router=("mlp.gate.weight",),
    moe_layers=MoeLayerRule(every=("decoder_sparse_step",), dense=("mlp_only_layers",)),
    shared_up=("mlp.shared_expert.up_proj.weight",),
    shared_gate=("mlp.shared_expert.gate_proj.weight",),
    shared_down=("mlp.shared_expert.down_proj.weight",),
    known_unused=("mlp.shared_expert_gate.weight",),
    detect=("mlp.shared_expert.up_proj.weight", "mlp.gate.weight"),
)
QWEN3_MOE = replace(
    QWEN2_MOE,
    family="qwen3_moe",
    hf_model_types=("qwen3_moe",),
    q_norm=("self_attn.q_norm.weight",),
    k_norm=("self_attn.k_norm.weight",),
    detect=("self_attn.q_norm.weight", "mlp.gate.weight"),
)
BERT = ArchSpec(
    family="bert",
    hf_model_types=("bert",),
    norm=NormKind.LAYER,
    embed=("embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight"),
    embed_norm=("embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.weight"),
    layer_prefix=("encoder.layer.{i}.", "bert.encoder.layer.{i}."),
    q=("attention.self.query.weight",),
    k=("attention.self.key.weight",),
    v=("attention.self.value.weight",),
    o=("attention.output.dense.weight",),
    up=("intermediate.dense.weight",),
    down=("output.dense.weight",),
    # Post-LN: attention reads the previous layer's output norm (the embedding
    # norm for layer 0) and the FFN reads the attention block's output norm.
    attn_norm=("output.LayerNorm.weight",),
    attn_norm_from_previous_layer=True,
    ffn_norm=("attention.output.LayerNorm.weight",),
    config_keys=ConfigKeys(kv_heads=()),
    detect=("attention.self.query.weight", "intermediate.dense.weight"),
)

MPNET = replace(
    BERT,
    family="mpnet",
    hf_model_types=("mpnet",),
    embed=("embeddings.word_embeddings.weight", "mpnet.embeddings.word_embeddings.weight"),
    embed_norm=("embeddings.LayerNorm.weight", "mpnet.embeddings.LayerNorm.weight"),
    layer_prefix=("encoder.layer.{i}.", "mpnet.encoder.layer.{i}."),
    q=("attention.attn.q.weight",),
    k=("attention.attn.k.weight",),
    v=("attention.attn.v.weight",),
    o=("attention.attn.o.weight",),
    # Post-LN like BERT; the relative-position bias is shared by all layers and read by no term.
    ffn_norm=("attention.LayerNorm.weight",),
    detect=("attention.attn.q.weight", "intermediate.dense.weight"),
)

# --------------------------------------------------------------------------- 2025-26 families
_QK_NORM: dict[str, Any] = dict(q_norm=("self_attn.q_norm.weight",), k_norm=("self_attn.k_norm.weight",))
# Post-sublayer norms only (OLMo-2/3, EXAONE-4): attention and FFN read the raw residual
# stream, and each sublayer's output is normalised before the residual add.
_POST_NORMS: dict[str, Any] = dict(
    attn_norm=(),
    ffn_norm=(),
    attn_out_norm=("post_attention_layernorm.weight",),
    ffn_out_norm=("post_feedforward_layernorm.weight",),
)
OLMO2 = replace(
    LLAMA,
    family="olmo2",
    hf_model_types=("olmo2", "olmo3"),
    **_POST_NORMS,
    # q/k RMSNorm over the whole q (k) projection, not per head: gains are [H*dh] / [Hkv*dh].
    **_QK_NORM,
    qk_norm_scope=QKNormScope.PROJECTION,
    detect=(),
)
EXAONE4 = replace(LLAMA, family="exaone4", hf_model_types=("exaone4",), **_POST_NORMS, **_QK_NORM, detect=())
# Granite's embedding, residual, attention and logits multipliers are scalars on whole
# terms: they cancel in the standardised similarity (docs/method.md), so Granite is Llama's layout.
GRANITE = replace(LLAMA, family="granite", hf_model_types=("granite",), detect=())
# SmolLM3 (NoPE layers), ERNIE-4.5, Seed-OSS (q/k/v biases): position-free terms see Llama's layout.
SMOLLM3 = replace(LLAMA, family="smollm3", hf_model_types=("smollm3",), detect=())
ERNIE4_5 = replace(LLAMA, family="ernie4_5", hf_model_types=("ernie4_5",), detect=())
SEED_OSS = replace(LLAMA, family="seed_oss", hf_model_types=("seed_oss",), detect=())
HUNYUAN_DENSE = replace(
    LLAMA,
    family="hunyuan_v1_dense",
    hf_model_types=("hunyuan_v1_dense",),
    q_norm=("self_attn.query_layernorm.weight",),
    k_norm=("self_attn.key_layernorm.weight",),
    detect=(),
)
APERTUS = ArchSpec(
    family="apertus",
    hf_model_types=("apertus",),
    norm=NormKind.RMS,
    **_LLAMA_MODEL,
    **_LLAMA_ATTN,
    **_QK_NORM,
    # non-gated FFN with the xIELU activation, whose learned scalars no term reads
    up=("mlp.up_proj.weight",),
    down=("mlp.down_proj.weight",),
    attn_norm=("attention_layernorm.weight",),
    ffn_norm=("feedforward_layernorm.weight",),
    known_unused=("mlp.act_fn.alpha_p", "mlp.act_fn.alpha_n", "mlp.act_fn.beta", "mlp.act_fn.eps"),
    detect=("attention_layernorm.weight", "feedforward_layernorm.weight"),
)
# Cohere (Command-R) and Cohere2: parallel block, attention and FFN read one bias-free LayerNorm.
# Cohere's `use_qk_norm` (Command-R+) adds a LayerNorm over each q/k head with a gain per head, [H, dh].
COHERE = replace(
    LLAMA,
    family="cohere",
    hf_model_types=("cohere", "cohere2"),
    norm=NormKind.LAYER,
    ffn_norm=("input_layernorm.weight",),
    **_QK_NORM,
    qk_norm_scope=QKNormScope.HEAD_GAINS,
    qk_norm_kind=NormKind.LAYER,
    detect=(),
)
# Phi-1/1.5/2: parallel block with one LayerNorm (with bias), biases everywhere, partial rotary;
# `qk_layernorm` adds a LayerNorm (gain and bias) over each q/k head, one [dh] gain for all heads.
PHI = ArchSpec(
    family="phi",
    hf_model_types=("phi",),
    norm=NormKind.LAYER,
    embed=("model.embed_tokens.weight",),
    layer_prefix=("model.layers.{i}.",),
    q=("self_attn.q_proj.weight",),
    k=("self_attn.k_proj.weight",),
    v=("self_attn.v_proj.weight",),
    o=("self_attn.dense.weight",),
    q_norm=("self_attn.q_layernorm.weight",),
    k_norm=("self_attn.k_layernorm.weight",),
    qk_norm_kind=NormKind.LAYER,
    up=("mlp.fc1.weight",),
    down=("mlp.fc2.weight",),
    attn_norm=("input_layernorm.weight",),
    ffn_norm=("input_layernorm.weight",),
    final_norm=("model.final_layernorm.weight",),
    lm_head=("lm_head.weight",),
    detect=("self_attn.dense.weight", "mlp.fc1.weight"),
)
GRANITEMOE = ArchSpec(
    family="granitemoe",
    hf_model_types=("granitemoe",),
    norm=NormKind.RMS,
    **_LLAMA_MODEL,
    **_LLAMA_ATTN,
    **_LLAMA_NORMS,
    # stacked on disk: input_linear [E, 2f, d] (gate half first), output_linear [E, d, f]
    experts=ExpertNames(
        stacked_gate_up=("block_sparse_moe.input_linear.weight", "block_sparse_moe.experts.gate_up_proj"),
        stacked_down=("block_sparse_moe.output_linear.weight", "block_sparse_moe.experts.down_proj"),
    ),
    router=("block_sparse_moe.router.layer.weight", "block_sparse_moe.router.weight"),
    detect=("block_sparse_moe.input_linear.weight",),
)
_MIXTRAL_EXPERTS = ExpertNames(
    prefix="block_sparse_moe.experts.{e}.",
    gate=("w1.weight",),
    up=("w3.weight",),
    down=("w2.weight",),
    stacked_gate_up=("block_sparse_moe.experts.gate_up_proj", "mlp.experts.gate_up_proj"),
    stacked_down=("block_sparse_moe.experts.down_proj", "mlp.experts.down_proj"),
)
# PhiMoE: Mixtral's expert naming on disk, LayerNorm with biases, the router in memory at mlp.router.
PHIMOE = replace(
    MIXTRAL,
    family="phimoe",
    hf_model_types=("phimoe",),
    norm=NormKind.LAYER,
    experts=_MIXTRAL_EXPERTS,
    router=("block_sparse_moe.gate.weight", "mlp.router.weight"),
    detect=(),
)
# ERNIE-4.5-MoE and GLM-4.5: Qwen-style experts, shared experts, and dense FFN layers
# before (or between) the MoE ones, chosen by the config (`MoeLayerRule`).
_DEEPSEEK_SHARED: dict[str, Any] = dict(
    shared_up=("mlp.shared_experts.up_proj.weight",),
    shared_gate=("mlp.shared_experts.gate_proj.weight",),
    shared_down=("mlp.shared_experts.down_proj.weight",),
)
ERNIE4_5_MOE = ArchSpec(
    family="ernie4_5_moe",
    hf_model_types=("ernie4_5_moe",),
    norm=NormKind.RMS,
    **_LLAMA_MODEL,
    **_LLAMA_ATTN,
    **_LLAMA_NORMS,
    **_LLAMA_MLP,  # the dense layers
    experts=_QWEN_EXPERTS,
    router=("mlp.gate.weight",),
    **_DEEPSEEK_SHARED,
    moe_layers=MoeLayerRule(
        first=("moe_layer_start_index",), last=("moe_layer_end_index",), every=("moe_layer_interval",)
    ),
    config_keys=ConfigKeys(experts=("moe_num_experts",)),
    # the router's selection-only bias (it does not change the logits any term reads)
    known_unused=("mlp.moe_statics.e_score_correction_bias",),
    detect=(),  # layer 0 is usually dense: nothing there tells the family apart
)
GLM4_MOE = replace(
    ERNIE4_5_MOE,
    family="glm4_moe",
    hf_model_types=("glm4_moe",),
    **_QK_NORM,  # per-head, when use_qk_norm
    moe_layers=MoeLayerRule(first=("first_k_dense_replace",)),
    config_keys=ConfigKeys(experts=("n_routed_experts",)),
    known_unused=(),  # mlp.gate.e_score_correction_bias sits in the router's module
    detect=(),
)
# Multi-head latent attention (docs/method.md, "MLA"); the FFN is DeepSeek-MoE: leading dense
# layers (`first_k_dense_replace`), then routed experts (`n_routed_experts`, per-expert on the hub
# and after save_pretrained, stacked in memory) plus one shared-experts MLP.  `moe_layer_freq` is 1
# in every released checkpoint and transformers ignores it, so the table does too.
_DEEPSEEK_MLA = MlaNames(
    q=("self_attn.q_proj.weight",),
    q_a=("self_attn.q_a_proj.weight",),
    q_a_norm=("self_attn.q_a_layernorm.weight",),
    q_b=("self_attn.q_b_proj.weight",),
    kv_a=("self_attn.kv_a_proj_with_mqa.weight",),
    kv_a_norm=("self_attn.kv_a_layernorm.weight",),
    kv_b=("self_attn.kv_b_proj.weight",),
    o=("self_attn.o_proj.weight",),
)
DEEPSEEK_V2 = ArchSpec(
    family="deepseek_v2",
    hf_model_types=("deepseek_v2",),
    norm=NormKind.RMS,
    **_LLAMA_MODEL,
    **_LLAMA_NORMS,
    **_LLAMA_MLP,  # the leading dense layers
    attention=AttentionKind.MLA,
    mla=_DEEPSEEK_MLA,
    experts=_QWEN_EXPERTS,
    router=("mlp.gate.weight",),
    **_DEEPSEEK_SHARED,
    moe_layers=MoeLayerRule(first=("first_k_dense_replace",)),
    config_keys=ConfigKeys(experts=("n_routed_experts",)),
    detect=(
        "self_attn.kv_a_proj_with_mqa.weight",
        "self_attn.kv_a_layernorm.weight",
        "self_attn.q_proj.weight",
        "input_layernorm.weight",
    ),
)
# V3 adds the sigmoid router's selection-only `e_score_correction_bias` (in the router's module,
# so claimed with it, and never read: it picks experts but is not part of the logits).
DEEPSEEK_V3 = replace(
    DEEPSEEK_V2,
    family="deepseek_v3",
    hf_model_types=("deepseek_v3", "kimi_k2"),
    detect=(
        "self_attn.kv_a_proj_with_mqa.weight",
        "self_attn.kv_a_layernorm.weight",
        "self_attn.q_a_proj.weight",
        "input_layernorm.weight",
    ),
)
# GPT-OSS: stacked experts [E, d, 2f] with gate/up interleaved along the last axis, down
# [E, f, d], expert and router biases, q/k/v/o biases, per-head attention sinks,
# alternating sliding/full layers and a clamped SwiGLU. The released checkpoints keep the
# experts as MXFP4 `_blocks`/`_scales` (dequantised by attest.arch.mxfp4). Biases, sinks
# and the activation's alpha/limit enter no term (docs/method.md).
GPT_OSS = ArchSpec(
    family="gpt_oss",
    hf_model_types=("gpt_oss",),
    norm=NormKind.RMS,
    **_LLAMA_MODEL,
    **_LLAMA_ATTN,
    **_LLAMA_NORMS,
    experts=ExpertNames(
        stacked_gate_up=("mlp.experts.gate_up_proj", "mlp.experts.gate_up_proj_blocks"),
        stacked_down=("mlp.experts.down_proj", "mlp.experts.down_proj_blocks"),
        stacked_layout=ExpertLayout.STACKED_INTERLEAVED,
    ),
    router=("mlp.router.weight",),
    # one learned logit per head, a softmax column no key writes (docs/method.md)
    known_unused=("self_attn.sinks",),
    detect=("self_attn.sinks", "mlp.router.weight"),
)
# Llama-4 text decoder (`llama4_text`, and the text part of `llama4`, saved under
# `language_model.`): MoE layers with one shared expert interleaved with dense FFN layers
# (`moe_layers`, else every `interleave_moe_layer_step`-th), stacked experts gate_up
# [E, d, 2f] (halves) / down [E, f, d], NoPE layers and a gain-free L2 q/k norm on the
# RoPE layers, which no term reads.
_L4 = ("model.", "language_model.model.")
LLAMA4 = ArchSpec(
    family="llama4",
    hf_model_types=("llama4_text", "llama4"),
    norm=NormKind.RMS,
    embed=tuple(p + "embed_tokens.weight" for p in _L4),
    layer_prefix=tuple(p + "layers.{i}." for p in _L4),
    final_norm=tuple(p + "norm.weight" for p in _L4),
    lm_head=("lm_head.weight", "language_model.lm_head.weight"),
    **_LLAMA_ATTN,
    **_LLAMA_NORMS,
    up=("feed_forward.up_proj.weight",),
    gate=("feed_forward.gate_proj.weight",),
    down=("feed_forward.down_proj.weight",),
    experts=ExpertNames(
        stacked_gate_up=("feed_forward.experts.gate_up_proj",),
        stacked_down=("feed_forward.experts.down_proj",),
        stacked_layout=ExpertLayout.STACKED_TRANSPOSED,
    ),
    router=("feed_forward.router.weight",),
    shared_up=("feed_forward.shared_expert.up_proj.weight",),
    shared_gate=("feed_forward.shared_expert.gate_proj.weight",),
    shared_down=("feed_forward.shared_expert.down_proj.weight",),
    moe_layers=MoeLayerRule(
        listed=("moe_layers", "text_config.moe_layers"),
        every=("interleave_moe_layer_step", "text_config.interleave_moe_layer_step"),
    ),
    config_keys=ConfigKeys(
        hidden=("hidden_size", "text_config.hidden_size"),
        layers=("num_hidden_layers", "text_config.num_hidden_layers"),
        heads=("num_attention_heads", "text_config.num_attention_heads"),
        kv_heads=("num_key_value_heads", "text_config.num_key_value_heads"),
        head_dim=("head_dim", "text_config.head_dim"),
        experts=("num_local_experts", "text_config.num_local_experts"),
    ),
    detect=(),  # layer 0 is dense in the interleaved models: nothing there tells Llama-4 apart
)
# --------------------------------------------------------------------------- state-space and hybrid families
# attention kind: ssm -- the mixer's tensors and sizes are data (`MixerNames`, read by attest.arch.mixers)
MAMBA2 = ArchSpec(
    family="mamba2",
    hf_model_types=("mamba2",),
    norm=NormKind.RMS,
    embed=("backbone.embeddings.weight", "backbone.embedding.weight"),
    layer_prefix=("backbone.layers.{i}.",),
    attn_norm=("norm.weight",),  # the block's pre-mixer RMSNorm
    final_norm=("backbone.norm_f.weight",),
    lm_head=("lm_head.weight",),
    config_keys=ConfigKeys(heads=("num_heads",), kv_heads=()),
    mixer=MixerNames(
        in_proj=("mixer.in_proj.weight",),
        conv=("mixer.conv1d.weight",),
        out=("mixer.out_proj.weight",),
        norm=("mixer.norm.weight",),
        params=("mixer.dt_bias", "mixer.A_log", "mixer.D"),
    ),
    detect=("mixer.in_proj.weight", "mixer.conv1d.weight"),
)
# Falcon-H1: attention and a Mamba-2 mixer side by side on one input_layernorm, then a gated MLP.
# Its muP scalars (embedding, key, attention in/out, MLP gate/down, ssm out, lm head) scale whole
# terms and cancel in the standardised similarity; the per-segment ssm multipliers are folded.
FALCON_H1 = ArchSpec(
    family="falcon_h1",
    hf_model_types=("falcon_h1",),
    norm=NormKind.RMS,
    embed=("model.embed_tokens.weight",),
    layer_prefix=("model.layers.{i}.",),
    **_LLAMA_ATTN,
    up=("feed_forward.up_proj.weight",),
    gate=("feed_forward.gate_proj.weight",),
    down=("feed_forward.down_proj.weight",),
    attn_norm=("input_layernorm.weight",),
    ffn_norm=("pre_ff_layernorm.weight",),
    final_norm=("model.final_layernorm.weight",),
    lm_head=("lm_head.weight",),
    mixer=MixerNames(
        in_proj=("mamba.in_proj.weight",),
        conv=("mamba.conv1d.weight",),
        out=("mamba.out_proj.weight",),
        norm=("mamba.norm.weight",),
        params=("mamba.dt_bias", "mamba.A_log", "mamba.D"),
        heads=("mamba_n_heads",),
        head_dim=("mamba_d_head",),
        state=("mamba_d_state",),
        groups=("mamba_n_groups",),
        segment_multipliers=("ssm_multipliers",),
        input_multiplier=("ssm_in_multiplier",),
    ),
    detect=("mamba.in_proj.weight", "self_attn.q_proj.weight"),
)
# Qwen3-Next: gated-DeltaNet layers and gated full-attention layers (per `layer_types`), each followed
# by Qwen-MoE experts with a shared expert; every RMSNorm but the DeltaNet's gated one stores gamma-1.
QWEN3_NEXT = replace(
    QWEN3_MOE,
    family="qwen3_next",
    hf_model_types=("qwen3_next",),
    norm_gain_offset=1.0,
    q_gated=True,
    mixer=MixerNames(
        layout="gated_deltanet",
        in_proj=("linear_attn.in_proj_qkvz.weight",),
        in_proj_ba=("linear_attn.in_proj_ba.weight",),
        conv=("linear_attn.conv1d.weight",),
        out=("linear_attn.out_proj.weight",),
        norm=("linear_attn.norm.weight",),
        params=("linear_attn.dt_bias", "linear_attn.A_log"),
        heads=("linear_num_value_heads",),
        head_dim=("linear_value_head_dim",),
        state=("linear_key_head_dim",),
        groups=("linear_num_key_heads",),
        layer_types=("layer_types", "linear_attention"),
    ),
    detect=("linear_attn.in_proj_qkvz.weight",),
)
HF_FAMILIES: tuple[ArchSpec, ...] = (
    LLAMA,
    MISTRAL,
    QWEN2,
    QWEN3,
    GEMMA,
    GEMMA2,
    PHI3,
    GPT2,
    GPT_NEOX,
    GPTJ,
    OPT,
    FALCON,
    BLOOM,
    MPT,
    STARCODER2,
    OLMO,
    STABLELM,
    MIXTRAL,
    QWEN2_MOE,
    QWEN3_MOE,
    BERT,
    MPNET,
    OLMO2,
    EXAONE4,
    GRANITE,
    SMOLLM3,
    ERNIE4_5,
    SEED_OSS,
    HUNYUAN_DENSE,
    APERTUS,
    COHERE,
    PHI,
    GRANITEMOE,
    PHIMOE,
    ERNIE4_5_MOE,
    GLM4_MOE,
    DEEPSEEK_V2,
    DEEPSEEK_V3,
    GPT_OSS,
    LLAMA4,
    MAMBA2,
    FALCON_H1,
    QWEN3_NEXT,
)
