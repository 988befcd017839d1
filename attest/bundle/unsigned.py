"""The unsigned parts of bundles and evidence files: where time-stamp tokens and receipts live.

A time-stamp token (RFC 3161, placed as RFC 9921 "COSE then timestamp") and a
SCITT receipt (RFC 9942) both vouch for one COSE_Sign1 *signature* from the
outside, so neither can be inside what that signature covers.  This module
finds every signature in a file, the tokens and receipts that sit beside it,
and writes new ones without touching a signed byte:

- ``.attest`` bundle: the publisher's statement.  Tokens go in the container's
  ``timestamps`` list, receipts in its ``receipts`` list.  Tokens in the
  statement's unprotected label 270 and receipts in label 394 are read too.
- signed evidence file: the verifier's COSE_Sign1.  Its token goes in its own
  unprotected label 270 (RFC 9921 §3.1, one token), receipts in label 394.
  The publisher's bundle inside is reported as well, verbatim.
- unsigned evidence: nothing of its own to stamp; the inner bundle is reported.

Callers decide what the tokens and receipts prove (attest.timestamp,
attest.transparency); this module only places and finds bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from attest.bundle.cbor_safe import canonical_dumps, is_array, safe_loads
from attest.bundle.container import (
    ATTESTATION_FORMAT,
    EVIDENCE_FORMAT,
    MAX_ATTESTATION_BYTES,
    MAX_DOCUMENT_DEPTH,
    MAX_DOCUMENT_ITEMS,
    MAX_EVIDENCE_BYTES,
    MAX_UNSIGNED_ENTRIES,
    inspect_attestation,
)
from attest.bundle.cose import (
    COSE_SIGN1_TAG,
    H_3161_CTT,
    H_RECEIPTS,
    ParsedSign1,
    parse_sign1,
)
from attest.errors import BundleError, InputError
from attest.output.paths import atomic_write, check_output

__all__ = [
    "COVERS_EVIDENCE",
    "COVERS_STATEMENT",
    "SignedPart",
    "add_receipt",
    "add_timestamp",
    "outer_part",
    "registrable_statement",
    "signed_parts",
    "write_file",
]

COVERS_STATEMENT = "statement"  # the publisher's signature in a bundle
COVERS_EVIDENCE = "evidence"  # the verifier's signature over an evidence file

_SIGN1_PREFIX = bytes([0xC0 | COSE_SIGN1_TAG])


@dataclass(frozen=True)
class SignedPart:
    """One COSE_Sign1 in a file, with the unsigned tokens and receipts that refer to it."""

    covers: str  # COVERS_STATEMENT or COVERS_EVIDENCE
    parsed: ParsedSign1  # structure checked, signature NOT verified here
    raw: bytes  # the COSE_Sign1 bytes as stored (unprotected header included)
    timestamps: tuple[bytes, ...]
    receipts: tuple[bytes, ...]

    @property
    def signature_field(self) -> bytes:
        """The CBOR encoding of the signature field (a bstr, head included): RFC 9921 §3.1's imprint input."""
        return canonical_dumps(self.parsed.signature)

    @property
    def entry(self) -> bytes:
        """The signed statement as a transparency service registers it: unprotected header emptied."""
        return registrable_statement(self.raw)


def _unprotected(raw: bytes) -> Mapping[Any, Any]:
    # Only called after parse_sign1 accepted `raw`, so the shape is known good.
    obj = safe_loads(
        raw,
        max_size=len(raw),
        max_depth=5,
        max_items=4 + 4 * MAX_UNSIGNED_ENTRIES,
        allowed_tags=frozenset({COSE_SIGN1_TAG}),
        what="COSE_Sign1",
    )
    uhdr = obj.value[1]
    assert isinstance(uhdr, Mapping)
    return uhdr


def registrable_statement(raw: bytes) -> bytes:
    """`raw` COSE_Sign1 re-encoded with an empty unprotected header (the signed parts only)."""
    obj = safe_loads(
        raw,
        max_size=max(len(raw), 1),
        max_depth=5,
        max_items=4 + 4 * MAX_UNSIGNED_ENTRIES,
        allowed_tags=frozenset({COSE_SIGN1_TAG}),
        what="COSE_Sign1",
    )
    body = list(obj.value)
    body[1] = {}
    return canonical_dumps(cbor2.CBORTag(COSE_SIGN1_TAG, body))


def _with_unprotected(raw: bytes, uhdr: Mapping[int, Any]) -> bytes:
    obj = safe_loads(
        raw,
        max_size=len(raw),
        max_depth=5,
        max_items=4 + 4 * MAX_UNSIGNED_ENTRIES,
        allowed_tags=frozenset({COSE_SIGN1_TAG}),
        what="COSE_Sign1",
    )
    body = list(obj.value)
    body[1] = dict(uhdr)
    return canonical_dumps(cbor2.CBORTag(COSE_SIGN1_TAG, body))


def _part(
    raw: bytes,
    covers: str,
    *,
    extra_timestamps: tuple[bytes, ...] = (),
    extra_receipts: tuple[bytes, ...] = (),
    max_size: int,
) -> SignedPart:
    parsed = parse_sign1(raw, max_size=max_size, what=covers)
    uhdr = _unprotected(raw)
    tokens = tuple(extra_timestamps) + ((uhdr[H_3161_CTT],) if H_3161_CTT in uhdr else ())
    receipts = tuple(extra_receipts) + tuple(uhdr.get(H_RECEIPTS, ()))
    return SignedPart(covers=covers, parsed=parsed, raw=bytes(raw), timestamps=tokens, receipts=receipts)


def _decode_container(data: bytes) -> Mapping[str, Any]:
    obj = safe_loads(
        data, max_size=MAX_ATTESTATION_BYTES, max_depth=3, max_items=32 + 2 * MAX_UNSIGNED_ENTRIES, what="bundle"
    )
    if not isinstance(obj, Mapping):
        raise BundleError("bundle: expected a map")
    return obj


def _bundle_parts(data: bytes) -> list[SignedPart]:
    inspect_attestation(data)  # every structural check, the image binding included
    obj = _decode_container(data)
    return [
        _part(
            obj["statement"],
            COVERS_STATEMENT,
            extra_timestamps=tuple(obj["timestamps"]),
            extra_receipts=tuple(obj["receipts"]),
            max_size=MAX_ATTESTATION_BYTES,
        )
    ]


def _evidence_map(payload: bytes) -> Mapping[str, Any]:
    ev = safe_loads(
        payload,
        max_size=MAX_EVIDENCE_BYTES,
        max_depth=MAX_DOCUMENT_DEPTH,
        max_items=MAX_DOCUMENT_ITEMS,
        what="evidence",
    )
    if (
        not isinstance(ev, Mapping)
        or ev.get("format") != EVIDENCE_FORMAT
        or not isinstance(ev.get("attestation"), bytes)
    ):
        raise BundleError("evidence: not an attest evidence map")
    return ev


def _kind(data: bytes) -> str:
    if data[:1] == _SIGN1_PREFIX:
        return "signed-evidence"
    # Bundles and unsigned evidence are maps; their format key tells them apart.
    # Decode (bounded) rather than search the first bytes: canonical CBOR puts
    # a bundle's "image" key, and so the whole PNG, before "format".
    obj = safe_loads(
        data, max_size=MAX_EVIDENCE_BYTES, max_depth=MAX_DOCUMENT_DEPTH, max_items=MAX_DOCUMENT_ITEMS, what="file"
    )
    fmt = obj.get("format") if isinstance(obj, Mapping) else None
    if fmt == EVIDENCE_FORMAT:
        return "evidence"
    if fmt == ATTESTATION_FORMAT:
        return "bundle"
    raise BundleError("not an attest bundle or evidence file")


def signed_parts(data: bytes) -> list[SignedPart]:
    """Every signature in a bundle or evidence file, outermost first; BundleError if malformed."""
    data = bytes(data)
    kind = _kind(data)
    if kind == "bundle":
        return _bundle_parts(data)
    if kind == "signed-evidence":
        outer = _part(data, COVERS_EVIDENCE, max_size=MAX_EVIDENCE_BYTES + 4096)
        return [outer, *_bundle_parts(_evidence_map(outer.parsed.payload)["attestation"])]
    return _bundle_parts(_evidence_map(data)["attestation"])


def outer_part(data: bytes) -> SignedPart:
    """The signature a new token or receipt would be attached to (the file's own, outermost)."""
    data = bytes(data)
    if _kind(data) == "evidence":
        raise InputError(
            "this evidence file is not signed, so it has no signature of its own to timestamp or "
            "register; write it with `attest verify --evidence FILE --key KEY`"
        )
    return signed_parts(data)[0]


def _add_to_bundle(data: bytes, key: str, item: bytes) -> bytes:
    obj = dict(_decode_container(data))
    items = list(obj[key])
    if item in items:
        raise InputError(f"the bundle already holds this {key[:-1]}")
    if len(items) >= MAX_UNSIGNED_ENTRIES:
        raise InputError(f"the bundle already holds {MAX_UNSIGNED_ENTRIES} {key}, the limit")
    obj[key] = items + [bytes(item)]
    out = canonical_dumps(obj)
    # The signed statement and the image must come out byte for byte.
    if out == data or obj["statement"] != _decode_container(out)["statement"]:
        raise BundleError("bundle: adding to the unsigned part changed the signed part")
    inspect_attestation(out)
    return out


def add_timestamp(data: bytes, token: bytes) -> bytes:
    """`data` with one more time-stamp token beside its outermost signature."""
    data = bytes(data)
    part = outer_part(data)
    if part.covers == COVERS_STATEMENT:
        return _add_to_bundle(data, "timestamps", token)
    uhdr = dict(_unprotected(data))
    if H_3161_CTT in uhdr:
        # RFC 9921 gives label 270 one token; replacing it would destroy evidence.
        raise InputError("this evidence file already carries a time-stamp token (RFC 9921 allows one)")
    uhdr[H_3161_CTT] = bytes(token)
    out = _with_unprotected(data, uhdr)
    parse_sign1(out, max_size=MAX_EVIDENCE_BYTES + 4096 + len(token), what=COVERS_EVIDENCE)
    return out


def add_receipt(data: bytes, receipt: bytes) -> bytes:
    """`data` with one more SCITT receipt beside its outermost signature."""
    data = bytes(data)
    part = outer_part(data)
    if part.covers == COVERS_STATEMENT:
        return _add_to_bundle(data, "receipts", receipt)
    uhdr = dict(_unprotected(data))
    receipts = list(uhdr.get(H_RECEIPTS, ()))
    if receipt in receipts:
        raise InputError("the evidence file already holds this receipt")
    if not is_array(receipts) or len(receipts) >= MAX_UNSIGNED_ENTRIES:
        raise InputError(f"the evidence file already holds {MAX_UNSIGNED_ENTRIES} receipts, the limit")
    uhdr[H_RECEIPTS] = receipts + [bytes(receipt)]
    out = _with_unprotected(data, uhdr)
    parse_sign1(out, max_size=MAX_EVIDENCE_BYTES + 4096 + 64 * 1024 * MAX_UNSIGNED_ENTRIES, what=COVERS_EVIDENCE)
    return out


def write_file(path: Path, data: bytes, *, force: bool) -> None:
    """Write atomically under the output rules (attest.output.paths): no clobbering without force, no symlinks."""
    atomic_write(check_output(Path(path), what="output", force=force), data)
