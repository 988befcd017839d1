"""Initializer data: an initializer's bytes (inline or external) decoded into numpy without a protobuf copy.

A `Blob` keeps the raw bytes, or a (file, offset, length) triple for external
data, and views them as an array on demand; external files are memory-mapped,
so slicing rows of a large weight reads only those rows.
`external_location` refuses locations outside the model's folder.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attest.errors import InputError

_SIMPLE_DTYPES: dict[int, np.dtype] = {}


def simple_dtypes(onnx: Any) -> dict[int, np.dtype]:
    if not _SIMPLE_DTYPES:
        T = onnx.TensorProto
        for code, dt in (
            (T.FLOAT, np.float32),
            (T.FLOAT16, np.float16),
            (T.DOUBLE, np.float64),
            (T.INT8, np.int8),
            (T.UINT8, np.uint8),
            (T.INT16, np.int16),
            (T.UINT16, np.uint16),
            (T.INT32, np.int32),
            (T.UINT32, np.uint32),
            (T.INT64, np.int64),
            (T.UINT64, np.uint64),
            (T.BOOL, np.bool_),
        ):
            _SIMPLE_DTYPES[code] = np.dtype(dt).newbyteorder("<")
    return _SIMPLE_DTYPES


def plain_array(arr: np.ndarray) -> np.ndarray:
    """ml_dtypes arrays (bfloat16, float8, int4) as ordinary numpy dtypes that torch understands."""
    kind = arr.dtype.name
    if kind.startswith(("int4", "int2")):
        return arr.astype(np.int8)
    if kind.startswith(("uint4", "uint2")):
        return arr.astype(np.uint8)
    if arr.dtype.kind == "V" or kind.startswith(("bfloat16", "float8", "float4")):
        return arr.astype(np.float32)
    return arr


@dataclass
class Blob:
    """One initializer's bytes, kept out of the protobuf so rows can be sliced without a full copy."""

    dims: tuple[int, ...]
    data_type: int
    raw: bytes | None = None
    external: tuple[Path, int, int] | None = None  # file, offset, length
    array: np.ndarray | None = None  # already decoded (typed fields, Constant nodes, virtual constants)
    _mapped: np.ndarray | None = None

    def nbytes_expected(self, itemsize: int) -> int:
        return int(np.prod(self.dims, dtype=np.int64)) * itemsize

    def view(self, onnx: Any) -> np.ndarray:
        """A read-only array; memory-mapped for external data, a zero-copy view of the bytes otherwise."""
        if self.array is not None:
            return self.array
        simple = simple_dtypes(onnx).get(self.data_type)
        buf: Any
        if self.external is not None:
            if self._mapped is None:
                path, offset, length = self.external
                self._mapped = np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(length,))
            buf = self._mapped
        else:
            buf = self.raw or b""
        if simple is not None:
            need = self.nbytes_expected(simple.itemsize)
            if len(buf) != need:
                raise InputError(f"ONNX tensor of shape {self.dims} holds {len(buf)} bytes, expected {need}")
            flat = buf.view(simple) if isinstance(buf, np.ndarray) else np.frombuffer(buf, dtype=simple)
            arr = flat.reshape(self.dims)
            return arr if sys.byteorder == "little" else arr.astype(simple.newbyteorder("="))
        # Packed or exotic types (int4, bfloat16, float8): let onnx decode them once.
        proto = onnx.TensorProto()
        proto.data_type = self.data_type
        proto.dims.extend(self.dims)
        proto.raw_data = bytes(buf)
        self.array = plain_array(onnx.numpy_helper.to_array(proto))
        return self.array


def external_location(tensor: Any, folder: Path) -> tuple[Path, int, int]:
    info = {e.key: e.value for e in tensor.external_data}
    loc = info.get("location", "")
    if not loc or Path(loc).is_absolute() or loc.startswith(("/", "\\")) or ":" in loc:
        raise InputError(f"ONNX tensor '{tensor.name}': external data location '{loc}' must be a relative file name")
    base = folder.resolve()
    target = (base / loc).resolve()
    if base not in target.parents:
        raise InputError(f"ONNX tensor '{tensor.name}': external data '{loc}' points outside the model folder")
    if not target.is_file():
        raise InputError(f"ONNX tensor '{tensor.name}': external data file '{loc}' not found")
    try:
        offset = int(info.get("offset", "0"))
        size = target.stat().st_size
        length = int(info["length"]) if "length" in info else size - offset
    except ValueError:
        raise InputError(f"ONNX tensor '{tensor.name}': bad external data offset or length") from None
    if offset < 0 or length < 0 or offset + length > size:
        raise InputError(
            f"ONNX tensor '{tensor.name}': external data range {offset}+{length} is past the end of '{loc}'"
        )
    return target, offset, length
