"""Attention heads as the units of a second lineage channel (issue 11; docs/lineage.md, "Head channel").

The FFN test follows neurons.  Attention heads are units too: a function-
preserving disguise can permute them (KV groups, and query heads within a
group) and transform each head's inner coordinates (any invertible A on the
query/key side, q_h → A q_h with k → A⁻ᵀ k, RoPE aside as in the qk term;
any invertible B on the value/output side), but it cannot mix two heads,
because the softmax acts on each head's scores alone.  Two responses per
head survive all of that and a rotation of the residual stream (norm gains
folded into the probe rows as the invariant terms fold them):

* qk_h = (X_a W_q,hᵀ)(X_a W_k,g(h)ᵀ)ᵀ, the head's score matrix over the probe
  tokens (g(h): the head's KV group);
* vo_h = (X_a W_v,g(h)ᵀ)(X_o W_o,h)ᵀ, what the head writes for token j when it
  attends to token i (X_o carries a post-attention norm's gain).

Both are m×m over m probe tokens; flattened, they are a head's two response
columns, and `attest.lineage.matching.layer_test` runs on them unchanged:
partners by |correlation| in each channel, the count of heads whose two
partners coincide, the shuffle null and its Chatterjee bound, Rüger over
layers.  The units are few (H per layer, not thousands of neurons), so the
best p-value a layer can give at full agreement is about exp(−(H−1)/2): the
channel can reach α = 1e-6 only when H is a few dozen or more.  This module
computes the channel on the exact path (both models held).  Bundles carry the
head responses (`attest.lineage.payload`, keys `heads` and `head_tokens`), and
`SuspectPass` tests them in its one pass; the channel joins the verdict only
where its power, fixed before any count, reaches α/2
(`attest.lineage.result.LineageResult.heads_joined`).  The responses
themselves are `attest.lineage.responses.head_responses`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attest.arch.canonical import CanonicalModel
from attest.invariants.compute import release_free_memory
from attest.lineage.matching import LayerLineage, Prepared, layer_test, prepare
from attest.lineage.responses import head_responses
from attest.lineage.result import DEFAULT_ALPHA, REFERENCE_AGREEMENT, LineageResult
from attest.lineage.suspect import head_power_units, pair_cells, probe_rows

Tensor = torch.Tensor

HEAD_TOKENS = 32  # probe tokens per head response: m² = 1,024 entries per channel


def _prepared(model: CanonicalModel, ids: Sequence[int]) -> list[Prepared | None]:
    x = probe_rows(model, ids)
    out: list[Prepared | None] = []
    for i in range(model.n_layers):
        layer = model.layer(i)
        resp = head_responses(layer, x)
        out.append(prepare(*resp) if resp is not None else None)
        del layer, resp
        release_free_memory()
    return out


def test_heads(
    model_a: CanonicalModel,
    model_b: CanonicalModel,
    ids_a: Sequence[int],
    ids_b: Sequence[int],
    *,
    tokens: int = HEAD_TOKENS,
    alpha: float = DEFAULT_ALPHA,
    reference_agreement: float = REFERENCE_AGREEMENT,
) -> LineageResult:
    """The head channel for "is B derived from A?" (`ids_a[t]`, `ids_b[t]`: the same token string).

    The first `tokens` aligned tokens are used.  Equal depths pair layer i with
    layer i; otherwise every cell is tested and the monotone alignment of
    maximal agreement is taken, each cell's p-value carrying the number of
    cells as a Bonferroni factor (as the FFN channel does).
    """
    if len(ids_a) != len(ids_b):
        raise ValueError("test_heads: the two token id lists must be aligned (same length)")
    ids_a, ids_b = list(ids_a)[:tokens], list(ids_b)[:tokens]
    base, suspect = _prepared(model_a, ids_a), _prepared(model_b, ids_b)
    la, lb = len(base), len(suspect)
    notes: list[str] = []
    cells: dict[tuple[int, int], LayerLineage] = {}
    same = la == lb
    factor = 1 if same else la * lb
    for i, pa in enumerate(base):
        for j, pb in enumerate(suspect):
            if (same and i != j) or pa is None or pb is None:
                continue
            cells[(i, j)] = layer_test(i, j, pa, pb, factor)
    pairs = pair_cells(cells, la, lb, same)
    if not same:
        notes.append(f"depths differ ({la} vs {lb} layers): each layer's p-value is multiplied by {factor}")
    if not cells:
        notes.append("no layer pair has standard attention heads on both sides")
    result = LineageResult([cells[p] for p in pairs], "exact", alpha, reference_agreement, notes)
    result.power_units = head_power_units(cells, same)
    return result


test_heads.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name
