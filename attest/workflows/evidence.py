"""Evidence files: what `verify` archives, and how `inspect` re-derives its verdict.

An evidence file carries the publisher's attestation verbatim, the suspect's
sketch values aligned to the publisher's cells, which probe tokens the suspect
covered, which cells were matched, the policy applied and the results.  The
results are a claim; `recheck` recomputes them from the sketches and the policy
(with the same function `verify` decided with) and lists every difference, so
an edited verdict or score is caught even where no signature covers it.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attest import __version__
from attest.bundle.container import OpenedEvidence
from attest.errors import BundleError
from attest.lineage.result import LineageResult
from attest.scoring.decision import Policy, z_and_p
from attest.scoring.lineage_verdict import z_of_p
from attest.scoring.sketch_verdict import sketch_verdict
from attest.sketch.statement import StatementView
from attest.workflows.verify import Verification

# Suspect sketches are archived in float32, the precision `verify` decided in,
# so that a recomputation is exact rather than within a tolerance.
SUSPECT_SKETCH_DTYPE = "float32"
_RECHECKED = ("verdict", "score", "ci", "coverage", "tokens_covered", "pairs_used", "p_value", "z")


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def cbor_safe(obj: Any) -> Any:
    """JSON results as CBOR-friendly data: no NaN, text keys, lists."""
    if isinstance(obj, dict):
        return {str(k): cbor_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [cbor_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def evidence_body(
    attestation: bytes, v: Verification, suspect_name: str, suspect_subject: Any, results: Mapping[str, Any]
) -> dict[str, Any]:
    """The map `write_evidence` signs: everything `recheck` needs to redo the decision."""
    values = np.ascontiguousarray(v.suspect_values, dtype="<f4")
    return {
        "attestation": attestation,
        "suspect": {
            "path_name": suspect_name,
            "subject": suspect_subject,
            "model": v.suspect_model,
            "sketch": {"dtype": SUSPECT_SKETCH_DTYPE, "shape": list(values.shape), "data": values.tobytes()},
            "covered": np.packbits(v.covered.astype(np.uint8)).tobytes(),
            "matched_cells": [int(i) for i in v.matched_cells],
            "incomplete_layers": int(v.incomplete_layers),
            "suspect_layers": int(v.suspect_layers),
            "forced_inconclusive": [str(r) for r in v.forced_inconclusive],
            # Per-layer lineage counts (attest.lineage.result.LineageResult.record): `recheck`
            # recomputes the combined p, the conclusion and the verdict from them.
            "lineage": v.lineage.record() if v.lineage is not None else None,
        },
        "results": cbor_safe(dict(results)),
        "tool": {"name": "attest", "version": __version__},
        "time": now_utc(),
    }


@dataclass
class EvidenceCheck:
    """The outcome of recomputing an evidence file's verdict from its sketches."""

    recomputed: dict[str, Any]
    differences: list[str] = field(default_factory=list)
    reason: str | None = None  # why no recomputation was possible

    @property
    def ok(self) -> bool:
        return self.reason is None and not self.differences

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "recomputed": cbor_safe(self.recomputed),
            "differences": self.differences,
            "reason": self.reason,
        }


def same_value(a: Any, b: Any) -> bool:
    """Equal as recorded values: lists element by element, numbers (bools aside) within 1e-12, the rest by ==; NaN never equals."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if (
        isinstance(a, (int, float))
        and isinstance(b, (int, float))
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-12)
    return bool(a == b)


def recheck(ev: OpenedEvidence) -> EvidenceCheck:
    """Recompute verdict and score from the sketches and the evidence's recorded policy."""
    suspect, results = ev.body["suspect"], ev.body["results"]
    needed = ("sketch", "covered", "matched_cells", "incomplete_layers", "suspect_layers")
    if not all(k in suspect for k in needed):
        return EvidenceCheck({}, reason="this evidence predates recomputable evidence (no coverage record)")
    view = StatementView.parse(ev.attestation.document)
    n_cells, m = view.values.shape
    sk = suspect["sketch"]
    if (
        not isinstance(sk, Mapping)
        or sk.get("dtype") != SUSPECT_SKETCH_DTYPE
        or list(sk.get("shape", [])) != [n_cells, m]
    ):
        raise BundleError("evidence: suspect sketch does not match the attestation's sketch shape")
    data = sk.get("data")
    covered_raw = suspect["covered"]
    matched = suspect["matched_cells"]
    if not isinstance(data, bytes) or len(data) != 4 * n_cells * m:
        raise BundleError("evidence: suspect sketch data has the wrong size")
    n_tokens = len(view.tokens)
    if not isinstance(covered_raw, bytes) or len(covered_raw) != (n_tokens + 7) // 8:
        raise BundleError("evidence: coverage record has the wrong size")
    if (
        not isinstance(matched, (list, tuple))
        or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_cells for i in matched)
        or len(set(matched)) != len(matched)
    ):
        raise BundleError("evidence: matched cells must be distinct cell indices")
    counts = [suspect[k] for k in ("incomplete_layers", "suspect_layers")]
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 1_000_000 for c in counts):
        raise BundleError("evidence: layer counts must be small non-negative integers")
    forced = suspect.get("forced_inconclusive", [])
    if (
        not isinstance(forced, (list, tuple))
        or len(forced) > 64
        or not all(isinstance(r, str) and len(r) <= 4096 for r in forced)
    ):
        raise BundleError("evidence: forced_inconclusive must be a short list of short texts")
    policy_doc = results.get("policy")
    if not isinstance(policy_doc, Mapping):
        raise BundleError("evidence: results carry no policy")
    try:
        policy = Policy.from_mapping(policy_doc, what="evidence policy")
    except Exception as exc:  # an InputError here is a property of the file, not of the caller
        raise BundleError(str(exc)) from None
    values = np.frombuffer(data, dtype="<f4").reshape(n_cells, m).astype(np.float32)
    if not np.isfinite(values).all():
        raise BundleError("evidence: suspect sketch holds non-finite values")
    covered = np.unpackbits(np.frombuffer(covered_raw, dtype=np.uint8))[:n_tokens].astype(bool)
    valid = covered[view.pairs[:, 0]] & covered[view.pairs[:, 1]]
    tokens_covered = int(covered.sum())
    coverage = tokens_covered / n_tokens
    recomputed: dict[str, Any] = {"coverage": coverage, "tokens_covered": tokens_covered}
    lineage: LineageResult | None = None
    lineage_missing = False
    record = suspect.get("lineage")
    if record is not None:
        if view.lineage is None:
            raise BundleError("evidence: a lineage record for an attestation that carries no lineage payload")
        try:
            lineage = LineageResult.from_record(record, policy.lineage_alpha, policy.lineage_reference)
        except ValueError as exc:
            raise BundleError(f"evidence: {exc}") from None
    elif view.lineage is not None and matched:
        lineage_missing = True
    if matched:
        decided = sketch_verdict(
            view.values,
            values,
            valid,
            list(matched),
            coverage=coverage,
            tokens_covered=tokens_covered,
            policy=policy,
            incomplete_layers=counts[0],
            suspect_layers=counts[1],
            forced_inconclusive=forced,
            lineage=lineage,
        )
        est = decided.estimate
        if lineage is not None:
            p, z = lineage.p_value, z_of_p(lineage.p_value)
        else:
            z, p = z_and_p(est.score, policy)
        recomputed.update(
            verdict=decided.verdict.value,
            score=cbor_safe(est.score),
            ci=cbor_safe(list(est.ci)),
            pairs_used=int(valid.sum()),
            p_value=cbor_safe(p),
            z=cbor_safe(z),
        )
        if lineage is not None:
            recomputed["lineage"] = {"p_value": lineage.p_value, "conclusion": lineage.conclusion}
    differences = [
        f"{k}: recorded {results.get(k)!r}, recomputed {recomputed[k]!r}"
        for k in _RECHECKED
        if k in recomputed and not same_value(results.get(k), recomputed[k])
    ]
    recorded_lineage = results.get("lineage")
    if "lineage" in recomputed:
        for k in ("p_value", "conclusion"):
            was = recorded_lineage.get(k) if isinstance(recorded_lineage, Mapping) else None
            if not same_value(was, recomputed["lineage"][k]):
                differences.append(f"lineage.{k}: recorded {was!r}, recomputed {recomputed['lineage'][k]!r}")
    elif recorded_lineage is not None:
        differences.append("lineage: recorded a lineage result with no lineage counts to recompute it from")
    if lineage_missing:
        differences.append("lineage: the attestation carries a lineage payload but the evidence has no lineage counts")
    if not matched and results.get("verdict") != "inconclusive":
        differences.append(f"verdict: recorded {results.get('verdict')!r} with no matched cells")
    return EvidenceCheck(recomputed, differences)
