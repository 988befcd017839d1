"""Ed25519 key files, RFC 9679 key ids, the trust store and `attest keygen`."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from attest.crypto import keys as keys_mod
from attest.crypto.keys import (
    TrustStore,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
)
from attest.errors import InputError

# ---------------------------------------------------------------------------
# An independent, minimal CBOR encoder (ints, byte strings, maps) written from
# RFC 8949 so the kid is not checked against cbor2 with cbor2.


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | ai]) + n.to_bytes(size, "big")
    raise ValueError(n)


def _enc(v: object) -> bytes:
    if isinstance(v, int):
        return _head(0, v) if v >= 0 else _head(1, -1 - v)
    if isinstance(v, bytes):
        return _head(2, len(v)) + v
    if isinstance(v, dict):
        # RFC 8949 §4.2.1: sort by the bytewise order of the encoded keys.
        pairs = sorted((_enc(k), _enc(val)) for k, val in v.items())
        return _head(5, len(pairs)) + b"".join(k + val for k, val in pairs)
    raise TypeError(type(v))


def test_reference_encoder_reproduces_rfc9679_example() -> None:
    # RFC 9679 §6 example (an EC2 P-256 key; the RFC has no OKP vector).
    x = bytes.fromhex("65eda5a12577c2bae829437fe338701a10aaa375e1bb5b5de108de439c08551d")
    y = bytes.fromhex("1e52ed75701163f7f9e40ddf9f341b3dc9ba860af7e0ca7ca7e9eecd0084d19c")
    encoded = _enc({1: 2, -1: 1, -2: x, -3: y})
    assert encoded.hex().upper() == (
        "A40102200121582065EDA5A12577C2BAE829437FE338701A10AAA375E1BB5B5DE"
        "108DE439C08551D2258201E52ED75701163F7F9E40DDF9F341B3DC9BA860AF7E0"
        "CA7CA7E9EECD0084D19C"
    )
    assert hashlib.sha256(encoded).hexdigest() == ("496bd8afadf307e5b08c64b0421bf9dc01528a344a43bda88fadd1669da253ec")


# RFC 8032 §7.1 TEST 1
_RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
_RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


def test_kid_is_rfc9679_thumbprint_of_okp_key() -> None:
    priv = Ed25519PrivateKey.from_private_bytes(_RFC8032_SECRET)
    pub = priv.public_key()
    assert pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == _RFC8032_PUBLIC
    # RFC 9679 §4.1: OKP thumbprint members are exactly kty (1) = OKP (1),
    # crv (-1) = Ed25519 (6), x (-2).
    encoded = _enc({1: 1, -1: 6, -2: _RFC8032_PUBLIC})
    assert encoded == bytes.fromhex("a301012006215820") + _RFC8032_PUBLIC
    expected = hashlib.sha256(encoded).digest()
    assert key_id(pub) == expected
    # Pinned (computed once with sha256sum over the bytes above) so a change
    # of encoding can never slip through silently.
    assert key_id(pub).hex() == "866eefbd6718c8846cd7ddfe43fc74ab1daac4538ff8514ea2ec2d410a415743"


def test_kid_rejects_other_key_types() -> None:
    with pytest.raises(InputError):
        key_id(ec.generate_private_key(ec.SECP256R1()).public_key())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# key files


def test_generate_writes_modes_and_pem(tmp_path: Path) -> None:
    old = os.umask(0)  # the 0600 must not depend on the caller's umask
    try:
        info = generate_keypair(tmp_path / "acme", None)
    finally:
        os.umask(old)
    assert info.private_path == tmp_path / "acme.key"
    assert info.public_path == tmp_path / "acme.pub"
    assert stat.S_IMODE(info.private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(info.public_path.stat().st_mode) == 0o644
    assert info.private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert info.public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert not info.encrypted
    priv = load_private_key(info.private_path, None)
    pub = load_public_key(info.public_path)
    assert key_id(priv.public_key()) == key_id(pub) == info.kid
    assert len(info.kid) == 32 and info.kid_hex == info.kid.hex()


def test_private_key_created_exclusively_with_mode_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int, int]] = []
    real_open = os.open

    def spy(path: str, flags: int, mode: int = 0o777, *a: object, **k: object) -> int:
        calls.append((str(path), flags, mode))
        return real_open(path, flags, mode, *a, **k)

    monkeypatch.setattr(keys_mod.os, "open", spy)
    generate_keypair(tmp_path / "k", None)
    priv_calls = [c for c in calls if c[0].endswith("k.key")]
    assert len(priv_calls) == 1
    _, flags, mode = priv_calls[0]
    # Created with its final mode: never world-readable, not even briefly.
    assert mode == 0o600
    assert flags & os.O_CREAT and flags & os.O_EXCL


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "acme", None)
    before = (tmp_path / "acme.key").read_bytes()
    with pytest.raises(InputError, match="already exists"):
        generate_keypair(tmp_path / "acme", None)
    assert (tmp_path / "acme.key").read_bytes() == before
    # Only the .pub present: still refuse, and write no orphan .key.
    (tmp_path / "other.pub").write_text("x")
    with pytest.raises(InputError, match="already exists"):
        generate_keypair(tmp_path / "other", None)
    assert not (tmp_path / "other.key").exists()


def test_refuses_planted_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "k.key").symlink_to(target)  # dangling: exists() is False
    with pytest.raises(InputError, match="already exists"):
        generate_keypair(tmp_path / "k", None)
    assert not target.exists()


def test_stem_with_dots_is_kept(tmp_path: Path) -> None:
    info = generate_keypair(tmp_path / "acme.v2", None)
    assert info.private_path.name == "acme.v2.key" and info.public_path.name == "acme.v2.pub"


def test_passphrase_key(tmp_path: Path) -> None:
    info = generate_keypair(tmp_path / "p", b"correct horse")
    assert info.encrypted
    assert info.private_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    priv = load_private_key(info.private_path, b"correct horse")
    assert key_id(priv.public_key()) == info.kid
    with pytest.raises(InputError, match="wrong passphrase or corrupt key"):
        load_private_key(info.private_path, b"battery staple")
    with pytest.raises(InputError, match="encrypted"):
        load_private_key(info.private_path, None)


def test_empty_passphrase_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty"):
        generate_keypair(tmp_path / "e", b"")


def test_unencrypted_key_with_passphrase_still_loads(tmp_path: Path) -> None:
    info = generate_keypair(tmp_path / "u", None)
    assert key_id(load_private_key(info.private_path, b"unused").public_key()) == info.kid


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_private_key(tmp_path / "missing.key", None)
    with pytest.raises(InputError, match="not found"):
        load_public_key(tmp_path / "missing.pub")
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"not a key")
    with pytest.raises(InputError, match="not a PEM private key"):
        load_private_key(junk, None)
    with pytest.raises(InputError, match="not a PEM public key"):
        load_public_key(junk)
    with pytest.raises(InputError, match="directory"):
        load_public_key(tmp_path)
    big = tmp_path / "big.pub"
    big.write_bytes(b"A" * (1 << 20))
    with pytest.raises(InputError, match="too large"):
        load_public_key(big)


def test_non_ed25519_keys_rejected(tmp_path: Path) -> None:
    k = ec.generate_private_key(ec.SECP256R1())
    priv = tmp_path / "ec.key"
    priv.write_bytes(
        k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pub = tmp_path / "ec.pub"
    pub.write_bytes(
        k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(InputError, match="not Ed25519"):
        load_private_key(priv, None)
    with pytest.raises(InputError, match="not Ed25519"):
        load_public_key(pub)


def test_swapped_key_files_give_clear_errors(tmp_path: Path) -> None:
    info = generate_keypair(tmp_path / "s", None)
    with pytest.raises(InputError, match="private key"):
        load_public_key(info.private_path)
    with pytest.raises(InputError, match="public key"):
        load_private_key(info.public_path, None)


# ---------------------------------------------------------------------------
# trust store


def test_trust_store_from_dir(tmp_path: Path) -> None:
    a = generate_keypair(tmp_path / "keys" / "alice", None)
    b = generate_keypair(tmp_path / "keys" / "bob", None)
    (tmp_path / "keys" / "notes.txt").write_text("ignored")
    store = TrustStore.from_dir(tmp_path / "keys")
    assert len(store) == 2
    found = store.lookup(a.kid)
    assert found is not None and found.name == "alice" and found.path == a.public_path
    assert store.lookup(b.kid) is not None and store.lookup(b.kid).name == "bob"  # type: ignore[union-attr]
    assert store.lookup(b"\x00" * 32) is None
    assert a.kid in store and b"\x00" * 32 not in store
    assert isinstance(found.public_key, Ed25519PublicKey)


def test_trust_store_from_pubkey_and_path(tmp_path: Path) -> None:
    a = generate_keypair(tmp_path / "alice", None)
    s1 = TrustStore.from_pubkey(a.public_path)
    s2 = TrustStore.from_path(a.public_path)
    s3 = TrustStore.from_path(tmp_path)
    for s in (s1, s2, s3):
        assert s.lookup(a.kid) is not None and s.lookup(a.kid).name == "alice"  # type: ignore[union-attr]


def test_trust_store_kid_comes_from_the_key_not_the_name(tmp_path: Path) -> None:
    a = generate_keypair(tmp_path / "gen" / "alice", None)
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    # A file named after someone else still only vouches for its own key.
    (store_dir / "bob.pub").write_bytes(a.public_path.read_bytes())
    store = TrustStore.from_dir(store_dir)
    assert store.lookup(a.kid).name == "bob"  # type: ignore[union-attr]
    assert len(store) == 1


def test_trust_store_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        TrustStore.from_dir(tmp_path / "nope")
    with pytest.raises(InputError, match="no .pub files"):
        TrustStore.from_dir(tmp_path)
    (tmp_path / "bad.pub").write_text("garbage")
    with pytest.raises(InputError, match="bad.pub"):
        TrustStore.from_dir(tmp_path)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        TrustStore.from_dir(f)


# ---------------------------------------------------------------------------
# attest keygen


def _run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    from attest.cli.app import main

    monkeypatch.setattr(sys, "argv", ["attest", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_keygen_cli_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ATTEST_TEST_PASS", "s3cret")
    rc = _run_cli(
        ["keygen", "--out", str(tmp_path / "pub"), "--passphrase-env", "ATTEST_TEST_PASS", "--json"], monkeypatch
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["encrypted"] is True
    priv = load_private_key(Path(out["private_key"]), b"s3cret")
    assert key_id(priv.public_key()).hex() == out["kid"]
    assert key_id(load_public_key(Path(out["public_key"]))).hex() == out["kid"]
    assert stat.S_IMODE(Path(out["private_key"]).stat().st_mode) == 0o600


def test_keygen_cli_text_and_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = _run_cli(["keygen", "--out", str(tmp_path / "a"), "--no-prompt"], monkeypatch)
    captured = capsys.readouterr()
    assert rc == 0
    kid = key_id(load_public_key(tmp_path / "a.pub")).hex()
    assert kid in captured.out and "not encrypted" in captured.err
    # Existing key: exit 4, nothing overwritten.
    before = (tmp_path / "a.key").read_bytes()
    assert _run_cli(["keygen", "--out", str(tmp_path / "a"), "--no-prompt"], monkeypatch) == 4
    assert (tmp_path / "a.key").read_bytes() == before
    assert "already exists" in capsys.readouterr().err
    # Passphrase variable missing: exit 4, no files.
    monkeypatch.delenv("ATTEST_NOPE", raising=False)
    assert _run_cli(["keygen", "--out", str(tmp_path / "b"), "--passphrase-env", "ATTEST_NOPE"], monkeypatch) == 4
    assert not (tmp_path / "b.key").exists()
