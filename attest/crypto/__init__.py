"""Ed25519 keys, RFC 9679 key ids and the verifier's trust store."""

from attest.crypto.keys import (
    KeyInfo,
    TrustedKey,
    TrustStore,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
)

__all__ = [
    "KeyInfo",
    "TrustedKey",
    "TrustStore",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
]
