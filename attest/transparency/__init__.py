"""SCITT for attest files: COSE Receipts (RFC 9942) over RFC 9162 Merkle logs, registered via SCRAPI.

- `merkle`: RFC 9162 leaf/node hashes and inclusion-proof verification.
- `receipt`: parse and verify one receipt against an entry and service keys.
- `scrapi`: the registration client (draft-ietf-scitt-scrapi-08 subset).
- `registration`: register a bundle or evidence file, report its receipts.
"""

from attest.transparency.receipt import (
    ReceiptVerdict,
    TsKey,
    load_ts_keys,
    verify_receipt,
)
from attest.transparency.registration import (
    ReceiptCheck,
    receipt_report,
    register_container,
)
from attest.transparency.scrapi import TransparencyError, register_statement

__all__ = [
    "ReceiptCheck",
    "ReceiptVerdict",
    "TransparencyError",
    "TsKey",
    "load_ts_keys",
    "receipt_report",
    "register_container",
    "register_statement",
    "verify_receipt",
]
