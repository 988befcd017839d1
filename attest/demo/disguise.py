"""Function-preserving disguises of a BERT checkpoint, at the tensor level.

Used by `attest demo` to play the copier: permute the hidden dimensions, the
attention heads and the FFN neurons, then nudge every weight a little, as a
short fine-tune would.  Each permutation leaves the network's function
unchanged (LayerNorm is permutation-equivariant); the noise is the only real
change.
"""

from __future__ import annotations

import torch

Tensors = dict[str, torch.Tensor]


def _layer_indices(t: Tensors) -> list[int]:
    return sorted({int(k.split(".")[2]) for k in t if k.startswith("encoder.layer.")})


def permute_hidden(t: Tensors, perm: torch.Tensor) -> Tensors:
    out = dict(t)
    for k, v in t.items():
        if k.endswith("_embeddings.weight"):
            out[k] = v[:, perm]
        elif "LayerNorm" in k:
            out[k] = v[perm]
        elif any(s in k for s in (".query.weight", ".key.weight", ".value.weight", "intermediate.dense.weight")):
            out[k] = v[:, perm]
        elif k.endswith("output.dense.weight") and "encoder.layer" in k:
            out[k] = v[perm, :]
        elif k.endswith("output.dense.bias") and "encoder.layer" in k:
            out[k] = v[perm]
        elif k == "pooler.dense.weight":
            out[k] = v[perm][:, perm]
        elif k == "pooler.dense.bias":
            out[k] = v[perm]
    return out


def permute_heads_and_neurons(t: Tensors, n_heads: int, gen: torch.Generator) -> Tensors:
    out = dict(t)
    for i in _layer_indices(t):
        p = f"encoder.layer.{i}."
        d = t[p + "attention.self.query.weight"].shape[0]
        dh = d // n_heads
        heads = torch.randperm(n_heads, generator=gen)
        rows = (heads[:, None] * dh + torch.arange(dh)[None, :]).reshape(-1)
        for name in ("query", "key", "value"):
            out[p + f"attention.self.{name}.weight"] = t[p + f"attention.self.{name}.weight"][rows]
            out[p + f"attention.self.{name}.bias"] = t[p + f"attention.self.{name}.bias"][rows]
        out[p + "attention.output.dense.weight"] = t[p + "attention.output.dense.weight"][:, rows]
        f = t[p + "intermediate.dense.weight"].shape[0]
        neurons = torch.randperm(f, generator=gen)
        out[p + "intermediate.dense.weight"] = t[p + "intermediate.dense.weight"][neurons]
        out[p + "intermediate.dense.bias"] = t[p + "intermediate.dense.bias"][neurons]
        out[p + "output.dense.weight"] = t[p + "output.dense.weight"][:, neurons]
    return out


def nudge(t: Tensors, relative: float, gen: torch.Generator) -> Tensors:
    """Add Gaussian noise of `relative` × each tensor's std to every float tensor."""
    out = {}
    for k, v in t.items():
        if v.is_floating_point() and v.numel() > 1:
            out[k] = v + relative * v.float().std() * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        else:
            out[k] = v
    return out


def disguise_bert(t: Tensors, n_heads: int, *, noise: float = 0.02, seed: int = 0) -> Tensors:
    gen = torch.Generator().manual_seed(seed)
    d = t["embeddings.word_embeddings.weight"].shape[1]
    out = permute_hidden(t, torch.randperm(d, generator=gen))
    out = permute_heads_and_neurons(out, n_heads, gen)
    return {k: v.contiguous() for k, v in nudge(out, noise, gen).items()}
