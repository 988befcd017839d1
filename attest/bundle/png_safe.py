"""Structural PNG checks that never decompress.

A PNG is a compressed pixel stream; a few kilobytes can declare (and inflate
to) gigabytes.  Before any image library sees bundle bytes we read the IHDR
with `struct`, bound the pixel count, and walk the chunk list checking lengths
and CRCs.  Nothing here inflates IDAT data.
"""

from __future__ import annotations

import struct
import zlib

from attest.errors import BundleError

__all__ = ["PNG_SIGNATURE", "DEFAULT_MAX_PIXELS", "check_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_MAX_PIXELS = 4096 * 4096
_MAX_DIMENSION = 2**31 - 1  # PNG spec limit
_MAX_CHUNKS = 100_000

# colour type -> allowed bit depths (PNG spec, table 11.1)
_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}


def check_png(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, *, what: str = "PNG") -> tuple[int, int]:
    """Return (width, height) of a structurally sound PNG, or raise BundleError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BundleError(f"{what}: expected bytes")
    data = bytes(data)
    if not data.startswith(PNG_SIGNATURE):
        raise BundleError(f"{what}: not a PNG (bad signature)")
    pos = len(PNG_SIGNATURE)
    width = height = 0
    seen_idat = False
    for index in range(_MAX_CHUNKS):
        if len(data) - pos < 12:
            raise BundleError(f"{what}: truncated chunk at byte {pos}")
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if length > 2**31 - 1 or length > len(data) - pos - 12:
            raise BundleError(f"{what}: chunk length {length} runs past the end at byte {pos}")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if zlib.crc32(ctype + body) != crc:
            raise BundleError(f"{what}: CRC mismatch in {ctype!r} chunk at byte {pos}")
        if index == 0:
            if ctype != b"IHDR" or length != 13:
                raise BundleError(f"{what}: first chunk must be a 13-byte IHDR")
            width, height, depth, colour, compression, filt, interlace = struct.unpack(">IIBBBBB", body)
            if not (0 < width <= _MAX_DIMENSION and 0 < height <= _MAX_DIMENSION):
                raise BundleError(f"{what}: invalid dimensions {width}x{height}")
            if width * height > max_pixels:
                raise BundleError(f"{what}: {width}x{height} pixels is more than the {max_pixels}-pixel limit")
            if depth not in _DEPTHS.get(colour, ()):
                raise BundleError(f"{what}: invalid colour type {colour} / bit depth {depth}")
            if compression != 0 or filt != 0 or interlace not in (0, 1):
                raise BundleError(f"{what}: invalid IHDR method fields")
        elif ctype == b"IHDR":
            raise BundleError(f"{what}: repeated IHDR chunk")
        elif ctype == b"IDAT":
            seen_idat = True
        pos += 12 + length
        if ctype == b"IEND":
            if length != 0 or not seen_idat:
                raise BundleError(f"{what}: IEND without image data")
            if pos != len(data):
                raise BundleError(f"{what}: {len(data) - pos} trailing bytes after IEND")
            return width, height
    raise BundleError(f"{what}: more than {_MAX_CHUNKS} chunks")
