"""Pair the layers of two models whose depths differ (layers dropped, duplicated, pruned)."""

from __future__ import annotations

import numpy as np


def monotone_pairs(sim: np.ndarray) -> list[tuple[int, int]]:
    """The order-preserving one-to-one matching of maximal total similarity in
    which every layer of the shallower model is matched.

    Forcing a full matching of the shallower side (instead of letting the search
    drop inconvenient layers) keeps the score of unrelated models from being
    inflated by cherry-picking.
    """
    n_a, n_b = sim.shape
    if n_a > n_b:
        return [(i, j) for j, i in monotone_pairs(sim.T)]
    neg = -1e18
    best = np.full((n_a + 1, n_b + 1), neg)
    best[0, :] = 0.0
    take = np.zeros((n_a + 1, n_b + 1), dtype=bool)
    for i in range(1, n_a + 1):
        for j in range(i, n_b + 1):
            skip = best[i, j - 1]
            pair = best[i - 1, j - 1] + sim[i - 1, j - 1]
            if pair >= skip:
                best[i, j], take[i, j] = pair, True
            else:
                best[i, j] = skip
    pairs: list[tuple[int, int]] = []
    i, j = n_a, n_b
    while i > 0:
        if take[i, j]:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        else:
            j -= 1
    return pairs[::-1]
