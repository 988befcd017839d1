"""RFC 9162 §2.1 Merkle tree hashing (SHA-256) and inclusion-proof verification.

Leaf hash: SHA-256(0x00 || entry); interior node: SHA-256(0x01 || left || right).
`root_from_inclusion_proof` is the verification algorithm of RFC 9162
§2.1.3.2, step by step; it returns the root the proof leads to, or raises
ValueError when the proof cannot belong to a tree of that size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["HASH_BYTES", "MAX_PATH", "leaf_hash", "node_hash", "root_from_inclusion_proof"]

HASH_BYTES = 32
MAX_PATH = 64  # a tree of 2**64 leaves needs at most 64 siblings


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion_proof(leaf: bytes, leaf_index: int, tree_size: int, path: Sequence[bytes]) -> bytes:
    """The tree root implied by `leaf` (a leaf hash) at `leaf_index` with sibling `path`."""
    if not 0 <= leaf_index < tree_size:
        raise ValueError(f"leaf index {leaf_index} is outside a tree of size {tree_size}")
    if len(path) > MAX_PATH or any(len(p) != HASH_BYTES for p in path):
        raise ValueError("inclusion path must be at most 64 SHA-256 hashes")
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            raise ValueError("inclusion path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("inclusion path is shorter than the tree is deep")
    return r
