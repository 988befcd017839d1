"""Synthetic llama checkpoints for the lineage null: independent pairs with the structure that fools naive tests.

`synthetic_llama(seed, ...)` builds the tensors of a llama model directly (no
training) and opens them as a `CanonicalModel`.  Knobs make the null hard:

- ``gate_up_corr``: within every neuron, up = ρ·gate + √(1−ρ²)·noise, so a
  neuron's gate and up responses are alike and both matchings tend to land on
  the same suspect neuron without any lineage;
- ``features`` / ``feature_weight``: convergent neurons: every neuron's gate and
  up rows both load on one direction drawn from a pool shared by the two models;
- ``embedding``: pass one shared embedding to two independent models (as an
  embedding transplant does), and ``anisotropy`` > 0 gives it a dominant
  direction, so some suspect neurons become hubs that win many argmaxes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from attest.arch.canonical import CanonicalModel
from attest.arch.detect import model_from_tensors
from attest.vocab.readers import from_tokenizer_json


def synthetic_embedding(vocab: int, hidden: int, seed: int, anisotropy: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(vocab, hidden, generator=g)
    if anisotropy:
        direction = torch.randn(hidden, generator=g)
        direction /= direction.norm()
        e += anisotropy * torch.randn(vocab, 1, generator=g) * direction * hidden**0.5
    return e * 0.02


def synthetic_llama(
    seed: int,
    tokenizer: Path,
    *,
    vocab: int = 1024,
    hidden: int = 64,
    inter: int = 256,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    gate_up_corr: float = 0.0,
    embedding: torch.Tensor | None = None,
    anisotropy: float = 0.0,
    features: torch.Tensor | None = None,
    feature_weight: float = 0.0,
) -> CanonicalModel:
    g = torch.Generator().manual_seed(10_000 + seed)
    dh = hidden // heads

    def w(out: int, inp: int) -> torch.Tensor:
        return torch.randn(out, inp, generator=g) * inp**-0.5

    t: dict[str, object] = {
        "model.embed_tokens.weight": embedding
        if embedding is not None
        else synthetic_embedding(vocab, hidden, seed, anisotropy),
        "model.norm.weight": torch.ones(hidden),
        "lm_head.weight": w(vocab, hidden),
    }
    rho = gate_up_corr
    for i in range(layers):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = w(heads * dh, hidden)
        t[p + "self_attn.k_proj.weight"] = w(kv_heads * dh, hidden)
        t[p + "self_attn.v_proj.weight"] = w(kv_heads * dh, hidden)
        t[p + "self_attn.o_proj.weight"] = w(hidden, heads * dh)
        gate = w(inter, hidden)
        up = rho * gate + (1 - rho * rho) ** 0.5 * w(inter, hidden)
        if features is not None and feature_weight:
            # Convergent ("universal") neurons: each neuron's gate and up both load on one
            # feature drawn from a pool that the independent models share.
            pick = features[torch.randint(0, features.shape[0], (inter,), generator=g)] * hidden**-0.5
            gate = (1 - feature_weight) * gate + feature_weight * pick
            up = (1 - feature_weight) * up + feature_weight * pick
        t[p + "mlp.gate_proj.weight"] = gate
        t[p + "mlp.up_proj.weight"] = up
        t[p + "mlp.down_proj.weight"] = w(hidden, inter)
        t[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(hidden, generator=g)
        t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(hidden, generator=g)
    config = {
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "vocab_size": vocab,
        "tie_word_embeddings": False,
    }
    return model_from_tensors(t, config, from_tokenizer_json(tokenizer))
