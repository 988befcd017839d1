"""How llama.cpp's converter lays out tensors in a GGUF file, as far as reading them back needs.

This is storage knowledge, not architecture knowledge: which tensors the
converter reordered, keyed by the file's own `general.architecture` string,
so that `GGUFSource.get` can return every tensor in the order the original
checkpoint had. What each tensor *means* (its role) is in
`attest.arch.gguf_families`, which builds on the names here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Every per-layer tensor of a GGUF file is named `blk.{i}.<name>`.
LAYER_PREFIX = "blk.{i}."
LAYER_NAME = re.compile(re.escape(LAYER_PREFIX).replace(r"\{i\}", r"(\d+)") + r"(.+)")


@dataclass(frozen=True)
class RowPermutation:
    """Rows the converter interleaved per head for llama.cpp's RoPE.

    The converter applies `w.reshape(n, 2, rows // n // 2, ...).swapaxes(1, 2)`;
    `n` is read from the metadata key `{arch}.{heads_key}` (the first present).
    """

    tensors: tuple[str, ...]  # names relative to LAYER_PREFIX
    heads_keys: tuple[str, ...]


# `LlamaModel.permute(q, n_head, n_head)` and `LlamaModel.permute(k, n_head, n_head_kv)`.
LLAMA_ROPE_PERMUTATION: tuple[RowPermutation, ...] = (
    RowPermutation(("attn_q.weight", "attn_q.bias"), ("attention.head_count",)),
    RowPermutation(("attn_k.weight", "attn_k.bias"), ("attention.head_count_kv", "attention.head_count")),
)

# general.architecture -> the rows its converter permuted. llama (also Mistral
# and Mixtral, written as "llama"), OLMo, Granite(-MoE) and SmolLM3 go through `LlamaModel.permute`
# for llama.cpp's interleaved ("normal") RoPE; no other converter permutes.
CONVERTER_ROW_PERMUTATIONS: dict[str, tuple[RowPermutation, ...]] = {
    "llama": LLAMA_ROPE_PERMUTATION,
    "olmo": LLAMA_ROPE_PERMUTATION,
    "granite": LLAMA_ROPE_PERMUTATION,  # GraniteModel inherits LlamaModel.modify_tensors
    "granitemoe": LLAMA_ROPE_PERMUTATION,  # GraniteMoeModel(GraniteModel)
    "smollm3": LLAMA_ROPE_PERMUTATION,  # SmolLM3Model(LlamaModel)
}

# general.architecture -> tensors (relative to LAYER_PREFIX) that the converter reshaped from the
# checkpoint's 1-D vectors, read back flat. Mamba2Model (conversion/mamba.py; FalconH1Model
# inherits it) writes the gated norm's gain [C] as [G, C/G] and A, D [H] as [H, 1].
_MAMBA2_RESHAPED = ("ssm_norm.weight", "ssm_a", "ssm_d")
CONVERTER_FLATTENED: dict[str, tuple[str, ...]] = {
    "mamba2": _MAMBA2_RESHAPED,
    "falcon-h1": _MAMBA2_RESHAPED,
}
