"""RFC 3161 time-stamp tokens: ask a TSA for one, and check one years later.

The ASN.1 and CMS work is done by libraries, never by hand: `rfc3161-client`
(Trail of Bits; builds requests, parses responses, verifies the CMS signature,
the certificate chain at the stamped time, the critical timeStamping extended
key usage, the nonce and the message imprint) and `asn1crypto` (reads the
PKIStatusInfo of a refused request, and re-wraps a stored TimeStampToken as a
granted TimeStampResp, which is the only form rfc3161-client verifies).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import rfc3161_client
from asn1crypto import cms as _cms  # type: ignore[import-untyped]
from asn1crypto import core as _core  # type: ignore[import-untyped]
from asn1crypto import tsp as _tsp  # type: ignore[import-untyped]
from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
)

from attest.errors import InputError
from attest.net.http import DEFAULT_TIMEOUT, request

__all__ = [
    "MAX_TOKEN_BYTES",
    "TimestampError",
    "TokenVerdict",
    "load_tsa_roots",
    "request_token",
    "verify_token",
]

MAX_TOKEN_BYTES = 64 * 1024  # tokens with a full chain are a few KiB
MAX_RESPONSE_BYTES = 256 * 1024
MAX_ROOT_FILE_BYTES = 1024 * 1024
_TSR_MEDIA_TYPE = "application/timestamp-reply"
_TSQ_MEDIA_TYPE = "application/timestamp-query"

# RFC 9921 §3.1: the imprint hash SHOULD be the hash the COSE signature uses.
# Ed25519 (alg -8/-19) hashes with SHA-512 internally, so that is our default.
DEFAULT_HASH = HashAlgorithm.SHA512


class TimestampError(InputError):
    """A TSA refused, failed, timed out or answered with something unusable (exit 4)."""


@dataclass(frozen=True)
class TokenVerdict:
    """What a token proves: a time, or why it proves nothing."""

    verified: bool
    time: _dt.datetime | None  # only set when verified
    tsa: str | None  # the signing certificate's subject (or the TSTInfo tsa name), informative
    reason: str | None  # why not verified
    serial: int | None = None
    nonce: int | None = None


class _TimeStampResp(_core.Sequence):
    """RFC 3161 §2.4.2 TimeStampResp; the token is OPTIONAL (absent when refused), which asn1crypto's is not."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("status", _tsp.PKIStatusInfo),
        ("time_stamp_token", _cms.ContentInfo, {"optional": True}),
    ]


def _pki_failure(resp: _TimeStampResp) -> str | None:
    status = resp["status"]
    code = status["status"].native
    if code in ("granted", "granted_with_mods"):
        return None
    texts = [str(t) for t in (status["status_string"].native or [])]
    fail = status["fail_info"].native
    bits = sorted(fail) if isinstance(fail, (set, frozenset)) else ([str(fail)] if fail else [])
    return " ".join(
        part for part in (f"status {code}", f"({', '.join(bits)})" if bits else "", "; ".join(texts)) if part
    )


def _token_from_response(der: bytes, url: str) -> bytes:
    try:
        resp = _TimeStampResp.load(der, strict=True)
        failure = _pki_failure(resp)
    except (ValueError, TypeError, KeyError) as exc:
        raise TimestampError(f"TSA {url} answered with something that is not a TimeStampResp ({exc})") from None
    if failure is not None:
        raise TimestampError(f"TSA {url} refused the request: {failure}")
    token = resp["time_stamp_token"]
    if token.native is None:
        raise TimestampError(f"TSA {url} granted the request but sent no token")
    data: bytes = token.dump()
    if len(data) > MAX_TOKEN_BYTES:
        raise TimestampError(f"TSA {url} sent a {len(data)}-byte token, more than the {MAX_TOKEN_BYTES}-byte limit")
    return data


def _sorted_certificates(info: _cms.ContentInfo) -> _cms.ContentInfo:
    """The same token with its certificate SET OF in DER order.

    OpenSSL (3.0) writes the certificates of a TSA reply in insertion order,
    which strict DER parsers (rfc3161-client's) refuse.  The certificate set is
    outside everything the TSA signed (RFC 5652 §5.4 signs the signed
    attributes only), so putting it in DER order changes no signed byte.
    """
    signed = info["content"]
    certs = [c for c in signed["certificates"]] if signed["certificates"].native is not None else []
    if len(certs) < 2:
        return info
    # DER orders SET OF elements by their encodings (X.690 §11.6).
    ordered = sorted(certs, key=lambda c: c.dump())
    rebuilt = _cms.SignedData(
        {
            "version": signed["version"],
            "digest_algorithms": signed["digest_algorithms"],
            "encap_content_info": signed["encap_content_info"],
            "certificates": _cms.CertificateSet(ordered),
            "signer_infos": signed["signer_infos"],
        }
    )
    return _cms.ContentInfo({"content_type": "signed_data", "content": rebuilt})


def _as_response(token: bytes) -> rfc3161_client.TimeStampResponse:
    """Wrap a stored TimeStampToken (a CMS ContentInfo) as a granted TimeStampResp and parse it."""
    info = _cms.ContentInfo.load(token, strict=True)
    if info["content_type"].native != "signed_data":
        raise ValueError("not a CMS SignedData")
    if info["content"]["crls"].native is not None:
        raise ValueError("CRLs inside a time-stamp token are not supported")
    info = _sorted_certificates(info)
    wrapped = _tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": info}).dump()
    return rfc3161_client.decode_timestamp_response(wrapped)


def request_token(
    message: bytes,
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    hash_algorithm: HashAlgorithm = DEFAULT_HASH,
    roots: Sequence[x509.Certificate] = (),
) -> bytes:
    """Ask the TSA at `url` for a token over `message`; returns the DER TimeStampToken.

    The request carries a fresh nonce and asks for the TSA certificate.  The
    answer is checked before it is returned: granted, the imprint is ours, the
    nonce is ours; with `roots`, the whole token is verified as `verify_token`
    would.  Any failure raises TimestampError (or NetworkError, both exit 4).
    """
    if not message:
        raise ValueError("nothing to timestamp")
    req = (
        TimestampRequestBuilder()
        .data(message)
        .hash_algorithm(hash_algorithm)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    resp = request(
        url,
        method="POST",
        body=req.as_bytes(),
        timeout=timeout,
        max_bytes=MAX_RESPONSE_BYTES,
        headers={"Content-Type": _TSQ_MEDIA_TYPE, "Accept": _TSR_MEDIA_TYPE},
        what="TSA",
    )
    if resp.status != 200:
        raise TimestampError(f"TSA {url} answered HTTP {resp.status} instead of a time-stamp reply")
    token = _token_from_response(resp.body, url)
    try:
        parsed = _as_response(token)
        info = parsed.tst_info
    except (ValueError, TypeError, KeyError) as exc:  # rfc3161-client's parser raises ValueError
        raise TimestampError(f"TSA {url} sent a token that cannot be parsed ({exc})") from None
    if (
        info.message_imprint.message != req.message_imprint.message
        or info.message_imprint.hash_algorithm != req.message_imprint.hash_algorithm
    ):
        raise TimestampError(f"TSA {url} stamped other data than we sent (message imprint differs)")
    if req.nonce is not None and info.nonce != req.nonce:
        raise TimestampError(f"TSA {url} answered with another nonce (a replayed or misrouted reply)")
    if roots:
        verdict = verify_token(token, message, roots, nonce=req.nonce)
        if not verdict.verified:
            raise TimestampError(f"TSA {url} sent a token that does not verify: {verdict.reason}")
    return token


def _signer_name(parsed: rfc3161_client.TimeStampResponse) -> str | None:
    try:
        infos = list(parsed.signed_data.signer_infos)
        certs = [x509.load_der_x509_certificate(c) for c in parsed.signed_data.certificates]
        for cert in certs:
            if infos and cert.issuer == infos[0].issuer and cert.serial_number == infos[0].serial_number:
                return cert.subject.rfc4514_string()
    except (ValueError, TypeError):  # informative only; the verdict never depends on it
        return None
    return None


def verify_token(
    token: bytes,
    message: bytes,
    roots: Sequence[x509.Certificate],
    *,
    nonce: int | None = None,
) -> TokenVerdict:
    """Check a DER TimeStampToken over `message` against trusted TSA `roots`; never raises on a bad token.

    Checked (by rfc3161-client): the CMS signature over the TSTInfo; the
    signer's chain to one of `roots`, every certificate valid at the stamped
    time; the signer's extended key usage is exactly critical timeStamping;
    the message imprint is the hash of `message` (SHA-256/384/512); the nonce
    when `nonce` is given (only the requester knows it, so only `request_token`
    passes one).
    """
    if not isinstance(token, bytes) or not token:
        return TokenVerdict(False, None, None, "empty or non-bytes token")
    if len(token) > MAX_TOKEN_BYTES:
        return TokenVerdict(False, None, None, f"token is more than {MAX_TOKEN_BYTES} bytes")
    try:
        parsed = _as_response(token)
        info = parsed.tst_info
    except (ValueError, TypeError, KeyError) as exc:  # malformed DER of any kind
        return TokenVerdict(False, None, None, f"not a readable RFC 3161 TimeStampToken ({exc})")
    tsa = _signer_name(parsed)
    if not roots:
        return TokenVerdict(False, None, tsa, "no TSA root certificate given to check the token against (--tsa-ca)")
    builder = VerifierBuilder(roots=list(roots))
    if nonce is not None:
        builder = builder.nonce(nonce)
    try:
        builder.build().verify_message(parsed, message)
    except VerificationError as exc:
        return TokenVerdict(False, None, tsa, _explain(str(exc)))
    except (ValueError, TypeError, KeyError) as exc:  # the Rust layer raises ValueError on odd input
        return TokenVerdict(False, None, tsa, f"token cannot be verified ({exc.__class__.__name__}: {exc})")
    time = info.gen_time
    if time.tzinfo is None:
        time = time.replace(tzinfo=_dt.timezone.utc)
    return TokenVerdict(True, time, tsa, None, serial=info.serial_number, nonce=info.nonce)


def _explain(message: str) -> str:
    # rfc3161-client's wording, with what it means for an attest user.
    if "Mismatch between messages" in message:
        return "message imprint does not match this signature (the token covers other data)"
    if "certificates" in message.lower() or "chain" in message.lower():
        # OpenSSL's reason ("certificate has expired", "self-signed certificate in
        # certificate chain", ...) is the useful part of a long error stack.
        found = re.search(r"Verify error: ([^\"]+)", message)
        why = found.group(1) if found else message
        return f"TSA certificate chain does not verify to the given root at the stamped time: {why}"
    if "EKU" in message:
        return f"TSA certificate is not a time-stamping certificate ({message})"
    if "Nonce" in message:
        return "nonce differs from the one sent"
    return message


def load_tsa_roots(paths: Sequence[Path]) -> list[x509.Certificate]:
    """Root CA certificates (PEM, several per file allowed) to check tokens against; InputError if unusable."""
    roots: list[x509.Certificate] = []
    for path in paths:
        path = Path(path)
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_ROOT_FILE_BYTES + 1)
        except OSError as exc:
            raise InputError(f"TSA root {path}: cannot read ({exc.strerror})") from None
        if len(data) > MAX_ROOT_FILE_BYTES:
            raise InputError(f"TSA root {path} is more than {MAX_ROOT_FILE_BYTES} bytes")
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise InputError(f"TSA root {path} is not a PEM certificate") from None
        roots.extend(certs)
    return roots
