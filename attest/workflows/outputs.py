"""What a verification leaves behind: the suspect's dog, the comparison sheet,
the signed evidence file and the HTML report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from attest.bundle.container import write_evidence
from attest.output.paths import atomic_write, check_distinct, check_output
from attest.render.base import get_renderer
from attest.render.sheet import comparison_sheet, png_bytes
from attest.workflows.evidence import evidence_body, now_utc
from attest.workflows.verify import Verification


@dataclass(frozen=True)
class VerificationOutputs:
    """Where `write_outputs` may write; checked before any computation starts."""

    evidence: Path | None = None
    report: Path | None = None
    sheet: Path | None = None
    force: bool = False

    def check(self) -> "VerificationOutputs":
        check_distinct([self.evidence, self.report, self.sheet])
        for path, what, suffixes in (
            (self.evidence, "--evidence", (".cbor", ".evidence")),
            (self.report, "--report", (".html", ".htm")),
            (self.sheet, "--sheet", (".png",)),
        ):
            if path is not None:
                check_output(path, what=what, suffixes=suffixes, force=self.force)
        return self


def sheet_bytes(v: Verification, result: dict[str, Any], suspect_name: str) -> bytes:
    """The comparison sheet (both dogs side by side, verdict, per-layer bars) as PNG bytes."""
    ci = tuple(result["ci"]) if result["score"] is not None else None
    img = comparison_sheet(
        v.base_latent,
        v.suspect_latent,
        verdict=v.verdict.value,
        score=v.score,
        ci=ci,
        per_layer=[(f"{row['a']}", row["mean"]) for row in result["layers"]],
        title=f"{v.signature['subject']} vs {suspect_name}",
        # Partial coverage: both dogs come from the covered sketch positions (Verification.dogs_note).
        base_label="Base model, covered tokens only" if v.dogs_note else "Base model (attested)",
    )
    return png_bytes(img)


def write_outputs(
    attestation: bytes,
    base_png: bytes,
    v: Verification,
    suspect_name: str,
    suspect_subject: Any,
    outputs: VerificationOutputs,
    *,
    signer: Ed25519PrivateKey | None = None,
    signer_name: str = "attest verifier",
) -> dict[str, Any]:
    """Write the requested artefacts; returns the JSON result (with their paths).

    Evidence is always signed: `signer` is the verifier's key (the API refuses
    to write evidence without one).
    """
    outputs.check()
    result = v.to_json()
    suspect_png = png_bytes(get_renderer().render(v.suspect_latent))
    sheet_png = None
    if outputs.sheet is not None or outputs.report is not None or outputs.evidence is not None:
        sheet_png = sheet_bytes(v, result, suspect_name)
        if outputs.sheet is not None:
            atomic_write(outputs.sheet, sheet_png)
            result["sheet"] = str(outputs.sheet)
    if outputs.evidence is not None:
        if signer is None:
            raise ValueError("evidence is always signed: pass the verifier's key")
        body = evidence_body(attestation, v, suspect_name, suspect_subject, result)
        write_evidence(
            outputs.evidence,
            body,
            base_png=base_png,
            suspect_png=suspect_png,
            sheet_png=sheet_png,
            key=signer,
            issuer=signer_name,
        )
        result["evidence"] = str(outputs.evidence)
    if outputs.report is not None:
        from attest.report.html import render_report

        result["time"] = now_utc()
        atomic_write(outputs.report, render_report(result, base_png, suspect_png, sheet_png).encode("utf-8"))
        result["report"] = str(outputs.report)
    return result
