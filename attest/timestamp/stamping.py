"""Time-stamp tokens on attest files: add one ("COSE then timestamp", RFC 9921) and report what each proves.

The token's message imprint is the hash of the CBOR-encoded signature field
of the COSE_Sign1 (the bstr with its 0x5840 head, RFC 9921 §3.1).  It proves
that this exact signature existed at the TSA's time; it does not make the
signature valid, so callers still verify the signature itself.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from attest.bundle.unsigned import add_timestamp, outer_part, signed_parts
from attest.errors import AttestError
from attest.net.http import DEFAULT_TIMEOUT
from attest.timestamp.rfc3161 import request_token, verify_token

__all__ = ["StampResult", "TimestampCheck", "stamp_container", "stamp_container_result", "timestamp_report"]


@dataclass(frozen=True)
class TimestampCheck:
    """One token beside one signature, and whether it proves a time."""

    covers: str  # "statement" (publisher's signature) or "evidence" (verifier's)
    verified: bool
    time: _dt.datetime | None  # None unless verified: a failed token never shows a time
    tsa: str | None
    reason: str | None
    serial: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            if self.verified and self.time
            else None,
            "verified": self.verified,
            "tsa": self.tsa,
            "reason": self.reason,
            "covers": self.covers,
        }


@dataclass(frozen=True)
class StampResult:
    data: bytes  # the file, with the new token when stamped
    stamped: bool
    reason: str | None  # why not, when `optional` let a failure through


def stamp_container_result(
    data: bytes,
    tsa_url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    optional: bool = False,
    tsa_roots: Sequence[x509.Certificate] = (),
) -> StampResult:
    """Ask `tsa_url` for a token over the file's outermost signature and add it to the unsigned part.

    A bundle gets it in its `timestamps` list; a signed evidence file in its
    own unprotected header label 270.  No signed byte changes.  When the TSA
    fails (HTTP error, refusal, timeout, bad token) this raises the error
    (TimestampError/NetworkError, exit 4) unless `optional`, in which case the
    file comes back unchanged with the reason.  Structural problems with the
    file itself always raise.
    """
    part = outer_part(data)
    try:
        token = request_token(part.signature_field, tsa_url, timeout=timeout, roots=tsa_roots)
    except AttestError as exc:
        if not optional:
            raise
        return StampResult(bytes(data), False, str(exc))
    return StampResult(add_timestamp(data, token), True, None)


def stamp_container(
    data: bytes,
    tsa_url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    optional: bool = False,
    tsa_roots: Sequence[x509.Certificate] = (),
) -> bytes:
    """`stamp_container_result(...).data`: the stamped file (or, with `optional`, maybe the same bytes)."""
    return stamp_container_result(data, tsa_url, timeout=timeout, optional=optional, tsa_roots=tsa_roots).data


def timestamp_report(data: bytes, tsa_roots: Sequence[x509.Certificate]) -> list[TimestampCheck]:
    """Verify every token in a bundle or evidence file against `tsa_roots`; never raises for a bad token.

    The file's structure must be sound (BundleError otherwise).  Signatures are
    not verified here: a verified token says when a signature existed, the
    caller's signature check says whose it is.
    """
    checks: list[TimestampCheck] = []
    for part in signed_parts(data):
        message = part.signature_field
        for token in part.timestamps:
            v = verify_token(token, message, tsa_roots)
            checks.append(
                TimestampCheck(
                    covers=part.covers,
                    verified=v.verified,
                    time=v.time if v.verified else None,
                    tsa=v.tsa,
                    reason=v.reason,
                    serial=v.serial,
                )
            )
    return checks
