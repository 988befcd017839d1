"""SCITT receipts (RFC 9942, RFC9162_SHA256) and SCRAPI registration against a local transparency service."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.scitt_fixture import LocalTransparencyService, mth, path
from helpers.signed_files import Files, make_files

from attest.bundle.container import read_attestation, read_evidence
from attest.bundle.unsigned import registrable_statement, signed_parts
from attest.errors import ExitCode
from attest.net.http import NetworkError
from attest.transparency import (
    TransparencyError,
    TsKey,
    load_ts_keys,
    receipt_report,
    register_container,
)
from attest.transparency.merkle import leaf_hash, root_from_inclusion_proof
from attest.transparency.receipt import cose_key_thumbprint


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return make_files(tmp_path_factory.mktemp("files"))


@pytest.fixture()
def ts():  # type: ignore[no-untyped-def]
    with LocalTransparencyService() as service:
        for i in range(5):  # other entries, so inclusion paths are not empty
            service.append(b"earlier entry %d" % i)
        yield service


def _keys(ts: LocalTransparencyService) -> list[TsKey]:
    k = ts.key.public_key()
    return [TsKey("ts", k, cose_key_thumbprint(k))]


def test_merkle_proofs_match_an_independent_tree() -> None:
    for n in range(1, 21):
        entries = [b"e%d" % i for i in range(n)]
        root = mth(entries)
        for i in range(n):
            assert root_from_inclusion_proof(leaf_hash(entries[i]), i, n, path(i, entries)) == root
            if n > 1:
                assert root_from_inclusion_proof(leaf_hash(entries[(i + 1) % n]), i, n, path(i, entries)) != root
        with pytest.raises(ValueError):
            root_from_inclusion_proof(leaf_hash(entries[0]), n, n, path(0, entries))
    with pytest.raises(ValueError, match="longer"):
        root_from_inclusion_proof(leaf_hash(b"a"), 0, 1, [b"\x00" * 32])


def test_good_receipt(files: Files, ts: LocalTransparencyService) -> None:
    registered = register_container(files.bundle, ts.url, ts_keys=_keys(ts), timeout=10)
    assert cbor2.loads(registered)["statement"] == cbor2.loads(files.bundle)["statement"]
    read_attestation(registered, files.trust)
    # What the service logged is the statement's signed parts, byte for byte.
    assert ts.entries[-1] == registrable_statement(cbor2.loads(files.bundle)["statement"])
    [check] = receipt_report(registered, _keys(ts))
    assert check.verified and check.reason is None and check.covers == "statement"
    assert (check.tree_size, check.leaf_index, check.issuer) == (6, 5, "ts.test")


def test_async_registration(files: Files) -> None:
    with LocalTransparencyService(mode="async") as service:
        registered = register_container(files.bundle, service.url, ts_keys=_keys(service), timeout=10)
        assert service.polls == {0: 2}  # 303, then 302 once, then 200
        assert receipt_report(registered, _keys(service))[0].verified


def test_receipt_in_label_394_is_read(files: Files, ts: LocalTransparencyService) -> None:
    statement = cbor2.loads(files.bundle)["statement"]
    n = ts.append(registrable_statement(statement))
    protected, _, payload, signature = cbor2.loads(statement).value
    container = dict(cbor2.loads(files.bundle))
    container["statement"] = cbor2.dumps(
        cbor2.CBORTag(18, [protected, {394: [ts.receipt(n)]}, payload, signature]), canonical=True
    )
    data = cbor2.dumps(container, canonical=True)
    read_attestation(data, files.trust)
    [check] = receipt_report(data, _keys(ts))
    assert check.verified


def test_wrong_leaf(files: Files, ts: LocalTransparencyService) -> None:
    # A genuine receipt, but for another statement by the same publisher.
    receipt = signed_parts(register_container(files.other_bundle, ts.url, ts_keys=_keys(ts)))[0].receipts[0]
    obj = dict(cbor2.loads(files.bundle))
    obj["receipts"] = [receipt]
    [check] = receipt_report(cbor2.dumps(obj, canonical=True), _keys(ts))
    assert not check.verified and "another entry" in (check.reason or "")


def _with_proof(receipt: bytes, size: int, index: int, siblings: list[bytes]) -> bytes:
    protected, _, payload, signature = cbor2.loads(receipt).value
    proof = cbor2.dumps([size, index, siblings], canonical=True)
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {396: {-1: [proof]}}, payload, signature]), canonical=True)


def test_wrong_path(files: Files, ts: LocalTransparencyService) -> None:
    receipt = signed_parts(register_container(files.bundle, ts.url))[0].receipts[0]
    [proof] = cbor2.loads(receipt).value[1][396][-1]
    size, index, siblings = cbor2.loads(proof)
    flipped_path = [bytes([siblings[0][0] ^ 1]) + siblings[0][1:], *siblings[1:]]
    obj = dict(cbor2.loads(files.bundle))
    obj["receipts"] = [
        _with_proof(receipt, size, index, flipped_path),
        _with_proof(receipt, size, index, list(siblings[:-1])),
        _with_proof(receipt, size, index, list(siblings)),
    ]
    flipped, truncated, untouched = receipt_report(cbor2.dumps(obj, canonical=True), _keys(ts))
    assert not flipped.verified and "path was altered" in (flipped.reason or "")
    assert not truncated.verified and "does not fit the tree" in (truncated.reason or "")
    assert untouched.verified  # the re-encoding itself is faithful


def test_wrong_root_signature(files: Files, ts: LocalTransparencyService) -> None:
    n = ts.append(registrable_statement(cbor2.loads(files.bundle)["statement"]))
    forged = ts.receipt(n, key=Ed25519PrivateKey.generate())  # same kid, another key
    obj = dict(cbor2.loads(files.bundle))
    obj["receipts"] = [forged, ts.receipt(n)]
    forged_check, genuine = receipt_report(cbor2.dumps(obj, canonical=True), _keys(ts))
    assert not forged_check.verified and "signature" in (forged_check.reason or "") and genuine.verified
    # A genuine receipt checked against some other service's key names the unknown kid.
    other = Ed25519PrivateKey.generate().public_key()
    [check] = receipt_report(
        cbor2.dumps(dict(obj, receipts=[ts.receipt(n)]), canonical=True),
        [TsKey("other", other, cose_key_thumbprint(other))],
    )
    assert not check.verified and "not one of the given" in (check.reason or "")


def test_no_key_given(files: Files, ts: LocalTransparencyService) -> None:
    registered = register_container(files.bundle, ts.url)  # stored unverified
    [check] = receipt_report(registered, [])
    assert not check.verified and "--ts-key" in (check.reason or "")


def test_signed_evidence_registration(files: Files, ts: LocalTransparencyService) -> None:
    registered = register_container(files.evidence_signed, ts.url, ts_keys=_keys(ts))
    assert set(cbor2.loads(registered).value[1]) == {394}
    read_evidence(registered, files.trust)
    assert [(c.covers, c.verified) for c in receipt_report(registered, _keys(ts))] == [("evidence", True)]


def test_service_errors_are_clear(files: Files, ts: LocalTransparencyService) -> None:
    with pytest.raises(TransparencyError, match="HTTP 404: Not Found") as err:
        register_container(files.bundle, ts.url + "/nowhere", timeout=10)
    assert err.value.exit_code == ExitCode.INPUT_ERROR
    with pytest.raises(NetworkError, match="cannot reach|did not answer"):
        register_container(files.bundle, "http://127.0.0.1:9", timeout=2)


@pytest.mark.parametrize(
    "junk",
    [b"", b"\xd2\x84", cbor2.dumps(cbor2.CBORTag(18, [b"", {}, None, b""])), cbor2.dumps([1, 2, 3]), b"\xff" * 100],
)
def test_hostile_receipts_are_reported_not_raised(files: Files, ts: LocalTransparencyService, junk: bytes) -> None:
    obj = dict(cbor2.loads(files.bundle))
    obj["receipts"] = [junk]
    [check] = receipt_report(cbor2.dumps(obj, canonical=True), _keys(ts))
    assert not check.verified and check.reason


def test_ts_key_files(tmp_path: Path, ts: LocalTransparencyService) -> None:
    pem = tmp_path / "ts.pem"
    pem.write_bytes(ts.public_pem())
    [key] = load_ts_keys([pem])
    assert key.kid == ts.kid == hashlib.sha256(cbor2.dumps(ts.cose_key, canonical=True)).digest()


def test_cli_register_and_proofs(
    files: Files,
    ts: LocalTransparencyService,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json
    import sys

    from attest.cli.app import main

    def run(argv: list[str]) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["attest", *argv])
        with pytest.raises(SystemExit) as exc:
            main()
            raise SystemExit(0)
        out, err = capsys.readouterr()
        return int(exc.value.code or 0), out, err

    src = tmp_path / "m.attest"
    src.write_bytes(files.bundle)
    pem = tmp_path / "ts.pem"
    pem.write_bytes(ts.public_pem())
    code, _, _ = run(["register", str(src), "--scitt", ts.url, "--ts-key", str(pem), "--force"])
    assert code == 0 and src.read_bytes() != files.bundle
    code, out, _ = run(["proofs", str(src), "--ts-key", str(pem), "--json"])
    [receipt] = json.loads(out)["receipts"]
    assert code == 0 and receipt["verified"] and receipt["tree_size"] == 6
    code, out, _ = run(["proofs", str(src), "--json"])
    assert code == 3 and json.loads(out)["receipts"][0]["verified"] is False
