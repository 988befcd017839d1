"""COSE_Sign1 statements, the .attest container, evidence, interop and schemas."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import threading
import zlib
from pathlib import Path
from typing import Any

import cbor2
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.statement_docs import core_document

from attest.bundle import cose
from attest.bundle.cbor_safe import canonical_dumps, safe_loads
from attest.bundle.container import (
    EVIDENCE_CONTENT_TYPE,
    STATEMENT_CONTENT_TYPE,
    encode_attestation,
    encode_document,
    inspect_attestation,
    issue_statement,
    read_attestation,
    read_bounded,
    read_evidence,
    write_attestation,
    write_evidence,
)
from attest.bundle.cose import parse_sign1, sign1, verify1
from attest.crypto.keys import TrustStore, key_id
from attest.errors import BundleError, InputError

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"


# ---------------------------------------------------------------------------
# fixtures: a small but complete statement


def tiny_png(width: int = 2, height: int = 1, seed: int = 0) -> bytes:
    def chunk(ctype: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))

    rows = b"".join(b"\x00" + bytes([(seed + x + y) % 256 for x in range(3 * width)]) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def make_document(png: bytes) -> dict[str, Any]:
    return core_document(png)


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.fixture(scope="module")
def trust(key: Ed25519PrivateKey) -> TrustStore:
    return TrustStore.from_public_keys({"acme": key.public_key()})


@pytest.fixture(scope="module")
def bundle(key: Ed25519PrivateKey) -> tuple[bytes, bytes, dict[str, Any]]:
    png = tiny_png()
    doc = make_document(png)
    statement = issue_statement(doc, key, issuer="Acme AI", subject="acme-7b", iat=1_700_000_000)
    return encode_attestation(statement, png), png, doc


def kid_of(k: Ed25519PrivateKey) -> bytes:
    return key_id(k.public_key())


# ---------------------------------------------------------------------------
# sign / verify


def test_round_trip(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    msg = sign1(b"payload", key, kid=kid_of(key), issuer="Acme", subject="m", iat=123, content_type="text/plain")
    assert msg[0] == 0xD2  # tag 18
    v = verify1(msg, trust)
    assert (v.payload, v.kid, v.issuer, v.subject, v.iat, v.content_type, v.alg, v.signer) == (
        b"payload",
        kid_of(key),
        "Acme",
        "m",
        123,
        "text/plain",
        -8,
        "acme",
    )
    assert dict(v.protected)[4] == kid_of(key)
    v19 = verify1(sign1(b"p", key, kid=kid_of(key), issuer="a", subject="s", iat=0, content_type="c", alg=-19), trust)
    assert v19.alg == -19


def test_layout_matches_rfc9052_by_hand(key: Ed25519PrivateKey) -> None:
    """An independent verification path: bytes built by hand from RFC 8949/9052, checked with `cryptography`."""

    def head(major: int, n: int) -> bytes:
        if n < 24:
            return bytes([major << 5 | n])
        for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if n < 1 << (8 * size):
                return bytes([major << 5 | ai]) + n.to_bytes(size, "big")
        raise ValueError(n)

    def bstr(b: bytes) -> bytes:
        return head(2, len(b)) + b

    def tstr(s: str) -> bytes:
        return head(3, len(s.encode())) + s.encode()

    kid = kid_of(key)
    iat = 1_700_000_000
    msg = sign1(b"hello", key, kid=kid, issuer="Acme", subject="m-1", iat=iat, content_type="ct")
    # {1: -8, 3: "ct", 4: kid, 15: {1: "Acme", 2: "m-1", 6: iat}}, keys in RFC 8949 order
    claims = head(5, 3) + b"\x01" + tstr("Acme") + b"\x02" + tstr("m-1") + b"\x06" + head(0, iat)
    protected = head(5, 4) + b"\x01" + b"\x27" + b"\x03" + tstr("ct") + b"\x04" + bstr(kid) + b"\x0f" + claims
    signature = msg[-64:]
    expected = b"\xd2" + head(4, 4) + bstr(protected) + head(5, 0) + bstr(b"hello") + bstr(signature)
    assert msg == expected
    to_be_signed = head(4, 4) + tstr("Signature1") + bstr(protected) + bstr(b"") + bstr(b"hello")
    key.public_key().verify(signature, to_be_signed)  # raises if the Sig_structure differs


def test_pycose_verifies_ours_and_we_verify_pycose(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    pytest.importorskip("pycose")
    from pycose.algorithms import EdDSA
    from pycose.keys import OKPKey
    from pycose.keys.curves import Ed25519
    from pycose.messages import Sign1Message

    x = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    d = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    ours = sign1(b"interop", key, kid=kid_of(key), issuer="Acme", subject="m", iat=5, content_type="ct")
    # pycose 1.1's own decode() rejects cbor2 >= 6 (tag contents come back as
    # tuples); hand it the decoded array instead.  Its Sig_structure and
    # signature check are still pycose's own.
    outer = cbor2.loads(ours)
    assert outer.tag == 18
    msg = Sign1Message.from_cose_obj([outer.value[0], dict(outer.value[1]), *outer.value[2:]], True)
    msg.key = OKPKey(crv=Ed25519, x=x)
    assert msg.verify_signature()
    assert msg.payload == b"interop"
    msg_bad = Sign1Message.from_cose_obj([outer.value[0], {}, b"interpol", outer.value[3]], True)
    msg_bad.key = OKPKey(crv=Ed25519, x=x)
    assert not msg_bad.verify_signature()

    # The other direction: a message pycose signs verifies with verify1.
    theirs = Sign1Message(
        phdr={1: EdDSA, 3: "ct", 4: kid_of(key), 15: {1: "Acme", 2: "m", 6: 5}},
        payload=b"from pycose",
    )
    theirs.key = OKPKey(crv=Ed25519, x=x, d=d)
    v = verify1(theirs.encode(), trust)
    assert v.payload == b"from pycose" and v.issuer == "Acme"


def _pycose_python() -> str | None:
    """A Python where pycose can decode (cbor2 < 6), named by $ATTEST_PYCOSE_PYTHON."""
    candidate = os.environ.get("ATTEST_PYCOSE_PYTHON")
    if not candidate or not Path(candidate).exists():
        return None
    probe = subprocess.run(
        [
            candidate,
            "-c",
            "import sys, pycose, importlib.metadata as m; sys.exit(int(m.version('cbor2').split('.')[0]) >= 6)",
        ],
        capture_output=True,
        timeout=60,
    )
    return candidate if probe.returncode == 0 else None


def test_pycose_full_decode_in_separate_env(
    bundle: tuple[bytes, bytes, dict[str, Any]], key: Ed25519PrivateKey
) -> None:
    python = _pycose_python()
    if python is None:
        pytest.skip("no Python with pycose and cbor2<6 (set ATTEST_PYCOSE_PYTHON)")
    statement = safe_loads(bundle[0], max_size=1 << 20, max_depth=3, max_items=100)["statement"]
    x = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    script = (
        "import sys, json\n"
        "from pycose.messages import Sign1Message\n"
        "from pycose.keys import OKPKey\n"
        "from pycose.keys.curves import Ed25519\n"
        "data = bytes.fromhex(sys.argv[1]); x = bytes.fromhex(sys.argv[2])\n"
        "m = Sign1Message.decode(data)\n"
        "m.key = OKPKey(crv=Ed25519, x=x)\n"
        "kid = next(v for k, v in m.phdr.items() if k.identifier == 4)\n"
        "print(json.dumps({'ok': m.verify_signature(), 'kid': kid.hex()}))\n"
    )
    out = subprocess.run(
        [python, "-c", script, statement.hex(), x.hex()], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(out.stdout)
    assert result == {"ok": True, "kid": kid_of(key).hex()}


# ---------------------------------------------------------------------------
# rejections


def forge(
    key: Ed25519PrivateKey,
    protected: Any,
    *,
    uhdr: Any = None,
    payload: Any = b"x",
    tag: int = 18,
    raw_protected: bytes | None = None,
    signature: bytes | None = None,
    extra: list[Any] | None = None,
) -> bytes:
    """A COSE_Sign1 with arbitrary headers and a *valid* signature, so only the header check can reject it."""
    pb = raw_protected if raw_protected is not None else canonical_dumps(protected)
    p = payload if isinstance(payload, bytes) else b""
    sig = signature if signature is not None else key.sign(cose.sig_structure(pb, p))
    body = [pb, {} if uhdr is None else uhdr, payload, sig] + (extra or [])
    return canonical_dumps(cbor2.CBORTag(tag, body))


def good_header(kid: bytes, **over: Any) -> dict[int, Any]:
    hdr: dict[int, Any] = {1: -8, 3: "ct", 4: kid, 15: {1: "iss", 2: "sub", 6: 1}}
    hdr.update({int(k[1:]): v for k, v in over.items()})
    return hdr


def test_forge_helper_produces_valid_messages(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    assert verify1(forge(key, good_header(kid_of(key))), trust).payload == b"x"


@pytest.mark.parametrize("alg", [None, "none", "EdDSA", 0, -7, -35, -257, -9, -65535, 1, True, 8.0])
def test_algorithm_allow_list(alg: Any, key: Ed25519PrivateKey, trust: TrustStore) -> None:
    hdr = good_header(kid_of(key))
    if alg is None:
        del hdr[1]
    else:
        hdr[1] = alg
    with pytest.raises(BundleError, match="algorithm"):
        verify1(forge(key, hdr), trust)


def test_untrusted_key(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    store = TrustStore.from_public_keys({"other": other.public_key()})
    msg = sign1(b"p", key, kid=kid_of(key), issuer="i", subject="s", iat=0, content_type="c")
    with pytest.raises(BundleError, match=f"signed by an untrusted key {kid_of(key).hex()}"):
        verify1(msg, store)


def test_wrong_key_under_trusted_kid(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    # An attacker signs with their own key but claims the trusted kid.
    attacker = Ed25519PrivateKey.generate()
    msg = sign1(b"p", attacker, kid=kid_of(key), issuer="i", subject="s", iat=0, content_type="c")
    with pytest.raises(BundleError, match="signature does not verify"):
        verify1(msg, trust)


def test_kid_only_from_protected_header(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    kid = kid_of(key)
    hdr = good_header(kid)
    del hdr[4]
    with pytest.raises(BundleError, match="kid"):
        verify1(forge(key, hdr, uhdr={4: kid}), trust)
    # Even alongside a correct protected kid, a kid in the unprotected header is refused.
    with pytest.raises(BundleError, match="kid in the unprotected header"):
        verify1(forge(key, good_header(kid), uhdr={4: kid}), trust)
    with pytest.raises(BundleError, match="unprotected"):
        verify1(forge(key, good_header(kid), uhdr={1: -8}), trust)
    with pytest.raises(BundleError, match="unprotected"):
        verify1(forge(key, good_header(kid), uhdr={33: [b"cert"]}), trust)
    # SCITT receipts are the one harmless unprotected label.
    assert verify1(forge(key, good_header(kid), uhdr={394: [b"receipt"]}), trust).payload == b"x"
    with pytest.raises(BundleError, match="receipts"):
        verify1(forge(key, good_header(kid), uhdr={394: "receipt"}), trust)


def test_header_rejections(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    kid = kid_of(key)
    cases: list[tuple[bytes, str]] = [
        (forge(key, {**good_header(kid), 2: [99]}), "unsupported labels"),  # crit
        (forge(key, {**good_header(kid), 7: b"x"}), "unsupported labels"),
        (forge(key, good_header(kid, _4="kid-as-text")), "kid"),
        (forge(key, good_header(kid, _4=b"")), "kid"),
        (forge(key, good_header(kid, _3=42)), "content type"),
        (forge(key, good_header(kid, _15={1: "i", 2: "s"})), "CWT claims"),
        (forge(key, good_header(kid, _15={1: "i", 2: "s", 6: 1, 4: 9})), "CWT claims"),
        (forge(key, good_header(kid, _15={1: "i", 2: "s", 6: -1})), "iat"),
        (forge(key, good_header(kid, _15={1: 5, 2: "s", 6: 1})), "iss"),
        (forge(key, good_header(kid, _15="claims")), "CWT claims"),
        (forge(key, None, raw_protected=b""), "empty protected header"),
        (forge(key, None, raw_protected=canonical_dumps([1, 2])), "expected a map"),
        (forge(key, good_header(kid), payload=None), "payload"),
        (forge(key, good_header(kid), tag=98), "tag 98"),
        (forge(key, good_header(kid), signature=b"\x00" * 63), "64-byte"),
        (forge(key, good_header(kid), extra=[b""]), "4-element"),
        (canonical_dumps([canonical_dumps(good_header(kid)), {}, b"x", b"\x00" * 64]), "tag 18"),
        (canonical_dumps(cbor2.CBORTag(18, {"a": 1})), "4-element"),
    ]
    for data, message in cases:
        with pytest.raises(BundleError, match=message):
            verify1(data, trust)


def test_signature_covers_protected_header(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    kid = kid_of(key)
    good = forge(key, good_header(kid))
    sig = cbor2.loads(good).value[3]
    # Same signature, different (still valid-looking) claims: must fail.
    swapped = forge(key, good_header(kid, _15={1: "mallory", 2: "sub", 6: 1}), signature=sig)
    with pytest.raises(BundleError, match="signature does not verify"):
        verify1(swapped, trust)


# ---------------------------------------------------------------------------
# the .attest container


def test_attestation_round_trip(tmp_path: Path, key: Ed25519PrivateKey, trust: TrustStore) -> None:
    png = tiny_png()
    doc = make_document(png)
    statement = issue_statement(doc, key, issuer="Acme AI", subject="acme-7b", iat=1_700_000_000)
    path = tmp_path / "acme.attest"
    written = write_attestation(path, statement, png)
    assert path.read_bytes() == written
    opened = read_attestation(read_bounded(path, 1 << 20), trust)
    assert opened.png == png and opened.raw == written
    assert opened.verified.subject == "acme-7b" and opened.verified.signer == "acme"
    assert opened.verified.content_type == STATEMENT_CONTENT_TYPE
    assert list(dict(opened.document["method"])["tokens"]) == core_document(png)["method"]["tokens"]
    assert bytes(opened.document["latent"]) == doc["latent"]
    assert opened.receipts == () and opened.timestamps == ()
    # Writing is deterministic: same inputs, same bytes.
    assert encode_attestation(statement, png) == written
    # inspect_attestation agrees, without any trust.
    seen = inspect_attestation(written)
    assert seen.statement.kid == kid_of(key) and seen.png == png


def test_image_binding(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    png = tiny_png()
    statement = issue_statement(make_document(png), key, issuer="i", subject="s", iat=1)
    other = tiny_png(seed=1)
    with pytest.raises(BundleError, match="image"):
        encode_attestation(statement, other)  # the writer refuses too
    container = canonical_dumps(
        {
            "format": "attest-bundle/1",
            "statement": statement,
            "image": {"media_type": "image/png", "data": other},
            "receipts": [],
            "timestamps": [],
        }
    )
    with pytest.raises(BundleError, match="does not match the SHA-256"):
        read_attestation(container, trust)


def test_statement_with_wrong_content_type(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    png = tiny_png()
    payload = encode_document(make_document(png))
    st = sign1(payload, key, kid=kid_of(key), issuer="i", subject="s", iat=1, content_type="application/json")
    container = canonical_dumps(
        {
            "format": "attest-bundle/1",
            "statement": st,
            "image": {"media_type": "image/png", "data": png},
            "receipts": [],
            "timestamps": [],
        }
    )
    with pytest.raises(BundleError, match="content type"):
        read_attestation(container, trust)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("latent"), "missing 'latent'"),
        (lambda d: d.update(extra=1), "unknown top-level keys"),
        (lambda d: d.update(format="attest-statement/9"), "format"),
        (lambda d: d.update(latent=b"\x00" * 2044), "latent must be 512"),
        (lambda d: d.update(latent=np.full(512, np.nan, "<f4").tobytes()), "NaN"),
        (lambda d: d["sketch"].update(shape=[5, 4]), "needs 40"),
        (lambda d: d["sketch"].update(shape=[]), "shape"),
        (lambda d: d["sketch"].update(shape=[6, True]), "shape"),
        (lambda d: d["sketch"].update(dtype="float32"), "dtype"),
        (lambda d: d["sketch"].update(data=np.array([1] * 14 + [np.inf], "<f2").tobytes()), "NaN or infinity"),
        (lambda d: d["method"].update(tokens=["x" * 257]), "at most 256 bytes"),
        (lambda d: d["method"].update(tokens=["a"] * 16385), "at most 16384"),
        (lambda d: d["method"].update(tokens="abc"), "tokens"),
        (lambda d: d["image"].update(sha256=b"\x00" * 31), "sha256"),
        (lambda d: d["image"].update(media_type="image/jpeg"), "media_type"),
        (lambda d: d.update(tool="attest"), "'tool' has the wrong type"),
        (lambda d: d["model"].update({7: "int key"}), "not text"),
    ],
)
def test_document_validation(mutate: Any, message: str, key: Ed25519PrivateKey) -> None:
    doc = make_document(tiny_png())
    mutate(doc)
    with pytest.raises(BundleError, match=message):
        issue_statement(doc, key, issuer="i", subject="s", iat=1)


def test_sketch_size_bound() -> None:
    doc = make_document(tiny_png())
    n = 4 * 1024 * 1024 + 1  # float16 values: one past 8 MiB
    doc["sketch"] = {"dtype": "float16", "shape": [n], "data": bytes(2 * n)}
    with pytest.raises(BundleError, match="8388608-byte limit"):
        encode_document(doc)


def test_meta_is_optional(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    png = tiny_png()
    doc = make_document(png)
    del doc["meta"]
    data = encode_attestation(issue_statement(doc, key, issuer="i", subject="s", iat=1), png)
    assert "meta" not in read_attestation(data, trust).document


def test_read_bounded(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_bounded(tmp_path / "missing.attest", 100)
    with pytest.raises(InputError, match="directory"):
        read_bounded(tmp_path, 100)
    big = tmp_path / "big.attest"
    with open(big, "wb") as f:
        f.truncate(1 << 40)  # sparse: a terabyte that takes no disk
    with pytest.raises(BundleError, match="limit"):
        read_bounded(big, 1 << 20)
    small = tmp_path / "small"
    small.write_bytes(b"abc")
    assert read_bounded(small, 3) == b"abc"
    with pytest.raises(BundleError):
        read_bounded(small, 2)


def test_read_bounded_reads_past_a_lying_st_size(tmp_path: Path) -> None:
    # A FIFO reports st_size 0: the reader must still get every byte, and still stop at the limit.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    payload = bytes(range(256)) * 12_000  # 3 MB: several chunks

    def feed(data: bytes) -> threading.Thread:
        def run() -> None:
            with open(fifo, "wb") as w:
                try:
                    w.write(data)
                except BrokenPipeError:
                    pass  # the reader stopped at its limit

        th = threading.Thread(target=run)
        th.start()
        return th

    th = feed(payload)
    assert read_bounded(fifo, len(payload)) == payload
    th.join()
    th = feed(payload)
    with pytest.raises(BundleError, match="limit"):
        read_bounded(fifo, len(payload) - 1)
    th.join()


# ---------------------------------------------------------------------------
# evidence


def _evidence_body(attestation: bytes) -> dict[str, Any]:
    return {
        "attestation": attestation,
        "suspect": {"subject": {"root": b"\x01" * 32}, "sketch": b"\x00" * 12},
        "results": {"similarity": 0.93, "ci": [0.91, 0.95], "verdict": "match"},
        "tool": {"name": "attest", "version": "0.1.0"},
        "time": "2026-01-01T00:00:00Z",
    }


def test_evidence_unsigned_and_signed(
    tmp_path: Path, bundle: tuple[bytes, bytes, dict[str, Any]], key: Ed25519PrivateKey, trust: TrustStore
) -> None:
    data, png, _ = bundle
    suspect_png = tiny_png(seed=9)
    sheet = tiny_png(4, 2, seed=3)
    written = write_evidence(
        tmp_path / "e.cbor", _evidence_body(data), base_png=png, suspect_png=suspect_png, sheet_png=sheet
    )
    ev = read_evidence(written, trust)
    assert ev.signed is None and ev.attestation.png == png and ev.images["sheet"] == sheet
    assert ev.body["results"]["verdict"] == "match"
    with pytest.raises(BundleError, match="not signed"):
        read_evidence(written, trust, require_signed=True)

    verifier = Ed25519PrivateKey.generate()
    vtrust = TrustStore.from_public_keys({"lab": verifier.public_key()})
    signed = write_evidence(
        tmp_path / "s.cbor",
        _evidence_body(data),
        base_png=png,
        suspect_png=suspect_png,
        key=verifier,
        issuer="Forensics Lab",
        iat=1_800_000_000,
    )
    ev2 = read_evidence(signed, trust, verifier_trust=vtrust, require_signed=True)
    assert ev2.signed is not None and ev2.signed.signer == "lab" and ev2.signed.subject == "acme-7b"
    assert ev2.signed.content_type == EVIDENCE_CONTENT_TYPE
    # The verifier key must be trusted too.
    with pytest.raises(BundleError, match="untrusted key"):
        read_evidence(signed, trust)
    # The publisher key must still be trusted when reading evidence years later.
    with pytest.raises(BundleError, match="untrusted key"):
        read_evidence(signed, vtrust, verifier_trust=vtrust)
    # Any bit flipped in the signed evidence is caught.
    for i in range(0, len(signed), max(1, len(signed) // 300)):
        bad = bytearray(signed)
        bad[i] ^= 0x10
        with pytest.raises(BundleError):
            read_evidence(bytes(bad), trust, verifier_trust=vtrust)


def test_evidence_rejections(tmp_path: Path, bundle: tuple[bytes, bytes, dict[str, Any]], trust: TrustStore) -> None:
    data, png, _ = bundle
    with pytest.raises(BundleError, match="base image"):
        write_evidence(tmp_path / "x", _evidence_body(data), base_png=tiny_png(seed=5), suspect_png=png)
    body = _evidence_body(data)
    del body["time"]
    with pytest.raises(BundleError, match="missing"):
        write_evidence(tmp_path / "x", body, base_png=png, suspect_png=png)
    forged = canonical_dumps(
        {**_evidence_body(data), "format": "attest-evidence/1", "images": {"base": tiny_png(seed=5), "suspect": png}}
    )
    with pytest.raises(BundleError, match="base image"):
        read_evidence(forged, trust)
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 1
    bad_inner = canonical_dumps(
        {**_evidence_body(bytes(tampered)), "format": "attest-evidence/1", "images": {"base": png, "suspect": png}}
    )
    with pytest.raises(BundleError):
        read_evidence(bad_inner, trust)


# ---------------------------------------------------------------------------
# CDDL schemas, validated against real outputs


def _schema(path: Path, root: str | None = None) -> Any:
    pycddl = pytest.importorskip("pycddl")
    text = path.read_text()
    # pycddl validates against the first rule; put the wanted rule first.
    return pycddl.Schema(f"start = {root}\n{text}" if root else text)


def test_cddl_attestation(bundle: tuple[bytes, bytes, dict[str, Any]]) -> None:
    pycddl = pytest.importorskip("pycddl")
    data, _, _ = bundle
    path = SCHEMAS / "attestation.cddl"
    _schema(path).validate_cbor(data)
    statement = safe_loads(data, max_size=1 << 20, max_depth=3, max_items=100)["statement"]
    _schema(path, "COSE-Sign1-Tagged").validate_cbor(statement)
    parsed = parse_sign1(statement)
    _schema(path, "protected-header").validate_cbor(parsed.protected_bytes)
    _schema(path, "statement-document").validate_cbor(parsed.payload)
    # The schema has teeth: a document without a latent is rejected.
    doc = dict(cbor2.loads(parsed.payload))
    del doc["latent"]
    with pytest.raises(pycddl.ValidationError):
        _schema(path, "statement-document").validate_cbor(canonical_dumps(doc))
    with pytest.raises(pycddl.ValidationError):
        _schema(path, "protected-header").validate_cbor(
            canonical_dumps({1: -7, 3: "c", 4: b"k" * 32, 15: {1: "i", 2: "s", 6: 1}})
        )


def test_cddl_evidence(tmp_path: Path, bundle: tuple[bytes, bytes, dict[str, Any]]) -> None:
    pytest.importorskip("pycddl")
    data, png, _ = bundle
    path = SCHEMAS / "evidence.cddl"
    unsigned = write_evidence(tmp_path / "u", _evidence_body(data), base_png=png, suspect_png=png)
    _schema(path).validate_cbor(unsigned)
    _schema(path, "evidence").validate_cbor(unsigned)
    signed = write_evidence(
        tmp_path / "s", _evidence_body(data), base_png=png, suspect_png=png, key=Ed25519PrivateKey.generate(), iat=1
    )
    _schema(path).validate_cbor(signed)
    parsed = parse_sign1(signed)
    _schema(path, "evidence-protected-header").validate_cbor(parsed.protected_bytes)
    _schema(path, "evidence").validate_cbor(parsed.payload)


def test_demo_public_key_is_valid() -> None:
    pub = ROOT / "keys" / "demo-publisher.pub"
    if not pub.exists():
        pytest.skip("no demo key in this checkout")
    store = TrustStore.from_dir(ROOT / "keys")
    assert any(k.name == "demo-publisher" for k in store)
    # Never a private key in the repository.
    assert not list((ROOT / "keys").glob("*.key"))
