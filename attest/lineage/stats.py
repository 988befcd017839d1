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


P_FLOOR = 1e-300  # reported p-values are clamped here (conservative), so every z stays finite


def log_factorial_moment_tail(observed: int, mean: float, n: int) -> float:
    """log of an upper bound on P(X ≥ s), s = observed, for X = Σ_i a_{i,π(i)}, a 0/1 matrix of n rows.

    X ≥ s implies C(X, s) ≥ 1, so by Markov P(X ≥ s) ≤ E[C(X, s)].  C(X, s)
    counts the s-sets of agreeing rows; an s-set of edges forming a partial
    matching is contained in π with probability (n−s)!/n!, and there are at
    most e_s(d_1..d_n) ≤ (Σd)^s / s! of them (d_i: edges of row i), with
    Σd = n·EX.  Hence P(X ≥ s) ≤ (n·EX)^s / s! · (n−s)!/n!.  Much tighter than
    the Chatterjee bound when EX is small (the Poisson-like regime of
    independent models), and as valid: it uses nothing but the shuffle.
    """
    s = observed
    if s <= 0:
        return 0.0
    if s > n:
        return -math.inf
    total = n * mean
    if total <= 0:
        return -math.inf
    lg = math.lgamma
    return s * math.log(total) - lg(s + 1) - (lg(n + 1) - lg(n - s + 1))


def permutation_tail(observed: int, mean: float, n: int | None = None) -> float:
    """Upper bound on P(X ≥ observed) for X = Σ_i a_{i,π(i)}, π a uniform random permutation of n.

    The smaller of two valid bounds: Chatterjee (2007, "Stein's method for
    concentration inequalities", Prop. 1.1), P(X − EX ≥ t) ≤ exp(−t² / (4·EX + 2t))
    for a ∈ [0, 1]; and, when n is given and a is 0/1 (agreement counts), the
    factorial-moment bound `log_factorial_moment_tail`.  Clamped at P_FLOOR.
    """
    t = observed - mean
    if t <= 0:
        return 1.0
    log_p = -t * t / (4.0 * mean + 2.0 * t)
    if n is not None:
        log_p = min(log_p, log_factorial_moment_tail(observed, mean, n))
    return max(P_FLOOR, min(1.0, math.exp(log_p)))


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
