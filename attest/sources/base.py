"""The interface every checkpoint reader implements.

A source never materialises the whole model: callers ask for one tensor (or a
few rows of one tensor) at a time, and the bytes come from a memory map.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from attest.errors import InputError


@dataclass(frozen=True)
class EmbeddedArchitecture:
    """A file's own statement of its architecture (GGUF's `general.architecture`).

    `scheme` names the tensor-naming convention the tables for it describe
    ("gguf"); `name` is the architecture as the file spells it ("llama").
    Sources only report it; `attest.arch` decides what it means.
    """

    scheme: str
    name: str


class WeightSource(ABC):
    """A read-only, lazily loaded mapping from tensor name to tensor."""

    #: short format name recorded in reports ("safetensors", "gguf", "torch")
    format: str = "?"

    def __init__(self, root: Path) -> None:
        self.root = root

    @abstractmethod
    def names(self) -> list[str]:
        """All tensor names, in a stable order."""

    @abstractmethod
    def shape(self, name: str) -> tuple[int, ...]:
        """Logical shape of a tensor without reading its data."""

    @abstractmethod
    def get(self, name: str) -> torch.Tensor:
        """One tensor in a floating dtype (its stored dtype when it is one)."""

    def get_rows(self, name: str, rows: Sequence[int]) -> torch.Tensor:
        """Selected rows of a 2-D tensor; sources override this to avoid a full read."""
        index = torch.as_tensor(list(rows), dtype=torch.long)
        return self.get(name).index_select(0, index)

    @abstractmethod
    def files(self) -> list[Path]:
        """The weight files this source reads (the bundle subject hashes them)."""

    def config(self) -> dict[str, Any] | None:
        """The model's config.json, or None when there is none."""
        return None

    def metadata(self) -> dict[str, Any]:
        """Format-level key/value metadata (GGUF header fields, safetensors metadata)."""
        return {}

    def embedded_architecture(self) -> EmbeddedArchitecture | None:
        """The architecture the file itself names, for formats without a config.json (GGUF); else None.

        A source that returns one also keeps its tokenizer in `metadata()`.
        """
        return None

    def recorded_dims(self) -> dict[str, int]:
        """Dimensions the file's own header records ("hidden", "layers", "heads", "kv_heads",
        "head_dim", "experts"), for formats without a config.json; only those present."""
        return {}

    def warnings(self) -> list[str]:
        """What the reader had to assume or ignore, for the model's notes (e.g. an untraced ONNX graph)."""
        return []

    def has(self, name: str) -> bool:
        return name in self._name_set()

    def _name_set(self) -> set[str]:
        cached = getattr(self, "_names_cache", None)
        if cached is None:
            cached = set(self.names())
            self._names_cache = cached
        return cached

    def require(self, name: str) -> None:
        if not self.has(name):
            raise InputError(f"{self.root}: tensor '{name}' is missing from the checkpoint")

    def close(self) -> None:  # noqa: B027 - optional hook: sources without handles need nothing
        """Release memory maps and file handles."""

    def __enter__(self) -> "WeightSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
