"""Sketch one model for many bundles in a single pass over its weights (for `attest identify`).

Each bundle asks for its own probe tokens, layers, terms and sampled
positions.  Every invariant term is a bilinear form over probe rows,
``M[i, j] = x_i · W · x_j``, so a bundle's matrix is the sub-matrix of the
matrix over the *union* of all bundles' tokens at that bundle's rows and
columns.  The model is therefore read once: each layer is loaded once and each
term computed once over the union tokens; then, for every distinct token
subset, the sub-matrix is standardised on its own (statistics over the
bundle's tokens, exactly as `sketch_model` would compute them) and each
bundle's positions are read out of it.

Bundles of different methods (different probe preparation or terms) form
groups; layers are still loaded once, and each group computes its own terms
from the loaded layer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from attest.arch.canonical import CanonicalModel, Layer
from attest.errors import InputError
from attest.invariants import terms as T
from attest.invariants.compute import (
    Probe,
    global_terms,
    layer_terms,
    make_probe,
    release_free_memory,
    release_layer_pages,
)
from attest.invariants.methods import Method
from attest.progress import SILENT, Tracker
from attest.sketch.statement import GLOBAL


@dataclass(frozen=True)
class Request:
    """What one bundle needs: suspect token ids (bundle order), suspect layers and positions into `ids`."""

    key: Hashable
    method: Method
    ids: tuple[int, ...]
    layers: tuple[int, ...]
    pairs: np.ndarray  # [k, 2] positions into `ids`


@dataclass
class Sketches:
    """Per-request (cells, values) in `sketch_model`'s order, and the layers that could not be read."""

    cells: dict[Hashable, list[tuple[int, str]]] = field(default_factory=dict)
    rows: dict[Hashable, list[np.ndarray]] = field(default_factory=dict)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    layers_read: int = 0

    def values(self, key: Hashable, n_pairs: int) -> np.ndarray:
        rows = self.rows.get(key, [])
        return np.stack(rows) if rows else np.zeros((0, n_pairs), dtype=np.float32)


def _group_key(m: Method) -> tuple[object, ...]:
    # Everything that changes how a term is computed from the weights; the
    # tokens, layers and term lists are merged within a group.
    return (m.name, m.fold_gains, m.center_layernorm, m.huref_ffn, m.drop_diagonal)


@dataclass
class _Readout:
    """Requests with the same tokens and the same positions: one gather serves them all.

    Bundles issued with the same token count share their positions (the pair
    seed is fixed), so in a large registry most bundles fall into few readouts.
    """

    flat: torch.Tensor  # positions as flat indices into the subset's n×n matrix
    requests: list[Request] = field(default_factory=list)


@dataclass
class _Group:
    method: Method  # the group's method with the union of terms
    union_ids: list[int]
    probe: Probe | None = None
    # subset (positions into union_ids) -> requests that use exactly those tokens
    subsets: dict[tuple[int, ...], list[Request]] = field(default_factory=dict)
    readouts: dict[tuple[int, ...], dict[bytes, _Readout]] = field(default_factory=dict)


def _groups(requests: Sequence[Request]) -> list[_Group]:
    by_key: dict[tuple[object, ...], list[Request]] = {}
    for r in requests:
        by_key.setdefault(_group_key(r.method), []).append(r)
    out = []
    for reqs in by_key.values():
        union = list(dict.fromkeys(i for r in reqs for i in r.ids))
        where = {t: k for k, t in enumerate(union)}
        terms = tuple(dict.fromkeys(t for r in reqs for t in r.method.terms))
        gterms = tuple(dict.fromkeys(t for r in reqs for t in r.method.global_terms))
        g = _Group(replace(reqs[0].method, terms=terms, global_terms=gterms, n_tokens=len(union)), union)
        for r in reqs:
            subset = tuple(where[i] for i in r.ids)
            g.subsets.setdefault(subset, []).append(r)
            pairs = np.ascontiguousarray(r.pairs, dtype=np.int64)
            readouts = g.readouts.setdefault(subset, {})
            key = hashlib.sha256(pairs.tobytes()).digest() + pairs.shape[0].to_bytes(8, "little")
            if key not in readouts:
                readouts[key] = _Readout(torch.as_tensor(pairs[:, 0] * len(subset) + pairs[:, 1]))
            readouts[key].requests.append(r)
        out.append(g)
    return out


def _standardise_subset(
    raw: torch.Tensor, subset: tuple[int, ...], n_union: int, method: Method
) -> torch.Tensor | None:
    if len(subset) == n_union and subset == tuple(range(n_union)):
        return T.standardise(raw, drop_diagonal=method.drop_diagonal)
    idx = torch.as_tensor(subset, dtype=torch.long)
    return T.standardise(raw.index_select(0, idx).index_select(1, idx), drop_diagonal=method.drop_diagonal)


def _read_out(out: Sketches, group: _Group, layer: int, name: str, raw: torch.Tensor, wanted: set[Hashable]) -> None:
    for subset, reqs in group.subsets.items():
        if not any(r.key in wanted for r in reqs):
            continue
        z = _standardise_subset(raw, subset, len(group.union_ids), group.method)
        if z is None:  # a constant matrix carries no information (as in `standardised`)
            continue
        flat_z = z.reshape(-1)
        for readout in group.readouts[subset].values():
            users = [r for r in readout.requests if r.key in wanted]
            if not users:
                continue
            # The same float16 entries `sketch.sample` reads, gathered once for all users.
            values = flat_z.index_select(0, readout.flat).float().numpy()
            for r in users:
                out.cells[r.key].append((layer, name))
                out.rows[r.key].append(values)
        del z, flat_z


def sketch_many(
    model: CanonicalModel,
    requests: Sequence[Request],
    dtype: torch.dtype,
    tracker: Tracker = SILENT,
    label: str = "computing suspect invariants (one pass)",
    on_read: Callable[[int, Layer], None] | None = None,
) -> Sketches:
    """Every request's sketch values from one read of `model` (see the module docstring).

    A layer that cannot be read is recorded in `skipped` and passed over, as
    `iter_layers` does with a `skipped` list; `on_read(i, layer)` sees every
    loaded layer before it is released (the lineage tests of `identify`).
    """
    out = Sketches()
    for r in requests:
        out.cells[r.key] = []
        out.rows[r.key] = []
    groups = _groups(requests)
    for g in groups:
        g.probe = make_probe(model, g.union_ids, g.method)
    all_layers = sorted({i for r in requests for i in r.layers})
    task = tracker.task(label, len(all_layers))
    for i in all_layers:
        try:
            layer = model.layer(i)
        except InputError as exc:
            out.skipped.append((i, str(exc)))
            tracker.advance(task)
            continue
        out.layers_read += 1
        for g in groups:
            needs = {r.key for reqs in g.subsets.values() for r in reqs if i in r.layers}
            if not needs:
                continue
            assert g.probe is not None
            for name, raw in layer_terms(layer, g.probe, g.method, model, dtype):
                wanted = {
                    r.key for reqs in g.subsets.values() for r in reqs if r.key in needs and name in r.method.terms
                }
                _read_out(out, g, i, name, raw, wanted)
                del raw
        if on_read is not None:
            on_read(i, layer)
        # As `iter_layers`: only after the lineage tests (on_read) have read the same mapped pages.
        release_layer_pages(layer)
        del layer
        release_free_memory()
        tracker.advance(task)
    for g in groups:
        assert g.probe is not None
        for name, raw in global_terms(model, g.probe, g.method, dtype):
            wanted = {r.key for reqs in g.subsets.values() for r in reqs if name in r.method.global_terms}
            _read_out(out, g, GLOBAL, name, raw, wanted)
    return out
