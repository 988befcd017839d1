"""The `.attest` file, the statement document inside it, and evidence files.

``.attest`` (one canonical CBOR map, text keys)::

    {"format": "attest-bundle/1",
     "statement": bstr,                        ; tagged COSE_Sign1, payload = document
     "image": {"media_type": "image/png", "data": bstr},
     "receipts": [* bstr], "timestamps": [* bstr]}

Only the statement is signed.  The PNG is bound to it by its SHA-256 inside
the signed document; receipts and timestamps are unsigned room for a
transparency service or a timestamp authority: they are size-limited but
never read when deciding anything.

Evidence (`verify --evidence`) is another canonical map that embeds the
publisher's ``.attest`` verbatim; it may be wrapped in a COSE_Sign1 signed by
the verifier.  Schemas: schemas/attestation.cddl, schemas/evidence.cddl.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from attest.bundle.cbor_safe import canonical_dumps, is_array, safe_loads
from attest.bundle.core_schema import check_core_document
from attest.bundle.cose import (
    COSE_SIGN1_TAG,
    MAX_STATEMENT_BYTES,
    ParsedSign1,
    VerifiedSign1,
    parse_sign1,
    sign1,
    verify_parsed,
)
from attest.bundle.png_safe import check_png
from attest.crypto.keys import TrustStore, key_id
from attest.errors import BundleError, InputError
from attest.formats import (
    ATTESTATION_FORMAT,
    EVIDENCE_FORMAT,
    LATENT_DIM,
    STATEMENT_FORMAT,
    STATEMENT_FORMAT_V1,
    STATEMENT_FORMATS,
)
from attest.limits import MAX_PROBE_TOKENS
from attest.output.paths import atomic_write

__all__ = [
    "ATTESTATION_FORMAT",
    "STATEMENT_FORMAT",
    "EVIDENCE_FORMAT",
    "STATEMENT_CONTENT_TYPE",
    "EVIDENCE_CONTENT_TYPE",
    "PNG_MEDIA_TYPE",
    "MAX_ATTESTATION_BYTES",
    "MAX_EVIDENCE_BYTES",
    "LATENT_DIM",
    "OpenedAttestation",
    "OpenedEvidence",
    "InspectedAttestation",
    "encode_document",
    "issue_statement",
    "validate_document",
    "encode_attestation",
    "write_attestation",
    "read_attestation",
    "inspect_attestation",
    "write_evidence",
    "read_evidence",
    "read_bounded",
]

STATEMENT_CONTENT_TYPE = "application/vnd.attest.statement+cbor"
EVIDENCE_CONTENT_TYPE = "application/vnd.attest.evidence+cbor"
PNG_MEDIA_TYPE = "image/png"

# Limits: generous for real bundles (docs/bundle-format.md targets <= 4 MB without the
# image), small enough that a hostile file cannot exhaust memory.
MAX_ATTESTATION_BYTES = 64 * 1024 * 1024
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
MAX_PNG_BYTES = 16 * 1024 * 1024
MAX_EVIDENCE_BYTES = 192 * 1024 * 1024
MAX_SKETCH_BYTES = 8 * 1024 * 1024
MAX_TOKENS = MAX_PROBE_TOKENS  # the same limit `issue --tokens` applies (attest.limits)
MAX_TOKEN_BYTES = 256
MAX_UNSIGNED_ENTRIES = 64  # receipts, timestamps
MAX_DOCUMENT_DEPTH = 16
MAX_DOCUMENT_ITEMS = 2_000_000  # 100k subject files x 7 items, plus tokens

# Top-level document keys (docs/bundle-format.md) and the CBOR type each must have.  The
# sub-maps belong to the core engine; only the parts the signer binds or that
# could make a reader allocate are checked here.
_DOC_TYPES: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "tool": Mapping,
    "model": Mapping,
    "subject": Mapping,
    "method": Mapping,
    "sketch": Mapping,
    "latent": bytes,
    "image": Mapping,
    "policy": Mapping,
    "meta": Mapping,
    "lineage": Mapping,
}
_DOC_OPTIONAL = frozenset({"meta", "lineage"})

_BUNDLE_KEYS = frozenset({"format", "statement", "image", "receipts", "timestamps"})
_EVIDENCE_KEYS = frozenset({"format", "attestation", "suspect", "results", "images", "tool", "time"})
_EVIDENCE_BODY_KEYS = _EVIDENCE_KEYS - {"format", "images"}


# --------------------------------------------------------------------------
# bounded file reads


def read_bounded(path: Path, max_bytes: int, *, what: str = "bundle") -> bytes:
    """Read a whole file of at most `max_bytes`; InputError if unreadable, BundleError if too big."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise BundleError(f"{what} {path} is {size} bytes, more than the {max_bytes}-byte limit")
            # Ask for the size stat gives (read(n) allocates n bytes up front, and
            # the limit is tens of MB), then read on: st_size lies for pipes and /proc.
            data = f.read(size + 1)
            if len(data) > size:  # more than stat said: read on in chunks, still bounded
                buf = bytearray(data)
                while len(buf) <= max_bytes:
                    more = f.read(min(1 << 20, max_bytes + 1 - len(buf)))
                    if not more:
                        break
                    buf += more
                data = bytes(buf)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a directory") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise BundleError(f"{what} {path} is more than the {max_bytes}-byte limit")
    return data


# --------------------------------------------------------------------------
# the statement document


def _fail(msg: str) -> BundleError:
    return BundleError(f"statement document: {msg}")


def _text_keys_only(doc: Any) -> None:
    # Iterative: the document came from safe_loads (depth-capped), but a
    # caller-built dict may not have.
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for k, v in node.items():
                if not isinstance(k, str):
                    raise _fail(f"map key {k!r} is not text (text keys only)")
                stack.append(v)
        elif is_array(node):
            stack.extend(node)


def _check_sketch(sketch: Mapping[str, Any]) -> None:
    if sketch.get("dtype") != "float16":
        raise _fail("sketch dtype must be 'float16'")
    shape: object = sketch.get("shape")
    if not is_array(shape) or not 1 <= len(shape) <= 4:
        raise _fail("sketch shape must be an array of 1 to 4 sizes")
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_SKETCH_BYTES for d in shape):
        raise _fail("sketch shape entries must be positive integers")
    data = sketch.get("data")
    if not isinstance(data, bytes):
        raise _fail("sketch data must be a byte string")
    if len(data) > MAX_SKETCH_BYTES:
        raise _fail(f"sketch is {len(data)} bytes, more than the {MAX_SKETCH_BYTES}-byte limit")
    expected = 2 * math.prod(shape)
    if len(data) != expected:
        raise _fail(f"sketch data is {len(data)} bytes but shape {list(shape)} needs {expected}")
    if not np.isfinite(np.frombuffer(data, dtype="<f2")).all():
        raise _fail("sketch contains NaN or infinity")


def validate_document(doc: Any, *, keys_checked: bool = False) -> Mapping[str, Any]:
    """Check the structure a verifier relies on; returns `doc` or raises BundleError.

    This is the signer-side schema (docs/bundle-format.md): top-level keys and their types,
    text keys throughout, the sketch and latent sizes and finiteness, the token
    list bounds and the image binding fields.  The core engine validates the
    meaning of its own sub-maps.  `keys_checked` says the document was decoded
    by `safe_loads(..., text_keys=True)`, which already refused non-text keys.
    """
    if not isinstance(doc, Mapping):
        raise _fail("expected a map")
    if doc.get("format") not in STATEMENT_FORMATS:
        raise _fail(f"format must be one of {', '.join(STATEMENT_FORMATS)}, got {doc.get('format')!r}")
    if doc.get("format") == STATEMENT_FORMAT_V1 and "lineage" in doc:
        raise _fail(f"a {STATEMENT_FORMAT_V1} document carries no lineage payload ({STATEMENT_FORMAT} does)")
    unknown = sorted(str(k) for k in doc if k not in _DOC_TYPES)
    if unknown:
        raise _fail(f"unknown top-level keys {unknown}")
    for key, typ in _DOC_TYPES.items():
        if key not in doc:
            if key in _DOC_OPTIONAL:
                continue
            raise _fail(f"missing {key!r}")
        if not isinstance(doc[key], typ):
            raise _fail(f"{key!r} has the wrong type ({type(doc[key]).__name__})")
    if not keys_checked:
        _text_keys_only(doc)

    _check_sketch(doc["sketch"])

    latent = doc["latent"]
    if len(latent) != 4 * LATENT_DIM:
        raise _fail(f"latent must be {LATENT_DIM} float32 values ({4 * LATENT_DIM} bytes), got {len(latent)} bytes")
    if not np.isfinite(np.frombuffer(latent, dtype="<f4")).all():
        raise _fail("latent contains NaN or infinity")

    tokens = doc["method"].get("tokens")
    if tokens is not None:
        if not is_array(tokens) or len(tokens) > MAX_TOKENS:
            raise _fail(f"method tokens must be an array of at most {MAX_TOKENS} strings")
        for t in tokens:
            if not isinstance(t, str) or len(t.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
                raise _fail(f"each token must be text of at most {MAX_TOKEN_BYTES} bytes")

    image = doc["image"]
    if image.get("media_type") != PNG_MEDIA_TYPE:
        raise _fail(f"image media_type must be {PNG_MEDIA_TYPE!r}")
    digest = image.get("sha256")
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise _fail("image sha256 must be a 32-byte string")
    return doc


def _decode_document(payload: bytes) -> Mapping[str, Any]:
    doc = safe_loads(
        payload,
        max_size=MAX_DOCUMENT_BYTES,
        max_depth=MAX_DOCUMENT_DEPTH,
        max_items=MAX_DOCUMENT_ITEMS,
        text_keys=True,
        what="statement document",
    )
    validate_document(doc, keys_checked=True)
    # The engine's sub-maps too, so that no reader of an opened bundle
    # (verify, inspect, render, reports) meets a field of the wrong type.
    check_core_document(doc)
    return doc


def encode_document(document: Mapping[str, Any]) -> bytes:
    """Canonical CBOR of a statement document, checked the way a verifier will read it."""
    validate_document(document)
    try:
        encoded = canonical_dumps(document)
    except Exception as exc:
        raise BundleError(f"statement document: cannot encode ({exc})") from None
    # What we sign must be exactly what every reader accepts.
    _decode_document(encoded)
    return encoded


def issue_statement(
    document: Mapping[str, Any],
    private_key: Ed25519PrivateKey,
    *,
    issuer: str,
    subject: str,
    iat: int | None = None,
) -> bytes:
    """Encode, check and sign a statement document; returns the COSE_Sign1 bytes."""
    payload = encode_document(document)
    return sign1(
        payload,
        private_key,
        kid=key_id(private_key.public_key()),
        issuer=issuer,
        subject=subject,
        iat=int(_time.time()) if iat is None else iat,
        content_type=STATEMENT_CONTENT_TYPE,
    )


# --------------------------------------------------------------------------
# the .attest container


@dataclass(frozen=True)
class OpenedAttestation:
    """A `.attest` file whose signature, trust, document and image binding all checked out."""

    verified: VerifiedSign1
    document: Mapping[str, Any]
    png: bytes
    raw: bytes
    receipts: tuple[bytes, ...] = ()
    timestamps: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class InspectedAttestation:
    """A structurally valid `.attest` file whose signature has NOT been checked."""

    statement: ParsedSign1
    document: Mapping[str, Any]
    png: bytes
    raw: bytes
    receipts: tuple[bytes, ...] = ()
    timestamps: tuple[bytes, ...] = ()


def _unsigned_list(value: object, name: str) -> tuple[bytes, ...]:
    if not is_array(value) or len(value) > MAX_UNSIGNED_ENTRIES or not all(isinstance(v, bytes) for v in value):
        raise BundleError(f"bundle: {name} must be an array of at most {MAX_UNSIGNED_ENTRIES} byte strings")
    return tuple(value)


def _parse_container(data: bytes) -> tuple[bytes, bytes, tuple[bytes, ...], tuple[bytes, ...]]:
    obj = safe_loads(
        data, max_size=MAX_ATTESTATION_BYTES, max_depth=3, max_items=32 + 2 * MAX_UNSIGNED_ENTRIES, what="bundle"
    )
    if not isinstance(obj, Mapping) or set(obj) != _BUNDLE_KEYS:
        raise BundleError(f"bundle: expected a map with exactly the keys {sorted(_BUNDLE_KEYS)}")
    if obj["format"] != ATTESTATION_FORMAT:
        raise BundleError(f"bundle: format must be {ATTESTATION_FORMAT!r}, got {obj['format']!r}")
    statement = obj["statement"]
    if not isinstance(statement, bytes):
        raise BundleError("bundle: statement must be a byte string")
    image = obj["image"]
    if not isinstance(image, Mapping) or set(image) != {"media_type", "data"}:
        raise BundleError("bundle: image must be a map of media_type and data")
    if image["media_type"] != PNG_MEDIA_TYPE or not isinstance(image["data"], bytes):
        raise BundleError(f"bundle: image must be {PNG_MEDIA_TYPE} bytes")
    if len(image["data"]) > MAX_PNG_BYTES:
        raise BundleError(f"bundle: image is more than {MAX_PNG_BYTES} bytes")
    receipts = _unsigned_list(obj["receipts"], "receipts")
    timestamps = _unsigned_list(obj["timestamps"], "timestamps")
    return statement, image["data"], receipts, timestamps


def _bind_image(document: Mapping[str, Any], png: bytes) -> None:
    check_png(png, what="bundle image")
    if not hmac.compare_digest(hashlib.sha256(png).digest(), document["image"]["sha256"]):
        raise BundleError("bundle: the image does not match the SHA-256 in the signed statement")


def _open(
    data: bytes, trust: TrustStore | None
) -> tuple[ParsedSign1, VerifiedSign1 | None, Mapping[str, Any], bytes, tuple[bytes, ...], tuple[bytes, ...]]:
    statement, png, receipts, timestamps = _parse_container(data)
    parsed = parse_sign1(statement, max_size=MAX_STATEMENT_BYTES, what="statement")
    # Authenticate before reading the payload when we can.
    verified = verify_parsed(parsed, trust, what="statement") if trust is not None else None
    if parsed.content_type != STATEMENT_CONTENT_TYPE:
        raise BundleError(f"statement: content type {parsed.content_type!r} is not {STATEMENT_CONTENT_TYPE!r}")
    document = _decode_document(parsed.payload)
    _bind_image(document, png)
    return parsed, verified, document, png, receipts, timestamps


def read_attestation(data: bytes, trust: TrustStore) -> OpenedAttestation:
    """Parse, verify and bind a `.attest` file; BundleError (exit 3) on any problem."""
    if trust is None:
        raise TypeError("read_attestation needs a TrustStore; use inspect_attestation to look without one")
    _parsed, verified, document, png, receipts, timestamps = _open(data, trust)
    assert verified is not None
    return OpenedAttestation(
        verified=verified, document=document, png=png, raw=bytes(data), receipts=receipts, timestamps=timestamps
    )


def inspect_attestation(data: bytes) -> InspectedAttestation:
    """Every structural check of `read_attestation` except signature and trust.

    For `attest inspect` on a bundle from an unknown publisher: the result is
    NOT evidence of anything until `read_attestation` succeeds.
    """
    parsed, _verified, document, png, receipts, timestamps = _open(data, None)
    return InspectedAttestation(
        statement=parsed, document=document, png=png, raw=bytes(data), receipts=receipts, timestamps=timestamps
    )


def encode_attestation(statement: bytes, png: bytes) -> bytes:
    """The `.attest` bytes for a signed statement and its PNG, checked before returning."""
    container = {
        "format": ATTESTATION_FORMAT,
        "statement": bytes(statement),
        "image": {"media_type": PNG_MEDIA_TYPE, "data": bytes(png)},
        "receipts": [],
        "timestamps": [],
    }
    data = canonical_dumps(container)
    # Refuse to publish something no verifier would open (bad PNG, image not
    # the one the statement names, oversize, ...).  The signature itself is
    # checked by whoever holds the trust store.
    inspect_attestation(data)
    return data


def write_attestation(path: Path, statement: bytes, png: bytes) -> bytes:
    """Write a `.attest` file atomically; returns the bytes written."""
    data = encode_attestation(statement, png)
    atomic_write(Path(path), data)
    return data


# --------------------------------------------------------------------------
# evidence


@dataclass(frozen=True)
class OpenedEvidence:
    body: Mapping[str, Any]  # the whole evidence map
    attestation: OpenedAttestation  # the publisher's bundle, re-verified
    images: Mapping[str, bytes]
    signed: VerifiedSign1 | None  # the verifier's signature, when the evidence is signed
    raw: bytes


def _check_evidence(ev: Any) -> Mapping[str, Any]:
    if not isinstance(ev, Mapping) or set(ev) != _EVIDENCE_KEYS:
        raise BundleError(f"evidence: expected a map with exactly the keys {sorted(_EVIDENCE_KEYS)}")
    if ev["format"] != EVIDENCE_FORMAT:
        raise BundleError(f"evidence: format must be {EVIDENCE_FORMAT!r}, got {ev['format']!r}")
    if not isinstance(ev["attestation"], bytes):
        raise BundleError("evidence: attestation must be a byte string")
    for key in ("suspect", "results", "tool"):
        if not isinstance(ev[key], Mapping):
            raise BundleError(f"evidence: {key} must be a map")
    if not isinstance(ev["time"], str) or len(ev["time"]) > 64:
        raise BundleError("evidence: time must be a short text timestamp")
    images = ev["images"]
    if not isinstance(images, Mapping) or not {"base", "suspect"} <= set(images) <= {"base", "suspect", "sheet"}:
        raise BundleError("evidence: images must hold base, suspect and optionally sheet")
    for name, png in images.items():
        if not isinstance(png, bytes) or len(png) > MAX_PNG_BYTES:
            raise BundleError(f"evidence: image {name} must be at most {MAX_PNG_BYTES} bytes")
        check_png(png, what=f"evidence image {name}")
    try:
        _text_keys_only(ev)
    except BundleError:
        raise BundleError("evidence: map keys must be text") from None
    return ev


def _decode_evidence(payload: bytes) -> Mapping[str, Any]:
    ev = safe_loads(
        payload,
        max_size=MAX_EVIDENCE_BYTES,
        max_depth=MAX_DOCUMENT_DEPTH,
        max_items=MAX_DOCUMENT_ITEMS,
        what="evidence",
    )
    return _check_evidence(ev)


def write_evidence(
    path: Path,
    body: Mapping[str, Any],
    *,
    base_png: bytes,
    suspect_png: bytes,
    sheet_png: bytes | None = None,
    key: Ed25519PrivateKey | None = None,
    issuer: str = "attest verifier",
    iat: int | None = None,
) -> bytes:
    """Write an evidence file; signed as a COSE_Sign1 by `key` when given.

    `body` holds "attestation" (the publisher's .attest bytes, verbatim),
    "suspect", "results", "tool" (maps) and "time" (text).  Returns the bytes
    written.
    """
    missing = _EVIDENCE_BODY_KEYS - set(body)
    extra = set(body) - _EVIDENCE_BODY_KEYS
    if missing or extra:
        raise BundleError(
            f"evidence: body needs exactly {sorted(_EVIDENCE_BODY_KEYS)}"
            f" (missing {sorted(missing)}, extra {sorted(extra)})"
        )
    images = {"base": bytes(base_png), "suspect": bytes(suspect_png)}
    if sheet_png is not None:
        images["sheet"] = bytes(sheet_png)
    evidence = dict(body, format=EVIDENCE_FORMAT, images=images)
    _check_evidence(evidence)
    # The publisher's statement must at least be well formed; its signature is
    # re-checked by whoever reads the evidence, against their own trust store.
    inner = inspect_attestation(evidence["attestation"])
    if images["base"] != inner.png:
        raise BundleError("evidence: base image is not the publisher's image")
    payload = canonical_dumps(evidence)
    _decode_evidence(payload)
    if key is not None:
        data = sign1(
            payload,
            key,
            kid=key_id(key.public_key()),
            issuer=issuer,
            subject=inner.statement.subject,
            iat=int(_time.time()) if iat is None else iat,
            content_type=EVIDENCE_CONTENT_TYPE,
        )
    else:
        data = payload
    atomic_write(Path(path), data)
    return data


def read_evidence(
    data: bytes,
    trust: TrustStore,
    *,
    verifier_trust: TrustStore | None = None,
    require_signed: bool = False,
) -> OpenedEvidence:
    """Open an evidence file, re-verifying the publisher's attestation and, if signed, the verifier's signature.

    `trust` holds publisher keys; `verifier_trust` holds verifier keys (defaults
    to `trust`, so one folder can hold both).
    """
    data = bytes(data)
    signed: VerifiedSign1 | None = None
    # A signed evidence file starts with tag 18 (0xd2); an unsigned one is a map.
    if data[:1] == bytes([0xC0 | COSE_SIGN1_TAG]):
        parsed = parse_sign1(data, max_size=MAX_EVIDENCE_BYTES + 4096, what="evidence signature")
        signed = verify_parsed(
            parsed, verifier_trust if verifier_trust is not None else trust, what="evidence signature"
        )
        if signed.content_type != EVIDENCE_CONTENT_TYPE:
            raise BundleError(f"evidence: content type {signed.content_type!r} is not {EVIDENCE_CONTENT_TYPE!r}")
        payload = signed.payload
    elif require_signed:
        raise BundleError("evidence: not signed (a signed evidence file was required)")
    else:
        payload = data
    ev = _decode_evidence(payload)
    attestation = read_attestation(ev["attestation"], trust)
    if ev["images"]["base"] != attestation.png:
        raise BundleError("evidence: base image is not the publisher's image")
    if signed is not None and signed.subject != attestation.verified.subject:
        raise BundleError("evidence: signed subject does not match the attestation's subject")
    return OpenedEvidence(body=ev, attestation=attestation, images=ev["images"], signed=signed, raw=data)
