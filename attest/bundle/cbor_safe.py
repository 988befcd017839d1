"""Decoding CBOR that an attacker wrote.

Bundles arrive from strangers and end up in front of lawyers, so the decoder
must accept exactly one byte string per value and fail cleanly on everything
else.  `safe_loads` works in two passes:

1. A pre-scan over the CBOR heads only (no allocation beyond a small stack):
   total size, nesting depth, item count, declared lengths against the bytes
   actually left, indefinite lengths, reserved encodings, non-minimal heads,
   map keys (int or text only, or text only on request; strictly increasing,
   so no duplicates), simple
   values and tags.  The scan is iterative, so hostile nesting cannot exhaust
   the Python stack, and a head claiming 2**62 bytes is refused before cbor2
   ever sees it.
2. cbor2 decodes, then re-encodes with ``canonical=True``; the result must
   reproduce the input byte for byte.  That catches every remaining
   non-canonical form (floats wider than needed, NaN payloads, ...).

Map keys must satisfy both RFC 8949 §4.2.1 order (bytewise, checked in the
scan) and cbor2's canonical order (length first, checked by the round trip).
The two agree for text keys and for integer keys below 24, which is all our
formats use; a map where they disagree has no accepted encoding at all, which
keeps "one value, one encoding" true.

Works with cbor2 5.x (lists, dicts) and 6.x (tuples and frozendicts inside
tags): callers should test with `collections.abc.Mapping` / `is_array`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeGuard

import cbor2

from attest.errors import BundleError

__all__ = ["safe_loads", "canonical_dumps", "is_array", "HARD_MAX_DEPTH"]

# cbor2's C decoder recurses per nesting level; well below Python's limit.
HARD_MAX_DEPTH = 64

_MAJOR_NAMES = ("unsigned int", "negative int", "byte string", "text string", "array", "map", "tag", "simple/float")


def is_array(value: object) -> TypeGuard[Sequence[Any]]:
    """True for a decoded CBOR array (list on cbor2 5, tuple on cbor2 6)."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray, memoryview))


def canonical_dumps(value: Any) -> bytes:
    """The one encoding `safe_loads` accepts for `value`."""
    return cbor2.dumps(value, canonical=True)


def _scan(
    data: bytes, *, max_depth: int, max_items: int, allowed_tags: frozenset[int], text_keys: bool, what: str
) -> None:
    n = len(data)
    pos = 0
    items = 0
    # Open containers, innermost last: [children left, is_map, previous key bytes].
    # The root frame stands for "exactly one top-level item".
    stack: list[list[Any]] = [[1, False, None]]

    def fail(msg: str, at: int) -> BundleError:
        return BundleError(f"{what}: {msg} at byte {at}")

    while stack:
        frame = stack[-1]
        if frame[0] == 0:
            stack.pop()
            continue
        start = pos
        if pos >= n:
            raise fail("truncated CBOR (input ends inside an item)", pos)
        depth = len(stack)
        if depth > max_depth:
            raise fail(f"nesting deeper than {max_depth} levels", pos)
        items += 1
        if items > max_items:
            raise fail(f"more than {max_items} CBOR items", pos)

        ib = data[pos]
        pos += 1
        major = ib >> 5
        ai = ib & 0x1F
        if ai < 24:
            arg = ai
        elif ai <= 27:
            size = 1 << (ai - 24)
            if size > n - pos:
                raise fail("truncated CBOR (head runs past the end)", start)
            arg = int.from_bytes(data[pos : pos + size], "big")
            pos += size
            # Shortest-form heads only (floats are checked by the round trip).
            if major != 7 and arg < (24 if size == 1 else 1 << (4 * size)):
                raise fail(f"non-canonical {_MAJOR_NAMES[major]} head (not the shortest form)", start)
        elif ai == 31:
            raise fail("indefinite-length item (not allowed)" if major != 7 else "unexpected break code", start)
        else:
            raise fail(f"reserved additional information {ai}", start)

        is_key = frame[1] and frame[0] % 2 == 0
        frame[0] -= 1

        if is_key:
            if major not in ((3,) if text_keys else (0, 1, 3)):
                kinds = "text" if text_keys else "an integer or text"
                raise fail(f"map key must be {kinds}, not a {_MAJOR_NAMES[major]}", start)
            if major == 3 and arg > n - pos:
                raise fail(f"declared length {arg} exceeds the {n - pos} bytes left", start)
            key = data[start : pos + arg] if major == 3 else data[start:pos]
            prev = frame[2]
            if prev is not None:
                if key == prev:
                    raise fail("duplicate map key", start)
                if key < prev:
                    raise fail("map keys not in canonical order", start)
            frame[2] = key

        if major in (0, 1):
            continue
        if major in (2, 3):
            if arg > n - pos:
                raise fail(f"declared length {arg} exceeds the {n - pos} bytes left", start)
            pos += arg
        elif major == 4:
            # Every element takes at least one byte: refuse before allocating.
            if arg > n - pos:
                raise fail(f"array of {arg} items cannot fit in the {n - pos} bytes left", start)
            if arg:
                stack.append([arg, False, None])
        elif major == 5:
            if 2 * arg > n - pos:
                raise fail(f"map of {arg} pairs cannot fit in the {n - pos} bytes left", start)
            if arg:
                stack.append([2 * arg, True, None])
        elif major == 6:
            if arg not in allowed_tags:
                raise fail(f"unexpected CBOR tag {arg}", start)
            stack.append([1, False, None])
        else:  # major 7
            if ai in (20, 21, 22):  # false, true, null
                continue
            if ai in (25, 26, 27):  # half, single, double float
                continue
            raise fail("unsupported simple value" if ai != 23 else "'undefined' is not allowed", start)

    if pos != n:
        raise BundleError(f"{what}: {n - pos} trailing bytes after the CBOR item")


def safe_loads(
    data: bytes,
    *,
    max_size: int,
    max_depth: int,
    max_items: int,
    allowed_tags: frozenset[int] = frozenset(),
    text_keys: bool = False,
    what: str = "CBOR",
) -> Any:
    """Decode one canonical CBOR item from hostile `data` or raise BundleError.

    `what` names the thing being decoded in error messages ("bundle",
    "protected header", ...).  Maps decode as Mapping (dict or frozendict),
    arrays as list or tuple depending on the cbor2 version.  `text_keys`
    refuses integer map keys too (every map, at any depth, keyed by text).
    """
    if not 1 <= max_depth <= HARD_MAX_DEPTH:
        raise ValueError(f"max_depth must be in 1..{HARD_MAX_DEPTH}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BundleError(f"{what}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise BundleError(f"{what}: {len(data)} bytes is more than the {max_size}-byte limit")
    if not data:
        raise BundleError(f"{what}: empty input")
    _scan(data, max_depth=max_depth, max_items=max_items, allowed_tags=allowed_tags, text_keys=text_keys, what=what)
    try:
        value = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types (CBORDecodeError, ValueError, ...)
        raise BundleError(f"{what}: invalid CBOR ({exc})") from None
    try:
        again = canonical_dumps(value)
    except Exception as exc:
        raise BundleError(f"{what}: cannot re-encode decoded value ({exc})") from None
    if again != data:
        raise BundleError(f"{what}: non-canonical CBOR encoding (re-encoding does not reproduce the input)")
    return value
