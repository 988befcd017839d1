"""Safetensors checkpoints: one file, or a Hugging Face folder of shards."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from attest.documents.model_docs import read_config, read_shard_index
from attest.errors import InputError
from attest.sources import block_scaled as fp8
from attest.sources.base import WeightSource
from attest.sources.safetensors_file import SafetensorsFile

INDEX_NAME = "model.safetensors.index.json"


def config_beside(path: Path) -> dict[str, Any] | None:
    """The config.json of a model folder (or of a weight file's folder), validated; None if absent."""
    cfg = (path if path.is_dir() else path.parent) / "config.json"
    return read_config(cfg) if cfg.is_file() else None


def shard_files_from_index(folder: Path, index_name: str) -> list[Path]:
    """Shard paths listed by a HF `*.index.json`, validated to stay inside the folder."""
    weight_map = read_shard_index(folder / index_name)
    shards: list[Path] = []
    for shard in sorted(set(weight_map.values())):
        p = (folder / shard).resolve()
        if folder.resolve() not in p.parents:
            raise InputError(f"{folder / index_name}: shard '{shard}' points outside the folder")
        shards.append(p)
    return shards


class SafetensorsSource(WeightSource):
    format = "safetensors"

    def __init__(self, root: Path, files: Sequence[Path], config: dict[str, Any] | None) -> None:
        super().__init__(root)
        self._config = config
        self._files = [SafetensorsFile(f) for f in files]
        self._where: dict[str, SafetensorsFile] = {}
        for sf in self._files:
            for name in sf.entries:
                if name in self._where:
                    raise InputError(
                        f"{root}: tensor '{name}' appears in both {self._where[name].path.name} and {sf.path.name}"
                    )
                self._where[name] = sf
        # fp8 weights with block scales (DeepSeek-V3, Kimi-K2): weight name -> its scale tensor's name
        self._block = fp8.block_scale_from_config(config, root)
        self._scales: dict[str, str] = {}
        if self._block is not None:
            for name, sf in self._where.items():
                base = name.removesuffix(fp8.SCALE_SUFFIX)
                if base != name and base in self._where:
                    weight_shape = self._where[base].entries[base].shape
                    fp8.check_scale(base, weight_shape, sf.entries[name].shape, self._block)
                    self._scales[base] = name
        self._scale_names = set(self._scales.values())

    @classmethod
    def from_path(cls, path: Path) -> "SafetensorsSource":
        config = config_beside(path)
        if path.is_file():
            return cls(path, [path], config)
        if (path / INDEX_NAME).is_file():
            files = shard_files_from_index(path, INDEX_NAME)
        else:
            files = sorted(path.glob("*.safetensors"))
        if not files:
            raise InputError(f"{path}: no .safetensors files")
        return cls(path, files, config)

    def names(self) -> list[str]:
        return [n for n in self._where if n not in self._scale_names]

    def shape(self, name: str) -> tuple[int, ...]:
        self.require(name)
        return self._where[name].entries[name].shape

    def get(self, name: str) -> torch.Tensor:
        self.require(name)
        t = self._where[name].get(name)
        return self._dequantized(name, t, None)

    def get_rows(self, name: str, rows: Sequence[int]) -> torch.Tensor:
        self.require(name)
        t = self._where[name].get_rows(name, rows)
        return self._dequantized(name, t, rows)

    def _dequantized(self, name: str, t: torch.Tensor, rows: Sequence[int] | None) -> torch.Tensor:
        """A block-scaled fp8 weight times its scales; anything else as stored."""
        if self._block is None:
            return t
        scale = self._scales.get(name)
        if scale is not None:
            return fp8.dequantize(name, t, self._where[scale].get(scale), self._block, rows)
        if t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            raise InputError(f"{self.root}: fp8 tensor '{name}' has no '{name}{fp8.SCALE_SUFFIX}' block scale")
        return t

    def files(self) -> list[Path]:
        return [sf.path for sf in self._files]

    def config(self) -> dict[str, Any] | None:
        return self._config

    def metadata(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for sf in self._files:
            merged.update(sf.metadata)
        return merged

    def close(self) -> None:
        for sf in self._files:
            sf.close()
