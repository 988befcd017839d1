"""COSE Receipts (RFC 9942) of inclusion for the RFC9162_SHA256 verifiable data structure.

A receipt is a tagged COSE_Sign1 by a transparency service:

- protected: alg (1), vds (395) = 1 (RFC9162_SHA256), optionally kid (4) and
  CWT claims (15);
- unprotected: vdp (396) = {-1: [bstr .cbor [tree-size, leaf-index, [+ hash]]]};
- payload: nil (detached; the verifier recomputes the root) or the root itself;
- signature over Sig_structure with the tree root as payload.

Verification (RFC 9942 §5.2.1.1, "inclusion proof and signature are verified
in order"): recompute the root from the entry's leaf hash and the path, then
check the signature over that root.  One boolean comes out, with a reason.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from attest.bundle.cbor_safe import canonical_dumps, is_array, safe_loads
from attest.bundle.cose import COSE_SIGN1_TAG
from attest.errors import BundleError, InputError
from attest.transparency.merkle import leaf_hash, root_from_inclusion_proof

__all__ = [
    "MAX_RECEIPT_BYTES",
    "ReceiptVerdict",
    "TsKey",
    "cose_key_thumbprint",
    "load_ts_keys",
    "verify_receipt",
]

MAX_RECEIPT_BYTES = 64 * 1024
H_ALG, H_KID, H_CWT = 1, 4, 15
H_VDS, H_VDP = 395, 396
VDS_RFC9162_SHA256 = 1
VDP_INCLUSION = -1
ALG_ES256, ALG_EDDSA, ALG_ED25519 = -7, -8, -19

PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class TsKey:
    """A transparency-service public key the verifier trusts, with its RFC 9679 thumbprint."""

    name: str
    key: PublicKey
    kid: bytes


@dataclass(frozen=True)
class ReceiptVerdict:
    verified: bool
    reason: str | None
    tree_size: int | None = None
    leaf_index: int | None = None
    issuer: str | None = None  # CWT iss of the receipt, informative
    signer: str | None = None  # name of the key that verified


def cose_key_thumbprint(key: PublicKey) -> bytes:
    """RFC 9679 COSE Key Thumbprint (SHA-256) of an Ed25519 or P-256 public key."""
    if isinstance(key, Ed25519PublicKey):
        x = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(canonical_dumps({1: 1, -1: 6, -2: x})).digest()
    nums = key.public_numbers()
    x, y = nums.x.to_bytes(32, "big"), nums.y.to_bytes(32, "big")
    return hashlib.sha256(canonical_dumps({1: 2, -1: 1, -2: x, -3: y})).digest()


def load_ts_keys(paths: Sequence[Any]) -> list[TsKey]:
    """Transparency-service keys from PEM SubjectPublicKeyInfo files (Ed25519 or P-256)."""
    keys: list[TsKey] = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read(65537)
        except OSError as exc:
            raise InputError(f"transparency-service key {path}: cannot read ({exc.strerror})") from None
        if b"PRIVATE KEY" in data:
            raise InputError(f"{path} holds a private key; give the service's public key")
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            raise InputError(f"{path} is not a PEM public key") from None
        if (
            isinstance(key, ec.EllipticCurvePublicKey)
            and isinstance(key.curve, ec.SECP256R1)
            or isinstance(key, Ed25519PublicKey)
        ):
            keys.append(TsKey(str(path), key, cose_key_thumbprint(key)))
        else:
            raise InputError(f"{path}: only Ed25519 and P-256 transparency-service keys are supported")
    return keys


def _verify_sig(key: PublicKey, alg: int, signature: bytes, message: bytes) -> bool:
    try:
        if alg in (ALG_EDDSA, ALG_ED25519) and isinstance(key, Ed25519PublicKey):
            key.verify(signature, message)
            return True
        if alg == ALG_ES256 and isinstance(key, ec.EllipticCurvePublicKey) and len(signature) == 64:
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            key.verify(der, message, ec.ECDSA(hashes.SHA256()))
            return True
    except InvalidSignature:
        return False
    return False


def _parse(receipt: bytes) -> tuple[bytes, Mapping[Any, Any], Mapping[Any, Any], bytes | None, bytes]:
    obj = safe_loads(
        receipt,
        max_size=MAX_RECEIPT_BYTES,
        max_depth=6,
        max_items=512,
        allowed_tags=frozenset({COSE_SIGN1_TAG}),
        what="receipt",
    )
    if getattr(obj, "tag", None) != COSE_SIGN1_TAG or not is_array(obj.value) or len(obj.value) != 4:
        raise BundleError("receipt: not a tagged COSE_Sign1")
    protected_bytes, uhdr, payload, signature = obj.value
    if not isinstance(protected_bytes, bytes) or not isinstance(uhdr, Mapping) or not isinstance(signature, bytes):
        raise BundleError("receipt: malformed COSE_Sign1")
    if payload is not None and not isinstance(payload, bytes):
        raise BundleError("receipt: payload must be nil or a byte string")
    hdr = safe_loads(protected_bytes, max_size=4096, max_depth=3, max_items=64, what="receipt protected header")
    if not isinstance(hdr, Mapping):
        raise BundleError("receipt: protected header is not a map")
    return protected_bytes, hdr, uhdr, payload, signature


def _inclusion_proofs(uhdr: Mapping[Any, Any]) -> list[tuple[int, int, list[bytes]]]:
    vdp = uhdr.get(H_VDP)
    if not isinstance(vdp, Mapping) or not is_array(vdp.get(VDP_INCLUSION)) or not vdp[VDP_INCLUSION]:
        raise BundleError("receipt: no RFC9162 inclusion proof (vdp 396, label -1)")
    proofs = []
    for raw in vdp[VDP_INCLUSION]:
        if not isinstance(raw, bytes):
            raise BundleError("receipt: inclusion proof must be a byte string")
        proof = safe_loads(raw, max_size=4096, max_depth=3, max_items=80, what="inclusion proof")
        if not is_array(proof) or len(proof) != 3:
            raise BundleError("receipt: inclusion proof must be [tree-size, leaf-index, path]")
        size, index, path = proof
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (size, index)):
            raise BundleError("receipt: tree size and leaf index must be unsigned integers")
        if not is_array(path) or not all(isinstance(p, bytes) for p in path):
            raise BundleError("receipt: inclusion path must be an array of hashes")
        proofs.append((size, index, list(path)))
    return proofs


def verify_receipt(receipt: bytes, entry: bytes, keys: Sequence[TsKey]) -> ReceiptVerdict:
    """Does `receipt` prove that `entry` is in the log of a service holding one of `keys`?  Never raises."""
    try:
        protected_bytes, hdr, uhdr, payload, signature = _parse(receipt)
        if hdr.get(H_VDS) != VDS_RFC9162_SHA256:
            return ReceiptVerdict(
                False, f"unsupported verifiable data structure {hdr.get(H_VDS)!r} (only RFC9162_SHA256, vds 1)"
            )
        alg = hdr.get(H_ALG)
        if alg not in (ALG_ES256, ALG_EDDSA, ALG_ED25519):
            return ReceiptVerdict(False, f"unsupported receipt signature algorithm {alg!r}")
        claims = hdr.get(H_CWT)
        issuer = claims.get(1) if isinstance(claims, Mapping) and isinstance(claims.get(1), str) else None
        proofs = _inclusion_proofs(uhdr)
    except BundleError as exc:
        return ReceiptVerdict(False, str(exc))
    if len(proofs) != 1:
        return ReceiptVerdict(False, "receipt must carry exactly one inclusion proof")
    size, index, path = proofs[0]
    try:
        root = root_from_inclusion_proof(leaf_hash(entry), index, size, path)
    except ValueError as exc:
        return ReceiptVerdict(False, f"inclusion proof does not fit the tree: {exc}", size, index, issuer)
    if payload is not None and not hmac.compare_digest(payload, root):
        return ReceiptVerdict(
            False,
            "inclusion proof leads to another root than the one the receipt carries (wrong leaf or wrong path)",
            size,
            index,
            issuer,
        )
    if not keys:
        return ReceiptVerdict(
            False, "no transparency-service key given to check the receipt against (--ts-key)", size, index, issuer
        )
    kid = hdr.get(H_KID)
    candidates = [k for k in keys if not isinstance(kid, bytes) or hmac.compare_digest(k.kid, kid)]
    if not candidates:
        return ReceiptVerdict(
            False,
            f"receipt is signed by key {kid.hex() if isinstance(kid, bytes) else kid!r}, "
            "which is not one of the given transparency-service keys",
            size,
            index,
            issuer,
        )
    to_sign = canonical_dumps(["Signature1", protected_bytes, b"", root])
    for k in candidates:
        if _verify_sig(k.key, alg, signature, to_sign):
            return ReceiptVerdict(True, None, size, index, issuer, k.name)
    return ReceiptVerdict(
        False,
        "receipt signature does not verify over the root recomputed from this statement "
        "(the receipt is for another entry, its path was altered, or its signature was)",
        size,
        index,
        issuer,
    )
