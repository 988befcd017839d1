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
from attest.lineage.responses import head_responses, layer_responses
from attest.lineage.result import CHANNELS, DEFAULT_ALPHA, REFERENCE_AGREEMENT, LineageResult, best_power
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
    # The layer's attention heads (qk, vo), each [c², H]: entry (i, j) of the c covered head
    # tokens, row-major (the head channel; None when the layer carries none).
    heads: tuple[Tensor, Tensor] | None = None


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
    # The head channel: rows of the union probe matrix of the covered head tokens (None: no
    # heads to test), each base layer's prepared head columns, and the tested cells.
    head_rows: Tensor | None = None
    head_prepared: list[Prepared | None] | None = None
    head_cells: dict[tuple[int, int], LayerLineage] | None = None


def pair_cells(
    cells: dict[tuple[int, int], LayerLineage], n_a: int, n_b: int, same_depth: bool
) -> list[tuple[int, int]]:
    """The matched layer pairs among tested cells: i with i at equal depths, else the monotone
    alignment of maximal agreement (whose data-dependence the cells' Bonferroni factor pays for)."""
    if same_depth:
        return [(i, i) for i in range(min(n_a, n_b)) if (i, i) in cells]
    sim = np.full((n_a, n_b), -1.0)
    for (i, j), c in cells.items():
        sim[i, j] = c.agreement if c.neurons else -1.0
    return [(i, j) for i, j in monotone_pairs(sim) if (i, j) in cells]


def head_power_units(cells: dict[tuple[int, int], LayerLineage], same_depth: bool) -> list[tuple[int, int]]:
    """(heads tested, factor) of the layers the head channel's power is computed from, before any count.

    Equal depths: every tested cell (the pairs are i with i, fixed by the
    architectures).  Otherwise the alignment picks the pairs from the data, so
    take the best case it could reach: as many layers as the shallower side has
    with heads, those with the most tested heads.  Both use only what is fixed
    before agreement is counted (the base's live heads, the factor).
    """
    if same_depth:
        return [(c.neurons, c.factor) for _key, c in sorted(cells.items())]
    per_base: dict[int, tuple[int, int]] = {}
    for (i, _j), c in cells.items():
        per_base[i] = max(per_base.get(i, (0, c.factor)), (c.neurons, c.factor))
    n = min(len(per_base), len({j for _i, j in cells}))
    return sorted(per_base.values(), reverse=True)[:n]


def could_join(prepared: Sequence[Prepared | None], same_depth: bool, factor: int, n_s: int, alpha: float) -> bool:
    """Could this base's head channel join the verdict at all?  Decided before anything is measured.

    The tested cells are some of the base's layers with heads (at most n_s
    of them when depths differ), each at its live base heads and the task's
    factor; `best_power` bounds the power of every such choice.
    """
    f = 1 if same_depth else factor
    units = [(int(p.alive.sum()), f) for p in prepared if p is not None]
    return best_power(units, len(units) if same_depth else n_s) <= alpha / CHANNELS


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
        head_tokens: Sequence[int] | None = None,
        findings: bool = True,
    ) -> None:
        """`head_tokens[n]`: how many of base n's ids (a prefix) its head responses cover (0: none).

        `findings=False` (`attest identify`) leaves out the head channel of a
        base whose heads could not join the verdict even at full agreement
        (`could_join`, decided from head counts and depths before anything is
        measured): there it is only a finding, and the suspect's head
        responses at every such base's own tokens would cost identify more
        than the rest of its lineage work.
        """
        # The probe rows are formed once for the union of the token ids (each row
        # depends on its own token only); each base sees the rows of its own tokens.
        self.suspect, self.mode, self.dtype, self.decorrelated = suspect, mode, dtype, decorrelated
        self.alpha, self.reference_agreement = alpha, reference_agreement
        union = sorted({int(i) for ids in suspect_ids for i in ids})
        where = {i: r for r, i in enumerate(union)}
        self.x = probe_rows(suspect, union) if union else None
        n_s = suspect.n_layers
        self.tasks: list[_Task] = []
        for n, (base, ids) in enumerate(zip(bases, suspect_ids)):
            same = len(base) == n_s
            rows = torch.as_tensor([where[int(i)] for i in ids], dtype=torch.long)
            task = _Task(
                base,
                [prepare(b.first, b.second, decorrelated) for b in base],
                rows,
                same,
                1 if same else len(base) * n_s,
                [],
                set(),
                {},
            )
            c = int(head_tokens[n]) if head_tokens is not None else 0
            if c >= 2 and any(b.heads is not None for b in base):
                prepared_heads = [prepare(*b.heads) if b.heads is not None else None for b in base]
                if findings or could_join(prepared_heads, same, task.factor, n_s, alpha):
                    task.head_rows = rows[:c]
                    task.head_prepared = prepared_heads
                    task.head_cells = {}
                else:
                    task.notes.append(
                        "head channel not run here: even full agreement of every head could not reach "
                        f"α/{CHANNELS} (it would be a finding only; `verify` reports it)"
                    )
            self.tasks.append(task)
        self.done: set[int] = set()

    def feed(self, j: int, layer: Layer) -> None:
        """Test suspect layer j (already loaded by the caller) against every base."""
        if j in self.done or not 0 <= j < self.suspect.n_layers:
            return
        self.done.add(j)
        self._feed_heads(j, layer)
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

    def _feed_heads(self, j: int, layer: Layer) -> None:
        """The head channel of suspect layer j against every base that carries heads (same loaded layer)."""
        tasks = [t for t in self.tasks if t.head_rows is not None]
        if not tasks or self.x is None:
            return
        groups: dict[bytes, tuple[Prepared | None, list[tuple[_Task, int]]]] = {}
        for t in tasks:
            assert t.head_rows is not None and t.head_prepared is not None
            key = t.head_rows.numpy().tobytes()
            if key not in groups:
                # float32 whatever the dtype: the responses are c² products of c rows, cheap.
                resp = head_responses(layer, self.x[t.head_rows])
                groups[key] = (prepare(*resp, self.decorrelated) if resp is not None else None, [])
            for i in [j] if t.same_depth else range(len(t.base)):
                if i < len(t.base) and t.head_prepared[i] is not None:
                    groups[key][1].append((t, i))
        for sp, work in groups.values():
            if sp is None:  # no standard attention in this suspect layer (MLA, a mixer)
                continue
            items = [(t.base[i].index, j, t.head_prepared[i], t.factor) for t, i in work]  # type: ignore[index]
            for (t, i), cell in zip(work, layer_tests(items, sp)):  # type: ignore[arg-type]
                assert t.head_cells is not None
                t.head_cells[(i, j)] = cell

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
    pairs = pair_cells(cells, len(t.base), n_s, t.same_depth)
    if not t.same_depth:
        notes.append(
            f"depths differ ({len(t.base)} vs {n_s} layers): layers paired by a monotone alignment of "
            f"maximal agreement; each layer's p-value is multiplied by {t.factor} (cells searched)"
        )
    kinds_differ = not cells and bool(t.mismatch)
    heads: LineageResult | None = None
    if t.head_cells is not None:
        hc = t.head_cells
        hpairs = pair_cells(hc, len(t.base), n_s, t.same_depth)
        hnotes = [] if hc else ["no layer pair has standard attention heads on both sides"]
        heads = LineageResult([hc[p] for p in hpairs], mode, alpha, reference_agreement, hnotes)
        heads.power_units = head_power_units(hc, t.same_depth)
    return LineageResult([cells[p] for p in pairs], mode, alpha, reference_agreement, notes, kinds_differ, heads)


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
