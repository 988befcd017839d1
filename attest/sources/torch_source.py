"""Legacy `pytorch_model*.bin` checkpoints, loaded only through `weights_only=True`.

Pickle can run arbitrary code, so we never call plain `torch.load`: the
restricted unpickler refuses anything that is not tensors and plain containers.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from attest.errors import InputError
from attest.sources import pages
from attest.sources.memory import DictSource
from attest.sources.safetensors_source import config_beside, shard_files_from_index

INDEX_NAME = "pytorch_model.bin.index.json"


# Words of torch's own refusal text that advise turning the safety off, or
# allow-listing globals; attest never does either, so it never repeats them.
_UNSAFE_ADVICE = re.compile(
    r"weights_only|safe_globals|add_safe_globals|trust the source|arbitrary code", re.IGNORECASE
)
_GLOBAL_NAME = re.compile(r"GLOBAL ([\w.]+)")


def refusal_reason(torch_message: str) -> str:
    """A short reason for a refused pickle, built from torch's message without its advice."""
    found = _GLOBAL_NAME.search(torch_message)
    if found:
        return f"it asks to import {found.group(1)}, which is not a tensor type"
    if "Unsupported operand" in torch_message:
        return "it uses a pickle instruction the safe loader does not allow"
    return "it holds objects other than tensors and plain containers"


def check_zip_members(path: Path) -> None:
    """Refuse compressed members: torch maps tensor data straight from the file,
    so a ZIP_DEFLATED member would be read as its compressed bytes (garbage)."""
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.compress_type != zipfile.ZIP_STORED:
                    raise InputError(
                        f"{path}: member '{info.filename[:120]}' is compressed "
                        f"(zip method {info.compress_type}); torch checkpoints store tensor data "
                        "uncompressed. Re-save it with torch.save or convert it to safetensors"
                    )
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: corrupt torch checkpoint ({exc.__class__.__name__})") from None


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not zipfile.is_zipfile(path):
        # The pre-1.6 format cannot be memory-mapped and is rare for LLMs.
        raise InputError(f"{path}: not a zip-format torch checkpoint; re-save it or convert to safetensors")
    check_zip_members(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        raise InputError(
            f"{path}: refused by the safe loader, which never runs code from a checkpoint: "
            f"{refusal_reason(str(exc))}. Ask the publisher for a safetensors copy"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else ""
        detail = "" if _UNSAFE_ADVICE.search(detail) else f": {detail}"
        raise InputError(f"{path}: corrupt torch checkpoint ({exc.__class__.__name__}{detail})") from None
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
        # torch.load(mmap=True) maps each file privately: its tensors' pages can be dropped after reading.
        spans = {(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()) for t in tensors.values()}
        self._regions = [pages.register(start, n) for start, n in spans if n > 0]

    def close(self) -> None:
        for key in self._regions:
            pages.unregister(key)
        self._regions = []

    @classmethod
    def from_path(cls, path: Path) -> "TorchSource":
        config = config_beside(path)
        if path.is_file():
            return cls(path, [path], config)
        if (path / INDEX_NAME).is_file():
            files = shard_files_from_index(path, INDEX_NAME)
        else:
            files = sorted(path.glob("pytorch_model*.bin"))
        if not files:
            raise InputError(f"{path}: no pytorch_model*.bin files")
        return cls(path, files, config)

    def files(self) -> list[Path]:
        return list(self._files)
