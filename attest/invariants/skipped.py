"""Cells (layer, term) that could not be computed, and why, reported instead of silently dropped.

A term whose n×n matrix is constant or not finite cannot be standardised, so
it is left out of the sketch.  Before this module that happened without a
word: a NaN planted in one q_proj removed the layer's qk cell and the verdict
was computed from the rest as if nothing had happened.  Detection is free (the
standardisation computes the variance anyway); only when a cell is skipped are
the layer's tensors scanned to name the non-finite ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import torch

#: Layer index recorded for the model-level terms (emb, head), as in the statement.
GLOBAL = -1


@dataclasses.dataclass(frozen=True)
class SkippedCell:
    layer: int  # GLOBAL for emb/head
    term: str
    reason: str  # "non-finite weights in ..." or "constant matrix"

    def describe(self) -> str:
        where = "model-level term" if self.layer == GLOBAL else f"layer {self.layer}"
        return f"{where} {self.term}: skipped ({self.reason})"


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(role, tensor) for every tensor held by a canonical Layer (its attention, MLPs, norms)."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _tensors(getattr(obj, f.name), f"{prefix}.{f.name}" if prefix else f.name)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from _tensors(item, str(key))
    elif isinstance(obj, (list, tuple)):
        for k, item in enumerate(obj):
            yield from _tensors(item, f"{prefix}[{k}]")


def nonfinite_roles(obj: Any) -> list[str]:
    """Roles of the floating tensors in `obj` that hold a NaN or an infinity."""
    return [role for role, t in _tensors(obj) if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def reason_for(obj: Any) -> str:
    bad = nonfinite_roles(obj)
    if bad:
        shown = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
        return f"non-finite weights in {shown}"
    return "its matrix is constant or not finite"


def record(model: Any, layer: int, terms: Sequence[str], source_of_weights: Any) -> list[SkippedCell]:
    """Note skipped terms on the model: its `skipped_cells` list and one warning per cell.

    `source_of_weights` is what the terms were computed from (a canonical Layer,
    or the probe rows and head for global terms); it is scanned only here.
    """
    if not terms:
        return []
    reason = reason_for(source_of_weights)
    cells = [SkippedCell(layer, t, reason) for t in terms]
    existing = getattr(model, "skipped_cells", None)
    if isinstance(existing, list):
        existing.extend(cells)
    warnings = getattr(model, "warnings", None)
    if isinstance(warnings, list):
        warnings.extend(c.describe() for c in cells)
    return cells


def summary(cells: Sequence[SkippedCell], limit: int = 8) -> str:
    """One line for a verdict's reasons: how many cells were skipped, and which."""
    shown = "; ".join(c.describe() for c in cells[:limit])
    more = f"; and {len(cells) - limit} more" if len(cells) > limit else ""
    return f"{len(cells)} invariant cell(s) could not be computed and were left out: {shown}{more}"
