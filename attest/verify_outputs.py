"""What a verification leaves behind: the suspect's dog, the comparison sheet,
the evidence bundle and the HTML report."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from attest import __version__
from attest.bundle.container import write_evidence
from attest.render.base import get_renderer
from attest.render.sheet import comparison_sheet, png_bytes
from attest.verify import Verification


def _cbor_safe(obj: Any) -> Any:
    """JSON results as CBOR-friendly data: no NaN, text keys, lists."""
    if isinstance(obj, dict):
        return {str(k): _cbor_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_cbor_safe(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def write_outputs(
    attestation: bytes,
    base_png: bytes,
    v: Verification,
    suspect_name: str,
    suspect_subject: Any,
    *,
    evidence: Path | None = None,
    report: Path | None = None,
    sheet: Path | None = None,
    signer: Ed25519PrivateKey | None = None,
) -> dict[str, Any]:
    """Write the requested artefacts; returns the JSON result (with their paths)."""
    result = v.to_json()
    suspect_png = png_bytes(get_renderer().render(v.suspect_latent))
    sheet_png = None
    if sheet is not None or report is not None or evidence is not None:
        ci = tuple(result["ci"]) if result["score"] is not None else None
        img = comparison_sheet(v.base_latent, v.suspect_latent, verdict=v.verdict.value, score=v.score, ci=ci,
                               per_layer=[(f"{row['a']}", row["mean"]) for row in result["layers"]],
                               title=f"{v.signature['subject']} vs {suspect_name}")
        sheet_png = png_bytes(img)
        if sheet is not None:
            sheet.write_bytes(sheet_png)
            result["sheet"] = str(sheet)
    if evidence is not None:
        body = {
            "attestation": attestation,
            "suspect": {"path_name": suspect_name, "subject": suspect_subject, "model": v.suspect_model,
                        "sketch": {"dtype": "float16", "shape": list(v.suspect_values.shape),
                                   "data": v.suspect_values.astype("<f2").tobytes()}},
            "results": _cbor_safe(result),
            "tool": {"name": "attest", "version": __version__},
            "time": now_utc(),
        }
        write_evidence(evidence, body, base_png=base_png, suspect_png=suspect_png, sheet_png=sheet_png, key=signer)
        result["evidence"] = str(evidence)
    if report is not None:
        from attest.report.html import render_report

        result["time"] = now_utc()
        report.write_text(render_report(result, base_png, suspect_png, sheet_png), encoding="utf-8")
        result["report"] = str(report)
    return result
