"""Matmul precision: bf16 inputs with fp32 accumulation where the CPU is fast at it."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from attest.errors import InputError


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
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    raise InputError(f"unknown precision '{precision}' (auto, bf16 or fp32)")


def use_all_cores() -> int:
    # torch defaults to physical cores, which can undercount on VMs.
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, n))
    return n
