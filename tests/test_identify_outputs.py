"""`attest identify --report/--evidence`: the signed identify evidence, its re-check, the HTML report."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.registry_world import World, build_world, forge_variant, save_derivative

import attest
from attest.bundle.cbor_safe import canonical_dumps, safe_loads
from attest.bundle.cose import parse_sign1, sign1
from attest.bundle.identify_evidence import IDENTIFY_EVIDENCE_CONTENT_TYPE, MAX_DETAILS
from attest.crypto.keys import TrustStore, key_id, load_private_key
from attest.errors import BundleError, ExitCode
from attest.registry import add as registry_add
from attest.report.html import _fmt_p

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("idout-world"), names=("base-llama", "base-qwen2", "base-gpt2"))


@pytest.fixture(scope="module")
def registry(world: World) -> Path:
    reg = world.root / "reg"
    registry_add(reg, list(world.bundles.values()), TrustStore.from_pubkey(world.pub))
    return reg


@pytest.fixture(scope="module")
def derived(world: World) -> Path:
    return save_derivative("llama", 21, world.root / "derived-llama")


def _verifier_pub() -> Path:
    return Path(os.environ["ATTEST_HOME"]) / "verifiers" / "local-verifier.pub"


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from attest.cli.app import main

    monkeypatch.setattr(sys, "argv", ["attest", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def _identify_cli(world: World, registry: Path, suspect: Path, tmp: Path, *extra: str) -> list[str]:
    return [
        "identify",
        str(suspect),
        "--registry",
        str(registry),
        "--pubkey",
        str(world.pub),
        "--report",
        str(tmp / "id.html"),
        "--evidence",
        str(tmp / "id.cbor"),
        *extra,
    ]


def _inspect_cli(world: World, path: Path) -> list[str]:
    return ["inspect", str(path), "--pubkey", str(world.pub), "--verifier-pubkey", str(_verifier_pub()), "--json"]


@pytest.fixture(scope="module")
def written(world: World, registry: Path, derived: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One CLI run with --report/--evidence/--json, shared by the checks below."""
    import contextlib
    import io

    from attest.cli.app import main

    tmp = tmp_path_factory.mktemp("idout-run")
    out, mp = io.StringIO(), pytest.MonkeyPatch()
    mp.setattr(sys, "argv", ["attest", *_identify_cli(world, registry, derived, tmp, "--json")])
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
            main()
    finally:
        mp.undo()
    return {"code": exc.value.code, "data": json.loads(out.getvalue()), "tmp": tmp}


def test_cli_writes_both_and_the_json_names_them(written: dict[str, Any], world: World) -> None:
    data, tmp = written["data"], written["tmp"]
    assert written["code"] == 0
    assert data["verdict"] == "match" and data["base"]["name"] == "base-llama"
    assert data["also"] == []  # one significant base: nothing else to name
    assert data["evidence"] == str(tmp / "id.cbor") and data["report"] == str(tmp / "id.html")
    assert "local verifier key" in data["signer_note"]
    assert (tmp / "id.cbor").stat().st_size > 0 and (tmp / "id.html").stat().st_size > 0
    top = data["base"]
    # what the evidence ranks is the trust store's name for the signer, and the lineage figures
    assert top["signed_by"] == TrustStore.from_pubkey(world.pub).lookup(bytes.fromhex(top["kid"])).name
    assert 0.0 < top["agreement"] <= 1.0 and top["lineage_p_value"] == top["p_value"]


def test_the_evidence_is_signed_and_inspect_rechecks_it(written, world, monkeypatch, capsys) -> None:
    path = written["tmp"] / "id.cbor"
    raw = path.read_bytes()
    parsed = parse_sign1(raw, max_size=len(raw) + 1)
    assert parsed.content_type == IDENTIFY_EVIDENCE_CONTENT_TYPE
    assert parsed.kid == key_id(load_private_key(_verifier_pub().with_suffix(".key"), None).public_key())
    code, out, err = _run(monkeypatch, capsys, *_inspect_cli(world, path))
    assert code == 0, out + err
    info = json.loads(out)
    assert info["kind"] == "identify-evidence" and info["ok"] and info["problems"] == []
    e = info["identify"]
    assert e["answer"]["verdict"] == "match" and e["answer"]["base"]["name"] == "base-llama"
    assert e["registry"]["bases"] == 3 and e["multiple_testing"]["method"] == "holm-bonferroni"
    assert e["multiple_testing"]["tests"] == 3 and e["multiple_testing"]["alpha"] == 0.01
    assert 0 < e["policy"]["threshold"] < 1 and e["suspect"]["path_name"] == "derived-llama"
    assert e["tool"]["name"] == "attest" and e["time"]
    # every registered base, with its subject root and bundle digest; the ranking is the CLI's
    assert sorted(r["subject_root"] for r in e["ranking"]) == sorted(world.subject_roots.values())
    assert [r["name"] for r in e["ranking"]] == [c["name"] for c in written["data"]["candidates"]]
    assert [r["p_holm"] for r in e["ranking"]] == [c["p_holm"] for c in written["data"]["candidates"]]
    # the top bundles travel verbatim and were re-verified against the publisher's key
    assert len(e["details"]) == 3 and all(d["signature"]["valid"] for d in e["details"])
    rec = info["recomputation"]
    assert rec["ok"] and rec["recomputed"]["verdict"] == "match" and rec["recomputed"]["base"] == "base-llama"
    # the human-readable form says the same
    code, out, _ = _run(monkeypatch, capsys, *_inspect_cli(world, path)[:-1])
    assert code == 0 and "identify evidence" in out and "base-llama" in out and "recomputed" in out


def test_the_report_shows_the_answer_the_ranking_and_the_dogs(written: dict[str, Any]) -> None:
    page = (written["tmp"] / "id.html").read_text()
    data = written["data"]
    assert "derived from a registered base model" in page
    for c in data["candidates"]:
        assert c["name"] in page
        assert _fmt_p(c["p_holm"]) in page  # the Holm p-values as ranked
    # two dogs (base, suspect) per detailed candidate, every one an embedded PNG
    imgs = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == 2 * len(data["candidates"]) == 6
    assert {alt for alt, _ in imgs} >= {"Dog of base base-llama", "Suspect dog against base-llama"}
    assert len({b64 for _, b64 in imgs}) == 6  # each dog drawn from its own latent
    assert "<script" not in page and "default-src 'none'" in page


def test_a_tampered_byte_is_rejected_with_exit_3(written, world, monkeypatch, capsys, tmp_path) -> None:
    raw = bytearray((written["tmp"] / "id.cbor").read_bytes())
    at = raw.find(b"base-qwen2")
    assert at > 0
    raw[at + len("base-qwen")] = ord("3")  # still valid CBOR; only the signature can tell
    bad = tmp_path / "bad.cbor"
    bad.write_bytes(bytes(raw))
    code, out, err = _run(monkeypatch, capsys, *_inspect_cli(world, bad))
    assert code == int(ExitCode.BAD_BUNDLE) == 3
    assert "signature does not verify" in out + err and "Traceback" not in out + err


def test_an_edited_and_resigned_ranking_fails_the_recheck(written, world, monkeypatch, capsys, tmp_path) -> None:
    """Whoever holds the verifier key still cannot make the numbers disagree unnoticed."""
    raw = (written["tmp"] / "id.cbor").read_bytes()
    parsed = parse_sign1(raw, max_size=len(raw) + 1)
    body = safe_loads(parsed.payload, max_size=len(raw), max_depth=16, max_items=4_000_000, what="t")

    def thaw(x: Any) -> Any:
        if hasattr(x, "items"):
            return {k: thaw(v) for k, v in x.items()}
        return [thaw(v) for v in x] if isinstance(x, (list, tuple)) else x

    body = thaw(body)
    body["ranking"][1]["p_holm"] = 1e-9  # the runner-up made to look significant
    body["answer"]["also"] = []
    key = load_private_key(_verifier_pub().with_suffix(".key"), None)
    forged = sign1(
        canonical_dumps(body),
        key,
        kid=key_id(key.public_key()),
        issuer=parsed.issuer,
        subject=parsed.subject,
        iat=parsed.iat,
        content_type=IDENTIFY_EVIDENCE_CONTENT_TYPE,
    )
    bad = tmp_path / "resigned.cbor"
    bad.write_bytes(forged)
    code, out, _ = _run(monkeypatch, capsys, *_inspect_cli(world, bad))
    info = json.loads(out)
    assert code == 3 and not info["ok"]
    name = body["ranking"][1]["name"]
    assert any(f"{name}: p_holm recorded 1e-09" in p for p in info["problems"])


def test_outputs_are_never_overwritten_without_force(written, world, registry, derived, monkeypatch, capsys) -> None:
    tmp = written["tmp"]
    before = (tmp / "id.cbor").read_bytes()
    code, out, err = _run(monkeypatch, capsys, *_identify_cli(world, registry, derived, tmp))
    assert code == int(ExitCode.INPUT_ERROR) and "--force" in out + err
    assert (tmp / "id.cbor").read_bytes() == before
    code, out, err = _run(monkeypatch, capsys, *_identify_cli(world, registry, derived, tmp, "--force", "--top", "1"))
    assert code == 0, out + err
    assert (tmp / "id.cbor").read_bytes() != before
    page = (tmp / "id.html").read_text()
    assert page.count("<img ") == 2  # --top 1: the one named base's dogs


def test_every_significant_base_is_listed(world, derived, tmp_path) -> None:
    """Two bundles of the same base under two names: both match; JSON, evidence and report name both."""
    reg = tmp_path / "reg2"
    twin = forge_variant(world.bundles["base-llama"], world.key, 1, tmp_path / "twin.attest", name="llama-twin")
    bundles = [world.bundles["base-llama"], twin, world.bundles["base-gpt2"]]
    registry_add(reg, bundles, TrustStore.from_pubkey(world.pub))
    result = attest.identify(
        derived, reg, trust=world.pub, evidence=tmp_path / "e.cbor", report=tmp_path / "r.html", top=1
    )
    data = result.to_json(top=1)
    named = {data["base"]["name"], *(a["name"] for a in data["also"])}
    assert data["verdict"] == "match" and named == {"base-llama", "llama-twin"} and len(data["also"]) == 1
    found = attest.inspect(tmp_path / "e.cbor", trust=world.pub, verifier_trust=_verifier_pub())
    assert found.ok, found.problems
    ans = found.info["identify"]["answer"]
    assert {ans["base"]["name"], *(a["name"] for a in ans["also"])} == named
    # with --top 1 the second significant base is still detailed (so recomputed) and drawn
    assert {d["name"] for d in found.info["identify"]["details"]} == named
    page = (tmp_path / "r.html").read_text()
    assert "Also significant" in page and page.count("<img ") == 4
    assert found.check is not None and found.check.recomputed["also"] == [data["also"][0]["name"]]


def test_hostile_identify_evidence_is_bounded(written, world, tmp_path) -> None:
    """More detailed bundles than a reader accepts is refused before any of them is opened."""
    raw = (written["tmp"] / "id.cbor").read_bytes()
    parsed = parse_sign1(raw, max_size=len(raw) + 1)
    body = dict(safe_loads(parsed.payload, max_size=len(raw), max_depth=16, max_items=4_000_000, what="t"))
    body["details"] = [body["details"][0]] * (MAX_DETAILS + 1)
    key = load_private_key(_verifier_pub().with_suffix(".key"), None)
    forged = sign1(
        canonical_dumps(body),
        key,
        kid=key_id(key.public_key()),
        issuer="x",
        subject="y",
        iat=1,
        content_type=IDENTIFY_EVIDENCE_CONTENT_TYPE,
    )
    bad = tmp_path / "many.cbor"
    bad.write_bytes(forged)
    with pytest.raises(BundleError, match=f"at most {MAX_DETAILS}"):
        attest.inspect(bad, trust=world.pub, verifier_trust=_verifier_pub())


def test_the_schema_describes_identify_evidence(written) -> None:
    pycddl = pytest.importorskip("pycddl")
    text = (SCHEMAS / "evidence.cddl").read_text()
    raw = (written["tmp"] / "id.cbor").read_bytes()
    parsed = parse_sign1(raw, max_size=len(raw) + 1)
    pycddl.Schema(f"start = identify-evidence\n{text}").validate_cbor(parsed.payload)
    pycddl.Schema(f"start = signed-identify-evidence\n{text}").validate_cbor(raw)
    with pytest.raises(pycddl.ValidationError):
        pycddl.Schema(f"start = evidence\n{text}").validate_cbor(parsed.payload)


def test_inspect_with_the_suspect_checks_its_files(written, world, derived) -> None:
    path = written["tmp"] / "id.cbor"
    same = attest.inspect(path, trust=world.pub, verifier_trust=_verifier_pub(), suspect=derived)
    assert same.ok and same.info["suspect_check"]["root"] == same.info["suspect_check"]["recorded_root"]
    other = attest.inspect(path, trust=world.pub, verifier_trust=_verifier_pub(), suspect=world.models["base-gpt2"])
    assert not other.ok and any("about other files" in p for p in other.problems)
