"""Dimension inference: hidden size, layer count, head counts, vocabulary and experts of a checkpoint.

Sources of truth, in order: config.json (or the dimensions a GGUF header
records), then the tensors' shapes; the two are cross-checked where both
exist. Family-specific rules are data on the `ArchSpec` (config keys,
`fixed_kv_heads`, the fused-QKV layout's width rule), never branches here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attest.arch.attention import attention_reader
from attest.arch.mla_dims import mla_heads_from_shapes
from attest.arch.names import LayerCensus, TensorNames
from attest.arch.spec import ArchSpec, QKNormScope
from attest.documents.model_docs import checked_dims, config_value
from attest.errors import InputError
from attest.sources.base import WeightSource

# How many example names an "ignored tensors" note quotes.
_NOTE_EXAMPLES = 3


@dataclass(frozen=True)
class Dims:
    hidden: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    n_experts: int = 0


def _count(value: Any, what: str, root: object) -> int:
    """A positive whole number from config.json or a header (4 or 4.0); a clear error for anything else."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{root}: {what} must be a positive integer, got {value!r}")
    return value


class DimensionReader:
    """Works out a checkpoint's `Dims`; notes what it had to assume in `warnings`."""

    def __init__(
        self,
        source: WeightSource,
        spec: ArchSpec,
        names: TensorNames,
        config: dict[str, Any] | None,
        header_dims: Mapping[str, int],
        warnings: list[str],
    ) -> None:
        self.source = source
        self.spec = spec
        self.names = names
        self.config = config
        self.header = header_dims
        self.warnings = warnings
        self.root = source.root

    def _value(self, keys: Sequence[str], header_key: str) -> Any:
        return config_value(self.config, keys) or self.header.get(header_key)

    def read(self, embed_name: str) -> Dims:
        keys = self.spec.config_keys
        embed_shape = self.source.shape(embed_name)
        checked_dims(self.config, keys, embed_shape, self.root)
        if len(embed_shape) != 2:
            raise InputError(f"{self.root}: embedding has shape {embed_shape}, expected 2-D")
        vocab_size, hidden = embed_shape
        n_layers = self.layers(self._value(keys.layers, "layers"))
        cfg_hidden = self._value(keys.hidden, "hidden")
        if cfg_hidden is not None and int(cfg_hidden) != hidden:
            raise InputError(
                f"{self.root}: config hidden size {cfg_hidden} does not match the embedding width {hidden}"
            )
        heads = self._value(keys.heads, "heads")
        kv_heads = self._value(keys.kv_heads, "kv_heads")
        if self.spec.fixed_kv_heads is not None:
            kv_heads = self.spec.fixed_kv_heads
        head_dim = self._value(keys.head_dim, "head_dim")
        if heads is None and self.spec.mla is not None:  # attention kind: mla (heads from the latent shapes)
            heads = mla_heads_from_shapes(self.names, self.spec.mla, self.source.shape)
            if heads is None:
                raise InputError(f"{self.root}: no head count in the metadata and the MLA shapes do not fix one")
            kv_heads = kv_heads or heads
        if heads is None and not self.spec.has_attention:
            # no attention (pure Mamba-2): no head count to read; the mixer reads its own
            heads, head_dim = 1, hidden
        if heads is None:
            # No metadata: q and KV widths come from layer 0's shapes, the head size is a guess.
            q_rows, kv_rows = self._qkv_rows_of_layer0(hidden)
            head_dim = head_dim or self._q_norm_width() or guess_head_dim(q_rows, kv_rows)
            heads = max(1, q_rows // head_dim)
            kv_heads = kv_heads or max(1, kv_rows // head_dim)
            self.warnings.append(f"no head count in the metadata: assuming head_dim={head_dim}")
        heads = int(heads)
        head_dim = int(head_dim or hidden // heads)
        kv_heads = int(kv_heads or heads)
        if heads % kv_heads != 0:
            raise InputError(f"{self.root}: {heads} query heads do not split into {kv_heads} KV groups")
        n_experts = 0
        if self.spec.experts is not None:
            n_experts = int(self._value(keys.experts, "experts") or 0)
        return Dims(hidden, n_layers, heads, kv_heads, head_dim, vocab_size, n_experts)

    def layers(self, declared: Any) -> int:
        """The layer count: the config's when it has one, else the layers the table's roles claim.

        Tensors under the layer prefix that no role claims, and (with a config)
        layers past the declared count, are ignored with one note: junk added
        to a file must not decide the verdict, and transformers ignores it too.
        """
        census = self.names.layer_census()
        if not census.claimed:
            raise InputError(f"{self.root}: no transformer layers found")
        found = max(census.claimed) + 1
        if declared is None:
            n = found
        else:
            n = _count(declared, "the layer count in the metadata", self.root)
            if found < n and _contiguous(census.claimed, found):
                raise InputError(f"{self.root}: config says {declared} layers but the checkpoint has {found}")
        missing = _first_missing(census.claimed, n)
        if missing:
            raise InputError(f"{self.root}: layers {missing} are missing from the checkpoint")
        self._note_ignored(census, n)
        return n

    def _note_ignored(self, census: LayerCensus, n_layers: int) -> None:
        beyond = [name for i, name in census.claimed_names if i >= n_layers]
        ignored = sorted({*census.unclaimed, *beyond})
        if not ignored:
            return
        examples = ", ".join(ignored[:_NOTE_EXAMPLES]) + (", ..." if len(ignored) > _NOTE_EXAMPLES else "")
        parts = []
        if census.unclaimed:
            parts.append(f"{len(census.unclaimed)} that no role of the {self.spec.family} table reads")
        if beyond:
            parts.append(f"{len(beyond)} in layers past the declared {n_layers}")
        self.warnings.append(
            f"ignored {len(ignored)} tensor(s) under the layer prefix ({'; '.join(parts)}): {examples}"
        )

    def _qkv_rows_of_layer0(self, hidden: int) -> tuple[int, int]:
        """Widths of q and of k (= v) in layer 0, as the table's attention kind reads them off the shapes."""
        widths = attention_reader(self.spec.attention, self.root).widths
        if widths is None:
            raise InputError(
                f"{self.root}: no head count in the metadata, and {self.spec.attention.value} attention "
                "cannot be sized from its tensors"
            )
        return widths(self.source, self.spec, self.names, hidden)

    def _q_norm_width(self) -> int | None:
        """Per-head q norms (Qwen3 [dh], Cohere [H, dh]) end in one head's width; projection-wide ones tell nothing."""
        if self.spec.qk_norm_scope == QKNormScope.PROJECTION:
            return None
        name = self.names.find_in_layer(0, self.spec.q_norm) if self.spec.q_norm else None
        return self.source.shape(name)[-1] if name else None


def _contiguous(indices: frozenset[int], n: int) -> bool:
    return len(indices) == n  # indices are all below n, so n distinct ones are exactly range(n)


def _first_missing(indices: frozenset[int], n: int, limit: int = 5) -> list[int]:
    """Up to `limit` indices of range(n) absent from `indices`, without building range(n).

    At most len(indices) + limit candidates are looked at, so a hostile
    layer count (10**12) costs nothing.
    """
    missing: list[int] = []
    i = 0
    while i < n and len(missing) < limit:
        if i not in indices:
            missing.append(i)
        i += 1
    return missing


def guess_head_dim(q_rows: int, kv_rows: int) -> int:
    """The usual head sizes first; it must divide both the q and the KV width."""
    for dh in (128, 64, 256, 96, 80, 160, 32, 16):
        if q_rows % dh == 0 and kv_rows % dh == 0:
            return dh
    return math.gcd(q_rows, kv_rows) or 1
