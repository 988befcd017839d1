"""An in-memory weight source, for tests and for models transformed in Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from attest.sources.base import WeightSource


class DictSource(WeightSource):
    format = "memory"

    def __init__(
        self, tensors: Mapping[str, torch.Tensor], config: dict[str, Any] | None = None, root: str = "<memory>"
    ) -> None:
        super().__init__(Path(root))
        self._tensors = dict(tensors)
        self._config = config

    def names(self) -> list[str]:
        return list(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        self.require(name)
        return tuple(self._tensors[name].shape)

    def get(self, name: str) -> torch.Tensor:
        self.require(name)
        return self._tensors[name].detach()

    def files(self) -> list[Path]:
        return []

    def config(self) -> dict[str, Any] | None:
        return self._config
