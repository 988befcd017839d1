"""Tiny real `transformers` models and a byte-level BPE tokenizer for invariance tests.

Every model is built with the real Hugging Face class (so the logits check runs
the real forward pass) at a toy size: hidden 64, 2 layers, 4 heads (2 KV heads
where the family has GQA), vocabulary ~1000 from a byte-level BPE tokenizer
trained on letters-only words, so alignment by string has plenty of eligible
tokens.  Norm gains, LayerNorm biases and linear biases are randomised (HF
initialises them to 1 and 0), so that folding gains, moving scale and folding
LayerNorm biases are real operations rather than no-ops.
"""

from __future__ import annotations

import functools
import json
import random
from typing import Any, Callable

import torch

FAMILIES = ("llama", "qwen2", "gpt_neox", "gpt2", "mixtral", "stablelm", "gpt_oss", "llama4")

HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
VOCAB = 1000
INIT_STD = 0.1  # larger than HF's 0.02 so attention is not uniform and a broken transform shows in the logits


# -- tokenizer ----------------------------------------------------------------

_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + list("aeiou")


def _corpus(seed: int = 0, n_words: int = 30000) -> list[str]:
    rng = random.Random(seed)
    words = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(4000)]
    lines = []
    for _ in range(n_words // 10):
        lines.append(" ".join(rng.choice(words) for _ in range(10)))
    return lines


@functools.lru_cache(maxsize=1)
def tokenizer_json() -> str:
    """A byte-level BPE tokenizer.json (as text) with exactly VOCAB ids, id 0 special."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    if tok.get_vocab_size() != VOCAB:
        raise RuntimeError(f"tokenizer has {tok.get_vocab_size()} ids, wanted {VOCAB}")
    return tok.to_str()


def tokenizer_dict() -> dict[str, Any]:
    return json.loads(tokenizer_json())


# -- models -------------------------------------------------------------------


def _common(**extra: Any) -> dict[str, Any]:
    return dict(
        vocab_size=VOCAB,
        initializer_range=INIT_STD,
        attn_implementation="eager",
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        **extra,
    )


def _llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        **_common(),
    )
    return LlamaForCausalLM(cfg)


def _qwen2() -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    # Tied like the small Qwen2 releases (0.5B, 1.5B): the untie transform applies.
    cfg = Qwen2Config(
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        **_common(),
    )
    return Qwen2ForCausalLM(cfg)


def _gpt_neox() -> torch.nn.Module:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(
        hidden_size=HIDDEN,
        intermediate_size=4 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        use_parallel_residual=True,
        **_common(),
    )
    return GPTNeoXForCausalLM(cfg)


def _gpt2() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=32, tie_word_embeddings=True, **_common())
    return GPT2LMHeadModel(cfg)


def _mixtral() -> torch.nn.Module:
    from transformers import MixtralConfig, MixtralForCausalLM

    cfg = MixtralConfig(
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        router_jitter_noise=0.0,
        **_common(),
    )
    return MixtralForCausalLM(cfg)


def _stablelm() -> torch.nn.Module:
    from transformers import StableLmConfig, StableLmForCausalLM

    # LayerNorm with a gated FFN (and q/k/v biases, partial RoPE), like StableLM-2.
    cfg = StableLmConfig(
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        use_qkv_bias=True,
        **_common(),
    )
    return StableLmForCausalLM(cfg)


def _gpt_oss() -> torch.nn.Module:
    from transformers import GptOssConfig, GptOssForCausalLM

    # Interleaved stacked experts with biases, router bias, sinks, q/k/v/o biases, sliding/full
    # layers, clamped SwiGLU; plain RoPE (YaRN's attention factor is a constant that changes nothing here).
    cfg = GptOssConfig(
        hidden_size=HIDDEN,
        intermediate_size=48,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HIDDEN // HEADS,
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=8,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        **_common(),
    )
    return GptOssForCausalLM(cfg)


def _llama4() -> torch.nn.Module:
    from transformers import Llama4ForCausalLM, Llama4TextConfig

    # Layer 0 dense with RoPE and the gain-free L2 q/k norm; layer 1 MoE (+ shared expert), NoPE.
    cfg = Llama4TextConfig(
        hidden_size=HIDDEN,
        intermediate_size=32,
        intermediate_size_mlp=96,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HIDDEN // HEADS,
        num_local_experts=4,
        num_experts_per_tok=1,
        interleave_moe_layer_step=2,
        no_rope_layers=[1, 0],
        use_qk_norm=True,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        **_common(),
    )
    return Llama4ForCausalLM(cfg)


BUILDERS: dict[str, Callable[[], torch.nn.Module]] = {
    "llama": _llama,
    "qwen2": _qwen2,
    "gpt_neox": _gpt_neox,
    "gpt2": _gpt2,
    "mixtral": _mixtral,
    "stablelm": _stablelm,
    "gpt_oss": _gpt_oss,
    "llama4": _llama4,
}


@torch.no_grad()
def _randomise_norms_and_biases(model: torch.nn.Module, gen: torch.Generator) -> None:
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        is_norm = any(k in name for k in ("norm", "ln_", "ln_f"))
        if is_norm and leaf == "weight":
            p.copy_(0.5 + torch.rand(p.shape, generator=gen))
        elif leaf == "bias" or leaf.endswith("_bias"):  # GPT-OSS' stacked expert biases: `gate_up_proj_bias`
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        elif leaf == "sinks":  # GPT-OSS' per-head sink logits
            p.copy_(torch.randn(p.shape, generator=gen))


def build(family: str, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised tiny model of `family` in float32 eval mode."""
    torch.manual_seed(seed)
    model = BUILDERS[family]()
    _randomise_norms_and_biases(model, torch.Generator().manual_seed(seed + 1))
    return model.float().eval()


def token_batch(seed: int = 1234, batch: int = 2, length: int = 16, vocab: int = VOCAB) -> torch.Tensor:
    """A fixed batch of token ids for the logits check."""
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))
