"""Legacy `pytorch_model*.bin` checkpoints, loaded only through `weights_only=True`.

Pickle can run arbitrary code, so we never call plain `torch.load`: the
restricted unpickler refuses anything that is not tensors and plain containers.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from attest.errors import InputError
from attest.sources.memory import DictSource
from attest.sources.safetensors_source import read_json, shard_files_from_index

INDEX_NAME = "pytorch_model.bin.index.json"


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not zipfile.is_zipfile(path):
        # The pre-1.6 format cannot be memory-mapped and is rare for LLMs.
        raise InputError(f"{path}: not a zip-format torch checkpoint; re-save it or convert to safetensors")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        # torch's message advises weights_only=False; we never do that, so keep only the reason.
        reason = next((ln for ln in lines if "Unsupported global" in ln or "Unsupported operand" in ln), lines[0] if lines else "refused")
        raise InputError(
            f"{path}: refused by the safe (weights_only) loader, which never runs code from a checkpoint: {reason}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"{path}: corrupt torch checkpoint ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path}: does not hold a flat dictionary of tensors")
    return obj


class TorchSource(DictSource):
    format = "torch"

    def __init__(self, root: Path, files: list[Path], config: dict[str, Any] | None) -> None:
        tensors: dict[str, torch.Tensor] = {}
        for f in files:
            for name, t in _load_state_dict(f).items():
                if name in tensors:
                    raise InputError(f"{root}: tensor '{name}' appears in more than one shard")
                tensors[name] = t
        super().__init__(tensors, config, root=str(root))
        self._files = files

    @classmethod
    def from_path(cls, path: Path) -> "TorchSource":
        if path.is_file():
            cfg = path.parent / "config.json"
            return cls(path, [path], read_json(cfg, "config") if cfg.is_file() else None)
        config = read_json(path / "config.json", "config") if (path / "config.json").is_file() else None
        if (path / INDEX_NAME).is_file():
            files = shard_files_from_index(path, INDEX_NAME)
        else:
            files = sorted(path.glob("pytorch_model*.bin"))
        if not files:
            raise InputError(f"{path}: no pytorch_model*.bin files")
        return cls(path, files, config)

    def files(self) -> list[Path]:
        return list(self._files)
