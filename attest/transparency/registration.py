"""SCITT on attest files: register a statement, keep its receipt, report what each receipt proves.

The entry a transparency service logs is the signed statement with its
unprotected header emptied (the signed parts only; see
attest.bundle.unsigned.registrable_statement), so receipts and time-stamp
tokens added later never change what the receipt refers to.  The leaf is
RFC 9162's SHA-256(0x00 || entry).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from attest.bundle.unsigned import add_receipt, outer_part, signed_parts
from attest.net.http import DEFAULT_TIMEOUT
from attest.transparency.receipt import TsKey, verify_receipt
from attest.transparency.scrapi import TransparencyError, register_statement

__all__ = ["ReceiptCheck", "receipt_report", "register_container"]


@dataclass(frozen=True)
class ReceiptCheck:
    covers: str  # "statement" or "evidence"
    verified: bool
    reason: str | None
    tree_size: int | None
    leaf_index: int | None
    issuer: str | None
    ts_key: str | None  # which given key verified it

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "reason": self.reason,
            "covers": self.covers,
            "issuer": self.issuer,
            "ts_key": self.ts_key,
            "tree_size": self.tree_size,
            "leaf_index": self.leaf_index,
        }


def receipt_report(data: bytes, ts_keys: Sequence[TsKey]) -> list[ReceiptCheck]:
    """Verify every receipt in a bundle or evidence file; BundleError only when the file itself is malformed."""
    checks: list[ReceiptCheck] = []
    for part in signed_parts(data):
        entry = part.entry
        for receipt in part.receipts:
            v = verify_receipt(receipt, entry, ts_keys)
            checks.append(
                ReceiptCheck(part.covers, v.verified, v.reason, v.tree_size, v.leaf_index, v.issuer, v.signer)
            )
    return checks


def register_container(
    data: bytes,
    scitt_url: str,
    *,
    ts_keys: Sequence[TsKey] = (),
    timeout: float = DEFAULT_TIMEOUT,
    max_wait: float = 60.0,
) -> bytes:
    """Register the file's outermost signed statement at `scitt_url`; returns the file with the receipt added.

    With `ts_keys`, the receipt must verify before it is stored.  Without,
    it is stored as received (verify it later with `receipt_report`).
    """
    part = outer_part(data)
    receipt = register_statement(part.entry, scitt_url, timeout=timeout, max_wait=max_wait)
    verdict = verify_receipt(receipt, part.entry, ts_keys)
    if ts_keys and not verdict.verified:
        raise TransparencyError(
            f"transparency service {scitt_url} returned a receipt that does not verify: {verdict.reason}"
        )
    if not ts_keys and verdict.reason and "--ts-key" not in verdict.reason:
        # Without keys only the signature check is skipped; a receipt whose proof cannot fit is useless.
        raise TransparencyError(f"transparency service {scitt_url} returned an unusable receipt: {verdict.reason}")
    return add_receipt(data, receipt)
