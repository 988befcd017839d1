"""Shape checks for the JSON documents of a model folder, applied before any value is used.

`attest.documents.bounded_json` guarantees a document is finite, shallow and small;
this module checks that the fields attest consumes have the types and ranges
it relies on, so that a config holding `"4x"`, `[4]`, `true` or `1e999` for a
size, or a tokenizer whose `added_tokens` is a number, fails with an
`InputError` naming the file and the field instead of a TypeError deep in the
engine.  Fields attest never reads are left alone: refusing them would only
make real but unusual checkpoints unusable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from attest.documents.bounded_json import json_type, load_json_file
from attest.errors import InputError
from attest.limits import (
    MAX_CONFIG_BYTES,
    MAX_DIM,
    MAX_EXPERTS,
    MAX_HEADS,
    MAX_INDEX_BYTES,
    MAX_LAYERS,
    MAX_TOKENIZER_BYTES,
    MAX_VOCAB,
)

# config.json keys attest reads as sizes (every family's `ConfigKeys`, plus the
# vocabulary), each with the largest value accepted.  Dotted names are nested.
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "n_layers")
_HEAD_KEYS = (
    "num_attention_heads",
    "n_head",
    "n_heads",
    "num_key_value_heads",
    "num_kv_heads",
    "attn_config.kv_n_heads",
)
_WIDTH_KEYS = ("hidden_size", "n_embd", "n_embed", "d_model", "head_dim")
_EXPERT_KEYS = ("num_local_experts", "num_experts")
CONFIG_SIZE_LIMITS: dict[str, int] = {
    **{k: MAX_LAYERS for k in _LAYER_KEYS},
    **{k: MAX_HEADS for k in _HEAD_KEYS},
    **{k: MAX_DIM for k in _WIDTH_KEYS},
    **{k: MAX_EXPERTS for k in _EXPERT_KEYS},
    "vocab_size": MAX_VOCAB,
}
# Expert counts may be 0 (a dense model of a MoE family); every other size is >= 1.
_ZERO_ALLOWED = frozenset(_EXPERT_KEYS)
_CONFIG_FLAGS = ("tie_word_embeddings", "new_decoder_architecture", "multi_query")
_CONFIG_MAPS = ("attn_config",)


def _lookup(doc: Mapping[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def checked_size(value: Any, field: str, where: object, limit: int, *, zero_ok: bool = False) -> int:
    """`value` as a size in [1, limit] (or [0, limit]); InputError naming the field otherwise.

    bool is refused although Python counts it as an int: `true` is not a size.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: '{field}' must be a whole number, got {json_type(value)} ({str(value)[:40]})")
    low = 0 if zero_ok else 1
    if not low <= value <= limit:
        raise InputError(f"{where}: '{field}' = {value} is out of range ({low}..{limit:,})")
    return value


def check_config(doc: Any, where: object) -> dict[str, Any]:
    """Validate the parts of a config.json that attest consumes; returns it unchanged."""
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected an object at the top level, got {json_type(doc)}")
    model_type = doc.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise InputError(f"{where}: 'model_type' must be a string, got {json_type(model_type)}")
    for key in _CONFIG_MAPS:
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise InputError(f"{where}: '{key}' must be an object, got {json_type(doc[key])}")
    for key in _CONFIG_FLAGS:
        if doc.get(key) is not None and not isinstance(doc[key], bool):
            raise InputError(f"{where}: '{key}' must be true or false, got {json_type(doc[key])}")
    for key, limit in CONFIG_SIZE_LIMITS.items():
        value = _lookup(doc, key)
        if value is not None:
            checked_size(value, key, where, limit, zero_ok=key in _ZERO_ALLOWED)
    return doc


def read_config(path: Path) -> dict[str, Any]:
    """A model's config.json, bounded and shape-checked."""
    return check_config(load_json_file(path, what="config", max_bytes=MAX_CONFIG_BYTES), path)


def checked_dims(config: Mapping[str, Any] | None, keys: Any, embed_shape: Sequence[int], where: object) -> None:
    """Check what the arch code infers dimensions from, before it uses any of it.

    `keys` is a family's `ConfigKeys` (or a mapping of dimension -> config
    paths); every path present in `config` must be a bounded size.  The
    embedding must be 2-D with 1..MAX_VOCAB rows and 1..MAX_DIM columns: its
    row count sizes the vocabulary tables, so a header declaring
    `[300000000, 0]` (zero data bytes) must stop here.
    """
    if len(embed_shape) == 2:
        checked_size(int(embed_shape[0]), "embedding rows (vocabulary size)", where, MAX_VOCAB)
        checked_size(int(embed_shape[1]), "embedding width (hidden size)", where, MAX_DIM)
    if not config:
        return
    paths = dataclasses.asdict(keys) if dataclasses.is_dataclass(keys) and not isinstance(keys, type) else dict(keys)
    for dim, names in paths.items():
        limit = {"layers": MAX_LAYERS, "heads": MAX_HEADS, "kv_heads": MAX_HEADS, "experts": MAX_EXPERTS}.get(
            dim, MAX_DIM
        )
        for name in names:
            value = _lookup(config, name)
            if value is not None:
                checked_size(value, name, where, limit, zero_ok=dim == "experts")


# -- shard indexes ------------------------------------------------------------------
def read_shard_index(path: Path) -> dict[str, str]:
    """The `weight_map` of a `*.index.json`: tensor name -> shard file name, both strings."""
    doc = load_json_file(path, what="shard index", max_bytes=MAX_INDEX_BYTES)
    weight_map = doc.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise InputError(f"{path}: 'weight_map' must be a non-empty object of tensor name -> shard file")
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise InputError(f"{path}: weight_map['{name[:80]}'] must be a shard file name, got {json_type(shard)}")
    metadata = doc.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InputError(f"{path}: 'metadata' must be an object, got {json_type(metadata)}")
    return weight_map


# -- tokenizer.json / vocab.json ------------------------------------------------------
def _token_id(value: Any, where: object, field: str) -> int:
    # Ids index the vocabulary table, so they are bounded like its size.
    return checked_size(value, field, where, MAX_VOCAB - 1, zero_ok=True)


def check_tokenizer(doc: dict[str, Any], where: object) -> dict[str, Any]:
    """Validate the parts of a tokenizer.json that attest reads; returns it unchanged."""
    model = doc.get("model")
    if not isinstance(model, dict):
        raise InputError(f"{where}: 'model' must be an object, got {json_type(model)}")
    mtype = model.get("type")
    if mtype is not None and not isinstance(mtype, str):
        raise InputError(f"{where}: 'model.type' must be a string, got {json_type(mtype)}")
    prefix = model.get("continuing_subword_prefix")
    if prefix is not None and not isinstance(prefix, str):
        raise InputError(f"{where}: 'model.continuing_subword_prefix' must be a string, got {json_type(prefix)}")
    vocab = model.get("vocab")
    if isinstance(vocab, list):
        if len(vocab) > MAX_VOCAB:
            raise InputError(f"{where}: 'model.vocab' has {len(vocab):,} entries, more than {MAX_VOCAB:,}")
        for i, entry in enumerate(vocab):
            if not isinstance(entry, list) or not entry or not isinstance(entry[0], str):
                raise InputError(f"{where}: model.vocab[{i}] must be [piece, score], got {json_type(entry)}")
    elif isinstance(vocab, dict):
        if len(vocab) > MAX_VOCAB:
            raise InputError(f"{where}: 'model.vocab' has {len(vocab):,} entries, more than {MAX_VOCAB:,}")
        for piece, i in vocab.items():
            _token_id(i, where, f"model.vocab[{piece[:40]!r}]")
    elif vocab is not None:
        raise InputError(f"{where}: 'model.vocab' must be an object or an array, got {json_type(vocab)}")
    added = doc.get("added_tokens")
    if added is not None:
        if not isinstance(added, list):
            raise InputError(f"{where}: 'added_tokens' must be an array, got {json_type(added)}")
        for k, entry in enumerate(added):
            if not isinstance(entry, dict):
                raise InputError(f"{where}: added_tokens[{k}] must be an object, got {json_type(entry)}")
            _token_id(entry.get("id"), where, f"added_tokens[{k}].id")
    for key in ("pre_tokenizer", "decoder"):
        node = doc.get(key)
        if node is not None and not isinstance(node, dict):
            raise InputError(f"{where}: '{key}' must be an object, got {json_type(node)}")
    return doc


def read_tokenizer_json(path: Path) -> dict[str, Any]:
    doc = load_json_file(path, what="tokenizer", max_bytes=MAX_TOKENIZER_BYTES)
    return check_tokenizer(doc, path)


def read_vocab_json(path: Path) -> dict[str, int]:
    """A byte-level BPE `vocab.json`: piece -> id."""
    doc = load_json_file(path, what="vocabulary", max_bytes=MAX_TOKENIZER_BYTES)
    if len(doc) > MAX_VOCAB:
        raise InputError(f"{path}: {len(doc):,} entries, more than {MAX_VOCAB:,}")
    for piece, i in doc.items():
        _token_id(i, path, f"[{piece[:40]!r}]")
    return doc


def config_value(config: Mapping[str, Any] | None, keys: Sequence[str]) -> Any:
    """The first of `keys` (dotted paths allowed) that config.json sets, or None."""
    if not config:
        return None
    for key in keys:
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
    return None
