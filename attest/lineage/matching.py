"""Per-layer neuron matching and its test: do the two channels find the same partner?

For each sampled base neuron i, its gate partner g(i) is the suspect neuron
whose gate response has the largest |correlation| with i's gate response over
the shared tokens, and its up partner u(i) likewise by the up response.  In a
derived model both are i's descendant; in an independent model they agree by
chance.  See docs/lineage.md for the null.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from attest.lineage.stats import permutation_tail

Tensor = torch.Tensor

BLOCK = 1024  # base neurons per correlation block (bounds the [block, f] matrix)


def unit_columns(r: Tensor) -> Tensor:
    """Columns centred over tokens and scaled to unit norm (a zero column stays zero), float32."""
    # In place on the one centred copy: the same values as
    # where(norm > eps, r / norm, 0) without two more [m, f] temporaries
    # (identify prepares every suspect layer once per token selection).
    c = r.float() - r.float().mean(0, keepdim=True)
    norm = c.norm(dim=0, keepdim=True)
    return c.div_(norm.clamp_min(1e-12)).masked_fill_(norm <= 1e-12, 0.0)


def decorrelate(second: Tensor, first: Tensor) -> Tensor:
    """The second channel with each column's projection on the same neuron's first channel removed.

    Both inputs are unit columns.  A neuron whose gate and up responses are
    alike would otherwise let the two matchings agree without any lineage;
    this removes the linear part of that dependence on both sides.
    """
    coef = (second * first).sum(0, keepdim=True)
    return unit_columns(second - coef * first)


@dataclass
class Prepared:
    """One side's two channels as unit columns over the shared tokens."""

    first: Tensor
    second: Tensor
    alive: Tensor  # bool per column: both channels non-constant
    _live: tuple[Tensor, Tensor] | None = field(default=None, repr=False, compare=False)

    def live(self) -> tuple[Tensor, Tensor]:
        """Both channels' live columns, selected once (a base layer meets every suspect layer when depths differ)."""
        if self._live is None:
            self._live = (self.first[:, self.alive], self.second[:, self.alive])
        return self._live


def prepare(first: Tensor, second: Tensor, decorrelated: bool = True) -> Prepared:
    """Unit columns; the second channel decorrelated from the first unless told otherwise (experiments only)."""
    a = unit_columns(first)
    b = decorrelate(unit_columns(second), a) if decorrelated else unit_columns(second)
    alive = (a.abs().sum(0) > 0) & (b.abs().sum(0) > 0)
    return Prepared(a, b, alive)


CHUNK = 64  # suspect columns per chunk of the two-stage argmax in `partners`


def partners(base: Tensor, suspect: Tensor) -> Tensor:
    """argmax_j |corr(base_i, suspect_j)| for every base column i (unit columns in, int64 out).

    The first such j on ties, exactly as `c.abs().argmax(1)` would give, found
    in two stages: each chunk of CHUNK suspect columns is scored by its
    largest |c| (max and −min: value-only reductions, several times faster
    than an index-tracking argmax), and only the first best chunk is searched
    for the index.  The first maximal entry of a row lies in its first
    maximal chunk, so ties resolve as before.  The suspect is padded with
    zero columns to whole chunks: a padded entry is exactly 0, after every
    real column, so it can never be first.  This is `identify`'s hottest loop
    (hundreds of base neurons per bundle against every suspect neuron of
    every layer); the [block, f] products reuse one buffer.
    """
    n, f = int(base.shape[1]), int(suspect.shape[1])
    out = torch.empty(n, dtype=torch.long)
    if n == 0:
        return out
    dtype = torch.promote_types(base.dtype, suspect.dtype)
    chunks = -(-f // CHUNK)
    if chunks * CHUNK != f:
        padded = torch.zeros(suspect.shape[0], chunks * CHUNK, dtype=dtype)
        padded[:, :f] = suspect
        suspect = padded
    bt = base.t().to(dtype)
    suspect = suspect.to(dtype)
    buffer = torch.empty(min(BLOCK, n), chunks * CHUNK, dtype=dtype)
    for s in range(0, n, BLOCK):
        e = min(s + BLOCK, n)
        c = buffer[: e - s]
        torch.matmul(bt[s:e], suspect, out=c)
        by_chunk = c.view(e - s, chunks, CHUNK)
        best = torch.maximum(by_chunk.amax(2), by_chunk.amin(2).neg_()).argmax(1)
        inner = by_chunk[torch.arange(e - s), best].abs_().argmax(1)
        out[s:e] = best * CHUNK + inner
    return out


@dataclass
class LayerLineage:
    """The lineage test of one (base layer, suspect layer) pair."""

    a: int
    b: int
    neurons: int  # base neurons tested (k)
    agree: int  # neurons whose two partners coincide (K)
    chance: float  # E[K] when up partners are shuffled among base neurons: Σ_j G_j·U_j / k
    p_value: float  # min(1, factor · permutation tail bound at K)
    p_full: float  # the p-value full agreement would give (the layer's power)
    tokens: int
    suspect_neurons: int
    factor: int = 1  # Bonferroni factor for a data-chosen layer pairing
    cross: int = 0  # coincidences g(i) = u(i') over ordered pairs i ≠ i'

    @property
    def agreement(self) -> float:
        return self.agree / self.neurons if self.neurons else float("nan")

    @property
    def chance_rate(self) -> float:
        """Chance agreement per neuron under the shuffle."""
        return self.chance / self.neurons if self.neurons else float("nan")

    def p_at(self, fraction: float) -> float:
        """The p-value an agreement of `fraction` would give with this layer's cross coincidences."""
        if self.neurons < 2:
            return 1.0
        need = max(1, math.ceil(fraction * self.neurons))
        return min(1.0, self.factor * permutation_tail(need, (self.cross + need) / self.neurons, self.neurons))

    def to_json(self) -> dict[str, float | int]:
        return {
            "a": self.a,
            "b": self.b,
            "neurons": self.neurons,
            "agree": self.agree,
            "agreement": self.agreement,
            "chance": self.chance,
            "chance_rate": self.chance_rate,
            "p_value": self.p_value,
            "p_full": self.p_full,
            "tokens": self.tokens,
            "suspect_neurons": self.suspect_neurons,
            "factor": self.factor,
            "cross": self.cross,
        }

    def record(self) -> list[int]:
        """The counts `from_counts` rebuilds this layer from (what evidence files store)."""
        return [self.a, self.b, self.neurons, self.agree, self.cross, self.tokens, self.suspect_neurons, self.factor]


def counts(g: np.ndarray, u: np.ndarray, f: int) -> tuple[int, int]:
    """(K, C): agreements g_i = u_i, and cross coincidences g_i = u_i' over ordered pairs i ≠ i'."""
    agree = int((g == u).sum())
    cg = np.bincount(g, minlength=f).astype(np.int64)
    cu = np.bincount(u, minlength=f).astype(np.int64)
    return agree, int((cg * cu).sum()) - agree


def layer_test(a: int, b: int, base: Prepared, suspect: Prepared, factor: int = 1) -> LayerLineage:
    """Match the live base neurons in both channels and test the agreement count.

    The null: given the suspect and the gate partners, the up partners are
    exchangeable over base neurons (true when base neurons are independent
    draws whose two channels' partners are independent).  Then K has the law
    of Σ_i [g_i = u_π(i)] for a uniform permutation π, whose mean is
    Σ_j G_j·U_j / k (G_j, U_j: how many base neurons chose suspect neuron j in
    each channel), and Chatterjee's inequality bounds its tail.  The shuffle
    keeps every hub exactly as observed, so hubs cannot fake agreement.
    """
    bf, bs = base.live()
    k = int(bf.shape[1])
    f = int(suspect.first.shape[1])
    tokens = int(bf.shape[0])
    if k < 2 or f < 1 or tokens < 3:
        return LayerLineage(a, b, k, 0, float("nan"), 1.0, 1.0, tokens, f, factor)
    g = partners(bf, suspect.first).numpy()
    u = partners(bs, suspect.second).numpy()
    agree, cross = counts(g, u, f)
    return from_counts(a, b, k, agree, cross, tokens, f, factor)


def layer_tests(items: list[tuple[int, int, Prepared, int]], suspect: Prepared) -> list[LayerLineage]:
    """`layer_test(a, b, base, suspect, factor)` for every item against one suspect side.

    The same numbers as one call per item; the partners of all items' base
    neurons are found in shared matmuls (`attest identify` tests hundreds of
    bundles probed at the same suspect rows, and one small matmul each is
    mostly overhead).
    """
    f = int(suspect.first.shape[1])
    out: list[LayerLineage | None] = [None] * len(items)
    firsts, seconds, spans = [], [], []
    start = 0
    for n, (a, b, base, factor) in enumerate(items):
        bf, bs = base.live()
        k, tokens = int(bf.shape[1]), int(bf.shape[0])
        if k < 2 or f < 1 or tokens < 3 or tokens != int(suspect.first.shape[0]):
            out[n] = layer_test(a, b, base, suspect, factor)  # its own early exit (or a shape error)
            continue
        firsts.append(bf)
        seconds.append(bs)
        spans.append((n, start, start + k, tokens))
        start += k
    if spans:
        g_all = partners(torch.cat(firsts, 1), suspect.first).numpy()
        u_all = partners(torch.cat(seconds, 1), suspect.second).numpy()
        for n, lo, hi, tokens in spans:
            a, b, _base, factor = items[n]
            agree, cross = counts(g_all[lo:hi], u_all[lo:hi], f)
            out[n] = from_counts(a, b, hi - lo, agree, cross, tokens, f, factor)
    return [c for c in out if c is not None]


def from_counts(
    a: int, b: int, neurons: int, agree: int, cross: int, tokens: int, suspect_neurons: int, factor: int = 1
) -> LayerLineage:
    """A layer's test from its counts alone: what `layer_test` decides with, and what evidence stores.

    `inspect` recomputes a verification's lineage p-value through this
    function, so an edited p-value cannot survive a recheck.
    """
    if neurons < 2 or suspect_neurons < 1 or tokens < 3:
        return LayerLineage(a, b, neurons, 0, float("nan"), 1.0, 1.0, tokens, suspect_neurons, factor)
    chance = (cross + agree) / neurons
    # Significance (what a match rests on) uses the Chatterjee bound alone.  The
    # factorial-moment bound is valid under the shuffle too, and far tighter at
    # small chance rates, but that tightness turns a few per cent of convergent
    # "universal" neurons (which bend the null's independence assumption, see
    # docs/lineage.md) into p ~ 1e-13: a false "derived" is the worst failure.
    # The tight bound is used only where it can cost a match nothing: the power
    # checks (`p_full`, `p_at`), which decide whether a no-match may be claimed.
    p = min(1.0, factor * permutation_tail(agree, chance))
    p_full = min(1.0, factor * permutation_tail(neurons, 1.0, neurons))
    return LayerLineage(a, b, neurons, agree, chance, p, p_full, tokens, suspect_neurons, factor, cross)
