"""The interface every checkpoint reader implements.

A source never materialises the whole model: callers ask for one tensor (or a
few rows of one tensor) at a time, and the bytes come from a memory map.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

import torch

from attest.errors import InputError


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

    def close(self) -> None:
        """Release memory maps and file handles."""

    def __enter__(self) -> "WeightSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
