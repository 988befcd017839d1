"""COSE_Sign1 (RFC 9052) statements signed with Ed25519.

Everything that affects meaning sits in the protected header: alg, kid,
content type and the CWT claims iss/sub/iat (label 15, RFC 9597).  The
unprotected header must be empty apart from labels that are unsigned by
nature (SCITT receipts, label 394; RFC 9921 time-stamp tokens, label 270),
because anything there can be changed by anyone.
External AAD is empty so a SCITT transparency service can register the
statement as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from attest.bundle.cbor_safe import canonical_dumps, is_array, safe_loads
from attest.crypto.keys import TrustStore
from attest.errors import BundleError

__all__ = [
    "COSE_SIGN1_TAG",
    "ALG_EDDSA",
    "ALG_ED25519",
    "ALLOWED_ALGS",
    "MAX_STATEMENT_BYTES",
    "ParsedSign1",
    "VerifiedSign1",
    "sign1",
    "parse_sign1",
    "verify1",
    "verify_parsed",
    "sig_structure",
]

COSE_SIGN1_TAG = 18

# Header labels (IANA "COSE Header Parameters")
H_ALG = 1
H_CRIT = 2
H_CONTENT_TYPE = 3
H_KID = 4
H_CWT_CLAIMS = 15  # RFC 9597
H_RECEIPTS = 394  # SCITT receipts: unsigned by design, never read for the verdict
H_3161_CTT = 270  # RFC 9921 "3161-ctt": a time-stamp token over the signature, unsigned by design

# CWT claim keys (RFC 8392)
CWT_ISS = 1
CWT_SUB = 2
CWT_IAT = 6

ALG_EDDSA = -8  # what pycose and most verifiers know
ALG_ED25519 = -19  # fully specified (RFC 9864); same signature bytes
ALLOWED_ALGS = frozenset({ALG_EDDSA, ALG_ED25519})

_PROTECTED_LABELS = frozenset({H_ALG, H_CONTENT_TYPE, H_KID, H_CWT_CLAIMS})
_HARMLESS_UNPROTECTED = frozenset({H_RECEIPTS, H_3161_CTT})
_CWT_LABELS = frozenset({CWT_ISS, CWT_SUB, CWT_IAT})

MAX_STATEMENT_BYTES = 48 * 1024 * 1024
MAX_PROTECTED_BYTES = 16 * 1024
MAX_KID_BYTES = 64
MAX_CLAIM_CHARS = 1024
_MAX_RECEIPTS = 64
MAX_UNSIGNED_TOKEN_BYTES = 64 * 1024  # one receipt or time-stamp token
_SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class ParsedSign1:
    """A structurally valid COSE_Sign1 whose signature has NOT been checked."""

    protected_bytes: bytes
    protected: Mapping[int, Any]
    payload: bytes
    signature: bytes
    alg: int
    kid: bytes
    issuer: str
    subject: str
    iat: int
    content_type: str


@dataclass(frozen=True)
class VerifiedSign1:
    """A COSE_Sign1 whose Ed25519 signature verified under a trusted key."""

    payload: bytes
    kid: bytes
    issuer: str
    subject: str
    iat: int
    content_type: str
    protected: Mapping[int, Any]
    alg: int
    signer: str  # the trust store's name for the key

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()


def sig_structure(protected_bytes: bytes, payload: bytes) -> bytes:
    """RFC 9052 §4.4 Sig_structure for COSE_Sign1 with empty external AAD."""
    return canonical_dumps(["Signature1", protected_bytes, b"", payload])


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise BundleError(f"{what} must be text")
    if len(value) > MAX_CLAIM_CHARS:
        raise BundleError(f"{what} is longer than {MAX_CLAIM_CHARS} characters")
    return value


def sign1(
    payload: bytes,
    private_key: Ed25519PrivateKey,
    *,
    kid: bytes,
    issuer: str,
    subject: str,
    iat: int,
    content_type: str,
    alg: int = ALG_EDDSA,
) -> bytes:
    """Sign `payload` into a tagged COSE_Sign1 (tag 18); returns its bytes."""
    if not isinstance(private_key, Ed25519PrivateKey):
        raise TypeError("sign1 needs an Ed25519 private key")
    if alg not in ALLOWED_ALGS:
        raise ValueError(f"unsupported alg {alg}")
    if not isinstance(payload, bytes):
        raise TypeError("payload must be bytes")
    if not isinstance(kid, bytes) or not 0 < len(kid) <= MAX_KID_BYTES:
        raise ValueError("kid must be 1..64 bytes")
    if not isinstance(iat, int) or isinstance(iat, bool) or iat < 0:
        raise ValueError("iat must be a non-negative integer")
    for value, what in ((issuer, "issuer"), (subject, "subject"), (content_type, "content type")):
        try:
            _check_text(value, what)
        except BundleError as exc:
            raise ValueError(str(exc)) from None
    protected = {
        H_ALG: alg,
        H_CONTENT_TYPE: content_type,
        H_KID: kid,
        H_CWT_CLAIMS: {CWT_ISS: issuer, CWT_SUB: subject, CWT_IAT: iat},
    }
    protected_bytes = canonical_dumps(protected)
    signature = private_key.sign(sig_structure(protected_bytes, payload))
    return canonical_dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected_bytes, {}, payload, signature]))


def _parse_protected(protected_bytes: bytes) -> tuple[Mapping[int, Any], int, bytes, str, str, str, int]:
    if not protected_bytes:
        raise BundleError("COSE_Sign1: empty protected header (alg and kid must be protected)")
    hdr = safe_loads(protected_bytes, max_size=MAX_PROTECTED_BYTES, max_depth=3, max_items=64, what="protected header")
    if not isinstance(hdr, Mapping):
        raise BundleError("protected header: expected a map")
    unknown = [k for k in hdr if k not in _PROTECTED_LABELS]
    if unknown:
        # Includes crit (2): we understand no extensions, so none may be critical.
        raise BundleError(f"protected header: unsupported labels {sorted(map(repr, unknown))}")
    alg = hdr.get(H_ALG)
    if isinstance(alg, bool) or alg not in ALLOWED_ALGS:
        raise BundleError(f"COSE_Sign1: algorithm {alg!r} is not allowed (only EdDSA -8 / Ed25519 -19)")
    kid = hdr.get(H_KID)
    if not isinstance(kid, bytes) or not 0 < len(kid) <= MAX_KID_BYTES:
        raise BundleError("protected header: kid missing or not a 1..64-byte string")
    content_type = _check_text(hdr.get(H_CONTENT_TYPE), "protected header content type")
    claims = hdr.get(H_CWT_CLAIMS)
    if not isinstance(claims, Mapping):
        raise BundleError("protected header: CWT claims (label 15) missing or not a map")
    if set(claims) != _CWT_LABELS:
        raise BundleError("protected header: CWT claims must be exactly iss (1), sub (2), iat (6)")
    issuer = _check_text(claims[CWT_ISS], "CWT iss")
    subject = _check_text(claims[CWT_SUB], "CWT sub")
    iat = claims[CWT_IAT]
    if not isinstance(iat, int) or isinstance(iat, bool) or iat < 0:
        raise BundleError("CWT iat must be a non-negative integer")
    return hdr, alg, kid, content_type, issuer, subject, iat


def _check_unprotected(uhdr: object) -> None:
    if not isinstance(uhdr, Mapping):
        raise BundleError("COSE_Sign1: unprotected header must be a map")
    for label, value in uhdr.items():
        if label == H_KID:
            raise BundleError("COSE_Sign1: kid in the unprotected header (kid must be protected)")
        if label not in _HARMLESS_UNPROTECTED:
            raise BundleError(f"COSE_Sign1: unexpected unprotected header label {label!r}")
        if label == H_3161_CTT:
            # RFC 9921 §3.1: one DER TimeStampToken in a byte string.
            if not isinstance(value, bytes) or not 0 < len(value) <= MAX_UNSIGNED_TOKEN_BYTES:
                raise BundleError(
                    "COSE_Sign1: 3161-ctt (label 270) must be a byte string of at most "
                    f"{MAX_UNSIGNED_TOKEN_BYTES} bytes"
                )
            continue
        if not is_array(value) or len(value) > _MAX_RECEIPTS or not all(isinstance(r, bytes) for r in value):
            raise BundleError("COSE_Sign1: receipts (label 394) must be an array of byte strings")


def parse_sign1(data: bytes, *, max_size: int = MAX_STATEMENT_BYTES, what: str = "statement") -> ParsedSign1:
    """Check a tagged COSE_Sign1's structure and headers; does NOT verify the signature."""
    # depth: tag > array > unprotected map > receipts array > receipt
    obj = safe_loads(
        data,
        max_size=max_size,
        max_depth=5,
        max_items=4 + 4 * _MAX_RECEIPTS,
        allowed_tags=frozenset({COSE_SIGN1_TAG}),
        what=what,
    )
    tag = getattr(obj, "tag", None)
    if tag != COSE_SIGN1_TAG:
        raise BundleError(f"{what}: not a tagged COSE_Sign1 (CBOR tag 18)")
    body = obj.value
    if not is_array(body) or len(body) != 4:
        raise BundleError(f"{what}: COSE_Sign1 must be a 4-element array")
    protected_bytes, uhdr, payload, signature = body
    if not isinstance(protected_bytes, bytes):
        raise BundleError(f"{what}: protected header must be a byte string")
    if not isinstance(payload, bytes):
        raise BundleError(f"{what}: payload must be an embedded byte string (no detached payloads)")
    if not isinstance(signature, bytes) or len(signature) != _SIGNATURE_BYTES:
        raise BundleError(f"{what}: signature must be a {_SIGNATURE_BYTES}-byte string")
    _check_unprotected(uhdr)
    hdr, alg, kid, content_type, issuer, subject, iat = _parse_protected(protected_bytes)
    return ParsedSign1(
        protected_bytes=protected_bytes,
        protected=hdr,
        payload=payload,
        signature=signature,
        alg=alg,
        kid=kid,
        issuer=issuer,
        subject=subject,
        iat=iat,
        content_type=content_type,
    )


def verify_parsed(parsed: ParsedSign1, trust: TrustStore, *, what: str = "statement") -> VerifiedSign1:
    """Check a parsed COSE_Sign1's signature under the key its protected kid names."""
    trusted = trust.lookup(parsed.kid)
    if trusted is None:
        raise BundleError(f"{what}: signed by an untrusted key {parsed.kid.hex()}")
    try:
        trusted.public_key.verify(parsed.signature, sig_structure(parsed.protected_bytes, parsed.payload))
    except InvalidSignature:
        raise BundleError(f"{what}: signature does not verify (tampered, or signed by another key)") from None
    return VerifiedSign1(
        payload=parsed.payload,
        kid=parsed.kid,
        issuer=parsed.issuer,
        subject=parsed.subject,
        iat=parsed.iat,
        content_type=parsed.content_type,
        protected=parsed.protected,
        alg=parsed.alg,
        signer=trusted.name,
    )


def verify1(
    data: bytes, trust: TrustStore, *, max_size: int = MAX_STATEMENT_BYTES, what: str = "statement"
) -> VerifiedSign1:
    """Parse and verify a tagged COSE_Sign1 against `trust`; BundleError on any failure."""
    return verify_parsed(parse_sign1(data, max_size=max_size, what=what), trust, what=what)
