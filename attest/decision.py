"""Turn a similarity score into a verdict under a documented policy (DESIGN §9)."""

from __future__ import annotations

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

    threshold: float = 0.30
    no_match_below: float = 0.15
    min_coverage: float = 0.50
    min_tokens: int = 64
    calibration: str = "provisional-2026-11"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


DEFAULT_POLICY = Policy()


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
