"""Safetensors checkpoints: one file, or a Hugging Face folder of shards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from attest.errors import InputError
from attest.sources.base import WeightSource
from attest.sources.safetensors_file import SafetensorsFile

INDEX_NAME = "model.safetensors.index.json"
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def read_json(path: Path, what: str) -> Any:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise InputError(f"{path}: {what} is implausibly large")
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: {what} is not valid JSON ({exc})") from None


def shard_files_from_index(folder: Path, index_name: str) -> list[Path]:
    """Shard paths listed by a HF `*.index.json`, validated to stay inside the folder."""
    index = read_json(folder / index_name, "shard index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise InputError(f"{folder / index_name}: no 'weight_map' in shard index")
    shards: list[Path] = []
    for shard in sorted(set(weight_map.values())):
        p = (folder / str(shard)).resolve()
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
                        f"{root}: tensor '{name}' appears in both "
                        f"{self._where[name].path.name} and {sf.path.name}"
                    )
                self._where[name] = sf

    @classmethod
    def from_path(cls, path: Path) -> "SafetensorsSource":
        if path.is_file():
            cfg_path = path.parent / "config.json"
            config = read_json(cfg_path, "config") if cfg_path.is_file() else None
            return cls(path, [path], config)
        config = read_json(path / "config.json", "config") if (path / "config.json").is_file() else None
        if (path / INDEX_NAME).is_file():
            files = shard_files_from_index(path, INDEX_NAME)
        else:
            files = sorted(path.glob("*.safetensors"))
        if not files:
            raise InputError(f"{path}: no .safetensors files")
        return cls(path, files, config)

    def names(self) -> list[str]:
        return list(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        self.require(name)
        return self._where[name].entries[name].shape

    def get(self, name: str) -> torch.Tensor:
        self.require(name)
        return self._where[name].get(name)

    def get_rows(self, name: str, rows: Sequence[int]) -> torch.Tensor:
        self.require(name)
        return self._where[name].get_rows(name, rows)

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
