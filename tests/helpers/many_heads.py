"""Synthetic Llamas with many narrow attention heads, for the head channel of the lineage test.

Random initialisation (no training): the head channel needs dozens of heads
to have power (docs/lineage.md, "Head channel"), which no tiny trained
fixture has.  Used by tests/test_lineage_heads.py and bench/lineage_heads.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from helpers import tiny_models as tm
from helpers import transforms as tf


def many_heads(heads: int, seed: int, layers: int = 4, hidden: int = 128) -> Any:
    """A float32 LlamaForCausalLM with `heads` query heads of width hidden/heads, 4 query heads per KV head."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 4),
        head_dim=hidden // heads,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        vocab_size=tm.VOCAB,
        initializer_range=tm.INIT_STD,
        attn_implementation="eager",
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    return LlamaForCausalLM(cfg).float().eval()


def ffn_replaced(model: Any, heads: int, drift: float = 0.05, seed: int = 77) -> Any:
    """A copy of `model` whose every FFN is re-initialised (another seed), attention kept with `drift` noise."""
    derived = many_heads(heads, 0)
    derived.load_state_dict(model.state_dict())
    fresh = many_heads(heads, seed)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for mine, new in zip(derived.model.layers, fresh.model.layers):
            mine.mlp.load_state_dict(new.mlp.state_dict())
            for p in mine.self_attn.parameters():
                p.add_(drift * p.std() * torch.randn(p.shape, generator=gen))
    return derived


def save(model: Any, folder: Path) -> Path:
    """The model as a Hugging Face folder with the shared tiny tokenizer."""
    return tf.save(tf.Subject.of(model, "llama", tm.tokenizer_dict()), folder)
