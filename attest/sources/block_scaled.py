"""FP8 weights with per-block scales (DeepSeek-V3, Kimi-K2): read back as the weights they stand for.

A block-quantised checkpoint stores a linear weight W [R, C] as `name` in
float8 (e4m3) and `name + "_scale_inv"` [⌈R/b_r⌉, ⌈C/b_c⌉] in float32, with the
block size in config.json's `quantization_config.weight_block_size` ([128, 128]):

    W[i, j] = fp8[i, j] · scale_inv[i // b_r, j // b_c]

(the name says "inverse" because the quantiser divided by it; reading multiplies).
This is a storage format, like a dtype: the source dequantises on `get`, hides
the scale tensors from `names()`, and nothing downstream knows.  The result is
bfloat16, the dtype such checkpoints are published from and that DeepSeek's
own conversion writes; the product is formed in float32 one block row at a time,
so a read never holds more than one float32 block row beside the output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from attest.errors import InputError
from attest.limits import MAX_DIM

SCALE_SUFFIX = "_scale_inv"
_FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)


@dataclass(frozen=True)
class BlockScale:
    rows: int
    cols: int


def block_scale_from_config(config: Mapping[str, Any] | None, root: object) -> BlockScale | None:
    """The block size of an fp8 block-quantised checkpoint, None when config.json declares none."""
    q = config.get("quantization_config") if config else None
    if not isinstance(q, dict) or "weight_block_size" not in q:
        return None
    method = q.get("quant_method")
    if method not in (None, "fp8"):
        raise InputError(f"{root}: quantization_config.quant_method {method!r} with block scales is not supported")
    size = q["weight_block_size"]
    ok = isinstance(size, list) and len(size) == 2
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_DIM for v in size)
    if not ok:
        raise InputError(f"{root}: quantization_config.weight_block_size must be two positive integers, got {size!r}")
    return BlockScale(int(size[0]), int(size[1]))


def scale_shape(shape: Sequence[int], block: BlockScale) -> tuple[int, int]:
    rows, cols = shape
    return -(-rows // block.rows), -(-cols // block.cols)


def check_scale(name: str, weight_shape: tuple[int, ...], scale_shape_: tuple[int, ...], block: BlockScale) -> None:
    """A clean input error unless the scale tensor has exactly one entry per block of a 2-D weight."""
    if len(weight_shape) != 2:
        raise InputError(f"block-scaled weight '{name}' has shape {weight_shape}, expected 2-D")
    want = scale_shape(weight_shape, block)
    if tuple(scale_shape_) != want:
        raise InputError(
            f"'{name}{SCALE_SUFFIX}' has shape {tuple(scale_shape_)}, expected {want} "
            f"for a {weight_shape} weight in {block.rows}×{block.cols} blocks"
        )


def dequantize(
    name: str, w: torch.Tensor, scale_inv: torch.Tensor, block: BlockScale, rows: Sequence[int] | None = None
) -> torch.Tensor:
    """fp8 · scale_inv per block, as bfloat16; `rows` says which weight rows `w` holds (all when None)."""
    if w.dtype not in _FP8:
        raise InputError(f"'{name}' has a block scale but is stored as {w.dtype}, not float8")
    if not scale_inv.is_floating_point() or scale_inv.dtype in _FP8:
        raise InputError(f"'{name}{SCALE_SUFFIX}' must be a float16/32 tensor, got {scale_inv.dtype}")
    scale = scale_inv.float()
    cols = w.shape[1]
    col_scale_index = torch.arange(cols) // block.cols
    out = torch.empty(w.shape, dtype=torch.bfloat16)
    if rows is not None:
        block_rows = torch.as_tensor(list(rows), dtype=torch.long) // block.rows
        out.copy_(w.float() * scale[block_rows][:, col_scale_index])
        return out
    for start in range(0, w.shape[0], block.rows):
        stop = min(start + block.rows, w.shape[0])
        out[start:stop] = w[start:stop].float() * scale[start // block.rows][col_scale_index]
    return out
