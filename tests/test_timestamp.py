"""RFC 3161 tokens placed per RFC 9921 on bundles and evidence, against a real local TSA (openssl ts)."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from pathlib import Path

import cbor2
import pytest
from helpers.signed_files import Files, make_files
from helpers.tsa_fixture import SLOW_SECONDS, LocalTSA, Pki, make_pki

from attest.bundle.container import read_attestation, read_evidence
from attest.bundle.unsigned import signed_parts
from attest.errors import ExitCode, InputError
from attest.net.http import NetworkError
from attest.timestamp import (
    TimestampError,
    stamp_container,
    stamp_container_result,
    timestamp_report,
    verify_token,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return make_files(tmp_path_factory.mktemp("files"))


@pytest.fixture(scope="module")
def tsa(pki: Pki):  # type: ignore[no-untyped-def]
    with LocalTSA(pki) as server:
        yield server


def _statement(data: bytes) -> bytes:
    return bytes(cbor2.loads(data)["statement"])


def test_good_token_on_bundle(files: Files, tsa: LocalTSA, pki: Pki) -> None:
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=2)
    stamped = stamp_container(files.bundle, tsa.url, timeout=20)
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
    # The signed statement is untouched and still verifies; only the unsigned list grew.
    assert _statement(stamped) == _statement(files.bundle)
    assert len(cbor2.loads(stamped)["timestamps"]) == 1
    read_attestation(stamped, files.trust)
    [check] = timestamp_report(stamped, [pki.root])
    assert check.verified and check.reason is None and check.covers == "statement"
    assert check.time is not None and before <= check.time <= after
    assert check.tsa is not None and "CN=Test TSA" in check.tsa
    j = check.to_json()
    assert set(j) >= {"time", "verified", "tsa", "reason"} and j["verified"] is True and j["time"].endswith("Z")


def test_imprint_is_the_cbor_encoded_signature_field(files: Files, tsa: LocalTSA, pki: Pki) -> None:
    # RFC 9921 §3.1: hash of the bstr-wrapped signature, 0x5840 head included.
    stamped = stamp_container(files.bundle, tsa.url, timeout=20)
    part = signed_parts(stamped)[0]
    token = part.timestamps[0]
    assert part.signature_field == b"\x58\x40" + part.parsed.signature
    assert verify_token(token, part.signature_field, [pki.root]).verified
    assert not verify_token(token, part.parsed.signature, [pki.root]).verified  # head omitted
    assert not verify_token(token, part.parsed.payload, [pki.root]).verified  # that would be "3161-ttc"


def test_token_over_other_data_is_not_a_time(files: Files, tsa: LocalTSA, pki: Pki) -> None:
    token = signed_parts(stamp_container(files.other_bundle, tsa.url, timeout=20))[0].timestamps[0]
    moved = dict(cbor2.loads(files.bundle))
    moved["timestamps"] = [token]
    forged = cbor2.dumps(moved, canonical=True)
    [check] = timestamp_report(forged, [pki.root])
    assert not check.verified and check.time is None and check.to_json()["time"] is None
    assert check.reason is not None and "imprint" in check.reason


def test_chain_to_another_root(files: Files, tsa: LocalTSA, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other", root_cn="Some Other Root")
    [check] = timestamp_report(stamp_container(files.bundle, tsa.url, timeout=20), [other.root])
    assert not check.verified and check.time is None
    assert check.reason is not None and "chain" in check.reason


def test_no_root_given_is_not_verified(files: Files, tsa: LocalTSA) -> None:
    [check] = timestamp_report(stamp_container(files.bundle, tsa.url, timeout=20), [])
    assert not check.verified and check.time is None and "--tsa-ca" in (check.reason or "")


def test_expired_tsa_certificate(files: Files, tmp_path: Path) -> None:
    expired = make_pki(tmp_path / "expired", expired=True)
    with LocalTSA(expired) as server:
        stamped = stamp_container(files.bundle, server.url, timeout=20)
        [check] = timestamp_report(stamped, [expired.root])
        assert not check.verified and "expired" in (check.reason or "")
        # Given the root up front, stamping itself refuses the token.
        with pytest.raises(TimestampError, match="does not verify"):
            stamp_container(files.bundle, server.url, timeout=20, tsa_roots=[expired.root])


def test_server_http_error(files: Files, pki: Pki) -> None:
    with LocalTSA(pki, "http-error") as server:
        with pytest.raises(NetworkError, match="HTTP 500") as err:
            stamp_container(files.bundle, server.url, timeout=20)
        assert err.value.exit_code == ExitCode.INPUT_ERROR
        res = stamp_container_result(files.bundle, server.url, timeout=20, optional=True)
        assert not res.stamped and res.data == files.bundle and "HTTP 500" in (res.reason or "")


def test_server_refuses(files: Files, pki: Pki) -> None:
    with LocalTSA(pki, "reject") as server, pytest.raises(TimestampError, match="refused.*bad_alg"):
        stamp_container(files.bundle, server.url, timeout=20)


def test_server_times_out(files: Files, pki: Pki) -> None:
    with LocalTSA(pki, "slow") as server:
        start = time.monotonic()
        with pytest.raises(NetworkError, match=r"did not answer within 0.5 s"):
            stamp_container(files.bundle, server.url, timeout=0.5)
        assert time.monotonic() - start < SLOW_SECONDS
        res = stamp_container_result(files.bundle, server.url, timeout=0.5, optional=True)
        assert not res.stamped and res.data == files.bundle


def test_signed_evidence_gets_label_270(files: Files, tsa: LocalTSA, pki: Pki) -> None:
    stamped = stamp_container(files.evidence_signed, tsa.url, timeout=20)
    uhdr = cbor2.loads(stamped).value[1]
    assert set(uhdr) == {270} and isinstance(uhdr[270], bytes)
    read_evidence(stamped, files.trust)  # the verifier's and the publisher's signatures still verify
    checks = timestamp_report(stamped, [pki.root])
    assert [(c.covers, c.verified) for c in checks] == [("evidence", True)]
    with pytest.raises(InputError, match="already carries"):
        stamp_container(stamped, tsa.url, timeout=20)
    # A stamped bundle inside evidence is reported too.
    inner = stamp_container(files.bundle, tsa.url, timeout=20)
    assert [c.covers for c in timestamp_report(inner, [pki.root])] == ["statement"]


def test_unsigned_evidence_cannot_be_stamped(files: Files, tsa: LocalTSA) -> None:
    with pytest.raises(InputError, match="not signed"):
        stamp_container(files.evidence_unsigned, tsa.url, timeout=20)
    assert tsa.requests >= 0  # nothing to assert about the server: the refusal comes first


@pytest.mark.parametrize("junk", [b"", b"\x30\x03\x02\x01\x00", b"\x30\x82\xff\xff" + b"\x00" * 10, b"x" * 70000])
def test_hostile_tokens_are_reported_not_raised(files: Files, pki: Pki, junk: bytes) -> None:
    obj = dict(cbor2.loads(files.bundle))
    obj["timestamps"] = [junk]
    [check] = timestamp_report(cbor2.dumps(obj, canonical=True), [pki.root])
    assert not check.verified and check.time is None and check.reason


def test_flipped_bit_in_signed_imprint_never_verifies(files: Files, tsa: LocalTSA, pki: Pki) -> None:
    # A tampered token (one flipped bit in the signed TSTInfo) never verifies.
    token = bytearray(signed_parts(stamp_container(files.bundle, tsa.url, timeout=20))[0].timestamps[0])
    sig_field = signed_parts(files.bundle)[0].signature_field
    digest = hashlib.sha512(sig_field).digest()
    at = bytes(token).find(digest)
    assert at > 0
    token[at] ^= 1
    assert not verify_token(bytes(token), sig_field, [pki.root]).verified


# --------------------------------------------------------------------------- the CLI


def _run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    import sys

    from attest.cli.app import main

    monkeypatch.setattr(sys, "argv", ["attest", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_cli_timestamp_and_proofs(
    files: Files,
    tsa: LocalTSA,
    pki: Pki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    src = tmp_path / "m.attest"
    src.write_bytes(files.bundle)
    # Before: no tokens.
    code, out, _ = _run(["proofs", str(src), "--tsa-ca", str(pki.root_pem), "--json"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["timestamps"] == []
    # Never replaces FILE without --force.
    code, _, err = _run(["timestamp", str(src), "--tsa", tsa.url], capsys, monkeypatch)
    assert code == 4 and "--force" in err and src.read_bytes() == files.bundle
    dst = tmp_path / "stamped.attest"
    code, _, _ = _run(
        ["timestamp", str(src), "--tsa", tsa.url, "--tsa-ca", str(pki.root_pem), "--out", str(dst)], capsys, monkeypatch
    )
    assert code == 0 and src.read_bytes() == files.bundle
    code, out, _ = _run(["proofs", str(dst), "--tsa-ca", str(pki.root_pem), "--json"], capsys, monkeypatch)
    [stamp] = json.loads(out)["timestamps"]
    assert code == 0 and stamp["verified"] and stamp["time"] and "Test TSA" in stamp["tsa"]
    # Against another root: shown as not verified, with no time, exit 3.
    other = make_pki(tmp_path / "other", root_cn="Other")
    code, out, _ = _run(["proofs", str(dst), "--tsa-ca", str(other.root_pem), "--json"], capsys, monkeypatch)
    [stamp] = json.loads(out)["timestamps"]
    assert code == 3 and stamp["verified"] is False and stamp["time"] is None and stamp["reason"]


def test_cli_tsa_optional(
    files: Files, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "m.attest"
    src.write_bytes(files.bundle)
    dst = tmp_path / "out.attest"
    with LocalTSA(pki, "slow") as server:
        code, _, err = _run(
            ["timestamp", str(src), "--tsa", server.url, "--timeout", "0.5", "--out", str(dst)], capsys, monkeypatch
        )
        assert code == 4 and "did not answer" in err and not dst.exists()
        code, _, err = _run(
            ["timestamp", str(src), "--tsa", server.url, "--timeout", "0.5", "--out", str(dst), "--tsa-optional"],
            capsys,
            monkeypatch,
        )
        assert code == 0 and "WITHOUT a timestamp" in err and dst.read_bytes() == files.bundle
