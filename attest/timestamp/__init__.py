"""Provable time for attest files: RFC 3161 tokens placed per RFC 9921 ("COSE then timestamp").

- `rfc3161`: request a token from a TSA, verify one against root CAs.
- `stamping`: add a token to a bundle or evidence file; report what each token proves.
"""

from attest.timestamp.rfc3161 import (
    TimestampError,
    TokenVerdict,
    load_tsa_roots,
    request_token,
    verify_token,
)
from attest.timestamp.stamping import (
    StampResult,
    TimestampCheck,
    stamp_container,
    stamp_container_result,
    timestamp_report,
)

__all__ = [
    "StampResult",
    "TimestampCheck",
    "TimestampError",
    "TokenVerdict",
    "load_tsa_roots",
    "request_token",
    "stamp_container",
    "stamp_container_result",
    "timestamp_report",
    "verify_token",
]
