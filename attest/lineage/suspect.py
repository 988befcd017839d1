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

from attest.arch.canonical import CanonicalModel
from attest.errors import InputError
from attest.invariants.compute import make_probe, release_free_memory
from attest.invariants.methods import DEFAULT
from attest.lineage.matching import LayerLineage, Prepared, layer_test, prepare
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
    notes: list[str] = []
    mismatch: set[str] = set()
    x = probe_rows(suspect, suspect_ids)
    prepared_base = [prepare(b.first, b.second, decorrelated) for b in base]
    n_s = suspect.n_layers
    same_depth = len(base) == n_s
    factor = 1 if same_depth else len(base) * n_s
    cells: dict[tuple[int, int], LayerLineage] = {}
    task = tracker.task("lineage test", n_s)
    for j in range(n_s):
        wanted = [j] if same_depth else list(range(len(base)))
        try:
            layer = suspect.layer(j)
        except InputError as exc:
            notes.append(f"suspect layer {j} could not be read for the lineage test: {exc}")
            tracker.advance(task)
            continue
        resp = layer_responses(layer, x, dtype)
        del layer
        if resp is None:
            tracker.advance(task)
            continue
        sp: Prepared = prepare(resp.first, resp.second, decorrelated)
        channels = resp.channels
        del resp
        for i in wanted:
            if base[i].channels != channels:
                mismatch.add(f"{'/'.join(base[i].channels)} vs {'/'.join(channels)}")
                continue
            cells[(i, j)] = layer_test(base[i].index, j, prepared_base[i], sp, factor)
        del sp
        release_free_memory()
        tracker.advance(task)
    if mismatch:
        notes.append(
            f"FFN kinds differ ({', '.join(sorted(mismatch))}): those layers cannot be matched neuron by neuron"
        )
    if same_depth:
        pairs = [(i, i) for i in range(n_s) if (i, i) in cells]
    else:
        sim = np.full((len(base), n_s), -1.0)
        for (i, j), c in cells.items():
            sim[i, j] = c.agreement if c.neurons else -1.0
        pairs = [(i, j) for i, j in monotone_pairs(sim) if (i, j) in cells]
        notes.append(
            f"depths differ ({len(base)} vs {n_s} layers): layers paired by a monotone alignment of "
            f"maximal agreement; each layer's p-value is multiplied by {factor} (cells searched)"
        )
    kinds_differ = not cells and bool(mismatch)
    return LineageResult([cells[p] for p in pairs], mode, alpha, reference_agreement, notes, kinds_differ)
