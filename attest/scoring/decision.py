"""Turn a similarity score into a verdict under a documented policy (docs/calibration.md)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

from attest.errors import ExitCode, InputError


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

    threshold: float = 0.45
    no_match_below: float = 0.15
    min_coverage: float = 0.50
    min_tokens: int = 64
    # Null distribution of the aggregate score for unrelated models (docs/calibration.md).
    null_mean: float = 0.05
    null_std: float = 0.025
    # emb similarity above which the report says the token embeddings are related;
    # independent models of one tokenizer family reach 0.50, reused embeddings 0.82+.
    related_embeddings: float = 0.70
    # The lineage test (docs/lineage.md) decides the verdict where a bundle carries it:
    # a match needs its combined p-value at or below `lineage_alpha`; no_match needs
    # that an agreement of `lineage_reference` would have reached it (power).
    lineage_alpha: float = 1e-6
    lineage_reference: float = 0.2
    calibration: str = "attest-calibration/2026-12-02"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def problems(self) -> list[str]:
        """What makes this policy unusable (empty when it is sound)."""
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "calibration":
                if not isinstance(value, str):
                    out.append("calibration must be text")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                out.append(f"{f.name} must be a finite number")
        if out:
            return out
        if not 0.0 <= self.no_match_below <= self.threshold <= 1.0:
            out.append("need 0 <= no_match_below <= threshold <= 1")
        if not 0.0 <= self.min_coverage <= 1.0:
            out.append("min_coverage must lie in [0, 1]")
        if self.min_tokens < 8:
            out.append("min_tokens must be at least 8")
        if self.null_std <= 0:
            out.append("null_std must be positive")
        if not 0.0 < self.lineage_alpha < 1.0:
            out.append("lineage_alpha must lie in (0, 1)")
        if not 0.0 < self.lineage_reference <= 1.0:
            out.append("lineage_reference must lie in (0, 1]")
        return out

    def with_threshold(self, threshold: float) -> "Policy":
        """This policy with another match threshold (the no-match bound never above it)."""
        changed = replace(self, threshold=threshold, no_match_below=min(self.no_match_below, threshold))
        bad = changed.problems()
        if bad:
            raise InputError(f"--threshold {threshold}: {'; '.join(bad)}")
        return changed

    def differences(self, other: "Policy") -> list[str]:
        """Field names whose values differ (for flagging a bundle's recorded policy)."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], what: str = "policy") -> "Policy":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"{what}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        try:
            policy = cls(**{str(k): v for k, v in data.items()})
        except TypeError as exc:
            raise InputError(f"{what}: {exc}") from None
        bad = policy.problems()
        if bad:
            raise InputError(f"{what}: {'; '.join(bad)}")
        return policy

    @classmethod
    def from_file(cls, path: Path) -> "Policy":
        """A policy given with `--policy FILE`: a JSON object of Policy fields (others keep the shipped values)."""
        try:
            if path.stat().st_size > 64 * 1024:
                raise InputError(f"{path}: a policy file is a small JSON object; this one is over 64 KiB")
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"{path}: cannot read the policy: {exc}") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: a policy must be a JSON object")
        return cls.from_mapping({**DEFAULT_POLICY.to_dict(), **data}, what=str(path))


DEFAULT_POLICY = Policy()


def z_and_p(score: float, policy: Policy) -> tuple[float, float]:
    """z-score of the invariant score against its null and its one-sided p-value P(null score >= score).

    A finding beside the verdict: readers are shown the lineage test's z and p
    (`attest.scoring.lineage_verdict.z_of_p`) wherever a lineage test ran."""
    if not math.isfinite(score) or policy.null_std <= 0:
        return float("nan"), float("nan")
    z = (score - policy.null_mean) / policy.null_std
    return z, 0.5 * math.erfc(z / math.sqrt(2.0))


def decide(
    score: float, coverage: float, n_tokens: int, policy: Policy, ci: tuple[float, float] | None = None
) -> tuple[Verdict, list[str]]:
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
