"""Timestamps through the workflows: `issue --tsa`, `verify --tsa` (the evidence), `inspect --tsa-ca`,
against a real local TSA (`openssl ts -reply` behind HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers.models import save_tiny_model
from helpers.tsa_fixture import LocalTSA, make_pki

from attest.crypto.keys import generate_keypair


def run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    from attest.cli.app import main

    monkeypatch.setattr(sys, "argv", ["attest", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_issue_verify_inspect_with_a_local_tsa(tmp_path: Path, capsys, monkeypatch) -> None:
    pki = make_pki(tmp_path / "pki")
    other = make_pki(tmp_path / "other", root_cn="Another Root")
    save_tiny_model("llama", tmp_path / "base", seed=31)
    generate_keypair(tmp_path / "pub", None)
    generate_keypair(tmp_path / "aud", None)
    bundle = tmp_path / "base.attest"
    with LocalTSA(pki) as tsa:
        code, out, err = run(
            [
                "issue",
                str(tmp_path / "base"),
                "--key",
                str(tmp_path / "pub.key"),
                "--out",
                str(bundle),
                "--tokens",
                "64",
                "--tsa",
                tsa.url,
                "--tsa-ca",
                str(pki.root_pem),
            ],
            capsys,
            monkeypatch,
        )
        assert code == 0, err
        code, out, err = run(
            [
                "verify",
                str(tmp_path / "base"),
                "--bundle",
                str(bundle),
                "--pubkey",
                str(tmp_path / "pub.pub"),
                "--evidence",
                str(tmp_path / "ev.cbor"),
                "--key",
                str(tmp_path / "aud.key"),
                "--tsa",
                tsa.url,
            ],
            capsys,
            monkeypatch,
        )
        assert code == 0, err
    # Before any root is given the token is listed, but not as a time.
    code, out, err = run(["inspect", str(bundle), "--pubkey", str(tmp_path / "pub.pub"), "--json"], capsys, monkeypatch)
    [stamp] = json.loads(out)["timestamps"]
    assert code == 0 and stamp["verified"] is False and stamp["time"] is None and stamp["reason"]
    code, out, err = run(
        ["inspect", str(bundle), "--pubkey", str(tmp_path / "pub.pub"), "--tsa-ca", str(pki.root_pem), "--json"],
        capsys,
        monkeypatch,
    )
    [stamp] = json.loads(out)["timestamps"]
    assert code == 0 and stamp["verified"] is True and stamp["time"].endswith("Z") and "Test TSA" in stamp["tsa"]
    code, out, err = run(
        ["inspect", str(bundle), "--pubkey", str(tmp_path / "pub.pub"), "--tsa-ca", str(pki.root_pem)],
        capsys,
        monkeypatch,
    )
    assert "timestamp verified" in out
    # Against another root the same token is refused and inspect fails.
    code, out, err = run(
        ["inspect", str(bundle), "--pubkey", str(tmp_path / "pub.pub"), "--tsa-ca", str(other.root_pem), "--json"],
        capsys,
        monkeypatch,
    )
    info = json.loads(out)
    assert code == 3 and info["timestamps"][0]["verified"] is False and info["timestamps"][0]["time"] is None
    # The evidence carries its own token over the verifier's signature.
    code, out, err = run(
        [
            "inspect",
            str(tmp_path / "ev.cbor"),
            "--pubkey",
            str(tmp_path / "pub.pub"),
            "--verifier-pubkey",
            str(tmp_path / "aud.pub"),
            "--tsa-ca",
            str(pki.root_pem),
            "--json",
        ],
        capsys,
        monkeypatch,
    )
    info = json.loads(out)
    assert code == 0, info["problems"]
    assert any(t["verified"] and t.get("covers") == "evidence" for t in info["timestamps"])


def test_verify_tsa_needs_evidence(tmp_path: Path, capsys, monkeypatch) -> None:
    code, out, err = run(
        [
            "verify",
            str(tmp_path / "m"),
            "--bundle",
            str(tmp_path / "b.attest"),
            "--pubkey",
            str(tmp_path / "k.pub"),
            "--tsa",
            "http://127.0.0.1:9/",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 4 and "Traceback" not in err
