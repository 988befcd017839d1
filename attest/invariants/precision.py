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

#: oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that still include its bf16 matmul kernels.
_ONEDNN_BF16_ISAS = frozenset(
    {"ALL", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512"}
    | {"AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2"}
)


def bf16_matmul_is_native(flags: str, env: dict[str, str]) -> bool:
    """The detection rule (bench/RESULTS-isa.md): bf16 only where the CPU has native bf16 and
    oneDNN, which runs torch's CPU bf16 matmul, is not capped below it.

    Without avx512_bf16/amx_bf16 (an AVX2-only CPU, or oneDNN capped with
    ONEDNN_MAX_CPU_ISA=AVX2), torch's bf16 matmul falls back to a reference
    path at 0.01x fp32, and neither fp16 (0.01x), fp16 storage with fp32
    compute (0.84x) nor int8 through torch._int_mm (0.47x once its operands
    are quantised, 1.5e-2 error) beats plain fp32 there, so fp32 is the path.
    """
    if not any(f in flags.split() for f in ("avx512_bf16", "amx_bf16")):
        return False
    cap = env.get("ONEDNN_MAX_CPU_ISA", env.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    return not cap or cap in _ONEDNN_BF16_ISAS


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags")), "")
    return bf16_matmul_is_native(flags, dict(os.environ))


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
