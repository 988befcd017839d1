"""Small but complete signed files for the timestamp and transparency tests.

A real statement document (every field the verifier checks), signed with
`issue_statement`, wrapped with `encode_attestation`; and evidence files
written with `write_evidence`, unsigned or signed by a verifier key.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from attest.bundle.container import encode_attestation, issue_statement, write_evidence
from attest.crypto.keys import TrustStore
from helpers.statement_docs import core_document


def tiny_png(width: int = 2, height: int = 1, seed: int = 0) -> bytes:
    def chunk(ctype: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))

    rows = b"".join(b"\x00" + bytes([(seed + x + y) % 256 for x in range(3 * width)]) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def document(png: bytes, seed: int = 0) -> dict[str, Any]:
    """A statement every reader accepts (tests/statement_docs.py), made distinct per seed."""
    doc = core_document(png, seed)
    doc["subject"]["root"] = hashlib.sha256(b"w%d" % seed).digest()
    return doc


@dataclass(frozen=True)
class Files:
    publisher: Ed25519PrivateKey
    verifier: Ed25519PrivateKey
    bundle: bytes
    other_bundle: bytes  # another statement by the same publisher
    evidence_unsigned: bytes
    evidence_signed: bytes

    @property
    def trust(self) -> TrustStore:
        return TrustStore.from_public_keys({"pub": self.publisher.public_key(), "lab": self.verifier.public_key()})


def make_files(folder: Path) -> Files:
    publisher = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    verifier = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    png = tiny_png()
    bundle = encode_attestation(
        issue_statement(document(png), publisher, issuer="Acme AI", subject="acme-7b", iat=1_700_000_000), png
    )
    other = encode_attestation(
        issue_statement(document(png, seed=1), publisher, issuer="Acme AI", subject="acme-8b", iat=1_700_000_001), png
    )
    body = {
        "attestation": bundle,
        "suspect": {"subject": {"root": b"\x01" * 32}},
        "results": {"verdict": "match", "score": 0.93},
        "tool": {"name": "attest", "version": "0.1.0"},
        "time": "2026-01-01T00:00:00Z",
    }
    unsigned = write_evidence(folder / "ev-unsigned.cbor", body, base_png=png, suspect_png=tiny_png(seed=9))
    signed = write_evidence(
        folder / "ev-signed.cbor",
        body,
        base_png=png,
        suspect_png=tiny_png(seed=9),
        key=verifier,
        issuer="Forensics Lab",
        iat=1_800_000_000,
    )
    return Files(publisher, verifier, bundle, other, unsigned, signed)
