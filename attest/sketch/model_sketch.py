"""Compute a model's sketch values by streaming its layers (publisher and verifier)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from attest.arch.canonical import CanonicalModel, Layer
from attest.invariants.compute import global_matrices, iter_layers, make_probe
from attest.invariants.methods import Method
from attest.progress import SILENT, Tracker
from attest.sketch.sampling import sample
from attest.sketch.statement import GLOBAL


def sketch_model(
    model: CanonicalModel,
    ids: Sequence[int],
    method: Method,
    layers: Sequence[int],
    pairs: np.ndarray,
    dtype: torch.dtype,
    tracker: Tracker = SILENT,
    label: str = "computing invariants",
    skipped: list[tuple[int, str]] | None = None,
    on_read: Callable[[int, Layer], None] | None = None,
) -> tuple[list[tuple[int, str]], np.ndarray]:
    """(cells, values [cells, m]) for the method's terms over `layers`, then global terms.

    Pass a `skipped` list to tolerate incomplete layers, and `on_read` to see
    each loaded layer (see `iter_layers`).
    """
    probe = make_probe(model, ids, method)
    cells: list[tuple[int, str]] = []
    rows: list[np.ndarray] = []
    task = tracker.task(label, len(layers))
    for res in iter_layers(model, probe, method, layers, dtype, lambda _i: tracker.advance(task), skipped, on_read):
        for term in method.terms:
            if term in res.terms:
                cells.append((res.index, term))
                rows.append(sample(res.terms[term], pairs))
    g = global_matrices(model, probe, method, dtype)
    for term in method.global_terms:
        if term in g:
            cells.append((GLOBAL, term))
            rows.append(sample(g[term], pairs))
    values = np.stack(rows) if rows else np.zeros((0, pairs.shape[0]), dtype=np.float32)
    return cells, values
