"""Turn a similarity score into a verdict under a documented policy (DESIGN §9)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum

from attest.errors import ExitCode


class Verdict(str, Enum):
    MATCH = "match"
    NO_MATCH = "no_match"
    INCONCLUSIVE = "inconclusive"

    @property
    def exit_code(self) -> ExitCode:
        return {
            Verdict.MATCH: ExitCode.MATCH,
            Verdict.NO_MATCH: ExitCode.NO_MATCH,
            Verdict.INCONCLUSIVE: ExitCode.INCONCLUSIVE,
        }[self]


@dataclass(frozen=True)
class Policy:
    """Decision rule.  Scores at or above `threshold` match; below `no_match_below`
    they do not; in between, or with too little token coverage, the answer is
    inconclusive.  See docs/method.md and docs/calibration.md for the numbers."""

    threshold: float = 0.35
    no_match_below: float = 0.15
    min_coverage: float = 0.50
    min_tokens: int = 64
    # Null distribution of the aggregate score for unrelated models (docs/calibration.md).
    null_mean: float = 0.05
    null_std: float = 0.025
    # emb similarity above which the report says the token embeddings are related;
    # independent models of one tokenizer family reach 0.50, reused embeddings 0.82+.
    related_embeddings: float = 0.70
    calibration: str = "attest-calibration/2026-11-27"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


DEFAULT_POLICY = Policy()


def z_and_p(score: float, policy: Policy) -> tuple[float, float]:
    """z-score against the null and its one-sided p-value P(null score >= score)."""
    if not math.isfinite(score) or policy.null_std <= 0:
        return float("nan"), float("nan")
    z = (score - policy.null_mean) / policy.null_std
    return z, 0.5 * math.erfc(z / math.sqrt(2.0))


def decide(score: float, coverage: float, n_tokens: int, policy: Policy, ci: tuple[float, float] | None = None) -> tuple[Verdict, list[str]]:
    reasons: list[str] = []
    if coverage < policy.min_coverage or n_tokens < policy.min_tokens:
        reasons.append(
            f"token coverage {coverage:.0%} ({n_tokens} tokens) is below the policy minimum "
            f"({policy.min_coverage:.0%}, {policy.min_tokens} tokens)"
        )
        return Verdict.INCONCLUSIVE, reasons
    lo, hi = ci if ci is not None else (score, score)
    if score >= policy.threshold and lo >= policy.no_match_below:
        return Verdict.MATCH, reasons
    if score < policy.no_match_below and hi < policy.threshold:
        return Verdict.NO_MATCH, reasons
    reasons.append(
        f"score {score:.3f} lies between the no-match bound {policy.no_match_below} "
        f"and the match threshold {policy.threshold}"
    )
    return Verdict.INCONCLUSIVE, reasons
