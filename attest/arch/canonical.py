"""The canonical model view (docs/method.md), read lazily one layer at a time.

`CanonicalModel` ties the parts together: `names` resolves the family
table's roles to tensor names, `dims` works out the dimensions, `assembly`
reads and shape-checks one layer at a time, and `layouts` splits fused QKV
weights. Linear weights are `[out, in]` so that `y = x @ W.T`; gains are kept
apart from the weights that read them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from attest.arch.assembly import Attention, Layer, LayerAssembler, Mlp
from attest.arch.dims import DimensionReader, Dims
from attest.arch.layouts import split_qkv
from attest.arch.names import TensorNames
from attest.arch.spec import ArchSpec, NormKind
from attest.errors import InputError
from attest.sources.base import WeightSource
from attest.vocab.vocabulary import Vocabulary

Tensor = torch.Tensor

# Re-exported: importers reach the canonical tensors' types through this module.
__all__ = ["Attention", "CanonicalModel", "Dims", "Layer", "Mlp", "split_qkv"]


class CanonicalModel:
    """A checkpoint seen through its family table."""

    def __init__(
        self,
        source: WeightSource,
        spec: ArchSpec,
        vocab: Vocabulary | None,
        config: dict[str, Any] | None,
        *,
        gguf_dims: Mapping[str, int] | None = None,
    ) -> None:
        self.source = source
        self.spec = spec.resolve(config)
        self.config = config
        self.family = spec.family
        self.warnings: list[str] = []
        # (layer, term) cells whose matrix could not be computed (attest.invariants.skipped)
        self.skipped_cells: list[Any] = []
        self._tensor_names = TensorNames(source.root, self.spec, source.names())
        self.embed_name = self._tensor_names.pick(self.spec.embed, "embedding")
        self.layer_prefix = self._tensor_names.layer_prefix
        self.dims = DimensionReader(source, self.spec, self._tensor_names, config, gguf_dims or {}, self.warnings).read(
            self.embed_name
        )
        self._assembler = LayerAssembler(source, self.spec, self._tensor_names, self.dims, config)
        if vocab is None:
            self.warnings.append("no tokenizer found: tokens are matched by id, not by string")
            vocab = Vocabulary.ids_only(self.dims.vocab)
        elif len(vocab) < self.dims.vocab:
            vocab.strings.extend([None] * (self.dims.vocab - len(vocab)))
        self.vocab = vocab
        self.lm_head_name = self._tensor_names.find(self.spec.lm_head)
        if self.lm_head_name is None and config is not None and config.get("tie_word_embeddings") is False:
            self.warnings.append(
                "config says the output head is untied but no head tensor was found; using the embedding"
            )
        self.final_norm_name = self._tensor_names.find(self.spec.final_norm)
        if self.spec.q_gated:
            self.warnings.append(
                "gated attention: the per-head output gate (second half of q_proj) is read by no invariant term"
            )

    @property
    def norm_kind(self) -> NormKind:
        return self.spec.norm

    @property
    def n_layers(self) -> int:
        return self.dims.n_layers

    def embedding_rows(self, ids: Sequence[int]) -> Tensor:
        return self.source.get_rows(self.embed_name, ids)

    def embed_norm_gain(self) -> Tensor | None:
        return self._assembler.gain(self._tensor_names.find(self.spec.embed_norm))

    def final_norm_gain(self) -> Tensor | None:
        return self._assembler.gain(self.final_norm_name)

    def head_rows(self, ids: Sequence[int]) -> Tensor:
        name = self.lm_head_name or self.embed_name
        return self.source.get_rows(name, ids)

    @property
    def tied_head(self) -> bool:
        return self.lm_head_name is None

    def layer(self, i: int) -> Layer:
        if not 0 <= i < self.n_layers:
            raise InputError(f"layer {i} out of range (model has {self.n_layers})")
        embed_norm = self.embed_norm_gain() if self.spec.attn_norm_from_previous_layer and i == 0 else None
        return self._assembler.layer(i, embed_norm)
