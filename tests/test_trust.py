"""Replays of the attacks in "Trust you can take to court": each test stages the
attack as it was reported, then asserts what attest does now.

- a bundle re-signed with a lax policy cannot lower the bar it is judged by;
- a second trusted key cannot borrow the first publisher's name;
- evidence cannot be edited, forged by a publisher key, or replayed for another model;
- outputs are checked before any work and never overwritten or written through a link;
- untrusted text never reaches the terminal as markup or escape codes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import cbor2
import pytest
from helpers.models import save_tiny_model

import attest
from attest.bundle.container import (
    encode_attestation,
    inspect_attestation,
    issue_statement,
    read_evidence,
    write_evidence,
)
from attest.crypto.keys import TrustStore, generate_keypair, load_private_key
from attest.errors import BundleError, InputError

TOKENS = 256


def run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    from attest.cli.app import main

    monkeypatch.setattr(sys, "argv", ["attest", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("trust")
    save_tiny_model("llama", root / "base", seed=21)
    save_tiny_model("llama", root / "unrelated", seed=22)
    keys = root / "keys"
    for name in ("alice", "mallory", "auditor"):
        generate_keypair(keys / name, None)
    (keys / "alice.identity").write_text("Alice Corp (official)\n")
    publishers = root / "publishers"
    publishers.mkdir()
    for name in ("alice", "mallory"):
        (publishers / f"{name}.pub").write_bytes((keys / f"{name}.pub").read_bytes())
    (publishers / "alice.identity").write_text("Alice Corp (official)\n")
    bundle = root / "base.attest"
    attest.issue(
        root / "base", keys / "alice.key", bundle, name="tiny-base", issuer="Alice Corp (official)", tokens=TOKENS
    )
    return {"root": root, "keys": keys, "publishers": publishers, "bundle": bundle}


def resign(
    bundle: Path, key_path: Path, out: Path, *, issuer: str, subject: str = "tiny-base", edit: Any = None
) -> Path:
    """What an attacker holding `key_path` does: take a bundle's document, edit it, sign it anew."""
    opened = inspect_attestation(bundle.read_bytes())
    doc = json.loads(json.dumps(_plainish(opened.document)))
    doc = _restore_bytes(doc, opened.document)
    if edit is not None:
        edit(doc)
    statement = issue_statement(doc, load_private_key(key_path, None), issuer=issuer, subject=subject)
    out.write_bytes(encode_attestation(statement, opened.png))
    return out


def forge_unchecked(bundle: Path, key_path: Path, out: Path, *, edit: Any) -> Path:
    """A validly signed bundle whose statement attest itself would refuse to sign:
    the signer's checks are bypassed, as a hostile publisher's own tool would."""
    from attest.bundle.cbor_safe import canonical_dumps
    from attest.bundle.container import STATEMENT_CONTENT_TYPE
    from attest.bundle.cose import sign1
    from attest.crypto.keys import key_id
    from attest.formats import ATTESTATION_FORMAT

    opened = inspect_attestation(bundle.read_bytes())
    doc = _restore_bytes(json.loads(json.dumps(_plainish(opened.document))), None)
    edit(doc)
    key = load_private_key(key_path, None)
    statement = sign1(
        canonical_dumps(doc),
        key,
        kid=key_id(key.public_key()),
        issuer="x",
        subject="tiny-base",
        iat=0,
        content_type=STATEMENT_CONTENT_TYPE,
    )
    out.write_bytes(
        canonical_dumps(
            {
                "format": ATTESTATION_FORMAT,
                "statement": statement,
                "image": {"media_type": "image/png", "data": opened.png},
                "receipts": [],
                "timestamps": [],
            }
        )
    )
    return out


def _plainish(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return {"__bytes__": obj.hex()}
    if hasattr(obj, "items"):
        return {str(k): _plainish(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plainish(v) for v in obj]
    return obj


def _restore_bytes(obj: Any, _orig: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__bytes__"}:
            return bytes.fromhex(obj["__bytes__"])
        return {k: _restore_bytes(v, None) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore_bytes(v, None) for v in obj]
    return obj


# -- 1. the bundle's own policy no longer decides -----------------------------------


def test_lax_bundle_policy_is_shown_but_never_applied(shelf, tmp_path, capsys, monkeypatch) -> None:
    def lax(doc: dict[str, Any]) -> None:
        doc["policy"].update(threshold=0.05, no_match_below=0.0, null_mean=0.0, null_std=0.001, lineage_alpha=0.9)

    lax_bundle = resign(
        shelf["bundle"], shelf["keys"] / "alice.key", tmp_path / "lax.attest", issuer="Alice Corp (official)", edit=lax
    )
    code, out, err = run(
        [
            "verify",
            str(shelf["root"] / "unrelated"),
            "--bundle",
            str(lax_bundle),
            "--trust",
            str(shelf["publishers"]),
            "--json",
            "--report",
            str(tmp_path / "r.html"),
        ],
        capsys,
        monkeypatch,
    )
    report = json.loads(out)
    assert code == 1 and report["verdict"] == "no_match", err
    assert report["threshold"] == attest.DEFAULT_POLICY.threshold
    assert report["bundle_policy"]["threshold"] == 0.05
    assert {"threshold", "no_match_below", "null_mean", "null_std", "lineage_alpha"} <= set(
        report["policy_differences"]
    )
    assert any("another policy" in n for n in report["notes"])
    # Since issue 11 `z` is the lineage test's; the score's z (against the verifier's null,
    # not the bundle's 0.001) is reported as `score_z`, and the lineage α applied is the verifier's.
    assert report["score_z"] < 5
    assert report["lineage"]["alpha"] == attest.DEFAULT_POLICY.lineage_alpha
    html = (tmp_path / "r.html").read_text()
    assert "another policy" in html and "decision threshold is 0.050" not in html


def test_policy_file_and_threshold_are_the_verifiers_choice(shelf, tmp_path, capsys, monkeypatch) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"threshold": 0.5, "calibration": "site-policy/1"}))
    code, out, err = run(
        [
            "verify",
            str(shelf["root"] / "base"),
            "--bundle",
            str(shelf["bundle"]),
            "--trust",
            str(shelf["publishers"]),
            "--policy",
            str(policy),
            "--json",
        ],
        capsys,
        monkeypatch,
    )
    report = json.loads(out)
    assert code == 0 and report["threshold"] == 0.5 and report["policy"]["calibration"] == "site-policy/1", err
    for bad in ({"threshold": float("nan")}, {"threshold": 2}, {"no_match_below": 0.9, "threshold": 0.2}, [1, 2]):
        policy.write_text(json.dumps(bad))
        code, out, err = run(
            [
                "verify",
                str(shelf["root"] / "base"),
                "--bundle",
                str(shelf["bundle"]),
                "--trust",
                str(shelf["publishers"]),
                "--policy",
                str(policy),
            ],
            capsys,
            monkeypatch,
        )
        assert code == 4 and "Traceback" not in err, (bad, err)


# -- 2. identities come from the trust store ------------------------------------------


def test_second_trusted_key_cannot_borrow_the_first_publishers_name(shelf, tmp_path, capsys, monkeypatch) -> None:
    forged = resign(
        shelf["bundle"], shelf["keys"] / "mallory.key", tmp_path / "forged.attest", issuer="Alice Corp (official)"
    )
    code, out, err = run(
        ["verify", str(shelf["root"] / "base"), "--bundle", str(forged), "--trust", str(shelf["publishers"]), "--json"],
        capsys,
        monkeypatch,
    )
    sig = json.loads(out)["signature"]
    assert sig["trusted_identity"] == "mallory" and sig["issuer"] == "Alice Corp (official)"
    assert sig["issuer_matches_identity"] is False
    assert any("trusted as 'mallory'" in n for n in json.loads(out)["notes"])
    # The human output says who really signed.
    code, out, err = run(
        ["verify", str(shelf["root"] / "base"), "--bundle", str(forged), "--trust", str(shelf["publishers"])],
        capsys,
        monkeypatch,
    )
    assert "signed by 'mallory'" in out and "differs from the trusted identity" in out
    # Pinning the identity refuses the forgery before any model is read.
    code, out, err = run(
        [
            "verify",
            str(tmp_path / "no-such-model"),
            "--bundle",
            str(forged),
            "--trust",
            str(shelf["publishers"]),
            "--expect-issuer",
            "Alice Corp (official)",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 3 and "'mallory'" in err
    code, out, err = run(
        [
            "verify",
            str(shelf["root"] / "base"),
            "--bundle",
            str(shelf["bundle"]),
            "--trust",
            str(shelf["publishers"]),
            "--expect-issuer",
            "Alice Corp (official)",
            "--expect-subject",
            "tiny-base",
            "--json",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 0 and json.loads(out)["signature"]["issuer_matches_identity"] is True, err
    code, out, err = run(
        [
            "verify",
            str(shelf["root"] / "base"),
            "--bundle",
            str(shelf["bundle"]),
            "--trust",
            str(shelf["publishers"]),
            "--expect-subject",
            "other-model",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 3 and "other-model" in err


# -- 3. evidence cannot be edited, forged or replayed ---------------------------------------


@pytest.fixture(scope="module")
def no_match_evidence(shelf) -> dict[str, Path]:
    root = shelf["root"]
    ev = root / "no-match.cbor"
    attest.verify(
        root / "unrelated",
        shelf["bundle"],
        trust=shelf["publishers"],
        evidence=ev,
        verifier_key=shelf["keys"] / "auditor.key",
    )
    verifiers = root / "verifiers"
    verifiers.mkdir()
    (verifiers / "auditor.pub").write_bytes((shelf["keys"] / "auditor.pub").read_bytes())
    return {"evidence": ev, "verifiers": verifiers}


def _edited_body(ev_path: Path, publishers: Path) -> dict[str, Any]:
    opened = read_evidence(
        ev_path.read_bytes(),
        TrustStore.from_dir(publishers),
        verifier_trust=TrustStore.from_dir(ev_path.parent / "verifiers"),
    )
    body = {k: opened.body[k] for k in ("attestation", "suspect", "results", "tool", "time")}
    results = dict(opened.body["results"])
    results.update(verdict="match", score=0.97)
    body["results"] = results
    body["suspect"] = dict(opened.body["suspect"], path_name="competitor-model-v2")
    body["time"] = "2020-01-01T00:00:00+00:00"
    return {"body": body, "images": opened.images}


def test_genuine_evidence_rechecks(shelf, no_match_evidence, capsys, monkeypatch) -> None:
    code, out, err = run(
        [
            "inspect",
            str(no_match_evidence["evidence"]),
            "--trust",
            str(shelf["publishers"]),
            "--verifier-trust",
            str(no_match_evidence["verifiers"]),
            "--json",
            "--suspect",
            str(shelf["root"] / "unrelated"),
        ],
        capsys,
        monkeypatch,
    )
    info = json.loads(out)
    assert code == 0, (err, info.get("problems"))
    assert info["recomputation"]["ok"] and info["recomputation"]["recomputed"]["verdict"] == "no_match"
    assert info["evidence"]["verifier_identity"] == "auditor"


def test_edited_unsigned_evidence_fails(shelf, no_match_evidence, tmp_path, capsys, monkeypatch) -> None:
    edited = _edited_body(no_match_evidence["evidence"], shelf["publishers"])
    out_path = tmp_path / "edited.cbor"
    write_evidence(
        out_path,
        edited["body"],
        base_png=edited["images"]["base"],
        suspect_png=edited["images"]["suspect"],
        sheet_png=edited["images"].get("sheet"),
    )
    code, out, err = run(
        [
            "inspect",
            str(out_path),
            "--trust",
            str(shelf["publishers"]),
            "--verifier-trust",
            str(no_match_evidence["verifiers"]),
            "--json",
        ],
        capsys,
        monkeypatch,
    )
    info = json.loads(out)
    assert code == 3
    assert any("not signed" in p for p in info["problems"])
    assert any(p.startswith("recorded result differs") and "verdict" in p for p in info["problems"])
    assert any("score" in p for p in info["problems"])


def test_edited_evidence_resigned_by_a_trusted_verifier_still_fails_recomputation(
    shelf, no_match_evidence, tmp_path, capsys, monkeypatch
) -> None:
    edited = _edited_body(no_match_evidence["evidence"], shelf["publishers"])
    out_path = tmp_path / "resigned.cbor"
    write_evidence(
        out_path,
        edited["body"],
        base_png=edited["images"]["base"],
        suspect_png=edited["images"]["suspect"],
        sheet_png=edited["images"].get("sheet"),
        key=load_private_key(shelf["keys"] / "auditor.key", None),
        issuer="Independent Auditor",
    )
    code, out, err = run(
        [
            "inspect",
            str(out_path),
            "--trust",
            str(shelf["publishers"]),
            "--verifier-trust",
            str(no_match_evidence["verifiers"]),
        ],
        capsys,
        monkeypatch,
    )
    assert code == 3 and "recomputation" in out and "FAILED" in out


def test_evidence_signed_by_a_publisher_key_is_not_trusted_as_a_verifier(
    shelf, no_match_evidence, tmp_path, capsys, monkeypatch
) -> None:
    edited = _edited_body(no_match_evidence["evidence"], shelf["publishers"])
    out_path = tmp_path / "publisher-signed.cbor"
    write_evidence(
        out_path,
        edited["body"],
        base_png=edited["images"]["base"],
        suspect_png=edited["images"]["suspect"],
        key=load_private_key(shelf["keys"] / "alice.key", None),
        issuer="Independent Auditor",
    )
    code, out, err = run(
        [
            "inspect",
            str(out_path),
            "--trust",
            str(shelf["publishers"]),
            "--verifier-trust",
            str(no_match_evidence["verifiers"]),
        ],
        capsys,
        monkeypatch,
    )
    assert code == 3 and "not trusted" in err.lower() or "untrusted" in err.lower(), err


def test_evidence_replayed_for_another_model_fails(shelf, no_match_evidence, capsys, monkeypatch) -> None:
    code, out, err = run(
        [
            "inspect",
            str(no_match_evidence["evidence"]),
            "--trust",
            str(shelf["publishers"]),
            "--verifier-trust",
            str(no_match_evidence["verifiers"]),
            "--suspect",
            str(shelf["root"] / "base"),
            "--json",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 3 and any("other files" in p for p in json.loads(out)["problems"])


def test_verify_signs_evidence_with_a_local_verifier_key_by_default(shelf, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ATTEST_HOME", str(tmp_path / "home"))
    v = attest.verify(shelf["root"] / "base", shelf["bundle"], trust=shelf["publishers"], evidence=tmp_path / "e.cbor")
    assert any("local verifier key" in n for n in v.notes)
    assert (tmp_path / "home" / "verifiers" / "local-verifier.pub").is_file()
    assert oct((tmp_path / "home" / "verifiers" / "local-verifier.key").stat().st_mode & 0o777) == "0o600"
    found = attest.inspect(tmp_path / "e.cbor", trust=shelf["publishers"])  # default verifier trust: the local one
    assert found.ok and found.info["evidence"]["signed"]


# -- 7. output paths ----------------------------------------------------------------------


def test_issue_refuses_to_clobber_or_mistype_outputs(shelf, tmp_path, capsys, monkeypatch) -> None:
    key = str(shelf["keys"] / "alice.key")
    model = str(shelf["root"] / "base")
    (tmp_path / "x.png").write_bytes(b"precious")
    code, out, err = run(
        ["issue", model, "--key", key, "--out", str(tmp_path / "x.attest"), "--tokens", "64"], capsys, monkeypatch
    )
    assert code == 4 and "x.png exists" in err and (tmp_path / "x.png").read_bytes() == b"precious"
    assert not (tmp_path / "x.attest").exists()
    code, out, err = run(["issue", model, "--key", key, "--out", str(tmp_path / "dog.png")], capsys, monkeypatch)
    assert code == 4 and ".attest" in err
    code, out, err = run(
        ["issue", model, "--key", key, "--out", str(tmp_path / "x.attest"), "--tokens", "64", "--force"],
        capsys,
        monkeypatch,
    )
    assert code == 0 and (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"


def test_verify_checks_every_output_before_computing(shelf, tmp_path, capsys, monkeypatch) -> None:
    base = [
        "verify",
        str(tmp_path / "never-read"),
        "--bundle",
        str(shelf["bundle"]),
        "--trust",
        str(shelf["publishers"]),
    ]
    target = tmp_path / "target.png"
    target.write_bytes(b"keep")
    (tmp_path / "link.png").symlink_to(target)
    cases = [
        (["--sheet", str(tmp_path / "link.png"), "--force"], "symbolic link"),
        (["--evidence", str(target.with_suffix(".cbor"))], None),
        (["--report", str(tmp_path / "missing" / "r.html")], "does not exist"),
        (["--report", str(tmp_path / "r.txt")], ".html"),
    ]
    target.with_suffix(".cbor").write_bytes(b"old evidence")
    cases[1] = (["--evidence", str(target.with_suffix(".cbor"))], "exists; use --force")
    for extra, fragment in cases:
        code, out, err = run(base + extra, capsys, monkeypatch)
        # exit 4 about the output, not about the (missing) suspect: checked first
        assert code == 4 and fragment in err and "never-read" not in err, (extra, err)
    assert target.read_bytes() == b"keep" and target.with_suffix(".cbor").read_bytes() == b"old evidence"


# -- low findings ---------------------------------------------------------------------------


def test_hostile_signed_text_is_escaped_on_the_terminal(shelf, tmp_path, capsys, monkeypatch) -> None:
    hostile = "[conceal]hidden[/conceal] [link=http://evil.example]click[/link] [/bold] \x1b[31mred"
    bundle = resign(
        shelf["bundle"], shelf["keys"] / "alice.key", tmp_path / "h.attest", issuer=hostile, subject=hostile
    )
    code, out, err = run(
        ["verify", str(shelf["root"] / "base"), "--bundle", str(bundle), "--trust", str(shelf["publishers"])],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    assert "\x1b" not in out and "[conceal]hidden[/conceal]" in out and "[link=http://evil.example]" in out
    code, out, err = run(["inspect", str(bundle), "--trust", str(shelf["publishers"])], capsys, monkeypatch)
    assert code == 0 and "\x1b" not in out and "[/bold]" in out


def test_world_readable_private_key_warns_and_strict_refuses(shelf, tmp_path, capsys, monkeypatch) -> None:
    generate_keypair(tmp_path / "open", None)
    os.chmod(tmp_path / "open.key", 0o644)
    argv = ["issue", str(shelf["root"] / "base"), "--key", str(tmp_path / "open.key"), "--tokens", "64"]
    code, out, err = run(argv + ["--out", str(tmp_path / "a.attest")], capsys, monkeypatch)
    assert code == 0 and "readable by others" in err
    code, out, err = run(argv + ["--out", str(tmp_path / "b.attest"), "--strict"], capsys, monkeypatch)
    assert code == 4 and "--strict" in err and not (tmp_path / "b.attest").exists()


def test_statement_semantics_are_checked_before_the_suspect_is_read(shelf, tmp_path, capsys, monkeypatch) -> None:
    def break_method(doc: dict[str, Any]) -> None:
        doc["method"]["terms"] = ["qk", "telepathy"]

    bad = forge_unchecked(shelf["bundle"], shelf["keys"] / "alice.key", tmp_path / "bad.attest", edit=break_method)
    with pytest.raises(BundleError):
        attest.open_bundle(bad, shelf["publishers"])
    code, out, err = run(
        ["verify", str(tmp_path / "no-such-model"), "--bundle", str(bad), "--trust", str(shelf["publishers"])],
        capsys,
        monkeypatch,
    )
    assert code == 3 and "no-such-model" not in err, err


def test_api_rejects_nan_threshold() -> None:
    with pytest.raises(InputError):
        attest.resolve_policy(threshold=float("nan"))
    assert cbor2  # the evidence format is CBOR; imported for the helpers above
