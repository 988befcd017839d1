"""Signed statements and the files that carry them.

- `cbor_safe`: decoding hostile CBOR (caps, canonical-only, no surprises).
- `png_safe`: PNG header checks that never decompress.
- `cose`: COSE_Sign1 with Ed25519, kid and claims in the protected header.
- `container`: the `.attest` file, the statement document, evidence files.

Every failure on untrusted input is an `attest.errors.BundleError` (exit 3).
"""

from attest.bundle.cbor_safe import canonical_dumps, is_array, safe_loads
from attest.bundle.container import (
    ATTESTATION_FORMAT,
    EVIDENCE_FORMAT,
    STATEMENT_CONTENT_TYPE,
    STATEMENT_FORMAT,
    InspectedAttestation,
    OpenedAttestation,
    OpenedEvidence,
    encode_attestation,
    encode_document,
    inspect_attestation,
    issue_statement,
    read_attestation,
    read_bounded,
    read_evidence,
    validate_document,
    write_attestation,
    write_evidence,
)
from attest.bundle.cose import ParsedSign1, VerifiedSign1, parse_sign1, sign1, verify1
from attest.bundle.png_safe import check_png

__all__ = [
    "ATTESTATION_FORMAT",
    "EVIDENCE_FORMAT",
    "STATEMENT_CONTENT_TYPE",
    "STATEMENT_FORMAT",
    "InspectedAttestation",
    "OpenedAttestation",
    "OpenedEvidence",
    "ParsedSign1",
    "VerifiedSign1",
    "canonical_dumps",
    "check_png",
    "encode_attestation",
    "encode_document",
    "inspect_attestation",
    "is_array",
    "issue_statement",
    "parse_sign1",
    "read_attestation",
    "read_bounded",
    "read_evidence",
    "safe_loads",
    "sign1",
    "validate_document",
    "verify1",
    "write_attestation",
    "write_evidence",
]
