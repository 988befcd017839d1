"""Plain facts about a model for reports and bundles."""

from __future__ import annotations

import math
from typing import Any

from attest.arch.canonical import CanonicalModel


def describe(model: CanonicalModel) -> dict[str, Any]:
    d = model.dims
    params = sum(math.prod(model.source.shape(n)) for n in model.source.names())
    return {
        "family": model.family,
        "format": model.source.format,
        "layers": d.n_layers,
        "hidden": d.hidden,
        "heads": d.n_heads,
        "kv_heads": d.n_kv_heads,
        "head_dim": d.head_dim,
        "vocab": d.vocab,
        "experts": d.n_experts,
        "parameters": int(params),
        "tied_head": model.tied_head,
        "tokenizer": model.vocab.kind,
    }
