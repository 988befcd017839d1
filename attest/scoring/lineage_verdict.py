"""The verdict rule: the lineage test decides, the invariant score is a finding beside it.

Both `compare` and `verify` (and `inspect`, redoing verify from an evidence
file) decide through `decide_verdict`, so the same lineage counts and score
give the same verdict in every command.  The rule (docs/method.md, "Verdict"):

* something forced the answer (unreadable or non-finite weights): inconclusive;
* no lineage test (a bundle issued before lineage payloads): the score rule of
  `attest.scoring.decision.decide`, and a note that says so;
* lineage p ≤ α (policy.lineage_alpha): match;
* p > α and the test had power: no_match;
* otherwise inconclusive, with what the test lacked.

A high score, related embeddings or a shared tokenizer never make a match:
they are reported as findings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from attest.lineage.result import LINEAGE, NO_LINEAGE, LineageResult
from attest.scoring.decision import Policy, Verdict, decide

SCORE_ALONE_NOTE = "issued before lineage payloads: the verdict rests on the similarity score alone"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: list[str]
    findings: list[str] = field(default_factory=list)  # shown as notes, never moving the verdict


def z_of_p(p: float) -> float:
    """The one-sided normal quantile z with P(N(0,1) ≥ z) = p (inf for p = 0, nan for no p).

    Bisection on log P, with the Mills-ratio asymptote where erfc underflows,
    so that lineage p-values down to 1e-300 and below get a finite z.
    """
    if not math.isfinite(p) or p < 0 or p > 1:
        return float("nan")
    if p == 0.0:
        return math.inf
    if p == 1.0:
        return -math.inf
    target = math.log(p)

    def log_tail(z: float) -> float:
        if z < 30:
            return math.log(0.5 * math.erfc(z / math.sqrt(2.0)))
        return -0.5 * z * z - math.log(z * math.sqrt(2.0 * math.pi)) + math.log1p(-1.0 / (z * z))

    lo, hi = -40.0, 40.0
    while log_tail(hi) > target:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if log_tail(mid) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def lineage_for(policy: Policy, result: LineageResult) -> LineageResult:
    """`result` judged at the policy's α and reference agreement (the policy is the verifier's)."""
    for r in (result, result.heads) if result.heads is not None else (result,):
        r.alpha = policy.lineage_alpha
        r.reference_agreement = policy.lineage_reference
    return result


def decide_verdict(
    lineage: LineageResult | None,
    score: float,
    coverage: float,
    n_tokens: int,
    policy: Policy,
    ci: tuple[float, float] | None = None,
    forced: Sequence[str] = (),
) -> Decision:
    """The verdict from the lineage test (or the score alone, for a bundle without a payload)."""
    findings: list[str] = []
    if lineage is None:
        verdict, reasons = decide(score, coverage, n_tokens, policy, ci)
        findings.append(SCORE_ALONE_NOTE)
    else:
        lineage_for(policy, lineage)
        conclusion = lineage.conclusion
        reasons = lineage.reasons()
        if conclusion == LINEAGE:
            verdict = Verdict.MATCH
        elif conclusion == NO_LINEAGE:
            verdict = Verdict.NO_MATCH
        else:
            verdict = Verdict.INCONCLUSIVE
        heads_line = lineage.heads_finding()
        if heads_line is not None:
            findings.append(heads_line)
        if math.isfinite(score) and score >= policy.threshold and verdict != Verdict.MATCH:
            findings.append(
                f"the invariant score {score:.3f} is at or above {policy.threshold}: the models compute alike "
                f"(a shared tokenizer, training data or embeddings do that), which is not evidence of shared weights"
            )
    if forced:
        verdict = Verdict.INCONCLUSIVE
        reasons = list(reasons) + list(forced)
    return Decision(verdict, list(reasons), findings)
