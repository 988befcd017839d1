"""Matmul precision: bf16 inputs with fp32 accumulation where the CPU is fast at it."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from attest.errors import InputError
from attest.invariants.device import current_device


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def compute_dtype(precision: str) -> torch.dtype:
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        dev = current_device()
        if dev.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        if dev.type == "mps":
            return torch.float32  # bf16 matmul support on MPS depends on the macOS version
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    raise InputError(f"unknown precision '{precision}' (auto, bf16 or fp32)")


def available_cores() -> int:
    """Cores this process may run on (torch's default counts physical cores, which undercounts on VMs)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, n)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run a block with `threads` torch threads, restoring the caller's setting after.

    None leaves torch's global setting alone: a library call must not change a
    process-wide knob unless asked.  The CLI asks for every available core.
    """
    before = torch.get_num_threads()
    if threads is None:
        yield before
        return
    if threads < 1:
        raise InputError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
