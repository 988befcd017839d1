"""Identify evidence files: what `attest identify --evidence` archives (schemas/evidence.cddl).

One signed map records a 1:N answer: the suspect's subject, every registered
base as ranked (its subject root, bundle digest, trust-store identity, score,
p-values and verdict), the answer with every significant base, the policy and
the multiple-testing method.  The top candidates also carry their publisher's
bundle verbatim and the suspect's aligned sketch, exactly as a verify evidence
file does, so `inspect` can re-verify their signatures and recompute their
verdicts (attest.workflows.identify_outputs.recheck_identification).

The file is always a COSE_Sign1 by the verifier's key, with its own content
type, so it can never be mistaken for (or substituted as) verify evidence.
"""

from __future__ import annotations

import hashlib
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from attest.bundle.cbor_safe import canonical_dumps, safe_loads
from attest.bundle.container import (
    MAX_ATTESTATION_BYTES,
    MAX_EVIDENCE_BYTES,
    MAX_PNG_BYTES,
    OpenedAttestation,
    inspect_attestation,
    read_attestation,
)
from attest.bundle.cose import COSE_SIGN1_TAG, VerifiedSign1, parse_sign1, sign1, verify_parsed
from attest.bundle.png_safe import check_png
from attest.crypto.keys import TrustStore, key_id
from attest.errors import BundleError
from attest.output.paths import atomic_write

IDENTIFY_EVIDENCE_FORMAT = "attest-identify-evidence/1"
IDENTIFY_EVIDENCE_CONTENT_TYPE = "application/vnd.attest.identify-evidence+cbor"

# Bounds for a hostile file, checked before anything is allocated per entry:
# the ranking lists every registered base (small rows), the details only the top few.
MAX_RANKED = 100_000
MAX_DETAILS = 16
MAX_ITEMS = 4_000_000
MAX_DEPTH = 16
MAX_TEXT = 4096

_KEYS = frozenset(
    {"format", "suspect", "registry", "ranking", "answer", "multiple_testing", "policy", "details", "tool", "time"}
)
_BODY_KEYS = _KEYS - {"format"}
_DETAIL_KEYS = frozenset({"attestation", "suspect", "results", "images"})
_ROW_TEXT = ("name", "subject_root", "bundle_sha256", "verdict")


@dataclass(frozen=True)
class OpenedDetail:
    """One top candidate: its bundle re-verified, and what the verifier recorded about it."""

    attestation: OpenedAttestation
    suspect: Mapping[str, Any]
    results: Mapping[str, Any]
    images: Mapping[str, bytes]
    row: Mapping[str, Any]  # its row in the ranking


@dataclass(frozen=True)
class OpenedIdentifyEvidence:
    body: Mapping[str, Any]
    details: list[OpenedDetail]
    signed: VerifiedSign1
    raw: bytes


def signed_content_type(raw: bytes) -> str | None:
    """The content type of a COSE_Sign1 file (structure checked, signature not), or None for anything else."""
    if raw[:1] != bytes([0xC0 | COSE_SIGN1_TAG]):
        return None
    try:
        return parse_sign1(raw, max_size=MAX_EVIDENCE_BYTES + 4096, what="evidence signature").content_type
    except BundleError:
        return None


def _fail(msg: str) -> BundleError:
    return BundleError(f"identify evidence: {msg}")


def _text(x: Any, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(x, str) or len(x) > limit:
        raise _fail(f"{what} must be a text of at most {limit} characters")
    return x


def _check_row(row: Any, k: int) -> Mapping[str, Any]:
    if not isinstance(row, Mapping):
        raise _fail(f"ranking row {k} must be a map")
    for key in _ROW_TEXT:
        _text(row.get(key), f"ranking row {k}: {key}")
    rank = row.get("rank")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank != k + 1:
        raise _fail(f"ranking row {k}: rank must be {k + 1}")
    for key in ("score", "p_value", "p_holm"):
        v = row.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise _fail(f"ranking row {k}: {key} must be a number or null")
    return row


def _check_images(images: Any, what: str) -> Mapping[str, bytes]:
    if not isinstance(images, Mapping) or not {"base", "suspect"} <= set(images) <= {"base", "suspect", "sheet"}:
        raise _fail(f"{what}: images must hold base, suspect and optionally sheet")
    for name, png in images.items():
        if not isinstance(png, bytes) or len(png) > MAX_PNG_BYTES:
            raise _fail(f"{what}: image {name} must be at most {MAX_PNG_BYTES} bytes")
        check_png(png, what=f"identify evidence {what} image {name}")
    return images


def _check(ev: Any) -> Mapping[str, Any]:
    if not isinstance(ev, Mapping) or set(ev) != _KEYS:
        raise _fail(f"expected a map with exactly the keys {sorted(_KEYS)}")
    if ev["format"] != IDENTIFY_EVIDENCE_FORMAT:
        raise _fail(f"format must be {IDENTIFY_EVIDENCE_FORMAT!r}, got {ev['format']!r}")
    for key in ("suspect", "registry", "answer", "multiple_testing", "policy", "tool"):
        if not isinstance(ev[key], Mapping):
            raise _fail(f"{key} must be a map")
    _text(ev["time"], "time", 64)
    ranking, details = ev["ranking"], ev["details"]
    if not isinstance(ranking, (list, tuple)) or len(ranking) > MAX_RANKED:
        raise _fail(f"ranking must be a list of at most {MAX_RANKED} rows")
    bases = ev["registry"].get("bases")
    if isinstance(bases, bool) or not isinstance(bases, int) or bases != len(ranking):
        raise _fail("registry.bases must equal the number of ranked bases")
    for k, row in enumerate(ranking):
        _check_row(row, k)
    if not isinstance(details, (list, tuple)) or len(details) > MAX_DETAILS:
        raise _fail(f"details must be a list of at most {MAX_DETAILS} entries")
    for k, d in enumerate(details):
        if not isinstance(d, Mapping) or set(d) != _DETAIL_KEYS:
            raise _fail(f"detail {k} must be a map with exactly the keys {sorted(_DETAIL_KEYS)}")
        if not isinstance(d["attestation"], bytes) or len(d["attestation"]) > MAX_ATTESTATION_BYTES:
            raise _fail(f"detail {k}: attestation must be a byte string of at most {MAX_ATTESTATION_BYTES} bytes")
        if not isinstance(d["suspect"], Mapping) or not isinstance(d["results"], Mapping):
            raise _fail(f"detail {k}: suspect and results must be maps")
        _check_images(d["images"], f"detail {k}")
    return ev


def _row_for(ranking: Any, bundle_sha256: str) -> Mapping[str, Any]:
    rows = [r for r in ranking if r["bundle_sha256"] == bundle_sha256]
    if len(rows) != 1:
        raise _fail(f"a detailed bundle {bundle_sha256[:16]}… is not exactly one row of the ranking")
    return rows[0]


def write_identify_evidence(
    path: Path, body: Mapping[str, Any], *, key: Ed25519PrivateKey, issuer: str, subject: str
) -> bytes:
    """Sign and write an identify evidence file; `body` holds every key but "format"."""
    if set(body) != _BODY_KEYS:
        raise _fail(f"body needs exactly {sorted(_BODY_KEYS)}")
    evidence = dict(body, format=IDENTIFY_EVIDENCE_FORMAT)
    _check(evidence)
    for k, d in enumerate(evidence["details"]):
        inner = inspect_attestation(d["attestation"])  # well formed; its signature is re-checked on reading
        if d["images"]["base"] != inner.png:
            raise _fail(f"detail {k}: base image is not the publisher's image")
        _row_for(evidence["ranking"], hashlib.sha256(d["attestation"]).hexdigest())
    payload = canonical_dumps(evidence)
    if len(payload) > MAX_EVIDENCE_BYTES:
        raise _fail(f"{len(payload)} bytes is more than the {MAX_EVIDENCE_BYTES} a reader accepts (fewer --top?)")
    data = sign1(
        payload,
        key,
        kid=key_id(key.public_key()),
        issuer=issuer,
        subject=subject,
        iat=int(_time.time()),
        content_type=IDENTIFY_EVIDENCE_CONTENT_TYPE,
    )
    atomic_write(Path(path), data)
    return data


def read_identify_evidence(data: bytes, trust: TrustStore, *, verifier_trust: TrustStore) -> OpenedIdentifyEvidence:
    """Open an identify evidence file: the verifier's signature (required), then every detailed bundle's.

    `trust` holds publisher keys, `verifier_trust` verifier keys.  Each detailed
    bundle must be the one its ranking row names (digest and subject root).
    """
    data = bytes(data)
    if data[:1] != bytes([0xC0 | COSE_SIGN1_TAG]):
        raise _fail("not signed (identify evidence is always signed by its verifier)")
    parsed = parse_sign1(data, max_size=MAX_EVIDENCE_BYTES + 4096, what="identify evidence signature")
    if parsed.content_type != IDENTIFY_EVIDENCE_CONTENT_TYPE:
        raise _fail(f"content type {parsed.content_type!r} is not {IDENTIFY_EVIDENCE_CONTENT_TYPE!r}")
    signed = verify_parsed(parsed, verifier_trust, what="identify evidence signature")
    ev = _check(
        safe_loads(
            signed.payload,
            max_size=MAX_EVIDENCE_BYTES,
            max_depth=MAX_DEPTH,
            max_items=MAX_ITEMS,
            what="identify evidence",
        )
    )
    details: list[OpenedDetail] = []
    for k, d in enumerate(ev["details"]):
        try:
            att = read_attestation(d["attestation"], trust)
        except BundleError as exc:
            raise _fail(f"detail {k}: {exc}") from None
        if d["images"]["base"] != att.png:
            raise _fail(f"detail {k}: base image is not the publisher's image")
        row = _row_for(ev["ranking"], hashlib.sha256(d["attestation"]).hexdigest())
        details.append(OpenedDetail(att, d["suspect"], d["results"], d["images"], row))
    return OpenedIdentifyEvidence(body=ev, details=details, signed=signed, raw=data)
