"""Which layer of one model is compared with which layer of the other, and the
notes that a pairing or the global terms call for.

`compare` (exact matrices) and `verify` (sketch estimates) both end with a
layer-by-layer similarity matrix; they share this module so that the same pair
of models is paired, and annotated, the same way by both.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from attest.scoring.decision import Policy
from attest.scoring.layer_alignment import monotone_pairs


def pair_layers(matrix: np.ndarray, depth_alignment: bool) -> tuple[list[tuple[int, int]], list[str]]:
    """Index pairs into `matrix` [layers of A, layers of B], and the notes to show.

    Equal depths (or a method without depth alignment) pair layer k with
    layer k.  Otherwise the monotone one-to-one alignment that matches every
    layer of the shallower model is used (see `monotone_pairs` for why it may
    not skip layers).
    """
    n_a, n_b = matrix.shape
    if n_a == n_b or not depth_alignment:
        return [(k, k) for k in range(min(n_a, n_b))], []
    note = f"depths differ ({n_a} vs {n_b} layers): layers were paired by a monotone alignment"
    return monotone_pairs(matrix), [note]


def embedding_note(global_terms: Mapping[str, float], score: float, policy: Policy) -> str | None:
    """A finding, never a match: related token embeddings beside unrelated layers.

    Models that share a tokenizer, or reuse a base's embedding table, have
    alike `emb` terms whatever their layers are; the report says so instead of
    letting it move the verdict.
    """
    emb = global_terms.get("emb")
    if emb is None or not np.isfinite(emb) or emb < policy.related_embeddings or score >= policy.threshold:
        return None
    return f"the token embeddings are related (emb similarity {emb:.2f}) although the layers are not"
