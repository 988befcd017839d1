"""A bounded JSON reader for every JSON document attest takes from a model folder.

`json.loads` on hostile text can fail in ways that are not `JSONDecodeError`
(a 200 000-deep nesting raises RecursionError, a 5 000-digit integer raises a
plain ValueError) and accepts values no size can be (`1e999` is infinity,
`NaN` and `Infinity` are extensions).  This module turns every such case into
an `InputError` that names the file, and enforces the limits of
`attest.limits`:

- file size (per document kind, read with a hard cap, never whole-then-check);
- nesting depth (`MAX_JSON_DEPTH`);
- integer digit count (`MAX_JSON_INT_DIGITS`);
- no non-finite numbers: NaN, Infinity and overflowing floats are refused;
- the top-level type the caller expects.

Shape checks (which fields, which types) belong to `attest.documents.model_docs`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from attest.errors import InputError
from attest.limits import MAX_JSON_DEPTH, MAX_JSON_INT_DIGITS


class _Refused(Exception):
    """Raised from inside the decoder hooks; carries the user-facing reason."""


def _parse_int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_JSON_INT_DIGITS:
        raise _Refused(f"an integer of {digits} digits (at most {MAX_JSON_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > 4 * MAX_JSON_INT_DIGITS:
        raise _Refused(f"a number written with {len(text)} characters")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} overflows to infinity")
    return value


def _parse_constant(text: str) -> float:
    raise _Refused(f"{text}, which is not a JSON number")


def depth_of(value: Any) -> int:
    """Nesting depth of a parsed value (a scalar is 0), computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        d += 1
        deepest = max(deepest, d)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((c, d) for c in children)
    return deepest


def loads_bounded(raw: bytes | str, *, where: str, top: type | None = dict, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON text under the module's limits; InputError naming `where` on any problem."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except _Refused as exc:
        raise InputError(f"{where}: refused, holds {exc}") from None
    except RecursionError:
        raise InputError(f"{where}: nested more than {max_depth} levels deep") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # anything else the decoder refuses
        raise InputError(f"{where}: not valid JSON ({str(exc)[:120]})") from None
    if depth_of(value) > max_depth:
        raise InputError(f"{where}: nested more than {max_depth} levels deep")
    if top is not None and not isinstance(value, top):
        names: dict[type, str] = {dict: "an object", list: "an array"}
        raise InputError(f"{where}: expected {names.get(top, top.__name__)} at the top level, got {json_type(value)}")
    return value


def read_capped(path: Path, max_bytes: int, what: str) -> bytes:
    """The bytes of a file of at most `max_bytes`; never reads more than that plus one."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise InputError(f"{path}: {what} is {size:,} bytes, more than the {max_bytes:,}-byte limit")
            data = fh.read(max_bytes + 1)  # st_size can lie (pipes, /proc)
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: {what} is a directory, expected a file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if len(data) > max_bytes:
        raise InputError(f"{path}: {what} is more than the {max_bytes:,}-byte limit")
    return data


def load_json_file(
    path: Path, *, what: str, max_bytes: int, top: type | None = dict, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """Read and parse one JSON file under the size, depth and number limits."""
    return loads_bounded(read_capped(path, max_bytes, what), where=f"{path} ({what})", top=top, max_depth=max_depth)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
