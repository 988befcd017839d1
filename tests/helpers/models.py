"""Shared test helpers: tiny real `transformers` models of every family, saved as checkpoints.

`save_tiny_model(family, path, seed)` writes a Hugging Face folder (config.json,
model.safetensors or pytorch_model.bin, tokenizer.json) for a case of
`helpers.family_configs.CASES`.  The tokenizer is a byte-level BPE whose tokens are
letters-only words, identical for every seed and family, so models align by token
string.  Weights are random and float32; norm gains and all biases are perturbed
away from their 1/0 defaults so that gain folding and norm offsets are exercised.

tests/conftest.py's `tiny_model` fixture shares one saved model per (case, seed) across a session.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from helpers.family_configs import CASES, VOCAB_SIZE, tiny_config

SPECIAL_TOKEN = "<|endoftext|>"


# --------------------------------------------------------------------------- tokenizer
def _bytes_to_unicode() -> dict[int, str]:
    from attest.vocab.vocabulary import byte_encoder

    return dict(byte_encoder())


def tokenizer_vocab(size: int = VOCAB_SIZE, seed: int = 1234) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary of exactly `size` tokens and the merges that build it.

    Id 0 is the special token, ids 1..256 the byte alphabet, the rest are
    letters-only words (half with a leading space, `Ġ`) and their prefixes.
    """
    alphabet = _bytes_to_unicode()
    vocab: dict[str, int] = {SPECIAL_TOKEN: 0}
    for b in range(256):
        vocab[alphabet[b]] = len(vocab)
    merges: list[tuple[str, str]] = []
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    space = alphabet[ord(" ")]
    while len(vocab) < size:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(2, 7)))
        pieces = ([space] if rng.random() < 0.5 else []) + list(word)
        current = pieces[0]
        for ch in pieces[1:]:
            merged = current + ch
            if merged not in vocab:
                if len(vocab) >= size:
                    break
                vocab[merged] = len(vocab)
                merges.append((current, ch))
            current = merged
    return vocab, merges


def write_tokenizer(folder: Path, size: int = VOCAB_SIZE, seed: int = 1234) -> Path:
    """Write a byte-level BPE `tokenizer.json` of `size` tokens into `folder`.

    Another `seed` gives another tokenizer: the same byte alphabet, other words
    (it shares only short word prefixes with the default one).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab, merges = tokenizer_vocab(size, seed)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([SPECIAL_TOKEN])
    out = Path(folder) / "tokenizer.json"
    tok.save(str(out))
    return out


# --------------------------------------------------------------------------- models
def randomise_(model: Any, seed: int) -> Any:
    """Random weights with non-trivial norm gains and biases (in place, deterministic)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if p.dim() >= 2:
                p.copy_(noise * 0.1)
            elif name.endswith("bias"):
                p.copy_(noise * 0.1)
            else:
                # norm gains: the family default (1, or 0 for Gemma's stored gamma-1) plus noise
                p.add_(noise * 0.3)
    return model


def build_tiny_model(case: str, seed: int = 0, **config_overrides: Any) -> Any:
    """A tiny float32 `transformers` model of a case in `family_configs.CASES`, in eval mode."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    config = tiny_config(case, **config_overrides)
    auto = AutoModel if CASES[case].auto == "base" else AutoModelForCausalLM
    torch.manual_seed(seed)
    model = auto.from_config(config, attn_implementation="eager", dtype=torch.float32)
    randomise_(model, seed)
    model.tie_weights()
    return model.eval()


def save_model(model: Any, folder: str | Path, *, safe_serialization: bool = True, tokenizer: bool = True) -> Path:
    """Save an in-memory model as a Hugging Face folder (+ the shared tokenizer).

    transformers 5 only writes safetensors, so `safe_serialization=False` writes the
    legacy form by hand: config.json and a `torch.save`d state dict, `pytorch_model.bin`.
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if safe_serialization:
        model.save_pretrained(folder)
    else:
        model.config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    if tokenizer:
        write_tokenizer(folder)
    return folder


def save_tiny_model(
    family: str,
    path: str | Path,
    seed: int = 0,
    *,
    safe_serialization: bool = True,
    tokenizer: bool = True,
    **config_overrides: Any,
) -> Path:
    """Build a tiny model of `family` (a case name of `family_configs.CASES`) and save it to `path`.

    Returns the folder.  `safe_serialization=False` writes `pytorch_model.bin`.
    """
    model = build_tiny_model(family, seed, **config_overrides)
    return save_model(model, path, safe_serialization=safe_serialization, tokenizer=tokenizer)


def read_config(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "config.json").read_text())
