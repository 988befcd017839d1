"""Resident pages of memory-mapped weights: which address ranges are file-backed, and dropping them.

Sources hand out tensors that are views into a private (copy-on-write)
memory map of the checkpoint, so reading a layer costs no copy and no memory
until its bytes are touched.  Touched pages stay in the process's resident
set until told otherwise; the invariant code reads a matrix block by block
and calls `release` on each block once it is done with it, so the resident
set holds one block, not the layer.

Only ranges registered here are ever released: `madvise(MADV_DONTNEED)` on
anonymous memory would zero it, on a private file mapping it only drops the
pages (the next read faults them in again from the page cache).  A page
written in place through a view (copy-on-write) would revert to the file's
bytes, so released views must be treated as read-only; attest never writes
into weights.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
import threading
from typing import Callable

import torch

MADV_DONTNEED = 4  # Linux; the value mmap.MADV_DONTNEED has there
PAGE = mmap.PAGESIZE

_lock = threading.Lock()
_regions: dict[int, tuple[int, int]] = {}  # key -> (start address, end address)


def _libc_madvise() -> Callable[[int, int], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int

    def advise(start: int, length: int) -> None:
        fn(start, length, MADV_DONTNEED)  # a failure only means the pages stay resident

    return advise


_madvise = _libc_madvise()


def register(start: int, length: int) -> int:
    """Declare [start, start+length) a private file mapping that is never written; returns a key."""
    with _lock:
        key = max(_regions, default=0) + 1
        _regions[key] = (start, start + length)
        return key


def unregister(key: int) -> None:
    with _lock:
        _regions.pop(key, None)


def extent(t: torch.Tensor) -> tuple[int, int]:
    """[first byte, one past the last byte] a (possibly strided) tensor reads."""
    start = t.data_ptr()
    if t.numel() == 0:
        return start, start
    last = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride(), strict=True) if size > 0)
    return start, start + (last + 1) * t.element_size()


def is_mapped(t: torch.Tensor) -> bool:
    lo, hi = extent(t)
    with _lock:
        return any(a <= lo and hi <= b for a, b in _regions.values())


def release(*tensors: torch.Tensor | None) -> None:
    """Drop the resident pages under each tensor that is a view of a registered mapping; others are ignored."""
    if _madvise is None:
        return
    for t in tensors:
        if t is None or t.device.type != "cpu" or t.numel() == 0:
            continue
        lo, hi = extent(t)
        with _lock:
            inside = any(a <= lo and hi <= b for a, b in _regions.values())
        if not inside:
            continue
        # The pages holding the first and last byte lie in the same mapping (mappings are page-granular).
        aligned = lo - lo % PAGE
        _madvise(aligned, hi - aligned)
