"""A small statement document that passes every reader check (container and core engine).

Tests of the container build on it and damage one part at a time; the values
follow the "core-*" rules of schemas/attestation.cddl.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from attest.scoring.decision import DEFAULT_POLICY

TOKENS = ["alpha", " beta", "gamma", " delta", "omega", " kappa", "sigma", " theta"]
CELLS = [[0, "qk"], [0, "vo"], [1, "qk"], [1, "vo"], [-1, "emb"]]
PAIRS = np.array([[0, 1], [2, 5], [3, 7]], dtype="<u2")


def core_document(png: bytes, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "format": "attest-statement/1",
        "tool": {"name": "attest", "version": "0.1.0"},
        "model": {
            "family": "llama",
            "format": "safetensors",
            "layers": 2,
            "hidden": 64,
            "heads": 4,
            "kv_heads": 4,
            "head_dim": 16,
            "vocab": 512,
            "experts": 0,
            "parameters": 123_456,
            "tied_head": False,
            "tokenizer": "bpe-bytelevel",
            "name": "tiny",
        },
        "subject": {
            "layout": "attest-manifest/1",
            "root": hashlib.sha256(b"w").digest(),
            "files": [{"name": "model.safetensors", "sha256": hashlib.sha256(b"w").digest(), "size": 1}],
        },
        "method": {
            "name": "attest-v1",
            "tokens": list(TOKENS),
            "token_mode": "strings",
            "selection_key": "k",
            "layers": [0, 1],
            "terms": ["qk", "vo"],
            "global_terms": ["emb"],
            "precision": "float32",
            "pairs": {"seed": 7, "count": len(PAIRS), "dtype": "uint16", "positions": PAIRS.tobytes()},
            "latent_seed": 3,
        },
        "sketch": {
            "dtype": "float16",
            "shape": [len(CELLS), len(PAIRS)],
            "cells": [list(c) for c in CELLS],
            "data": rng.standard_normal(len(CELLS) * len(PAIRS)).astype("<f2").tobytes(),
        },
        "latent": rng.standard_normal(512).astype("<f4").tobytes(),
        "image": {
            "media_type": "image/png",
            "sha256": hashlib.sha256(png).digest(),
            "renderer": {"name": "dog-v1", "version": "1"},
        },
        "policy": DEFAULT_POLICY.to_dict(),
        "meta": {"licence": "Apache-2.0"},
    }


def thaw(obj: Any) -> Any:
    """A decoded CBOR document as plain dicts and lists, so a test can edit one part of it."""
    if hasattr(obj, "items"):
        return {k: thaw(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [thaw(v) for v in obj]
    return obj
