"""The statement document (docs/bundle-format.md): what a publisher signs, as plain CBOR data.

`build_document` writes it; `StatementView.parse` reads a (signature-checked,
structurally validated) document back into typed values and checks that its
parts agree with each other before anything is recomputed from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from attest import __version__
from attest.bundle.cbor_safe import is_array
from attest.bundle.core_schema import check_core_document
from attest.errors import BundleError
from attest.formats import GLOBAL_LAYER, KNOWN_TERMS, STATEMENT_FORMAT
from attest.invariants.methods import METHODS, Method
from attest.scoring.decision import Policy

GLOBAL = GLOBAL_LAYER


def _as_int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise BundleError(f"statement document: {what} must be an integer")
    return v


def build_document(
    *,
    model: Mapping[str, Any],
    subject: Mapping[str, Any],
    method: Method,
    tokens: list[str],
    token_mode: str,
    selection_key: str,
    layers: list[int],
    cells: list[tuple[int, str]],
    pairs: np.ndarray,
    pair_seed: int,
    latent_seed: int,
    values: np.ndarray,
    latent: np.ndarray,
    image_sha256: bytes,
    renderer: Mapping[str, str],
    policy: Policy,
    precision: str,
    meta: Mapping[str, str],
    lineage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": STATEMENT_FORMAT,
        "tool": {"name": "attest", "version": __version__},
        "model": dict(model),
        "subject": dict(subject),
        "method": {
            "name": method.name,
            "tokens": list(tokens),
            "token_mode": token_mode,
            "selection_key": selection_key,
            "layers": list(layers),
            "terms": list(method.terms),
            "global_terms": list(method.global_terms),
            "precision": precision,
            "pairs": {
                "seed": pair_seed,
                "count": int(pairs.shape[0]),
                "positions": pairs.astype("<u2" if len(tokens) < 65536 else "<u4").tobytes(),
                "dtype": "uint16" if len(tokens) < 65536 else "uint32",
            },
            "latent_seed": latent_seed,
        },
        "sketch": {
            "dtype": "float16",
            "shape": [int(values.shape[0]), int(values.shape[1])],
            "cells": [[int(layer), term] for layer, term in cells],
            "data": values.astype("<f2").tobytes(),
        },
        "latent": latent.astype("<f4").tobytes(),
        "image": {"media_type": "image/png", "sha256": image_sha256, "renderer": dict(renderer)},
        "policy": policy.to_dict(),
        "meta": {str(k): str(v) for k, v in meta.items()},
    }
    if lineage is not None:  # the lineage payload (attest.lineage.payload), new in attest-statement/2
        doc["lineage"] = dict(lineage)
    return doc


@dataclass
class StatementView:
    """A validated, typed reading of a statement document."""

    method: Method
    tokens: list[str]
    token_mode: str
    selection_key: str
    layers: list[int]
    cells: list[tuple[int, str]]
    pairs: np.ndarray  # [m, 2]
    values: np.ndarray  # [cells, m] float32
    latent: np.ndarray
    latent_seed: int
    policy: Policy
    model: Mapping[str, Any]
    subject: Mapping[str, Any]
    meta: Mapping[str, Any]
    format: str = STATEMENT_FORMAT
    # The lineage payload as signed (None in attest-statement/1 bundles); its
    # structure is checked here, its values by attest.lineage.payload.parse_payload.
    lineage: Mapping[str, Any] | None = None

    @classmethod
    def parse(cls, doc: Mapping[str, Any], *, checked: bool = False) -> "StatementView":
        """Read `doc`; `checked` says it is the document of an opened bundle, which
        passed `check_core_document` when it was opened (a caller-built one may not have)."""
        if not checked:
            check_core_document(doc)
        m = doc["method"]
        name = m.get("name")
        if name not in METHODS:
            raise BundleError(f"statement document: unknown method {name!r} (this attest knows {', '.join(METHODS)})")
        base_method = METHODS[str(name)]
        tokens = m.get("tokens")
        if not is_array(tokens) or not tokens:
            raise BundleError("statement document: method.tokens must be a non-empty array")
        tokens = [str(t) for t in tokens]
        layers = m.get("layers")
        if not is_array(layers):
            raise BundleError("statement document: method.layers must be an array")
        layers = [_as_int(x, "layer index") for x in layers]
        terms = m.get("terms")
        gterms = m.get("global_terms")
        if not is_array(terms) or not is_array(gterms):
            raise BundleError("statement document: method terms must be arrays")
        known = KNOWN_TERMS
        if not set(terms) | set(gterms) <= known:
            raise BundleError("statement document: unknown invariant term")
        method = Method(
            **{**base_method.__dict__, "terms": tuple(terms), "global_terms": tuple(gterms), "n_tokens": len(tokens)}
        )
        pairs_doc = m.get("pairs")
        if not isinstance(pairs_doc, Mapping):
            raise BundleError("statement document: method.pairs missing")
        dtype = {"uint16": "<u2", "uint32": "<u4"}.get(str(pairs_doc.get("dtype")))
        raw = pairs_doc.get("positions")
        count = _as_int(pairs_doc.get("count"), "pair count")
        if dtype is None or not isinstance(raw, bytes) or len(raw) != count * 2 * np.dtype(dtype).itemsize:
            raise BundleError("statement document: malformed pair positions")
        pairs = np.frombuffer(raw, dtype=dtype).reshape(count, 2).astype(np.int64)
        n = len(tokens)
        if count == 0 or pairs.max() >= n or (pairs[:, 0] == pairs[:, 1]).any():
            raise BundleError("statement document: pair positions out of range")
        sk = doc["sketch"]
        shape = list(sk["shape"])
        cells_doc = sk.get("cells")
        if len(shape) != 2 or shape[1] != count or not is_array(cells_doc) or len(cells_doc) != shape[0]:
            raise BundleError("statement document: sketch shape does not match its cells and pairs")
        cells: list[tuple[int, str]] = []
        for c in cells_doc:
            if not is_array(c) or len(c) != 2 or not isinstance(c[1], str) or c[1] not in known:
                raise BundleError("statement document: malformed sketch cell")
            layer = _as_int(c[0], "cell layer")
            if layer != GLOBAL and layer not in layers:
                raise BundleError("statement document: sketch cell names a layer outside method.layers")
            cells.append((layer, c[1]))
        values = np.frombuffer(sk["data"], dtype="<f2").reshape(shape).astype(np.float32)
        pol = doc["policy"]
        try:
            policy = Policy(**{k: pol[k] for k in Policy.__dataclass_fields__ if k in pol})
        except TypeError:
            raise BundleError("statement document: malformed policy") from None
        for f in Policy.__dataclass_fields__:
            value = getattr(policy, f)
            ok = (
                isinstance(value, str)
                if f == "calibration"
                else (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
            )
            if not ok:
                raise BundleError(f"statement document: policy field {f!r} has an invalid value")
        return cls(
            method=method,
            tokens=tokens,
            token_mode=str(m.get("token_mode", "strings")),
            selection_key=str(m.get("selection_key", "")),
            layers=layers,
            cells=cells,
            pairs=pairs,
            values=values,
            latent=np.frombuffer(doc["latent"], dtype="<f4").astype(np.float32),
            latent_seed=_as_int(m.get("latent_seed", 0), "latent seed"),
            policy=policy,
            model=doc["model"],
            subject=doc["subject"],
            meta=doc.get("meta", {}),
            format=str(doc.get("format", STATEMENT_FORMAT)),
            lineage=doc.get("lineage"),
        )
