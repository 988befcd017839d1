"""Binomial tails, a confidence bound for the chance rate, and a dependence-proof combination.

No scipy: the binomial tail is summed in log space (k is at most a few
thousand), the bound is found by bisection on the Bernoulli KL divergence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def log_binom_sf(successes: int, trials: int, rate: float) -> float:
    """log P(Bin(trials, rate) ≥ successes)."""
    if successes <= 0:
        return 0.0
    if successes > trials:
        return -math.inf
    if rate <= 0.0:
        return -math.inf
    if rate >= 1.0:
        return 0.0
    lq, l1q = math.log(rate), math.log1p(-rate)
    lg = math.lgamma
    base = lg(trials + 1)
    terms = [base - lg(j + 1) - lg(trials - j + 1) + j * lq + (trials - j) * l1q for j in range(successes, trials + 1)]
    top = max(terms)
    return min(0.0, top + math.log(sum(math.exp(t - top) for t in terms)))


def binom_sf(successes: int, trials: int, rate: float) -> float:
    return math.exp(log_binom_sf(successes, trials, rate))


def kl_bernoulli(p: float, q: float) -> float:
    """KL(Bernoulli(p) ‖ Bernoulli(q)) in nats."""
    eps = 1e-300
    out = 0.0
    if p > 0:
        out += p * math.log(p / max(q, eps))
    if p < 1:
        out += (1 - p) * math.log((1 - p) / max(1 - q, eps))
    return out


def rate_upper_bound(estimate: float, n_eff: int, delta: float) -> float:
    """The largest rate q ≥ estimate with exp(−n_eff·KL(estimate‖q)) ≥ delta.

    If the estimate is a U-statistic of order 2 with a [0, 1] kernel over k iid
    units, Hoeffding (1963, §5) shows it obeys the Chernoff bound of a mean of
    n_eff = ⌊k/2⌋ iid [0, 1] variables, so P(true rate > bound) ≤ delta.
    """
    if n_eff <= 0:
        return 1.0
    estimate = min(max(estimate, 0.0), 1.0)
    target = math.log(1.0 / delta) / n_eff
    lo, hi = estimate, 1.0
    if kl_bernoulli(estimate, hi) <= target:
        return 1.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if kl_bernoulli(estimate, mid) > target:
            hi = mid
        else:
            lo = mid
    return hi


def permutation_tail(observed: int, mean: float) -> float:
    """Upper bound on P(X ≥ observed) for X = Σ_i a_{i,π(i)}, π a uniform random permutation, a ∈ [0, 1].

    Chatterjee (2007, "Stein's method for concentration inequalities",
    Prop. 1.1): P(X − EX ≥ t) ≤ exp(−t² / (4·EX + 2t)) for t ≥ 0.
    """
    t = observed - mean
    if t <= 0:
        return 1.0
    return min(1.0, math.exp(-t * t / (4.0 * mean + 2.0 * t)))


def required_layers(n_layers: int) -> int:
    """How many layers must be significant: at least half of them (and at least 2 when there are 2 or more)."""
    return max(1, min(n_layers, max(2, math.ceil(n_layers / 2)))) if n_layers else 0


def ruger(p_values: Sequence[float], r: int) -> float:
    """Rüger's combination (L/r)·p_(r), valid under any dependence between the p-values.

    Proof: the number of p-values ≤ rt/L has expectation ≤ rt when each is a
    valid p-value, so by Markov P(at least r of them are ≤ rt/L) ≤ t.
    """
    n = len(p_values)
    if n == 0 or r <= 0:
        return 1.0
    r = min(r, n)
    return min(1.0, n / r * sorted(p_values)[r - 1])
