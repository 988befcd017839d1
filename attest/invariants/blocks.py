"""How much of a weight matrix one step of the invariant code holds (docs/scale.md, "Constant memory").

Every term is a sum over an inner axis (neurons, KV groups, experts), so it
is accumulated block by block; a block is as many neurons or KV groups as fit
in `budget()` bytes of float32 weight rows.  The peak resident set is then a
constant set by the budget and the probe size, not by the largest layer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from attest.errors import InputError

#: float32 bytes of weight rows per block.  64 MiB keeps each product a large
#: GEMM (1,024 neurons at hidden 16,384; 2,340 at 7,168) while the whole step,
#: block pages, its casts and its products, stays a few hundred MB.
DEFAULT_BLOCK_BYTES = 64 << 20
MIN_BLOCK_BYTES = 1 << 10
ENV = "ATTEST_BLOCK_BYTES"

_override: list[int] = []


def _from_env() -> int | None:
    raw = os.environ.get(ENV)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"{ENV} must be a whole number of bytes, got {raw[:40]!r}") from None
    if value < MIN_BLOCK_BYTES:
        raise InputError(f"{ENV} must be at least {MIN_BLOCK_BYTES} bytes, got {value}")
    return value


def budget() -> int:
    """The block budget in bytes: a `block_budget` override, else $ATTEST_BLOCK_BYTES, else the default."""
    if _override:
        return _override[-1]
    return _from_env() or DEFAULT_BLOCK_BYTES


@contextmanager
def block_budget(nbytes: int) -> Iterator[None]:
    """Run a block of code with another budget (tests force tiny blocks; any size gives the same terms)."""
    if nbytes < 1:
        raise InputError(f"block budget must be positive, got {nbytes}")
    _override.append(nbytes)
    try:
        yield
    finally:
        _override.pop()


def items_per_block(item_bytes: int) -> int:
    """How many items of `item_bytes` (float32) fit in one block; at least one."""
    return max(1, budget() // max(1, item_bytes))


def spans(total: int, per_block: int) -> Iterator[tuple[int, int]]:
    for a in range(0, total, per_block):
        yield a, min(total, a + per_block)
