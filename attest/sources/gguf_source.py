"""GGUF files (llama.cpp): memory-mapped, dequantized one tensor at a time.

`gguf.GGUFReader` trusts its input: a truncated or hostile file makes it raise
assorted exceptions or, for an array whose claimed length runs past the end of
the file, loop for as long as that length says.  So the header is first walked
by `_scan_header`, which bounds every length and count by the bytes actually
left, and every tensor's data range by the file size; only then is the reader
built.  Failures are `InputError`s with a one-line message.
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from attest.errors import InputError
from attest.limits import MAX_GGUF_METADATA_STRINGS
from attest.sources.base import EmbeddedArchitecture, WeightSource
from attest.sources.gguf_layout import CONVERTER_FLATTENED, CONVERTER_ROW_PERMUTATIONS, LAYER_NAME, RowPermutation

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
GGML_MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32
MAX_ARRAY_DEPTH = 3  # llama.cpp writes flat arrays; nesting is allowed but kept shallow
MAX_DIM_VALUE = 2**31  # no real dimension comes near this
# Smallest encodings: a key/value is a u64 key length, a u32 type and a 1-byte
# value; a tensor info is a u64 name length, u32 n_dims, u32 type and u64 offset.
MIN_KV_BYTES = 8 + 4 + 1
MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8

# GGUFValueType codes -> size in bytes for fixed-size scalars.
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY, _UINT32 = 8, 9, 4


@dataclass(frozen=True)
class _TensorInfo:
    name: str
    dims: tuple[int, ...]  # GGUF ne order (innermost first)
    qtype: int
    offset: int  # relative to the start of the data section
    nbytes: int


@dataclass(frozen=True)
class _Header:
    version: int
    big_endian: bool
    alignment: int
    data_start: int
    tensors: tuple[_TensorInfo, ...]


class _Cursor:
    """Bounds-checked little/big-endian reads over a byte buffer."""

    def __init__(self, buf: "mmap.mmap | bytes", path: Path, endian: str) -> None:
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self.path = path
        self.endian = endian
        self.strings = 0  # metadata strings seen so far (bounded by MAX_GGUF_METADATA_STRINGS)

    def count_strings(self, n: int, key: str) -> None:
        self.strings += n
        if self.strings > MAX_GGUF_METADATA_STRINGS:
            raise InputError(
                f"{self.path}: GGUF metadata holds more than {MAX_GGUF_METADATA_STRINGS:,} strings "
                f"(at '{key[:80]}'); no real model needs that many"
            )

    def remaining(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n < 0 or n > self.remaining():
            raise InputError(
                f"{self.path}: truncated or corrupt GGUF file ({what} at byte {self.pos} needs {n} bytes, "
                f"{self.remaining()} left)"
            )

    def u32(self, what: str) -> int:
        self.need(4, what)
        (v,) = struct.unpack_from(self.endian + "I", self.buf, self.pos)
        self.pos += 4
        return int(v)

    def u64(self, what: str) -> int:
        self.need(8, what)
        (v,) = struct.unpack_from(self.endian + "Q", self.buf, self.pos)
        self.pos += 8
        return int(v)

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n

    def string(self, what: str) -> str:
        n = self.u64(f"{what} length")
        self.need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{self.path}: corrupt GGUF file ({what} is not UTF-8)") from None


def _skip_value(cur: _Cursor, vtype: int, key: str, depth: int = 0) -> Any:
    """Walk one metadata value; returns it only for the u32 scalars the scan needs."""
    if vtype in _SCALAR_SIZES:
        if vtype == _UINT32:
            return cur.u32(f"value of '{key}'")
        cur.skip(_SCALAR_SIZES[vtype], f"value of '{key}'")
        return None
    if vtype == _STRING:
        cur.count_strings(1, key)
        cur.skip(cur.u64(f"string length of '{key}'"), f"string value of '{key}'")
        return None
    if vtype == _ARRAY:
        if depth >= MAX_ARRAY_DEPTH:
            raise InputError(f"{cur.path}: corrupt GGUF file (arrays nested deeper than {MAX_ARRAY_DEPTH} in '{key}')")
        itype = cur.u32(f"array type of '{key}'")
        count = cur.u64(f"array length of '{key}'")
        if itype in _SCALAR_SIZES:
            cur.skip(count * _SCALAR_SIZES[itype], f"array '{key}' of {count} items")
            return None
        smallest = {_STRING: 8, _ARRAY: 12}.get(itype)
        if smallest is None:
            raise InputError(f"{cur.path}: corrupt GGUF file (unknown array item type {itype} in '{key}')")
        # Check the claimed length against the bytes left before looping over it.
        cur.need(count * smallest, f"array '{key}' of {count} items")
        if itype == _STRING and cur.strings + count > MAX_GGUF_METADATA_STRINGS:
            cur.count_strings(count, key)  # refuses before walking the array
        for _ in range(count):
            _skip_value(cur, itype, key, depth + 1)
        return None
    raise InputError(f"{cur.path}: corrupt GGUF file (unknown value type {vtype} for key '{key}')")


def _scan_header(buf: "mmap.mmap | bytes", path: Path) -> _Header:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    if len(buf) < 4 or bytes(buf[:4]) != GGUF_MAGIC:
        raise InputError(f"{path}: not a GGUF file (bad magic {bytes(buf[:4])!r}, expected {GGUF_MAGIC!r})")
    cur = _Cursor(buf, path, "<")
    cur.pos = 4
    version = cur.u32("version")
    big_endian = False
    if version & 0xFFFF == 0:  # written on a big-endian host
        big_endian = True
        cur.endian = ">"
        version = struct.unpack(">I", struct.pack("<I", version))[0]
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise InputError(f"{path}: unsupported GGUF version {version} (supported: {supported})")
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata count")
    if n_tensors * MIN_TENSOR_INFO_BYTES + n_kv * MIN_KV_BYTES > cur.remaining():
        raise InputError(
            f"{path}: truncated or corrupt GGUF file (header claims {n_tensors} tensors and {n_kv} "
            f"metadata keys, more than {len(buf)} bytes can hold)"
        )
    alignment = DEFAULT_ALIGNMENT
    keys: set[str] = set()
    for _ in range(n_kv):
        key = cur.string("metadata key")
        if key in keys:
            raise InputError(f"{path}: corrupt GGUF file (metadata key '{key}' appears twice)")
        keys.add(key)
        vtype = cur.u32(f"type of '{key}'")
        value = _skip_value(cur, vtype, key)
        if key == "general.alignment":
            if vtype != _UINT32 or value is None or value == 0 or value & (value - 1):
                raise InputError(f"{path}: corrupt GGUF file (general.alignment must be a power-of-two u32)")
            alignment = value
    infos: list[tuple[str, tuple[int, ...], int, int]] = []
    names: set[str] = set()
    for _ in range(n_tensors):
        name = cur.string("tensor name")
        if name in names:
            raise InputError(f"{path}: corrupt GGUF file (tensor '{name}' appears twice)")
        names.add(name)
        n_dims = cur.u32(f"dimension count of '{name}'")
        if not 1 <= n_dims <= GGML_MAX_DIMS:
            raise InputError(f"{path}: corrupt GGUF file (tensor '{name}' has {n_dims} dimensions)")
        dims = tuple(cur.u64(f"dimensions of '{name}'") for _ in range(n_dims))
        if any(not 1 <= d <= MAX_DIM_VALUE for d in dims):
            raise InputError(f"{path}: corrupt GGUF file (tensor '{name}' has dimensions {list(dims)})")
        qtype = cur.u32(f"type of '{name}'")
        offset = cur.u64(f"data offset of '{name}'")
        infos.append((name, dims, qtype, offset))
    data_start = -(-cur.pos // alignment) * alignment
    tensors: list[_TensorInfo] = []
    for name, dims, qtype, offset in infos:
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(qtype)]
        except (ValueError, KeyError):
            raise InputError(f"{path}: tensor '{name}' has unknown type {qtype}") from None
        if dims[0] % block:
            raise InputError(
                f"{path}: corrupt GGUF file (tensor '{name}' rows of {dims[0]} values are not whole "
                f"{GGMLQuantizationType(qtype).name} blocks of {block})"
            )
        nbytes = math.prod(dims) // block * type_size
        if data_start + offset + nbytes > len(buf):
            raise InputError(
                f"{path}: truncated or corrupt GGUF file (data of tensor '{name}' spans bytes "
                f"{data_start + offset}..{data_start + offset + nbytes}, the file has {len(buf)})"
            )
        tensors.append(_TensorInfo(name, dims, qtype, offset, nbytes))
    return _Header(version, big_endian, alignment, data_start, tuple(tensors))


def _plain(field: Any) -> Any:
    """A GGUFReader field as a plain Python value."""
    from gguf.constants import GGUFValueType

    types = field.types
    if not types:
        return None
    if types[0] == GGUFValueType.ARRAY:
        if len(types) < 2:  # empty array: no item type recorded
            return []
        if types[-1] == GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]
        return [v for i in field.data for v in field.parts[i].tolist()]
    if types[0] == GGUFValueType.STRING:
        return bytes(field.parts[-1]).decode("utf-8", "replace")
    return field.parts[-1].tolist()[0]


def _positive_int(value: Any, key: str, path: Path) -> int:
    if isinstance(value, list):
        # Some architectures store one value per layer; one shared value is all we can use.
        if not value or any(type(v) is not int or v != value[0] for v in value):
            raise InputError(f"{path}: '{key}' is a per-layer list with differing values, which is not supported")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_DIM_VALUE:
        raise InputError(f"{path}: metadata '{key}' = {value!r} is not a plausible size")
    return value


class GGUFSource(WeightSource):
    format = "gguf"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        import gguf

        self._gguf = gguf
        try:
            size = path.stat().st_size
            if size == 0:
                raise InputError(f"{path}: empty file, not a GGUF model")
            with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                self._header = _scan_header(buf, path)
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
        try:
            self._reader: Any = gguf.GGUFReader(path)
        except (ValueError, IndexError, KeyError, OverflowError, RecursionError, struct.error, TypeError) as exc:
            # The scan above should have caught anything the reader chokes on.
            raise InputError(f"{path}: corrupt GGUF file ({type(exc).__name__}: {exc})") from None
        self._tensors = {t.name: t for t in self._reader.tensors}
        for info in self._header.tensors:
            t = self._tensors.get(info.name)
            if t is None or int(t.data_offset) != self._header.data_start + info.offset:
                raise InputError(f"{path}: corrupt GGUF file (tensor table of '{info.name}' is inconsistent)")
        self._meta: dict[str, Any] | None = None
        self._permutations: dict[str, RowPermutation] | None = None
        self._flattened: frozenset[str] | None = None
        split = self.metadata().get("split.count")
        if isinstance(split, int) and split > 1:
            # llama.cpp's gguf-split shards each hold a slice of the tensors.
            raise InputError(
                f"{path}: this is one shard of a {split}-part split GGUF; merge the parts first "
                f"(llama-gguf-split --merge FIRST-SHARD OUT.gguf)"
            )

    @classmethod
    def from_path(cls, path: Path) -> "GGUFSource":
        return cls(Path(path))

    # -- metadata --------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        if self._meta is None:
            self._meta = {
                name: _plain(field)
                for name, field in self._reader.fields.items()
                if not name.startswith("GGUF.")  # the reader's pseudo-fields for the header
            }
        return self._meta

    def config(self) -> dict[str, Any] | None:
        return None

    def files(self) -> list[Path]:
        return [self.root]

    @property
    def architecture(self) -> str:
        arch = self.metadata().get("general.architecture")
        if not isinstance(arch, str) or not arch:
            raise InputError(f"{self.root}: GGUF file has no 'general.architecture'")
        return arch

    def embedded_architecture(self) -> EmbeddedArchitecture:
        return EmbeddedArchitecture("gguf", self.architecture)

    def _meta_int(self, key: str, *, required: bool = False, zero_is_absent: bool = False) -> int | None:
        full = f"{self.architecture}.{key}"
        value = self.metadata().get(full)
        if value is None or (zero_is_absent and value == 0 and type(value) is int):
            if required:
                raise InputError(f"{self.root}: GGUF metadata '{full}' is missing")
            return None
        return _positive_int(value, full, self.root)

    def recorded_dims(self) -> dict[str, int]:
        arch = self.architecture
        experts = self.metadata().get(f"{arch}.expert_count")
        n_experts = _positive_int(experts, f"{arch}.expert_count", self.root) if experts else 0
        dims = {
            "hidden": self._meta_int("embedding_length"),
            "layers": self._meta_int("block_count"),
            # Mamba2Model writes head_count 0 ("unused, but seemingly required when loading"): no attention
            "heads": self._meta_int("attention.head_count", zero_is_absent=True),
            "kv_heads": self._meta_int("attention.head_count_kv"),
            "head_dim": self._meta_int("attention.key_length"),
            "experts": n_experts or None,
        }
        return {k: v for k, v in dims.items() if v is not None}

    def arch_spec(self) -> tuple[Any, dict[str, int]]:
        """Deprecated: `attest.arch.gguf_families.resolve_gguf(source, source.architecture)`.

        Kept only for callers of the old API (tests/test_gguf.py); the import is
        deferred so that `attest.sources` never depends on `attest.arch` when loaded.
        """
        from attest.arch.gguf_families import resolve_gguf

        return resolve_gguf(self, self.architecture)

    # -- tensors ---------------------------------------------------------
    def names(self) -> list[str]:
        return list(self._tensors)

    def _tensor(self, name: str) -> Any:
        t = self._tensors.get(name)
        if t is None:
            self.require(name)  # the clear "missing" message
            raise InputError(f"{self.root}: the GGUF source is closed")
        return t

    def shape(self, name: str) -> tuple[int, ...]:
        dims = tuple(int(d) for d in reversed(self._tensor(name).shape.tolist()))
        return (math.prod(dims),) if self._is_flattened(name) else dims

    def _is_flattened(self, name: str) -> bool:
        """Whether the converter reshaped this checkpoint vector (`gguf_layout.CONVERTER_FLATTENED`)."""
        if self._flattened is None:
            arch = self.metadata().get("general.architecture")
            self._flattened = frozenset(CONVERTER_FLATTENED.get(arch, ()) if isinstance(arch, str) else ())
        if not self._flattened:
            return False
        m = LAYER_NAME.fullmatch(name)
        return m is not None and m.group(2) in self._flattened

    def qtype_name(self, name: str) -> str:
        return str(self._tensor(name).tensor_type.name)

    def _dequantize(self, name: str, raw: np.ndarray, qtype: Any) -> np.ndarray:
        gguf = self._gguf
        Q = gguf.GGMLQuantizationType
        if qtype in (Q.F32, Q.F16, Q.F64):
            # A converting copy: the reader's view is read-only and, in a
            # big-endian file, byte-swapped (gguf-py's F16 path would ignore that).
            return np.array(raw, dtype=np.float32)
        if self._header.big_endian:
            raise InputError(f"{self.root}: tensor '{name}': big-endian {qtype.name} data is not supported")
        try:
            out = gguf.quants.dequantize(raw, qtype)
        except NotImplementedError:
            raise InputError(
                f"{self.root}: tensor '{name}' uses type {qtype.name}, which gguf-py "
                f"{_gguf_version()} cannot dequantize"
            ) from None
        return np.ascontiguousarray(out, dtype=np.float32)

    def get(self, name: str) -> torch.Tensor:
        t = self._tensor(name)
        arr = self._dequantize(name, t.data, t.tensor_type).reshape(self.shape(name))
        out = torch.from_numpy(arr)
        perm = self._permutation(name)
        return self._unpermute(out, perm, name) if perm is not None else out

    def get_rows(self, name: str, rows: Sequence[int]) -> torch.Tensor:
        t = self._tensor(name)
        shape = self.shape(name)
        if len(shape) != 2 or self._permutation(name) is not None:
            return super().get_rows(name, rows)
        index = np.asarray(list(rows), dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= shape[0]):
            raise InputError(f"{self.root}: row index out of range for '{name}' with {shape[0]} rows")
        # A row of a quantized 2-D tensor is a whole number of independent
        # blocks, so gathering raw rows and dequantizing only those is exact.
        raw = np.asarray(t.data).reshape(shape[0], -1)[index]
        arr = self._dequantize(name, raw, t.tensor_type).reshape(len(index), shape[1])
        return torch.from_numpy(arr)

    # -- llama.cpp's Q/K row permutation ---------------------------------
    def _permutation(self, name: str) -> RowPermutation | None:
        if self._permutations is None:
            name_of_arch = self.metadata().get("general.architecture")
            perms = CONVERTER_ROW_PERMUTATIONS.get(name_of_arch, ()) if isinstance(name_of_arch, str) else ()
            self._permutations = {rel: p for p in perms for rel in p.tensors}
        if not self._permutations:
            return None
        m = LAYER_NAME.fullmatch(name)
        return self._permutations.get(m.group(2)) if m else None

    def _unpermute(self, w: torch.Tensor, perm: RowPermutation, name: str) -> torch.Tensor:
        """Invert `w.reshape(n, 2, r // n // 2, ...).swapaxes(1, 2).reshape(w.shape)`."""
        n = next((v for k in perm.heads_keys if (v := self._meta_int(k)) is not None), None)
        if n is None:
            raise InputError(
                f"{self.root}: cannot undo llama.cpp's row permutation of '{name}': "
                f"no {' or '.join(self.architecture + '.' + k for k in perm.heads_keys)} in the metadata"
            )
        rows = w.shape[0]
        if rows % (2 * n):
            raise InputError(f"{self.root}: '{name}' has {rows} rows, not a whole number of {n} heads of even size")
        return w.reshape(n, rows // n // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape).contiguous()

    def close(self) -> None:
        self._reader = None
        self._tensors = {}


def _gguf_version() -> str:
    try:
        from importlib.metadata import version

        return version("gguf")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "(unknown version)"
