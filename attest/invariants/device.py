"""Where the invariant products run: `--device auto|cpu|cuda|mps` (docs/cli.md).

The same code runs everywhere: weights stay memory-mapped on the host and
are copied to the device one block at a time (attest.invariants.streamed),
so host memory stays bounded by the block budget and device memory holds a
block plus the n×n accumulators.  Results come back to the host as n×n
matrices, so everything after the products (standardising, sketching,
scoring) is the same code on every device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from attest.errors import InputError

DEVICES = ("auto", "cpu", "cuda", "mps")

_current: list[torch.device] = []


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str) -> torch.device:
    """The torch device for a `--device` value; an unavailable one is an input error naming what torch sees."""
    if name not in DEVICES:
        raise InputError(f"unknown device '{name[:40]}' (auto, cpu, cuda or mps)")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        built = torch.version.cuda
        why = "this torch build has no CUDA support" if built is None else f"no CUDA device is visible (CUDA {built})"
        raise InputError(f"device 'cuda' is not available: {why}; use --device cpu or auto")
    if name == "mps" and not _mps_available():
        raise InputError("device 'mps' is not available (Apple-silicon GPUs only); use --device cpu or auto")
    return torch.device(name)


def current_device() -> torch.device:
    """The device of the enclosing `use_device` block; the CPU outside one."""
    return _current[-1] if _current else torch.device("cpu")


def accelerator() -> torch.device | None:
    """The current device when it is not the CPU (the streamed terms then copy each block to it)."""
    dev = current_device()
    return None if dev.type == "cpu" else dev


@contextmanager
def use_device(name: str | None) -> Iterator[torch.device]:
    """Run the products of a block of code on device `name` (None leaves the enclosing choice)."""
    if name is None:
        yield current_device()
        return
    dev = resolve_device(name)
    _current.append(dev)
    try:
        yield dev
    finally:
        _current.pop()
