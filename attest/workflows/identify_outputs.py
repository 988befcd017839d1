"""What `identify` leaves behind: the signed identify evidence file and the HTML report.

Both are built from the `Identification` the verifier computed, whose every
entry was re-derived from a bundle whose signature verified (never from the
registry index or a file's claims).  The evidence lists every registered base
as ranked; the first `top` candidates (and every significant one) also carry
their bundle verbatim and the suspect's aligned sketch, as verify evidence
does, so `recheck_identification` can recompute their verdicts, the
Holm-adjusted p-values over all N and the answer (docs/registry.md).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from attest import __version__
from attest.bundle.container import OpenedEvidence
from attest.bundle.identify_evidence import MAX_DETAILS, OpenedIdentifyEvidence, write_identify_evidence
from attest.crypto.keys import TrustStore
from attest.errors import BundleError
from attest.output.paths import atomic_write, check_distinct, check_output
from attest.registry.entry import Entry, entry_from_bundle
from attest.registry.store import Registry
from attest.render.base import get_renderer
from attest.render.sheet import png_bytes
from attest.scoring.decision import Verdict
from attest.workflows.evidence import EvidenceCheck, cbor_safe, evidence_body, now_utc, recheck, same_value
from attest.workflows.identify import (
    DEFAULT_TOP,
    Candidate,
    CandidateEvidence,
    Identification,
    decide_answer,
    holm,
    significant,
)
from attest.workflows.outputs import sheet_bytes
from attest.workflows.verify import plain

MULTIPLE_TESTING = "holm-bonferroni"
_ROW_REASONS = 4  # reasons kept per ranked base (the details keep them all)


@dataclass(frozen=True)
class IdentifyOutputs:
    """Where `write_identify_outputs` may write; checked before any computation starts."""

    evidence: Path | None = None
    report: Path | None = None
    force: bool = False

    @property
    def any(self) -> bool:
        return self.evidence is not None or self.report is not None

    def check(self) -> "IdentifyOutputs":
        check_distinct([self.evidence, self.report])
        for path, what, suffixes in (
            (self.evidence, "--evidence", (".cbor", ".evidence")),
            (self.report, "--report", (".html", ".htm")),
        ):
            if path is not None:
                check_output(path, what=what, suffixes=suffixes, force=self.force)
        return self


def detail_count(top: int) -> int:
    """How many ranked candidates get a detail record (significant ones always do, up to the reader's bound)."""
    return max(1, min(int(top), MAX_DETAILS))


def ranking_row(c: Candidate) -> dict[str, Any]:
    """One ranked base as the evidence records it (small: every one of the N is listed)."""
    full = c.to_json()
    keep = (
        "rank",
        "name",
        "model_name",
        "issuer",
        "signed_by",
        "kid",
        "subject_root",
        "bundle_sha256",
        "family",
        "verdict",
        "score",
        "p_value",
        "p_holm",
        "lineage_p_value",
        "agreement",
        "coverage",
        "comparable",
        "subject_match",
    )
    row = {k: full.get(k) for k in keep}
    row["reasons"] = [str(r) for r in c.evidence.reasons[:_ROW_REASONS]]
    return row


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("name", "subject_root", "bundle_sha256", "signed_by", "p_holm", "score")}


def identification_record(ident: Identification, suspect_name: str) -> dict[str, Any]:
    """The answer, the ranking of all N and the facts around them (the evidence's and the report's numbers)."""
    rows = [ranking_row(c) for c in ident.candidates]
    by_rank = {r["rank"]: r for r in rows}
    base = by_rank[ident.base.rank] if ident.base is not None else None
    policy = next((c.verification.policy.to_dict() for c in ident.candidates if c.verification is not None), {})
    return {
        "suspect": {
            "path_name": suspect_name,
            "subject": plain(ident.suspect_subject),
            "model": plain(ident.suspect_model),
        },
        "registry": {"bases": ident.n_bases, "comparable": sum(c.comparable for c in ident.candidates)},
        "ranking": rows,
        "answer": {
            "verdict": ident.verdict.value,
            "base": _summary(base) if base is not None else None,
            "also": [_summary(by_rank[c.rank]) for c in ident.also],
            "reasons": list(ident.reasons),
        },
        "multiple_testing": {"method": MULTIPLE_TESTING, "alpha": ident.alpha, "tests": ident.n_bases},
        "policy": plain(policy),
        "evidence_kind": ident.evidence_name,
    }


def _detailed(ident: Identification, top: int) -> list[Candidate]:
    wanted = ident.candidates[: detail_count(top)] + [c for c in significant(ident.candidates, ident.alpha)]
    out: list[Candidate] = []
    for c in wanted:  # by identity: a Candidate holds arrays, so == would not do
        if all(c is not o for o in out) and c.verification is not None and c.verification.suspect_values.size:
            out.append(c)
    return out[:MAX_DETAILS]


def write_identify_outputs(
    ident: Identification,
    registry: Registry,
    trust: TrustStore,
    suspect_name: str,
    outputs: IdentifyOutputs,
    *,
    top: int = DEFAULT_TOP,
    signer: Ed25519PrivateKey | None = None,
    signer_name: str = "attest verifier",
) -> dict[str, str]:
    """Write the requested artefacts; returns their paths (and the time) by name.

    `ident` must come from `identify(..., detail=detail_count(top))`, so the
    top candidates still hold their aligned sketch.
    """
    outputs.check()
    record = identification_record(ident, suspect_name)
    renderer = get_renderer()
    details: list[dict[str, Any]] = []
    dogs: list[tuple[dict[str, Any], bytes, bytes]] = []
    for c in _detailed(ident, top):
        v = c.verification
        assert v is not None
        opened = registry.read_bundle(c.entry, trust)  # the digest the verified entry was derived from
        if hashlib.sha256(opened.raw).hexdigest() != c.entry.bundle_sha256:
            raise BundleError(f"registered bundle {c.entry.name!r} changed while identify ran")
        result = v.to_json()
        body = evidence_body(opened.raw, v, suspect_name, ident.suspect_subject, result)
        suspect_png = png_bytes(renderer.render(v.suspect_latent))
        details.append(
            {
                "attestation": body["attestation"],
                "suspect": body["suspect"],
                "results": body["results"],
                "images": {"base": opened.png, "suspect": suspect_png, "sheet": sheet_bytes(v, result, suspect_name)},
            }
        )
        # The report's dogs: the base's from its bundle latent (the covered positions only when the
        # suspect lacks some probe tokens, as verify draws them) beside the suspect's.
        row = next(r for r in record["ranking"] if r["rank"] == c.rank)
        dogs.append((row, png_bytes(renderer.render(v.base_latent)), suspect_png))
    written: dict[str, str] = {"time": now_utc()}
    if outputs.evidence is not None:
        if signer is None:
            raise ValueError("identify evidence is always signed: pass the verifier's key")
        body = {k: v for k, v in record.items() if k != "evidence_kind"}
        body["multiple_testing"] = dict(body["multiple_testing"], evidence=record["evidence_kind"])
        root = (
            (record["suspect"]["subject"] or {}).get("root") if isinstance(record["suspect"]["subject"], dict) else None
        )
        write_identify_evidence(
            outputs.evidence,
            {
                **cbor_safe(body),
                "details": details,
                "tool": {"name": "attest", "version": __version__},
                "time": written["time"],
            },
            key=signer,
            issuer=signer_name,
            subject=f"identify:{root or suspect_name}",
        )
        written["evidence"] = str(outputs.evidence)
    if outputs.report is not None:
        from attest.report.identify_html import render_identify_report

        page = render_identify_report({**record, "tool_version": __version__, "time": written["time"]}, dogs)
        atomic_write(outputs.report, page.encode("utf-8"))
        written["report"] = str(outputs.report)
    return written


# -- re-checking ---------------------------------------------------------------------------


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def _row_candidate(row: Any) -> Candidate:
    """A ranked row as a Candidate, so the answer is re-derived by the very function identify used."""
    entry = Entry(
        subject_root=str(row["subject_root"]),
        bundle_sha256=str(row["bundle_sha256"]),
        bundle_bytes=0,
        name=str(row["name"]),
        model_name=str(row.get("model_name") or ""),
        issuer=str(row.get("issuer") or ""),
        kid=str(row.get("kid") or ""),
        iat=0,
        family=str(row.get("family") or ""),
        layers=0,
        hidden=0,
        vocab=0,
        parameters=0,
        method="",
        n_tokens=0,
        token_mode="",
        n_cells=0,
        n_pairs=0,
    )
    try:
        verdict = Verdict(row["verdict"])
    except ValueError:
        raise BundleError(f"identify evidence: ranking row {row['name']!r} has an unknown verdict") from None
    reasons = [str(r) for r in row.get("reasons") or []][:_ROW_REASONS]
    ev = CandidateEvidence(_num(row.get("score")), _num(row.get("p_value")), verdict, reasons)
    return Candidate(
        entry, None, ev, p_holm=_num(row.get("p_holm")), rank=int(row["rank"]), comparable=row.get("comparable") is True
    )


def recheck_identification(ev: OpenedIdentifyEvidence) -> EvidenceCheck:
    """Recompute what an identify evidence file claims from what it holds.

    - every detailed candidate's verdict, score and p-values from its archived
      sketches and policy (verify evidence's `recheck`), and its ranking row
      must carry the same figures, subject root and digest as its bundle;
    - the Holm-adjusted p-values from the N recorded p-values;
    - the ranking order, and the answer (verdict, base, every significant base)
      from the rows, by the function identify decided with;
    - every base the answer names must be detailed (its figures recomputed).

    Rows of bases that are not detailed are the verifier's signed record, not
    recomputed: that would need the suspect's sketch for all N bundles.
    """
    body = ev.body
    ranking = list(body["ranking"])
    differences: list[str] = []
    detailed: set[str] = set()
    for d in ev.details:
        name = str(d.row["name"])
        detailed.add(str(d.row["bundle_sha256"]))
        fresh = entry_from_bundle(d.attestation, f"detail {name!r}")
        if fresh.subject_root != d.row["subject_root"] or fresh.name != d.row["name"]:
            differences.append(f"{name}: the ranking row names another subject than its bundle")
        if d.row.get("signed_by") != d.attestation.verified.signer:
            differences.append(
                f"{name}: recorded signer {d.row.get('signed_by')!r}, the trust store names {d.attestation.verified.signer!r}"
            )
        check = recheck(
            OpenedEvidence(
                body={"suspect": d.suspect, "results": d.results},
                attestation=d.attestation,
                images=d.images,
                signed=None,
                raw=b"",
            )
        )
        if check.reason:
            differences.append(f"{name}: cannot be recomputed: {check.reason}")
        differences.extend(f"{name}: {x}" for x in check.differences)
        for key in ("verdict", "score", "p_value"):
            if key in check.recomputed and not same_value(d.row.get(key), check.recomputed[key]):
                differences.append(f"{name}: ranking {key} {d.row.get(key)!r}, recomputed {check.recomputed[key]!r}")
    candidates = [_row_candidate(r) for r in ranking]
    adjusted = holm([c.evidence.p_value for c in candidates])
    for c, adj in zip(candidates, adjusted):
        if not same_value(c.p_holm, adj):
            differences.append(f"{c.entry.name}: p_holm recorded {c.p_holm!r}, recomputed {adj!r}")
        c.p_holm = adj
    order = sorted(
        candidates,
        key=lambda c: (
            c.p_holm,
            -(c.evidence.score if math.isfinite(c.evidence.score) else -math.inf),
            c.entry.name,
            c.entry.subject_root,
        ),
    )
    if [c.rank for c in order] != [c.rank for c in candidates]:
        differences.append("ranking: the rows are not in the order identify ranks them")
    mt = body["multiple_testing"]
    alpha = _num(mt.get("alpha"))
    if mt.get("method") != MULTIPLE_TESTING or mt.get("tests") != len(ranking) or not 0 < alpha <= 0.5:
        differences.append(
            f"multiple_testing: expected {MULTIPLE_TESTING} over {len(ranking)} tests with 0 < alpha <= 0.5"
        )
    verdict, base, _reasons = decide_answer(order, alpha if math.isfinite(alpha) else 0.0)
    also = [c for c in significant(order, alpha) if c is not base] if base is not None else []
    answer = body["answer"]
    recomputed: dict[str, Any] = {
        "verdict": verdict.value,
        "base": base.entry.name if base is not None else None,
        "also": [c.entry.name for c in also],
        "p_holm": adjusted,
        "details": len(ev.details),
    }
    recorded_base = answer.get("base")
    recorded_base_name = recorded_base.get("name") if isinstance(recorded_base, dict) else None
    recorded_also = [a.get("name") for a in answer.get("also") or [] if isinstance(a, dict)]
    if answer.get("verdict") != recomputed["verdict"]:
        differences.append(f"answer.verdict: recorded {answer.get('verdict')!r}, recomputed {verdict.value!r}")
    if recorded_base_name != recomputed["base"]:
        differences.append(f"answer.base: recorded {recorded_base_name!r}, recomputed {recomputed['base']!r}")
    if recorded_also != recomputed["also"]:
        differences.append(f"answer.also: recorded {recorded_also!r}, recomputed {recomputed['also']!r}")
    for c in ([base] if base is not None else []) + also:
        if c.entry.bundle_sha256 not in detailed:
            differences.append(f"{c.entry.name}: named by the answer but not detailed, so not recomputed")
    return EvidenceCheck(recomputed, differences)
