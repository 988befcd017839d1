"""A validating, memory-mapped reader for one `.safetensors` file.

We parse the header ourselves instead of using `safetensors.safe_open` so that
we can (a) bound and validate every field of hostile files with clear errors,
and (b) gather a few rows of a huge embedding matrix straight from the map
without reading the whole tensor.
"""

from __future__ import annotations

import itertools
import json
import math
import mmap
import shutil
import struct
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from attest.documents.bounded_json import loads_bounded
from attest.errors import InputError
from attest.sources import pages

MAX_HEADER_BYTES = 100 * 1024 * 1024
#: A header is {name: {dtype, shape: [...], data_offsets: [...]}}: three levels.
HEADER_DEPTH = 3
MAX_TENSOR_DIMS = 8

_DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "F8_E4M3": (torch.float8_e4m3fn, 1),
    "F8_E5M2": (torch.float8_e5m2, 1),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}


@dataclass(frozen=True)
class TensorEntry:
    dtype: torch.dtype
    itemsize: int
    shape: tuple[int, ...]
    begin: int
    end: int


def _is_count(v: Any) -> bool:
    # bool is an int subclass in Python; `true` is not a size.
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


_LINUX_MAP_NORESERVE = 0x4000  # Python < 3.12 does not export it


def _private_map(fileno: int) -> mmap.mmap:
    """The whole file mapped copy-on-write: writes through a view never reach the file (nor crash),
    and MAP_NORESERVE keeps a checkpoint larger than RAM from being charged against the commit limit."""
    flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_NORESERVE", _LINUX_MAP_NORESERVE if sys.platform == "linux" else 0)
    try:
        return mmap.mmap(fileno, 0, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError:
        # Strict overcommit accounting (vm.overcommit_memory = 2) charges a writable private
        # map in full; a read-only map is charged nothing.  attest never writes into weights.
        return mmap.mmap(fileno, 0, access=mmap.ACCESS_READ)


class SafetensorsFile:
    """Header-validated view of one safetensors file; data stays on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fh = open(path, "rb")
        except FileNotFoundError:
            raise InputError(f"{path}: file not found") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot open ({exc.strerror})") from None
        size = self._fh.seek(0, 2)
        if size < 8:
            raise InputError(f"{path}: not a safetensors file (only {size} bytes)")
        self._fh.seek(0)
        (header_len,) = struct.unpack("<Q", self._fh.read(8))
        if header_len > MAX_HEADER_BYTES or header_len > size - 8:
            raise InputError(
                f"{path}: corrupt or truncated safetensors header (declares {header_len} header bytes, file has {size})"
            )
        header = loads_bounded(
            self._fh.read(header_len), where=f"{path}: corrupt safetensors header", top=dict, max_depth=HEADER_DEPTH
        )
        self._data_start = 8 + header_len
        data_size = size - self._data_start
        meta = header.pop("__metadata__", None) or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise InputError(f"{path}: safetensors '__metadata__' must be an object of strings")
        self.metadata: dict[str, Any] = meta
        self.entries: dict[str, TensorEntry] = {}
        for name, info in header.items():
            self.entries[name] = self._parse_entry(name, info, data_size)
        self._check_no_overlap()
        self._mmap: mmap.mmap | None = None
        self._region: int | None = None
        if data_size > 0:
            self._mmap = _private_map(self._fh.fileno())
            base = np.frombuffer(self._mmap, dtype=np.uint8)
            self._region = pages.register(base.ctypes.data, base.size)
            del base

    def _parse_entry(self, name: str, info: Any, data_size: int) -> TensorEntry:
        where = f"{self.path}: tensor '{name}'"
        if not isinstance(info, dict):
            raise InputError(f"{where}: malformed header entry")
        dtype_name = info.get("dtype")
        if not isinstance(dtype_name, str) or dtype_name not in _DTYPES:
            raise InputError(f"{where}: unsupported dtype {dtype_name!r}")
        shape = info.get("shape")
        offsets = info.get("data_offsets")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_TENSOR_DIMS
            or not all(_is_count(s) for s in shape)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_count(o) for o in offsets)
        ):
            raise InputError(
                f"{where}: malformed shape or offsets (shape {str(shape)[:60]}, data_offsets {str(offsets)[:60]}; "
                f"each must be a list of non-negative integers, at most {MAX_TENSOR_DIMS} dimensions)"
            )
        dtype, itemsize = _DTYPES[dtype_name]
        begin, end = offsets
        expected = math.prod(shape) * itemsize
        if not (0 <= begin <= end) or end - begin != expected:
            raise InputError(f"{where}: offsets {offsets} do not match shape {shape} ({dtype_name})")
        if end > data_size:
            raise InputError(f"{where}: data runs past the end of the file (truncated download?)")
        return TensorEntry(dtype, itemsize, tuple(shape), begin, end)

    def _check_no_overlap(self) -> None:
        """Refuse tensors whose byte ranges overlap, as the safetensors library does:
        two names reading one buffer would let an edit to one silently change the other."""
        spans = sorted((e.begin, e.end, n) for n, e in self.entries.items() if e.end > e.begin)
        for (_b0, e0, n0), (b1, _e1, n1) in itertools.pairwise(spans):
            if b1 < e0:
                raise InputError(
                    f"{self.path}: tensors '{n0}' and '{n1}' overlap in the file (bytes {b1}..{e0} belong to both)"
                )

    def _bytes(self, begin: int, end: int) -> np.ndarray:
        assert self._mmap is not None
        start = self._data_start + begin
        return np.frombuffer(self._mmap, dtype=np.uint8, count=end - begin, offset=start)

    def _release(self, begin: int, end: int) -> None:
        """Drop the mapped pages of a range we have copied out.

        The data is in our own buffer now; without this the kernel keeps the
        file pages mapped into the process and a 7B model would slowly fill
        the resident set, one layer at a time.
        """
        if self._mmap is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = self._data_start + begin
        aligned = start - start % mmap.PAGESIZE
        length = self._data_start + end - aligned
        if length > 0:
            self._mmap.madvise(mmap.MADV_DONTNEED, aligned, length)

    def get(self, name: str) -> torch.Tensor:
        """A view into the (copy-on-write) map: no bytes are read until the tensor is.

        Callers that read a big tensor block by block drop each block's pages
        with `attest.sources.pages.release`, so the resident set holds a block.
        """
        e = self.entries[name]
        if e.end == e.begin:
            return torch.empty(e.shape, dtype=e.dtype)
        raw = self._bytes(e.begin, e.end)
        if (self._data_start + e.begin) % e.itemsize:
            # A misaligned tensor (only a hand-made file has one) is copied rather than viewed.
            raw = raw.copy()
            self._release(e.begin, e.end)
        with warnings.catch_warnings():
            # A read-only map (the strict-overcommit fallback) gives a read-only array; nothing writes to it.
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(raw).view(e.dtype).reshape(e.shape)

    def get_rows(self, name: str, rows: Sequence[int]) -> torch.Tensor:
        e = self.entries[name]
        if len(e.shape) != 2:
            return self.get(name).index_select(0, torch.as_tensor(list(rows), dtype=torch.long))
        n_rows, n_cols = e.shape
        idx = np.asarray(rows, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n_rows):
            raise InputError(f"{self.path}: row index out of range for '{name}'")
        row_bytes = n_cols * e.itemsize
        table = self._bytes(e.begin, e.end).reshape(n_rows, row_bytes)
        picked = np.ascontiguousarray(table[idx])
        del table
        self._release(e.begin, e.end)
        return torch.from_numpy(picked).view(e.dtype).reshape(len(idx), n_cols)

    def close(self) -> None:
        if self._region is not None:
            pages.unregister(self._region)
            self._region = None
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                # A tensor view still points into the map; the OS frees it at exit.
                pass
            self._mmap = None
        self._fh.close()


_DTYPE_NAMES = {dtype: name for name, (dtype, _size) in _DTYPES.items()}


class SafetensorsWriter:
    """Write a safetensors file tensor by tensor, holding none of them.

    Tensor bytes go to a temporary data file as they arrive; `close` writes
    the header (which needs every offset) and appends the data.  Peak memory
    is one tensor, not the whole file as with `safetensors.torch.save_file`.
    """

    def __init__(self, path: Path, metadata: dict[str, str] | None = None) -> None:
        self.path = path
        self._meta = dict(metadata or {})
        self._entries: dict[str, dict[str, Any]] = {}
        self._offset = 0
        self._data_path = path.with_name(path.name + ".part")
        self._data = open(self._data_path, "wb")

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._entries:
            raise ValueError(f"tensor {name} written twice")
        t = tensor.detach().contiguous()
        size = t.numel() * t.element_size()
        self._entries[name] = {
            "dtype": _DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [self._offset, self._offset + size],
        }
        self._data.write(memoryview(t.view(torch.uint8).reshape(-1).numpy()))  # type: ignore[arg-type]
        self._offset += size

    def close(self) -> None:
        self._data.close()
        header = json.dumps({"__metadata__": self._meta, **self._entries}, separators=(",", ":")).encode("utf-8")
        header += b" " * (-len(header) % 8)
        with open(self.path, "wb") as out, open(self._data_path, "rb") as data:
            out.write(struct.pack("<Q", len(header)))
            out.write(header)
            shutil.copyfileobj(data, out, 16 * 1024 * 1024)
        self._data_path.unlink()

    def __enter__(self) -> "SafetensorsWriter":
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._data.close()
            self._data_path.unlink(missing_ok=True)
