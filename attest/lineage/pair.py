"""The exact path: both models held locally (`attest compare`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attest.arch.canonical import CanonicalModel, Layer
from attest.errors import InputError
from attest.invariants.compute import release_free_memory
from attest.lineage.responses import ffn_width, layer_responses
from attest.lineage.result import DEFAULT_ALPHA, REFERENCE_AGREEMENT, LineageResult
from attest.lineage.suspect import BaseLayer, probe_rows, run_suspect, sample_neurons
from attest.progress import SILENT, Tracker

EXACT_NEURONS = 1024  # base neurons per layer tested by compare (all of them in narrower layers)
NEURON_SEED = 0x11E4A6E


def base_layer(
    layer: Layer, i: int, x: torch.Tensor, neurons: int, seed: int, dtype: torch.dtype = torch.float32
) -> BaseLayer:
    """Layer i's sampled-neuron responses to the probe rows x (InputError when it has no FFN)."""
    f = ffn_width(layer)
    if f == 0:
        raise InputError(f"layer {i} has no FFN: the lineage test needs FFN neurons")
    idx = sample_neurons(f, neurons, seed, i)
    resp = layer_responses(layer, x, dtype, torch.as_tensor(idx))
    assert resp is not None
    return BaseLayer(i, resp.first, resp.second, resp.channels, f, idx)


def base_layers(
    model: CanonicalModel,
    ids: Sequence[int],
    neurons: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
    tracker: Tracker = SILENT,
) -> list[BaseLayer]:
    """Every layer's sampled-neuron responses at the given token ids (float32, exact)."""
    x = probe_rows(model, ids)
    out: list[BaseLayer] = []
    task = tracker.task("lineage: base neurons", model.n_layers)
    for i in range(model.n_layers):
        layer = model.layer(i)
        out.append(base_layer(layer, i, x, neurons, seed, dtype))
        del layer
        release_free_memory()
        tracker.advance(task)
    return out


def test_pair(
    model_a: CanonicalModel,
    model_b: CanonicalModel,
    ids_a: Sequence[int],
    ids_b: Sequence[int],
    *,
    neurons: int = EXACT_NEURONS,
    seed: int = NEURON_SEED,
    alpha: float = DEFAULT_ALPHA,
    reference_agreement: float = REFERENCE_AGREEMENT,
    dtype: torch.dtype = torch.float32,
    tracker: Tracker = SILENT,
    decorrelated: bool = True,
) -> LineageResult:
    """Is B derived from A?  `ids_a[t]` and `ids_b[t]` are the same token string in each vocabulary."""
    if len(ids_a) != len(ids_b):
        raise InputError("test_pair: the two token id lists must be aligned (same length)")
    base = base_layers(model_a, ids_a, neurons, seed, dtype, tracker)
    return run_suspect(
        base,
        model_b,
        ids_b,
        "exact",
        dtype=dtype,
        alpha=alpha,
        reference_agreement=reference_agreement,
        tracker=tracker,
        decorrelated=decorrelated,
    )


test_pair.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name
