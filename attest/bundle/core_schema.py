"""The core engine's statement sub-maps (schemas/attestation.cddl, "core-*" rules), checked on read.

`attest.bundle.container.validate_document` checks what the signer binds and
what bounds a reader; this module checks the types and ranges of the parts
the fingerprint engine and the CLI consume (model facts, method, sketch
cells, policy, renderer), so that a validly signed document with a string
renderer, a null parameter count, a negative latent seed or a negative null
spread is a `BundleError` (exit 3) wherever the document is opened, never a
TypeError in whatever code reads it first.  Both sides apply it: `issue`
refuses to sign what `verify` would refuse to read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from attest.bundle.cbor_safe import is_array
from attest.errors import BundleError
from attest.formats import LINEAGE_FORMAT, MIXER_TERMS
from attest.limits import (
    MAX_HEADS,
    MAX_LAYERS,
    MAX_LINEAGE_BYTES,
    MAX_LINEAGE_NEURONS,
    MAX_PROBE_TOKENS,
    MIN_PROBE_TOKENS,
)

TERMS = frozenset({"qk", "vo", "up", "gate", "router", "ffn", "emb", "head", *MIXER_TERMS})
GLOBAL_LAYER = -1
PRECISIONS = frozenset({"bfloat16", "float32"})
TOKEN_MODES = frozenset({"strings", "ids"})
PAIR_DTYPES = {"uint16": 2, "uint32": 4}
MAX_TEXT = 256  # names, keys, versions: short by nature
MAX_UINT = 2**63 - 1
#: Policy fields: (low, high, low is exclusive).  Scores are correlations in
#: [-1, 1]; the null spread must be positive or every z-score is undefined.
POLICY_RANGES: dict[str, tuple[float, float, bool]] = {
    "threshold": (-1.0, 1.0, False),
    "no_match_below": (-1.0, 1.0, False),
    "min_coverage": (0.0, 1.0, False),
    "null_mean": (-1.0, 1.0, False),
    "null_std": (0.0, 1.0, True),
    "related_embeddings": (-1.0, 1.0, False),
    "lineage_alpha": (0.0, 1.0, True),
    "lineage_reference": (0.0, 1.0, True),
}
_POLICY_OPTIONAL = frozenset({"related_embeddings", "lineage_alpha", "lineage_reference"})
_MODEL_UINTS = ("layers", "hidden", "heads", "kv_heads", "head_dim", "vocab", "experts", "parameters")
_MODEL_TEXTS = ("family", "format", "tokenizer", "name")


def _fail(where: str, msg: str) -> BundleError:
    return BundleError(f"statement document: {where} {msg}")


def _map(doc: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if not isinstance(value, Mapping):
        raise _fail(f"{where}.{key}" if where else key, f"must be a map, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bytes):
        return "bytes"
    if is_array(value):
        return "an array"
    if isinstance(value, Mapping):
        return "a map"
    return type(value).__name__


def _uint(value: Any, where: str, low: int = 0, high: int = MAX_UINT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"must be an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise _fail(where, f"= {value} is out of range ({low}..{high})")
    return value


def _text(value: Any, where: str, choices: frozenset[str] | None = None) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _fail(where, f"must be text of at most {MAX_TEXT} characters, got {_kind(value)}")
    if choices is not None and value not in choices:
        raise _fail(where, f"must be one of {', '.join(sorted(choices))}, got {value[:40]!r}")
    return value


def _number(value: Any, where: str, low: float, high: float, low_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, f"must be a finite number, got {_kind(value)}")
    if value > high or value < low or (low_open and value == low):
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise _fail(where, f"= {value} is outside {bound}")
    return float(value)


def _terms(value: Any, where: str, *, allow_empty: bool) -> list[str]:
    if not is_array(value) or len(value) > len(TERMS) or (not value and not allow_empty):
        raise _fail(where, "must be an array of invariant terms")
    return [_text(t, f"{where}[{k}]", TERMS) for k, t in enumerate(value)]


def check_policy(pol: Mapping[str, Any], where: str = "policy") -> None:
    for name, (low, high, low_open) in POLICY_RANGES.items():
        if name not in pol and name in _POLICY_OPTIONAL:
            continue
        _number(pol.get(name), f"{where}.{name}", low, high, low_open)
    _uint(pol.get("min_tokens"), f"{where}.min_tokens", 0, MAX_PROBE_TOKENS)
    _text(pol.get("calibration"), f"{where}.calibration")


def _check_model(model: Mapping[str, Any]) -> None:
    for key in _MODEL_UINTS:
        _uint(model.get(key), f"model.{key}")
    for key in _MODEL_TEXTS:
        _text(model.get(key), f"model.{key}")
    if not isinstance(model.get("tied_head"), bool):
        raise _fail("model.tied_head", f"must be true or false, got {_kind(model.get('tied_head'))}")


def _check_method(m: Mapping[str, Any]) -> tuple[int, set[int]]:
    """Returns (pair count, layer set) for the sketch check."""
    _text(m.get("name"), "method.name")
    tokens = m.get("tokens")
    if not is_array(tokens) or not MIN_PROBE_TOKENS <= len(tokens) <= MAX_PROBE_TOKENS:
        raise _fail(
            "method.tokens",
            f"must be an array of {MIN_PROBE_TOKENS}..{MAX_PROBE_TOKENS} token strings, "
            f"got {_kind(tokens)}{f' of {len(tokens)}' if is_array(tokens) else ''}",
        )
    _text(m.get("token_mode"), "method.token_mode", TOKEN_MODES)
    _text(m.get("selection_key"), "method.selection_key")
    _text(m.get("precision"), "method.precision", PRECISIONS)
    layers = m.get("layers")
    if not is_array(layers) or not 1 <= len(layers) <= MAX_LAYERS:
        raise _fail("method.layers", f"must be an array of 1..{MAX_LAYERS} layer indices")
    layer_set = {_uint(x, f"method.layers[{k}]", 0, MAX_LAYERS - 1) for k, x in enumerate(layers)}
    if len(layer_set) != len(layers):
        raise _fail("method.layers", "repeats a layer")
    _terms(m.get("terms"), "method.terms", allow_empty=False)
    _terms(m.get("global_terms"), "method.global_terms", allow_empty=True)
    _uint(m.get("latent_seed"), "method.latent_seed", 0, 2**32 - 1)
    pairs = _map(m, "pairs", "method")
    _uint(pairs.get("seed"), "method.pairs.seed")
    n = len(tokens)
    count = _uint(pairs.get("count"), "method.pairs.count", 1, n * (n - 1))  # ordered off-diagonal positions
    dtype = _text(pairs.get("dtype"), "method.pairs.dtype", frozenset(PAIR_DTYPES))
    raw = pairs.get("positions")
    if not isinstance(raw, bytes) or len(raw) != count * 2 * PAIR_DTYPES[dtype]:
        raise _fail("method.pairs.positions", f"must be {count} x 2 {dtype} values")
    return count, layer_set


def _check_sketch(sk: Mapping[str, Any], count: int, layers: set[int]) -> None:
    shape = sk.get("shape")
    if not is_array(shape) or len(shape) != 2:
        raise _fail("sketch.shape", "must be [cells, pairs]")
    if shape[1] != count:
        raise _fail("sketch.shape", f"says {shape[1]} pairs, method.pairs.count says {count}")
    cells = sk.get("cells")
    if not is_array(cells) or len(cells) != shape[0]:
        raise _fail("sketch.cells", f"must be an array of {shape[0]} [layer, term] cells")
    for k, cell in enumerate(cells):
        if not is_array(cell) or len(cell) != 2:
            raise _fail(f"sketch.cells[{k}]", "must be [layer, term]")
        layer = cell[0]
        if isinstance(layer, bool) or not isinstance(layer, int) or (layer != GLOBAL_LAYER and layer not in layers):
            raise _fail(f"sketch.cells[{k}]", "names a layer outside method.layers")
        _text(cell[1], f"sketch.cells[{k}] term", TERMS)


INDEX_DTYPES = {"uint16": 2, "uint32": 4}
LINEAGE_CHANNELS = (("gate", "up"), ("up", "down"), ("z", "x"))  # ("z", "x"): a Mamba-2 mixer (attention kind: ssm)


def _index_bytes(doc: Mapping[str, Any], key: str, dtype_key: str, where: str) -> int:
    """Number of indices in doc[key] (uint16/uint32 little-endian, as doc[dtype_key] says)."""
    dtype = _text(doc.get(dtype_key), f"{where}.{dtype_key}", frozenset(INDEX_DTYPES))
    raw = doc.get(key)
    if not isinstance(raw, bytes) or not raw or len(raw) % INDEX_DTYPES[dtype]:
        raise _fail(f"{where}.{key}", f"must be a non-empty array of {dtype} values")
    return len(raw) // INDEX_DTYPES[dtype]


def check_lineage(lin: Mapping[str, Any], n_tokens: int) -> None:
    """Types, sizes and bounds of the lineage payload (attest.lineage.payload); values are checked on use.

    The byte sizes must agree with the counts, and all response data together
    stay under MAX_LINEAGE_BYTES, so a reader never allocates from a claim.
    """
    _text(lin.get("format"), "lineage.format", frozenset({LINEAGE_FORMAT}))
    _uint(lin.get("seed"), "lineage.seed")
    if _uint(lin.get("n_tokens"), "lineage.n_tokens") != n_tokens:
        raise _fail("lineage.n_tokens", f"must equal the {n_tokens} tokens of method.tokens")
    m = _index_bytes(lin, "token_positions", "token_dtype", "lineage")
    if m > n_tokens:
        raise _fail("lineage.token_positions", "lists more positions than there are tokens")
    m_h = 0
    if "head_tokens" in lin:  # the head channel (optional; docs/lineage.md, "Head channel")
        m_h = _uint(lin.get("head_tokens"), "lineage.head_tokens", 2, m)
    layers = lin.get("layers")
    if not is_array(layers) or not 1 <= len(layers) <= MAX_LAYERS:
        raise _fail("lineage.layers", f"must be an array of 1..{MAX_LAYERS} layer maps")
    total = 0
    for n, layer in enumerate(layers):
        where = f"lineage.layers[{n}]"
        if not isinstance(layer, Mapping):
            raise _fail(where, f"must be a map, got {_kind(layer)}")
        _uint(layer.get("index"), f"{where}.index", 0, MAX_LAYERS - 1)
        ch = layer.get("channels")
        if not is_array(ch) or tuple(ch) not in LINEAGE_CHANNELS:
            raise _fail(f"{where}.channels", "must be [gate, up], [up, down] or [z, x]")
        _uint(layer.get("width"), f"{where}.width", 1, 1 << 24)
        k = _index_bytes(layer, "neurons", "neuron_dtype", where)
        if not 2 <= k <= MAX_LINEAGE_NEURONS:
            raise _fail(f"{where}.neurons", f"must list 2..{MAX_LINEAGE_NEURONS} neurons")
        scale, data = layer.get("scale"), layer.get("data")
        if not isinstance(scale, bytes) or len(scale) != 8 * k:
            raise _fail(f"{where}.scale", f"must be 2 x {k} float32 values")
        if not isinstance(data, bytes) or len(data) != 2 * m * k:
            raise _fail(f"{where}.data", f"must be 2 x {m} x {k} int8 values")
        total += len(data) + len(scale)
        if "heads" in layer:
            heads = layer["heads"]
            if not isinstance(heads, Mapping):
                raise _fail(f"{where}.heads", f"must be a map, got {_kind(heads)}")
            if not m_h:
                raise _fail(f"{where}.heads", "needs lineage.head_tokens")
            h = _uint(heads.get("count"), f"{where}.heads.count", 1, MAX_HEADS)
            h_scale, h_data = heads.get("scale"), heads.get("data")
            if not isinstance(h_scale, bytes) or len(h_scale) != 8 * h:
                raise _fail(f"{where}.heads.scale", f"must be 2 x {h} float32 values")
            if not isinstance(h_data, bytes) or len(h_data) != 2 * m_h * m_h * h:
                raise _fail(f"{where}.heads.data", f"must be 2 x {m_h * m_h} x {h} int8 values")
            total += len(h_data) + len(h_scale)
        if total > MAX_LINEAGE_BYTES:
            raise _fail("lineage", f"carries more than {MAX_LINEAGE_BYTES} bytes of responses")


def check_core_document(doc: Mapping[str, Any]) -> None:
    """Raise BundleError unless the core sub-maps match schemas/attestation.cddl's core-* rules.

    Expects a document that already passed the container-level checks (top-level
    keys and types, sketch bytes, latent, token strings).
    """
    tool = _map(doc, "tool", "")
    _text(tool.get("name"), "tool.name")
    _text(tool.get("version"), "tool.version")
    _check_model(_map(doc, "model", ""))
    count, layers = _check_method(_map(doc, "method", ""))
    _check_sketch(_map(doc, "sketch", ""), count, layers)
    check_policy(_map(doc, "policy", ""))
    renderer = _map(_map(doc, "image", ""), "renderer", "image")
    _text(renderer.get("name"), "image.renderer.name")
    _text(renderer.get("version"), "image.renderer.version")
    if "lineage" in doc:
        check_lineage(_map(doc, "lineage", ""), len(doc["method"]["tokens"]))
