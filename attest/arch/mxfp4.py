"""MXFP4 stacked experts (GPT-OSS releases): `<name>_blocks` and `<name>_scales` dequantised to a float tensor.

The OCP microscaling FP4 format as the released GPT-OSS checkpoints store it:
`_blocks` is uint8 `[E, R, G, 16]`, two FP4 (e2m1) codes per byte, low nibble
first, so a group of 32 values per 16 bytes; `_scales` is uint8 `[E, R, G]`, one
power-of-two exponent per group with bias 127. A value is `FP4[code] * 2**(scale-127)`.
Rows R are the output features, so the dequantised `[E, R, 32*G]` is `[out, in]`;
transformers then transposes it to the `[E, in, out]` its GPT-OSS experts hold,
and so does `dequantise_stacked` (the bf16 checkpoints store that layout, and
one expert layout in `attest.arch.experts` then reads both).
"""

from __future__ import annotations

import torch

from attest.errors import InputError

Tensor = torch.Tensor

BLOCKS_SUFFIX = "_blocks"
SCALES_SUFFIX = "_scales"
_BYTES_PER_GROUP = 16  # 32 FP4 values
_GROUPS_PER_CHUNK = 1 << 18  # 8M values a chunk
# e2m1 codes 0..15: sign bit 3, then 2 exponent bits and 1 mantissa bit.
FP4_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


def is_mxfp4(name: str) -> bool:
    return name.endswith(BLOCKS_SUFFIX)


def scales_name(blocks_name: str) -> str:
    return blocks_name[: -len(BLOCKS_SUFFIX)] + SCALES_SUFFIX


def dequantise(blocks: Tensor, scales: Tensor, where: str, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """`[*, R, G, 16]` uint8 blocks and `[*, R, G]` uint8 scales -> `[*, R, 32*G]` values (shapes checked first)."""
    if blocks.dtype != torch.uint8 or scales.dtype != torch.uint8:
        raise InputError(f"{where}: MXFP4 blocks and scales must be uint8, got {blocks.dtype} and {scales.dtype}")
    if blocks.dim() < 2 or blocks.shape[-1] != _BYTES_PER_GROUP or tuple(blocks.shape[:-1]) != tuple(scales.shape):
        raise InputError(
            f"{where}: MXFP4 blocks {tuple(blocks.shape)} and scales {tuple(scales.shape)} do not fit "
            f"(blocks must be [..., G, {_BYTES_PER_GROUP}] and scales [..., G])"
        )
    lut = torch.tensor(FP4_VALUES, dtype=torch.float32)
    groups = blocks.reshape(-1, _BYTES_PER_GROUP)
    exponents = scales.reshape(-1, 1)
    out = torch.empty((groups.shape[0], 2 * _BYTES_PER_GROUP), dtype=dtype)
    # In chunks of groups: the long codes cost 8 bytes a value, so never for a whole tensor.
    for a in range(0, groups.shape[0], _GROUPS_PER_CHUNK):
        chunk = groups[a : a + _GROUPS_PER_CHUNK]
        codes = torch.stack((chunk & 0x0F, chunk >> 4), dim=-1).reshape(chunk.shape[0], 2 * _BYTES_PER_GROUP)
        # Exponents 0..255 - 127: ldexp in float32 is exact for every value bf16 can hold.
        exp = exponents[a : a + _GROUPS_PER_CHUNK].to(torch.int32) - 127
        values = torch.ldexp(lut[codes.long()], exp)
        # Scale 255 is E8M0's NaN and the top exponents overflow: no real checkpoint has either.
        if not bool(torch.isfinite(values).all()):
            raise InputError(f"{where}: MXFP4 scales overflow (an exponent too large for any real weight)")
        out[a : a + _GROUPS_PER_CHUNK] = values.to(dtype)
    return out.reshape(*blocks.shape[:-2], -1)


def mxfp4_stacked_shape(blocks_shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """The shape `dequantise_stacked` gives for blocks of `blocks_shape` (checked before any tensor is read)."""
    if len(blocks_shape) != 4 or blocks_shape[-1] != _BYTES_PER_GROUP:
        raise InputError(f"{where}: MXFP4 stacked expert blocks must be 4-D [E, R, G, 16], got {blocks_shape}")
    e, rows, groups, _ = blocks_shape
    return (e, 2 * _BYTES_PER_GROUP * groups, rows)


def dequantise_stacked(blocks: Tensor, scales: Tensor, where: str) -> Tensor:
    """Stacked `[E, R, G, 16]` / `[E, R, G]` experts -> `[E, 32*G, R]`, the layout of the bf16 checkpoints."""
    if blocks.dim() != 4:
        raise InputError(f"{where}: MXFP4 stacked expert blocks must be 4-D [E, R, G, 16], got {tuple(blocks.shape)}")
    return dequantise(blocks, scales, where).transpose(1, 2)
