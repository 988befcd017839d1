"""Stream a suspect layer by layer and test it against a base's sampled neuron responses.

Shared by the exact path (`pair.test_pair`, base responses computed from the
base model) and the bundle path (`payload.test_against_payload`, base
responses read from the payload), so compare and verify run one procedure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attest.arch.canonical import CanonicalModel, Layer
from attest.errors import InputError
from attest.invariants.compute import make_probe, release_free_memory, release_layer_pages
from attest.invariants.methods import DEFAULT
from attest.lineage.matching import LayerLineage, Prepared, layer_tests, prepare
from attest.lineage.responses import layer_responses
from attest.lineage.result import DEFAULT_ALPHA, REFERENCE_AGREEMENT, LineageResult
from attest.progress import SILENT, Tracker
from attest.scoring.layer_alignment import monotone_pairs

Tensor = torch.Tensor


@dataclass
class BaseLayer:
    """A base layer's sampled neurons: raw responses [tokens, k] at the shared tokens."""

    index: int
    first: Tensor
    second: Tensor
    channels: tuple[str, str]
    width: int = 0  # FFN width f the neurons were sampled from
    neurons: np.ndarray | None = None  # the sampled neuron indices


def probe_rows(model: CanonicalModel, ids: Sequence[int]) -> Tensor:
    """The probe rows the invariant terms use (centred for LayerNorm families, embedding norm applied)."""
    return make_probe(model, list(ids), DEFAULT).x


def sample_neurons(f: int, k: int, seed: int, layer: int) -> np.ndarray:
    """k distinct neuron indices of a width-f layer, sorted; seeded per layer (all of them when k ≥ f)."""
    if k >= f:
        return np.arange(f, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64([seed, layer]))
    return np.sort(rng.choice(f, size=k, replace=False)).astype(np.int64)


@dataclass
class _Task:
    """One base's test against the suspect, filled in layer by layer."""

    base: list[BaseLayer]
    prepared: list[Prepared]
    rows: Tensor  # rows of the union probe matrix, in the base's token order
    same_depth: bool
    factor: int
    notes: list[str]
    mismatch: set[str]
    cells: dict[tuple[int, int], LayerLineage]


class SuspectPass:
    """The suspect side of the lineage test for several bases, fed one suspect layer at a time.

    A caller that already streams the suspect (the invariant sketch of
    `verify`, `identify`) hands each layer it has loaded to `feed`, so the
    layer is read once for both; `finish` reads whatever layer was not fed
    (all of them when nothing was) and combines.  The result depends only on
    which layers were tested, never on who read them or in which order.
    """

    def __init__(
        self,
        bases: Sequence[list[BaseLayer]],
        suspect: CanonicalModel,
        suspect_ids: Sequence[Sequence[int]],
        mode: str,
        *,
        dtype: torch.dtype = torch.float32,
        alpha: float = DEFAULT_ALPHA,
        reference_agreement: float = REFERENCE_AGREEMENT,
        decorrelated: bool = True,
    ) -> None:
        # The probe rows are formed once for the union of the token ids (each row
        # depends on its own token only); each base sees the rows of its own tokens.
        self.suspect, self.mode, self.dtype, self.decorrelated = suspect, mode, dtype, decorrelated
        self.alpha, self.reference_agreement = alpha, reference_agreement
        union = sorted({int(i) for ids in suspect_ids for i in ids})
        where = {i: r for r, i in enumerate(union)}
        self.x = probe_rows(suspect, union) if union else None
        n_s = suspect.n_layers
        self.tasks: list[_Task] = []
        for base, ids in zip(bases, suspect_ids):
            same = len(base) == n_s
            self.tasks.append(
                _Task(
                    base,
                    [prepare(b.first, b.second, decorrelated) for b in base],
                    torch.as_tensor([where[int(i)] for i in ids], dtype=torch.long),
                    same,
                    1 if same else len(base) * n_s,
                    [],
                    set(),
                    {},
                )
            )
        self.done: set[int] = set()

    def feed(self, j: int, layer: Layer) -> None:
        """Test suspect layer j (already loaded by the caller) against every base."""
        if j in self.done or not 0 <= j < self.suspect.n_layers:
            return
        self.done.add(j)
        resp = layer_responses(layer, self.x, self.dtype) if self.x is not None else None
        if resp is None:
            return
        # Bases probed at the same suspect rows (one tokenizer, one token
        # selection: common in a registry) share the suspect side's unit columns.
        # Their partners are found in shared matmuls (`layer_tests`).
        groups: dict[bytes, tuple[Prepared, list[tuple[_Task, int]]]] = {}
        for t in self.tasks:
            key = t.rows.numpy().tobytes()
            if key not in groups:
                groups[key] = (prepare(resp.first[t.rows], resp.second[t.rows], self.decorrelated), [])
            for i in [j] if t.same_depth else range(len(t.base)):
                if i >= len(t.base):
                    continue
                if t.base[i].channels != resp.channels:
                    t.mismatch.add(f"{'/'.join(t.base[i].channels)} vs {'/'.join(resp.channels)}")
                    continue
                groups[key][1].append((t, i))
        for sp, work in groups.values():
            tested = layer_tests([(t.base[i].index, j, t.prepared[i], t.factor) for t, i in work], sp)
            for (t, i), cell in zip(work, tested):
                t.cells[(i, j)] = cell
        del groups, resp

    def finish(self, tracker: Tracker = SILENT) -> list[LineageResult]:
        """Read and test the layers nobody fed, in order, then combine per base."""
        n_s = self.suspect.n_layers
        todo = [j for j in range(n_s) if j not in self.done]
        progress = tracker.task("lineage test", len(todo)) if todo else 0
        for j in todo:
            try:
                layer = self.suspect.layer(j)
            except InputError as exc:
                self.done.add(j)
                for t in self.tasks:
                    t.notes.append(f"suspect layer {j} could not be read for the lineage test: {exc}")
                tracker.advance(progress)
                continue
            self.feed(j, layer)
            release_layer_pages(layer)
            del layer
            release_free_memory()
            tracker.advance(progress)
        return [_finish(t, n_s, self.mode, self.alpha, self.reference_agreement) for t in self.tasks]


def run_suspect_many(
    bases: Sequence[list[BaseLayer]],
    suspect: CanonicalModel,
    suspect_ids: Sequence[Sequence[int]],
    mode: str,
    *,
    dtype: torch.dtype = torch.float32,
    alpha: float = DEFAULT_ALPHA,
    reference_agreement: float = REFERENCE_AGREEMENT,
    tracker: Tracker = SILENT,
    decorrelated: bool = True,
) -> list[LineageResult]:
    """`run_suspect` for several bases after one read of the suspect (`attest identify`)."""
    return SuspectPass(
        bases,
        suspect,
        suspect_ids,
        mode,
        dtype=dtype,
        alpha=alpha,
        reference_agreement=reference_agreement,
        decorrelated=decorrelated,
    ).finish(tracker)


def _finish(t: _Task, n_s: int, mode: str, alpha: float, reference_agreement: float) -> LineageResult:
    """Pair the tested cells (equal depths: i with i; else the monotone alignment) and combine."""
    notes, cells = t.notes, t.cells
    if t.mismatch:
        notes.append(
            f"FFN kinds differ ({', '.join(sorted(t.mismatch))}): those layers cannot be matched neuron by neuron"
        )
    if t.same_depth:
        pairs = [(i, i) for i in range(n_s) if (i, i) in cells]
    else:
        sim = np.full((len(t.base), n_s), -1.0)
        for (i, j), c in cells.items():
            sim[i, j] = c.agreement if c.neurons else -1.0
        pairs = [(i, j) for i, j in monotone_pairs(sim) if (i, j) in cells]
        notes.append(
            f"depths differ ({len(t.base)} vs {n_s} layers): layers paired by a monotone alignment of "
            f"maximal agreement; each layer's p-value is multiplied by {t.factor} (cells searched)"
        )
    kinds_differ = not cells and bool(t.mismatch)
    return LineageResult([cells[p] for p in pairs], mode, alpha, reference_agreement, notes, kinds_differ)


def run_suspect(
    base: list[BaseLayer],
    suspect: CanonicalModel,
    suspect_ids: Sequence[int],
    mode: str,
    *,
    dtype: torch.dtype = torch.float32,
    alpha: float = DEFAULT_ALPHA,
    reference_agreement: float = REFERENCE_AGREEMENT,
    tracker: Tracker = SILENT,
    decorrelated: bool = True,
) -> LineageResult:
    """Test every matched (base layer, suspect layer) pair and combine.

    Equal depths pair layer i with layer i.  Different depths test every cell
    and pick the monotone alignment of maximal agreement; because that choice
    looks at the data, every cell's p-value carries a Bonferroni factor of the
    number of cells, so the chosen cells' p-values stay valid.
    """
    return run_suspect_many(
        [base],
        suspect,
        [suspect_ids],
        mode,
        dtype=dtype,
        alpha=alpha,
        reference_agreement=reference_agreement,
        tracker=tracker,
        decorrelated=decorrelated,
    )[0]
