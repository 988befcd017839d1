"""The publisher → verifier workflow through the real CLI: keygen, issue, verify, inspect, render."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import jsonschema
import pytest
import torch
from helpers.models import build_tiny_model, save_model
from helpers.statement_docs import thaw
from safetensors.torch import load_file, save_file

from attest.arch.detect import load_model
from attest.invariants.methods import DEFAULT
from attest.workflows.compare import compare_models

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "schemas" / "report.schema.json").read_text())
TOKENS = "256"


def run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    from attest.cli.app import main

    monkeypatch.setattr(sys, "argv", ["attest", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("world")
    base = build_tiny_model("llama", seed=11)
    save_model(base, root / "base")
    derived = build_tiny_model("llama", seed=11)
    with torch.no_grad():
        for p in derived.parameters():
            p.add_(0.25 * p.std() * torch.randn_like(p))
    save_model(derived, root / "derived")
    save_model(build_tiny_model("llama", seed=12), root / "unrelated")
    return {"root": root, "base": root / "base", "derived": root / "derived", "unrelated": root / "unrelated"}


@pytest.fixture(scope="module")
def issued(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from attest.crypto.keys import generate_keypair, load_private_key
    from attest.workflows.issue import issue_bundle

    keys = tmp_path_factory.mktemp("keys")
    generate_keypair(keys / "pub", b"correct horse")
    key = load_private_key(keys / "pub.key", b"correct horse")
    bundle = world["root"] / "base.attest"
    issue_bundle(
        load_model(world["base"]),
        key,
        bundle,
        method=DEFAULT.with_options(n_tokens=int(TOKENS)),
        name="tiny-base",
        issuer="Test Lab",
        meta={"licence": "apache-2.0"},
    )
    return {"bundle": bundle, "pub": keys / "pub.pub", "key": keys / "pub.key", "keys": keys}


def test_issue_cli_with_passphrase_key(world, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PW", "s3cret")
    code, out, err = run(
        ["keygen", "--out", str(tmp_path / "k"), "--passphrase-env", "PW", "--json"], capsys, monkeypatch
    )
    assert code == 0, err
    kid = json.loads(out)["kid"]
    code, out, err = run(
        [
            "issue",
            str(world["base"]),
            "--key",
            str(tmp_path / "k.key"),
            "--passphrase-env",
            "PW",
            "--out",
            str(tmp_path / "b.attest"),
            "--tokens",
            TOKENS,
            "--json",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["kid"] == kid
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["bundle_bytes"] - (tmp_path / "b.png").stat().st_size <= 4 * 1024 * 1024
    monkeypatch.setenv("PW", "wrong")
    code, out, err = run(
        [
            "issue",
            str(world["base"]),
            "--key",
            str(tmp_path / "k.key"),
            "--passphrase-env",
            "PW",
            "--out",
            str(tmp_path / "c.attest"),
        ],
        capsys,
        monkeypatch,
    )
    assert code == 4 and "wrong passphrase" in err and not (tmp_path / "c.attest").exists()


def test_verify_same_model_matches_and_report_is_schema_valid(world, issued, tmp_path, capsys, monkeypatch) -> None:
    code, out, err = run(
        [
            "verify",
            str(world["base"]),
            "--bundle",
            str(issued["bundle"]),
            "--pubkey",
            str(issued["pub"]),
            "--json",
            "--evidence",
            str(tmp_path / "ev.cbor"),
            "--report",
            str(tmp_path / "r.html"),
            "--sheet",
            str(tmp_path / "s.png"),
        ],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    assert report["verdict"] == "match" and report["score"] > 0.999 and report["coverage"] == 1.0
    assert report["signature"]["issuer"] == "Test Lab" and report["signature"]["valid"] is True
    assert report["subject"]["base"]["root"] == report["subject"]["suspect"]["root"]
    assert report["z"] > 5 and report["p_value"] < 1e-6
    assert "<html" in (tmp_path / "r.html").read_text().lower()
    # The evidence re-verifies offline and carries the results.
    code, out, err = run(
        ["inspect", str(tmp_path / "ev.cbor"), "--pubkey", str(issued["pub"]), "--json"], capsys, monkeypatch
    )
    assert code == 0, err
    info = json.loads(out)
    assert info["kind"] == "evidence" and info["evidence"]["results"]["verdict"] == "match"


def test_verify_derived_and_unrelated(world, issued, capsys, monkeypatch) -> None:
    method = DEFAULT.with_options(n_tokens=int(TOKENS))
    exact = compare_models(load_model(world["base"]), load_model(world["derived"]), method).score
    code, out, err = run(
        ["verify", str(world["derived"]), "--bundle", str(issued["bundle"]), "--pubkey", str(issued["pub"]), "--json"],
        capsys,
        monkeypatch,
    )
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    assert code == 0 and report["verdict"] == "match", err
    assert abs(report["score"] - exact) < 0.02
    assert report["ci"][0] <= report["score"] <= report["ci"][1]
    code, out, err = run(
        [
            "verify",
            str(world["unrelated"]),
            "--bundle",
            str(issued["bundle"]),
            "--pubkey",
            str(issued["pub"]),
            "--json",
        ],
        capsys,
        monkeypatch,
    )
    report = json.loads(out)
    assert code == 1 and report["verdict"] == "no_match" and abs(report["score"]) < 0.1


def test_tampered_or_untrusted_bundle_exits_3_before_reading_the_suspect(
    world, issued, tmp_path, capsys, monkeypatch
) -> None:
    data = bytearray(issued["bundle"].read_bytes())
    data[len(data) // 3] ^= 0x01
    bad = tmp_path / "bad.attest"
    bad.write_bytes(bytes(data))
    missing = tmp_path / "no-such-model"
    code, out, err = run(
        ["verify", str(missing), "--bundle", str(bad), "--pubkey", str(issued["pub"])], capsys, monkeypatch
    )
    assert code == 3 and "error:" in err
    from attest.crypto.keys import generate_keypair

    generate_keypair(tmp_path / "other", None)
    code, out, err = run(
        ["verify", str(missing), "--bundle", str(issued["bundle"]), "--pubkey", str(tmp_path / "other.pub")],
        capsys,
        monkeypatch,
    )
    assert code == 3 and "untrusted" in err


def test_suspect_missing_tokens_or_tensors_is_inconclusive(world, issued, tmp_path, capsys, monkeypatch) -> None:
    # Tokens: a suspect whose vocabulary shares almost no strings with the bundle.
    odd = tmp_path / "odd-vocab"
    shutil.copytree(world["derived"], odd)
    tok = json.loads((odd / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    tok["model"]["vocab"] = {(k + "qq" if k.isalpha() else k): v for k, v in vocab.items()}
    tok["model"]["merges"] = []
    (odd / "tokenizer.json").write_text(json.dumps(tok))
    code, out, err = run(
        ["verify", str(odd), "--bundle", str(issued["bundle"]), "--pubkey", str(issued["pub"]), "--json"],
        capsys,
        monkeypatch,
    )
    report = json.loads(out)
    assert code == 2 and report["verdict"] == "inconclusive" and report["coverage"] < 0.2, err
    jsonschema.validate(report, SCHEMA)
    # Tensors: a suspect missing one weight of one layer.
    holey = tmp_path / "holey"
    shutil.copytree(world["derived"], holey)
    tensors = load_file(holey / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, holey / "model.safetensors")
    code, out, err = run(
        ["verify", str(holey), "--bundle", str(issued["bundle"]), "--pubkey", str(issued["pub"]), "--json"],
        capsys,
        monkeypatch,
    )
    report = json.loads(out)
    assert code == 2 and report["verdict"] == "inconclusive", err
    assert any("layer 1" in n for n in report["notes"]) and any("incomplete" in r for r in report["reasons"])


def test_render_redraws_the_issued_dog(world, issued, tmp_path, capsys, monkeypatch) -> None:
    code, out, err = run(["render", str(issued["bundle"]), "--out", str(tmp_path / "dog.png")], capsys, monkeypatch)
    assert code == 0, err
    assert (tmp_path / "dog.png").read_bytes() == issued["bundle"].with_suffix(".png").read_bytes()


def test_inspect_bundle_and_untrusted(world, issued, tmp_path, capsys, monkeypatch) -> None:
    code, out, err = run(
        ["inspect", str(issued["bundle"]), "--pubkey", str(issued["pub"]), "--json"], capsys, monkeypatch
    )
    assert code == 0, err
    info = json.loads(out)
    assert info["kind"] == "attestation" and info["meta"] == {"licence": "apache-2.0"}
    assert info["model"]["family"] == "llama" and info["sketch_shape"][0] == info["model"]["layers"] * 4 + 2
    from attest.crypto.keys import generate_keypair

    generate_keypair(tmp_path / "stranger", None)
    code, out, err = run(
        ["inspect", str(issued["bundle"]), "--pubkey", str(tmp_path / "stranger.pub")], capsys, monkeypatch
    )
    assert code == 3


def test_real_statement_document_matches_the_cddl(issued) -> None:
    pycddl = pytest.importorskip("pycddl")
    import cbor2

    from attest.bundle.container import inspect_attestation

    text = (ROOT / "schemas" / "attestation.cddl").read_text()
    doc = inspect_attestation(issued["bundle"].read_bytes()).document
    pycddl.Schema(f"start = statement-document\n{text}").validate_cbor(cbor2.dumps(dict(doc), canonical=True))
    for rule, key in (
        ("core-method", "method"),
        ("core-sketch", "sketch"),
        ("core-policy", "policy"),
        ("core-model", "model"),
        ("core-image", "image"),
        ("lineage-payload", "lineage"),
    ):
        pycddl.Schema(f"start = {rule}\n{text}").validate_cbor(cbor2.dumps(thaw(doc[key]), canonical=True))
    broken = thaw(doc["method"])
    broken["terms"] = ["qk", "telepathy"]
    with pytest.raises(pycddl.ValidationError):
        pycddl.Schema(f"start = core-method\n{text}").validate_cbor(cbor2.dumps(broken, canonical=True))


def test_compare_and_verify_a_model_with_a_layer_dropped(world, issued, tmp_path, capsys, monkeypatch) -> None:
    from safetensors.torch import load_file as _load

    src = world["derived"]
    cfg = json.loads((src / "config.json").read_text())
    last = cfg["num_hidden_layers"] - 1
    dropped = tmp_path / "dropped"
    dropped.mkdir()
    tensors = {}
    for k, v in _load(src / "model.safetensors").items():
        if ".layers.0." in k:
            continue
        for i in range(1, last + 1):
            k = k.replace(f".layers.{i}.", f".layers.{i - 1}.") if f".layers.{i}." in k else k
        tensors[k] = v
    save_file(tensors, dropped / "model.safetensors")
    cfg["num_hidden_layers"] = last
    (dropped / "config.json").write_text(json.dumps(cfg))
    shutil.copy(src / "tokenizer.json", dropped / "tokenizer.json")
    code, out, err = run(
        ["compare", str(world["base"]), str(dropped), "--tokens", TOKENS, "--json"], capsys, monkeypatch
    )
    report = json.loads(out)
    assert code == 0 and report["verdict"] == "match", err
    assert [(p["a"], p["b"]) for p in report["layers"]] == [(i + 1, i) for i in range(last)]
    code, out, err = run(
        ["verify", str(dropped), "--bundle", str(issued["bundle"]), "--pubkey", str(issued["pub"]), "--json"],
        capsys,
        monkeypatch,
    )
    assert code == 0 and json.loads(out)["verdict"] == "match", err
