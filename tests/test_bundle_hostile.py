"""Hostile bundles: bit flips, truncation, malformed CBOR, PNG bombs, fuzzing.

Every failure must be a BundleError (exit 3) or InputError (exit 4) with a
message, never a traceback, a hang, or an out-of-memory.
"""

from __future__ import annotations

import hashlib
import random
import struct
import time
import zlib
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.statement_docs import core_document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attest.bundle.cbor_safe import canonical_dumps, safe_loads
from attest.bundle.container import (
    encode_document,
    issue_statement,
    read_attestation,
    validate_document,
)
from attest.bundle.cose import sign1, verify1
from attest.bundle.png_safe import check_png
from attest.crypto.keys import TrustStore, key_id
from attest.errors import BundleError, InputError

KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"hostile").digest())
TRUST = TrustStore.from_public_keys({"acme": KEY.public_key()})
RECEIPT = b"receipt!"


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def png(width: int = 1, height: int = 1, idat: bytes | None = None) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = idat if idat is not None else zlib.compress(b"\x00" + b"\x10\x20\x30" * width)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def document(image: bytes) -> dict[str, Any]:
    return core_document(image, seed=1)


def container(statement: bytes, image: bytes, receipts: list[bytes] | None = None) -> bytes:
    return canonical_dumps(
        {
            "format": "attest-bundle/1",
            "statement": statement,
            "image": {"media_type": "image/png", "data": image},
            "receipts": receipts or [],
            "timestamps": [],
        }
    )


IMAGE = png()
DOC = document(IMAGE)
STATEMENT = issue_statement(DOC, KEY, issuer="Acme", subject="tiny", iat=1_700_000_000)
# One receipt so that some flips legitimately land in unsigned room.
BUNDLE = container(STATEMENT, IMAGE, [RECEIPT])
BASELINE = read_attestation(BUNDLE, TRUST)


def _same_as_baseline(opened: Any) -> bool:
    return (
        canonical_dumps(opened.document) == canonical_dumps(BASELINE.document)
        and opened.verified.kid == BASELINE.verified.kid
        and opened.png == BASELINE.png
        and opened.verified.payload == BASELINE.verified.payload
    )


# ---------------------------------------------------------------------------
# every single-bit flip


def test_every_bit_flip_is_rejected_or_lands_in_unsigned_room() -> None:
    receipt_at = BUNDLE.index(RECEIPT)
    unsigned = range(receipt_at, receipt_at + len(RECEIPT))
    accepted = []
    t0 = time.perf_counter()
    buf = bytearray(BUNDLE)
    for i in range(len(buf)):
        for bit in range(8):
            buf[i] ^= 1 << bit
            try:
                opened = read_attestation(bytes(buf), TRUST)
            except BundleError:
                pass
            else:
                assert i in unsigned, f"flip of byte {i} bit {bit} accepted outside unsigned room"
                assert _same_as_baseline(opened)
                accepted.append((i, bit))
            finally:
                buf[i] ^= 1 << bit
    elapsed = time.perf_counter() - t0
    assert len(accepted) == 8 * len(RECEIPT)  # the receipt body, and nothing else
    print(f"\n{8 * len(BUNDLE)} bit flips of a {len(BUNDLE)}-byte bundle in {elapsed:.2f}s")


def test_truncation_at_every_length() -> None:
    for n in range(len(BUNDLE)):
        with pytest.raises(BundleError):
            read_attestation(BUNDLE[:n], TRUST)
    for n in range(len(STATEMENT)):
        with pytest.raises(BundleError):
            verify1(STATEMENT[:n], TRUST)


def test_trailing_bytes() -> None:
    with pytest.raises(BundleError, match="trailing"):
        read_attestation(BUNDLE + b"\x00", TRUST)


# ---------------------------------------------------------------------------
# malformed CBOR


def loads(data: bytes, **kw: Any) -> Any:
    opts = dict(max_size=1 << 20, max_depth=16, max_items=10_000, allowed_tags=frozenset({18}))
    opts.update(kw)
    return safe_loads(data, **opts)


@pytest.mark.parametrize(
    "hexdata, message",
    [
        ("1817", "non-canonical"),  # 23 in two bytes
        ("190017", "non-canonical"),  # 23 in three bytes
        ("1a000000ff", "non-canonical"),  # 255 in five bytes
        ("1b00000000ffffffff", "non-canonical"),  # 2**32-1 in nine bytes
        ("3817", "non-canonical"),  # -24 in two bytes
        ("5801ff", "non-canonical"),  # 1-byte bstr with a 1-byte length
        ("d81200", "non-canonical"),  # tag 18 with a one-byte head
        ("a2616201616101", "canonical order"),  # {"b": 1, "a": 2}: unsorted
        ("a2616101616102", "duplicate map key"),  # {"a": 1, "a": 2}
        ("a201010102", "duplicate map key"),  # {1: 1, 1: 2}
        ("a220010101", "canonical order"),  # {-1: 1, 1: 1}: unsorted
        ("5f41004100ff", "indefinite"),  # indefinite byte string
        ("7f6161ff", "indefinite"),  # indefinite text string
        ("9f01ff", "indefinite"),  # indefinite array
        ("bf616101ff", "indefinite"),  # indefinite map
        ("ff", "break"),
        ("1c", "reserved"),
        ("f7", "undefined"),
        ("f0", "simple value"),
        ("f820", "simple value"),
        ("fa3f800000", "non-canonical"),  # 1.0 as float32
        ("fb3ff0000000000000", "non-canonical"),  # 1.0 as float64
        ("f97e01", "non-canonical"),  # NaN with a payload
        ("c074323031332d30332d32315432303a30343a30305a", "tag 0"),
        ("d818420102", "tag 24"),  # embedded CBOR
        ("d81c01", "tag 28"),  # value sharing
        ("c249010000000000000000", "tag 2"),  # bignum
        ("a1a0a0", "map key"),  # map as a map key
        ("a14100", "map key"),  # byte string as a map key
        ("62c328", "invalid CBOR"),  # invalid UTF-8
        ("0000", "trailing"),
        ("", "empty"),
    ],
)
def test_malformed_cbor(hexdata: str, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        loads(bytes.fromhex(hexdata))


def test_canonical_values_accepted() -> None:
    for value in [
        0,
        23,
        24,
        255,
        256,
        2**32,
        2**64 - 1,
        -1,
        -(2**64),
        1.5,
        float("inf"),
        float("nan"),
        -0.0,
        "",
        "héllo",
        b"",
        b"\x00" * 300,
        [],
        [1, [2, [3]]],
        {},
        {"a": 1, "b": [True, False, None]},
        {1: 1, 3: 3, -1: 1},
        cbor2.CBORTag(18, [b"", {}, b"", b""]),
    ]:
        data = canonical_dumps(value)
        out = loads(data)
        assert canonical_dumps(out) == data


def test_huge_declared_lengths_refused_before_allocating() -> None:
    for hexdata in [
        "5b4000000000000000",  # bstr of 2**62 bytes
        "7b4000000000000000",  # tstr of 2**62 bytes
        "9b4000000000000000",  # array of 2**62 items
        "bb4000000000000000",  # map of 2**62 pairs
        "5bffffffffffffffff",
        "9a7fffffff00",
        "a1615a9b4000000000000000",
    ]:  # nested inside a map
        t0 = time.perf_counter()
        with pytest.raises(BundleError, match="exceeds|cannot fit"):
            loads(bytes.fromhex(hexdata))
        assert time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize("opener", [b"\x81", b"\xa1\x61a", b"\xd2"])
def test_deep_nesting_no_recursion_error(opener: bytes) -> None:
    depth = 100_000
    data = opener * depth + b"\x00"
    with pytest.raises(BundleError, match="nesting deeper"):
        loads(data, max_depth=64, max_items=10 * depth)
    with pytest.raises(BundleError):
        read_attestation(data, TRUST)
    with pytest.raises(BundleError):
        verify1(data, TRUST)


def test_depth_and_item_caps() -> None:
    assert loads(b"\x81" * 15 + b"\x00") is not None  # 16 levels: at the cap
    with pytest.raises(BundleError, match="nesting deeper than 16"):
        loads(b"\x81" * 16 + b"\x00")
    with pytest.raises(BundleError, match="more than 10 CBOR items"):
        loads(canonical_dumps(list(range(10))), max_items=10)
    with pytest.raises(BundleError, match="limit"):
        loads(b"\x40", max_size=0)
    with pytest.raises(ValueError):
        loads(b"\x00", max_depth=10_000)  # a caller bug, not hostile input


def test_duplicate_and_unsorted_keys_in_real_containers() -> None:
    # Duplicate "format" key in the container, as raw bytes (cbor2 can't write it).
    body = canonical_dumps({"format": "attest-bundle/1"})[1:]
    rest = BUNDLE[1:]
    with pytest.raises(BundleError, match="duplicate map key|canonical order"):
        read_attestation(bytes([0xA6]) + body + rest, TRUST)
    # Unsorted container: cbor2 without canonical keeps insertion order.
    unsorted = cbor2.dumps(
        {
            "timestamps": [],
            "receipts": [],
            "statement": STATEMENT,
            "image": {"media_type": "image/png", "data": IMAGE},
            "format": "attest-bundle/1",
        }
    )
    with pytest.raises(BundleError, match="canonical order"):
        read_attestation(unsorted, TRUST)


def _trusted_statement(payload: bytes) -> bytes:
    """`payload` signed as a statement by the trusted test key, whatever it holds."""
    return sign1(
        payload,
        KEY,
        kid=key_id(KEY.public_key()),
        issuer="i",
        subject="s",
        iat=1,
        content_type="application/vnd.attest.statement+cbor",
    )


def test_non_canonical_document_even_if_validly_signed() -> None:
    # A trusted signer's non-canonical payload (unsorted keys) is still refused:
    # one document, one encoding.
    payload = cbor2.dumps(dict(reversed(list(DOC.items()))))
    with pytest.raises(BundleError, match="statement document: map keys not in canonical order"):
        read_attestation(container(_trusted_statement(payload), IMAGE), TRUST)


def test_integer_key_deep_in_a_signed_document_is_refused_on_read() -> None:
    # The reader relies on the pre-scan for "text keys only" (it no longer walks
    # the decoded document): a trusted signer's integer key, nested three maps
    # down, must still be refused, and canonically encoded so that nothing else is.
    doc = dict(DOC)
    doc["model"] = {**DOC["model"], "extra": {7: "int key"}}
    with pytest.raises(BundleError, match="statement document: map key must be text, not a unsigned int"):
        read_attestation(container(_trusted_statement(canonical_dumps(doc)), IMAGE), TRUST)


def test_text_keys_option_of_safe_loads() -> None:
    nested = canonical_dumps({"a": [{"b": {1: 2}}]})
    assert safe_loads(nested, max_size=100, max_depth=8, max_items=100) == {"a": [{"b": {1: 2}}]}
    with pytest.raises(BundleError, match="map key must be text, not a unsigned int"):
        safe_loads(nested, max_size=100, max_depth=8, max_items=100, text_keys=True)
    negative = canonical_dumps({-1: 0})
    with pytest.raises(BundleError, match="map key must be text, not a negative int"):
        safe_loads(negative, max_size=100, max_depth=8, max_items=100, text_keys=True)
    assert safe_loads(canonical_dumps({"k": {"j": 1}}), max_size=100, max_depth=8, max_items=100, text_keys=True)


def test_container_shape_errors() -> None:
    good = cbor2.loads(BUNDLE)
    cases = [
        ({**good, "extra": 1}, "exactly the keys"),
        ({k: v for k, v in good.items() if k != "timestamps"}, "exactly the keys"),
        ({**good, "format": "attest-bundle/2"}, "format"),
        ({**good, "statement": "text"}, "statement"),
        ({**good, "image": {"media_type": "image/gif", "data": IMAGE}}, "image"),
        ({**good, "image": {"media_type": "image/png", "data": IMAGE, "x": 1}}, "image"),
        ({**good, "receipts": [1]}, "receipts"),
        ({**good, "receipts": [b""] * 65}, "receipts"),
        ({**good, "timestamps": {}}, "timestamps"),
        ([good], "nesting deeper|exactly the keys"),
    ]
    for value, message in cases:
        with pytest.raises(BundleError, match=message):
            read_attestation(canonical_dumps(value), TRUST)
    with pytest.raises(BundleError, match="expected bytes"):
        read_attestation("not bytes", TRUST)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# PNG


def test_png_bomb_header_only() -> None:
    bomb = png(100_000, 100_000, idat=zlib.compress(b"\x00" * 1_000_000, 9))
    assert len(bomb) < 2_000
    t0 = time.perf_counter()
    with pytest.raises(BundleError, match="100000x100000 pixels"):
        check_png(bomb)
    assert time.perf_counter() - t0 < 0.1  # never inflated


def test_png_bomb_in_a_validly_signed_bundle() -> None:
    # Even a trusted signer cannot make a verifier decompress a bomb.
    bomb = png(100_000, 100_000, idat=zlib.compress(b"\x00" * 1_000_000, 9))
    st = issue_statement(document(bomb), KEY, issuer="Acme", subject="bomb", iat=1)
    with pytest.raises(BundleError, match="pixel"):
        read_attestation(container(st, bomb), TRUST)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:7], "signature"),
        (lambda b: b"GIF89a" + b[6:], "signature"),
        (lambda b: b[:20], "truncated|runs past"),
        (lambda b: b + b"junk", "trailing"),
        (lambda b: b[:-12], "truncated"),  # IEND missing
        (lambda b: b[:29] + bytes([b[29] ^ 1]) + b[30:], "CRC"),  # IHDR CRC
        (lambda b: b[:8] + struct.pack(">I", 2**31) + b[12:], "runs past"),
        (lambda b: png(0, 1), "dimensions"),
        (lambda b: b[:8] + _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 7, 2, 0, 0, 0)) + b[33:], "bit depth"),
        (lambda b: b[:8] + _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 1, 0, 0)) + b[33:], "method"),
        (lambda b: b[:8] + _chunk(b"tEXt", b"a\x00b") + b[8:], "IHDR"),
        (lambda b: b[:33] + _chunk(b"IHDR", b[16:29]) + b[33:], "repeated IHDR"),
        (lambda b: b[:33] + b[-12:], "IEND without image data"),
    ],
)
def test_png_structure_errors(mutate: Any, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        check_png(mutate(IMAGE))


def test_png_ok() -> None:
    assert check_png(IMAGE) == (1, 1)
    assert check_png(png(4096, 4096, idat=b"")) == (4096, 4096)
    with pytest.raises(BundleError):
        check_png(png(4097, 4096, idat=b""))


# ---------------------------------------------------------------------------
# fuzzing


def _mutate(data: bytes, ops: list[tuple[int, int, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for kind, a, b, blob in ops:
        n = len(buf)
        if n == 0:
            buf.extend(blob)
            continue
        i = a % n
        if kind == 0:  # bit flip
            buf[i] ^= 1 << (b % 8)
        elif kind == 1:  # byte overwrite
            buf[i] = b % 256
        elif kind == 2:  # insertion
            buf[i:i] = blob
        elif kind == 3:  # deletion
            del buf[i : i + 1 + b % 16]
        else:  # splice: copy a run of the bundle over another place
            j = b % n
            k = 1 + len(blob) * 7
            buf[i : i + k] = data[j : j + k]
    return bytes(buf)


_op = st.tuples(st.integers(0, 4), st.integers(0, 1 << 16), st.integers(0, 1 << 16), st.binary(max_size=8))
_MUTANTS_PER_EXAMPLE = 5  # four single mutations and their combination


def _open_mutant(mutant: bytes) -> None:
    try:
        opened = read_attestation(mutant, TRUST)
    except (BundleError, InputError):
        return
    # Accepted: it must carry exactly what the publisher signed.
    assert _same_as_baseline(opened)


# 5,000 examples x 5 mutants = 25,000 hypothesis-generated mutations.  Several
# mutants per example keep hypothesis' per-example overhead inside the budget.
@settings(max_examples=5_000, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_op, min_size=4, max_size=4))
def test_fuzz_bundle_mutations(ops: list[tuple[int, int, int, bytes]]) -> None:
    for op in ops:
        _open_mutant(_mutate(BUNDLE, [op]))
    _open_mutant(_mutate(BUNDLE, ops))


def test_fuzz_documents_signed_by_a_trusted_key() -> None:
    """The signature stops strangers; this reaches the document parser with a
    trusted-but-broken signer's payloads (seeded, reproducible)."""
    rng = random.Random(20240601)
    payload = encode_document(DOC)
    kid = key_id(KEY.public_key())
    rejected = accepted = 0
    for _ in range(3000):
        ops = [
            (rng.randrange(5), rng.randrange(1 << 16), rng.randrange(1 << 16), rng.randbytes(rng.randrange(9)))
            for _ in range(rng.randrange(1, 4))
        ]
        mutant = _mutate(payload, ops)
        st_ = sign1(
            mutant, KEY, kid=kid, issuer="i", subject="s", iat=1, content_type="application/vnd.attest.statement+cbor"
        )
        try:
            opened = read_attestation(container(st_, IMAGE), TRUST)
        except BundleError:
            rejected += 1
        else:
            # Accepted only if it is one canonical, schema-valid document.
            accepted += 1
            assert canonical_dumps(opened.document) == mutant
            validate_document(opened.document)
    # Both paths exercised: most mutations break the structure; flips inside
    # the latent or sketch bytes give another valid (finite) document.
    assert rejected > 1000 and accepted > 100


def test_fuzz_raw_cbor() -> None:
    """Random byte strings and mutated real CBOR straight into safe_loads."""
    rng = random.Random(7)
    seeds = [BUNDLE, STATEMENT, encode_document(DOC), canonical_dumps({"a": [1, 2.5, {"b": None}]})]
    for i in range(5000):
        if i % 2:
            data = rng.randbytes(rng.randrange(64))
        else:
            base = seeds[i % len(seeds)]
            data = _mutate(
                base,
                [(rng.randrange(5), rng.randrange(1 << 16), rng.randrange(1 << 16), rng.randbytes(rng.randrange(9)))],
            )
        try:
            loads(data, max_items=100_000)
        except BundleError:
            pass
