"""Tiny `transformers` configurations, one per supported family (and a few layout variants).

Every case builds a real `transformers` model of about 0.1M parameters: hidden 64,
4 query heads, 2 layers (3 for a few), grouped KV heads (2) wherever the family
supports them, and 4 experts for the MoE families.  `helpers.models.build_tiny_model`
turns a case into a model with random, non-trivial norm gains and biases.

A case name is usually the family name; variants of one family carry a suffix
(`falcon-40b`, `falcon-rw`, ...).  `CASES[name].family` is the attest family the
checkpoint must load as.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VOCAB_SIZE = 512
HIDDEN = 64
HEADS = 4
KV_HEADS = 2
FFN = 128
MAX_POS = 128


@dataclass(frozen=True)
class FamilyCase:
    name: str
    family: str  # attest family the checkpoint loads as
    model_type: str  # transformers model_type
    config: dict[str, Any] = field(default_factory=dict)
    auto: str = "causal"  # "causal" (AutoModelForCausalLM) or "base" (AutoModel)


_LLAMA_LIKE = dict(
    hidden_size=HIDDEN,
    intermediate_size=FFN,
    num_hidden_layers=2,
    num_attention_heads=HEADS,
    num_key_value_heads=KV_HEADS,
    max_position_embeddings=MAX_POS,
    tie_word_embeddings=False,
)


def _case(name: str, model_type: str, family: str | None = None, auto: str = "causal", **config: Any) -> FamilyCase:
    return FamilyCase(name=name, family=family or name, model_type=model_type, config=config, auto=auto)


_CASES = [
    _case("llama", "llama", **_LLAMA_LIKE),
    _case("mistral", "mistral", **{**_LLAMA_LIKE, "num_hidden_layers": 3}),
    _case("qwen2", "qwen2", **_LLAMA_LIKE),  # q/k/v carry biases
    # head_dim 32 != hidden/heads: the head size must come from the config
    _case("qwen3", "qwen3", **{**_LLAMA_LIKE, "head_dim": 32}),
    # multi-query (1 KV head), tied head, stored gamma-1
    _case("gemma", "gemma", **{**_LLAMA_LIKE, "num_key_value_heads": 1, "head_dim": 16, "tie_word_embeddings": True}),
    _case(
        "gemma2", "gemma2", **{**_LLAMA_LIKE, "head_dim": 16, "tie_word_embeddings": True, "query_pre_attn_scalar": 16}
    ),
    # Gemma-3 text decoder: Gemma-2 layout plus per-head q/k norms, also stored as gamma-1
    _case(
        "gemma3",
        "gemma3_text",
        family="gemma2",
        **{**_LLAMA_LIKE, "head_dim": 16, "tie_word_embeddings": True, "query_pre_attn_scalar": 16},
    ),
    _case("phi3", "phi3", **{**_LLAMA_LIKE, "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0}),
    _case("gpt2", "gpt2", n_embd=HIDDEN, n_layer=2, n_head=HEADS, n_positions=MAX_POS, bos_token_id=0, eos_token_id=0),
    _case(
        "gpt_neox",
        "gpt_neox",
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        max_position_embeddings=MAX_POS,
        rotary_pct=0.5,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    ),
    _case(
        "gptj",
        "gptj",
        n_embd=HIDDEN,
        n_layer=2,
        n_head=HEADS,
        n_inner=FFN,
        rotary_dim=8,
        n_positions=MAX_POS,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    ),
    _case(
        "opt",
        "opt",
        hidden_size=HIDDEN,
        ffn_dim=FFN,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        word_embed_proj_dim=HIDDEN,
        max_position_embeddings=MAX_POS,
        do_layer_norm_before=True,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=0,
    ),
    # Falcon-7B: multi-query, parallel attention/MLP reading one input_layernorm, rotary
    _case(
        "falcon",
        "falcon",
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        multi_query=True,
        new_decoder_architecture=False,
        parallel_attn=True,
        alibi=False,
        bias=False,
        bos_token_id=0,
        eos_token_id=0,
    ),
    # Falcon-40B/180B: grouped [Hkv, g+2, dh] QKV, separate ln_attn / ln_mlp
    _case(
        "falcon-40b",
        "falcon",
        family="falcon",
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        num_kv_heads=KV_HEADS,
        new_decoder_architecture=True,
        num_ln_in_parallel_attn=2,
        parallel_attn=True,
        alibi=False,
        bias=False,
        bos_token_id=0,
        eos_token_id=0,
    ),
    # Falcon2-11B: grouped QKV but a single input_layernorm for both branches
    _case(
        "falcon2-11b",
        "falcon",
        family="falcon",
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        num_kv_heads=KV_HEADS,
        new_decoder_architecture=True,
        num_ln_in_parallel_attn=1,
        parallel_attn=True,
        alibi=False,
        bias=False,
        bos_token_id=0,
        eos_token_id=0,
    ),
    # Falcon-RW: MHA with per-head interleaved q,k,v, ALiBi, sequential block with biases
    _case(
        "falcon-rw",
        "falcon",
        family="falcon",
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        multi_query=False,
        new_decoder_architecture=False,
        parallel_attn=False,
        alibi=True,
        bias=True,
        bos_token_id=0,
        eos_token_id=0,
    ),
    _case(
        "bloom", "bloom", hidden_size=HIDDEN, n_layer=2, n_head=HEADS, bos_token_id=0, eos_token_id=0, pad_token_id=0
    ),
    _case("mpt", "mpt", d_model=HIDDEN, n_heads=HEADS, n_layers=2, expansion_ratio=2, max_seq_len=MAX_POS),
    _case("starcoder2", "starcoder2", **{**_LLAMA_LIKE, "use_bias": True, "bos_token_id": 0, "eos_token_id": 0}),
    _case("olmo", "olmo", **{**_LLAMA_LIKE, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 0}),
    _case(
        "stablelm",
        "stablelm",
        **{**_LLAMA_LIKE, "partial_rotary_factor": 0.25, "use_qkv_bias": True, "bos_token_id": 0, "eos_token_id": 0},
    ),
    _case(
        "mixtral",
        "mixtral",
        **{**_LLAMA_LIKE, "num_local_experts": 4, "num_experts_per_tok": 2, "intermediate_size": 32},
    ),
    _case(
        "qwen2_moe",
        "qwen2_moe",
        **{
            **_LLAMA_LIKE,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "shared_expert_intermediate_size": 48,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
        },
    ),
    _case(
        "qwen3_moe",
        "qwen3_moe",
        **{
            **_LLAMA_LIKE,
            "head_dim": 16,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
        },
    ),
    _case(
        "bert",
        "bert",
        auto="base",
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        max_position_embeddings=MAX_POS,
        pad_token_id=0,
    ),
]

_IDS = {"pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0}
# DeepSeek MLA widths, each distinct so a swapped split would show: latent 16, nope 8, rope 4, v 12
_MLA = {
    "num_key_value_heads": HEADS,
    "num_hidden_layers": 3,
    "kv_lora_rank": 16,
    "qk_nope_head_dim": 8,
    "qk_rope_head_dim": 4,
    "v_head_dim": 12,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 32,
    "n_shared_experts": 2,
    "first_k_dense_replace": 1,
    "n_group": 1,
    "topk_group": 1,
}
# Granite's four scalar multipliers, away from 1 so a mistake in their handling would show.
_GRANITE_SCALES = {
    "embedding_multiplier": 12.0,
    "residual_multiplier": 0.22,
    "attention_multiplier": 0.05,
    "logits_scaling": 8.0,
}
_CASES += [
    # 2025-26 families (docs/method.md, families × layouts)
    _case("olmo2", "olmo2", **{**_LLAMA_LIKE, **_IDS}),
    _case("olmo3", "olmo3", family="olmo2", **{**_LLAMA_LIKE, **_IDS, "sliding_window": 4}),
    _case("exaone4", "exaone4", **{**_LLAMA_LIKE, **_IDS, "sliding_window": 4, "sliding_window_pattern": 2}),
    _case("granite", "granite", **{**_LLAMA_LIKE, **_IDS, **_GRANITE_SCALES}),
    _case("smollm3", "smollm3", **{**_LLAMA_LIKE, **_IDS, "no_rope_layer_interval": 2}),
    _case("ernie4_5", "ernie4_5", **{**_LLAMA_LIKE, **_IDS, "head_dim": 16}),
    _case("seed_oss", "seed_oss", **{**_LLAMA_LIKE, **_IDS, "head_dim": 16, "attention_bias": True}),
    _case("hunyuan_v1_dense", "hunyuan_v1_dense", **{**_LLAMA_LIKE, **_IDS, "head_dim": 16}),
    _case("apertus", "apertus", **{**_LLAMA_LIKE, **_IDS}),
    _case("cohere", "cohere", **{**_LLAMA_LIKE, **_IDS, "tie_word_embeddings": True, "logit_scale": 0.0625}),
    _case(
        "cohere2",
        "cohere2",
        family="cohere",
        **{**_LLAMA_LIKE, **_IDS, "sliding_window": 4, "logit_scale": 0.0625, "tie_word_embeddings": True},
    ),
    _case("phi", "phi", **{**_LLAMA_LIKE, **_IDS, "partial_rotary_factor": 0.5}),
    # Cohere's per-head q/k LayerNorm with a gain per head ([H, dh]), as in Command-R+
    _case(
        "cohere-qknorm",
        "cohere",
        family="cohere",
        **{**_LLAMA_LIKE, **_IDS, "use_qk_norm": True, "logit_scale": 0.0625, "tie_word_embeddings": True},
    ),
    # Phi's per-head q/k LayerNorm (one [dh] gain and bias shared by all heads)
    _case(
        "phi-qkln", "phi", family="phi", **{**_LLAMA_LIKE, **_IDS, "partial_rotary_factor": 0.5, "qk_layernorm": True}
    ),
    _case(
        "granitemoe",
        "granitemoe",
        **{
            **_LLAMA_LIKE,
            **_IDS,
            **_GRANITE_SCALES,
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
            "intermediate_size": 32,
        },
    ),
    _case(
        "phimoe",
        "phimoe",
        **{**_LLAMA_LIKE, **_IDS, "num_local_experts": 4, "num_experts_per_tok": 2, "intermediate_size": 32},
    ),
    # 3 layers: layer 0 dense (moe_layer_start_index), 1 and 2 MoE with a shared expert
    _case(
        "ernie4_5_moe",
        "ernie4_5_moe",
        **{
            **_LLAMA_LIKE,
            **_IDS,
            "num_hidden_layers": 3,
            "moe_num_experts": 4,
            "moe_k": 2,
            "moe_intermediate_size": 32,
            "moe_num_shared_experts": 1,
            "moe_layer_start_index": 1,
        },
    ),
    # 3 layers: first_k_dense_replace=1, shared expert, per-head q/k norms, q/k/v biases
    _case(
        "glm4_moe",
        "glm4_moe",
        **{
            **_LLAMA_LIKE,
            **_IDS,
            "num_hidden_layers": 3,
            "head_dim": 16,
            "n_routed_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "n_shared_experts": 1,
            "first_k_dense_replace": 1,
            "n_group": 1,
            "topk_group": 1,
            "use_qk_norm": True,
            "attention_bias": True,
        },
    ),
    # Multi-head latent attention; one dense layer then MoE layers (4 routed experts, shared experts)
    _case(
        "deepseek_v2", "deepseek_v2", **{**_LLAMA_LIKE, **_IDS, **_MLA, "q_lora_rank": None, "topk_method": "greedy"}
    ),
    _case("deepseek_v3", "deepseek_v3", **{**_LLAMA_LIKE, **_IDS, **_MLA, "q_lora_rank": 24, "rope_interleave": True}),
]

_CASES += [
    # Frontier architectures (issue 13). f = 24: the stacked shapes [E, d, 2f] and [E, 2f, d]
    # differ, and so do [E, f, d] and [E, d, f], so a transposed read cannot pass by accident.
    # GPT-OSS: interleaved stacked experts with biases, router bias, sinks, q/k/v/o biases,
    # sliding/full layers, clamped SwiGLU; plain RoPE so position 0 is the identity (the
    # default YaRN scales cos by its attention factor).
    _case(
        "gpt_oss",
        "gpt_oss",
        **{
            **_LLAMA_LIKE,
            **_IDS,
            "head_dim": 16,
            "intermediate_size": 24,
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
            "sliding_window": 4,
            "rope_parameters": {"rope_type": "default", "rope_theta": 150000.0},
        },
    ),
    # Llama-4 text: 4 layers, MoE every 2nd (1 and 3) with a shared expert, dense 0 and 2
    # (intermediate_size_mlp), layer 2 NoPE, gain-free L2 q/k norm on the RoPE layers.
    _case(
        "llama4_text",
        "llama4_text",
        family="llama4",
        **{
            **_LLAMA_LIKE,
            **_IDS,
            "num_hidden_layers": 4,
            "head_dim": 16,
            "intermediate_size": 24,
            "intermediate_size_mlp": 40,
            "num_local_experts": 4,
            "num_experts_per_tok": 1,
            "interleave_moe_layer_step": 2,
            "no_rope_layers": [1, 1, 0, 1],
            "use_qk_norm": True,
        },
    ),
]

# State-space and hybrid families (attention kind: ssm), tested by tests/test_ssm.py: their layers are
# not attention + FFN, so tests/test_families.py's per-layer probes do not describe them.
# Mixer: 8 heads of 16 channels (d_inner 128) in 2 groups of 16 states, conv kernel 4.
_MIXER = dict(hidden_size=HIDDEN, num_hidden_layers=2, tie_word_embeddings=False, **_IDS)
_FALCON_H1 = dict(
    **_MIXER,
    intermediate_size=FFN,
    num_attention_heads=HEADS,
    num_key_value_heads=KV_HEADS,
    head_dim=16,
    max_position_embeddings=MAX_POS,
    mamba_n_heads=8,
    mamba_d_head=16,
    mamba_d_state=16,
    mamba_n_groups=2,
    mamba_d_ssm=128,
    mamba_d_conv=4,
    # every muP scalar away from 1, so a mistake in handling one would show
    ssm_multipliers=[0.5, 1.5, 0.7, 1.3, 2.0],
    ssm_in_multiplier=0.8,
    ssm_out_multiplier=1.2,
    mlp_multipliers=[0.7, 1.4],
    key_multiplier=0.6,
    attention_in_multiplier=1.1,
    attention_out_multiplier=0.9,
    embedding_multiplier=3.0,
    lm_head_multiplier=0.5,
)
MIXER_CASES = [
    _case(
        "mamba2",
        "mamba2",
        **_MIXER,
        num_heads=8,
        head_dim=16,
        state_size=16,
        n_groups=2,
        expand=2,
        conv_kernel=4,
    ),
    _case("falcon_h1", "falcon_h1", **_FALCON_H1, mamba_rms_norm=True),
    # no gated norm: out_proj reads y * silu(z) directly
    _case("falcon_h1-nonorm", "falcon_h1", family="falcon_h1", **_FALCON_H1, mamba_rms_norm=False),
    # gated DeltaNet (2 key heads of 16, 4 value heads of 16) and gated attention, alternating; MoE + shared expert
    _case(
        "qwen3_next",
        "qwen3_next",
        **{**_MIXER, "num_hidden_layers": 4},
        intermediate_size=FFN,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=16,
        max_position_embeddings=MAX_POS,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        linear_conv_kernel_dim=4,
        layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=48,
        decoder_sparse_step=1,
        mlp_only_layers=[],
    ),
]
MIXER_CASE_NAMES = [c.name for c in MIXER_CASES]
_CASES += MIXER_CASES

# config.json keys that hold a MoE case's expert count
EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "moe_num_experts", "n_routed_experts")

CASES: dict[str, FamilyCase] = {c.name: c for c in _CASES}
FAMILY_CASES: list[str] = list(CASES)


def tiny_config(name: str, **overrides: Any) -> Any:
    """The `transformers` config object of a case (float32, vocabulary of VOCAB_SIZE)."""
    from transformers import AutoConfig

    case = CASES[name]
    kwargs = {"vocab_size": VOCAB_SIZE, **case.config, **overrides}
    return AutoConfig.for_model(case.model_type, **kwargs)
