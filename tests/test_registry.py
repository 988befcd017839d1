"""The registry: signed bundles in a folder, indexed in SQLite (docs/registry.md)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.registry_world import World, build_world, forge_variant

from attest.crypto.keys import TrustStore
from attest.errors import BundleError, InputError
from attest.registry import Registry, add, list_entries, remove, verify
from attest.registry.schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
THREE = ("base-llama", "base-qwen2", "base-gpt2")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("registry-world"), THREE)


@pytest.fixture()
def trust(world: World) -> TrustStore:
    return TrustStore.from_pubkey(world.pub)


def run_cli(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    from attest.cli.app import main

    monkeypatch.setattr(sys, "argv", ["attest", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_add_indexes_each_bundle_by_subject_root_and_skips_duplicates(world, trust, tmp_path) -> None:
    reg = tmp_path / "reg"
    report = add(reg, [world.bundles[n] for n in THREE], trust)
    assert [e.name for e in report.added] == list(THREE) and not report.skipped
    entries = {e.name: e for e in list_entries(reg)}
    assert set(entries) == set(THREE)
    for name in THREE:
        e = entries[name]
        raw = world.bundles[name].read_bytes()
        assert e.subject_root == world.subject_roots[name]
        assert e.family == world.families[name] and e.issuer == "Registry Test Lab"
        assert e.bundle_sha256 == hashlib.sha256(raw).hexdigest() and e.bundle_bytes == len(raw)
        # content-addressed storage: the stored file is byte-identical and named by its digest
        assert (reg / "bundles" / f"{e.bundle_sha256}.attest").read_bytes() == raw
    assert entries["base-qwen2"].n_tokens == 160 and entries["base-llama"].n_tokens == 128
    # The same bundle again, and a re-signed bundle of the same weights (other bytes, same subject): skipped.
    resigned = tmp_path / "resigned.attest"
    from attest.bundle.container import (
        encode_attestation,
        inspect_attestation,
        issue_statement,
    )

    opened = inspect_attestation(world.bundles["base-llama"].read_bytes())
    statement = issue_statement(opened.document, world.key, issuer="Registry Test Lab", subject="llama-again", iat=1)
    resigned.write_bytes(encode_attestation(statement, opened.png))
    again = add(reg, [world.bundles["base-gpt2"], resigned], trust)
    assert not again.added
    assert [(p, e.name) for p, e in again.skipped] == [
        (str(world.bundles["base-gpt2"]), "base-gpt2"),
        (str(resigned), "base-llama"),
    ]
    assert len(list_entries(reg)) == 3
    assert len(list((reg / "bundles").iterdir())) == 3  # no temporary or orphan files left behind


def test_add_refuses_untrusted_bundles_and_adds_nothing(world, trust, tmp_path) -> None:
    reg = tmp_path / "reg"
    stranger = forge_variant(world.bundles["base-llama"], world.stranger_key, 1, tmp_path / "stranger.attest")
    with pytest.raises(BundleError, match="stranger.attest: refused: .*untrusted"):
        add(reg, [world.bundles["base-gpt2"], stranger], trust)
    assert not reg.exists() or list_entries(reg) == []


@pytest.mark.parametrize("damage", ["flipped-byte", "truncated", "not-cbor", "no-subject-files"])
def test_add_refuses_malformed_bundles(world, trust, tmp_path, damage) -> None:
    reg = tmp_path / "reg"
    add(reg, [world.bundles["base-gpt2"]], trust)
    raw = world.bundles["base-llama"].read_bytes()
    bad = tmp_path / "bad.attest"
    if damage == "flipped-byte":
        data = bytearray(raw)
        data[len(data) // 2] ^= 0x40
        bad.write_bytes(bytes(data))
    elif damage == "truncated":
        bad.write_bytes(raw[: len(raw) // 3])
    elif damage == "not-cbor":
        bad.write_bytes(b"\xff" * 100)
    else:
        forge_variant(world.bundles["base-llama"], world.key, 0, bad, files=[])
    with pytest.raises(BundleError, match="bad.attest"):
        add(reg, [bad], trust)
    assert [e.name for e in list_entries(reg)] == ["base-gpt2"]


def test_remove_by_name_and_by_digest_prefix(world, trust, tmp_path) -> None:
    reg = tmp_path / "reg"
    add(reg, [world.bundles[n] for n in THREE], trust)
    gone = remove(reg, "base-qwen2")
    assert gone.name == "base-qwen2" and not (reg / gone.bundle_file).exists()
    llama_root = world.subject_roots["base-llama"]
    assert remove(reg, llama_root[:12].upper()).name == "base-llama"
    assert [e.name for e in list_entries(reg)] == ["base-gpt2"]
    with pytest.raises(InputError, match="no registry entry"):
        remove(reg, "base-qwen2")
    with pytest.raises(InputError, match="at least 8 hex"):
        remove(reg, "abc")
    # Two entries under one name: a name alone is refused as ambiguous.
    twin = forge_variant(world.bundles["base-gpt2"], world.key, 7, tmp_path / "twin.attest", name="base-gpt2")
    add(reg, [twin], trust)
    with pytest.raises(InputError, match="ambiguous"):
        remove(reg, "base-gpt2")
    assert len(list_entries(reg)) == 2
    assert verify(reg, trust).problems == []


def test_verify_reports_a_modified_file_a_missing_file_and_an_edited_row(
    world, trust, tmp_path, capsys, monkeypatch
) -> None:
    reg = tmp_path / "reg"
    add(reg, [world.bundles[n] for n in THREE], trust)
    clean = verify(reg, trust)
    assert clean.checked == 3 and clean.ok == 3 and not clean.tampered
    entries = {e.name: e for e in list_entries(reg)}
    # 1. a stored bundle modified in place
    path = reg / entries["base-llama"].bundle_file
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    # 2. a stored bundle deleted
    (reg / entries["base-qwen2"].bundle_file).unlink()
    # 3. an index row edited behind attest's back
    with sqlite3.connect(reg / "registry.sqlite") as conn:
        conn.execute("UPDATE bases SET family = 'llama', layers = 99 WHERE name = 'base-gpt2'")
    # 4. an unindexed file: reported, but not tampering
    (reg / "bundles" / "stray.attest").write_bytes(b"x")
    report = verify(reg, trust)
    kinds = {(p.kind, p.name) for p in report.problems}
    assert kinds == {
        ("modified", "base-llama"),
        ("missing", "base-qwen2"),
        ("index_edited", "base-gpt2"),
        ("stray", ""),
    }
    edited = next(p for p in report.problems if p.kind == "index_edited")
    assert "family" in edited.detail and "layers" in edited.detail
    assert report.tampered and report.ok == 0
    code, out, err = run_cli(
        ["registry", "verify", str(reg), "--pubkey", str(world.pub), "--json"], capsys, monkeypatch
    )
    assert code == 3, err
    assert json.loads(out)["tampered"] is True and len(json.loads(out)["problems"]) == 4


def test_verify_under_another_trust_store_reports_untrusted(world, trust, tmp_path) -> None:
    reg = tmp_path / "reg"
    add(reg, [world.bundles["base-gpt2"]], trust)
    report = verify(reg, TrustStore.from_pubkey(world.stranger_pub))
    assert [p.kind for p in report.problems] == ["untrusted"] and report.tampered


def test_unknown_schema_version_and_foreign_databases_are_refused(world, trust, tmp_path, capsys, monkeypatch) -> None:
    reg = tmp_path / "reg"
    add(reg, [world.bundles["base-gpt2"]], trust)
    with sqlite3.connect(reg / "registry.sqlite") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(InputError, match="schema version '99'"):
        Registry.open(reg)
    with pytest.raises(InputError, match="schema version"):
        add(reg, [world.bundles["base-llama"]], trust)  # a writer refuses too: it never touches an unknown schema
    other = tmp_path / "other"
    other.mkdir()
    with sqlite3.connect(other / "registry.sqlite") as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    code, _out, err = run_cli(["registry", "list", str(other)], capsys, monkeypatch)
    assert code == 4 and "not an attest registry" in err
    code, _out, err = run_cli(
        ["registry", "add", str(other), str(world.bundles["base-gpt2"]), "--pubkey", str(world.pub)],
        capsys,
        monkeypatch,
    )
    assert code == 4 and "other SQLite database" in err
    with sqlite3.connect(other / "registry.sqlite") as conn:  # left exactly as it was
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["songs"]
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "registry.sqlite").write_bytes(b"not a database at all" * 100)
    code, _out, err = run_cli(["registry", "list", str(tmp_path / "garbage")], capsys, monkeypatch)
    assert code == 4 and "not a readable attest registry" in err
    # A non-empty folder that is not a registry is never adopted.
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        add(tmp_path / "docs", [world.bundles["base-gpt2"]], trust)


def test_cli_add_list_remove_verify(world, tmp_path, capsys, monkeypatch) -> None:
    reg = tmp_path / "reg"
    bundles = [str(world.bundles[n]) for n in THREE]
    code, out, err = run_cli(
        ["registry", "add", str(reg), *bundles, "--pubkey", str(world.pub), "--json"], capsys, monkeypatch
    )
    assert code == 0, err
    assert len(json.loads(out)["added"]) == 3
    code, out, err = run_cli(
        ["registry", "add", str(reg), bundles[0], "--trust", str(world.pub.parent)], capsys, monkeypatch
    )
    # --trust DIR holds both the publisher's and the stranger's key; the publisher's signature is trusted
    assert code == 0 and "skipped" in out, err
    code, out, err = run_cli(["registry", "list", str(reg), "--json"], capsys, monkeypatch)
    listing = json.loads(out)
    assert listing["bases"] == 3 and {e["family"] for e in listing["entries"]} == {"llama", "qwen2", "gpt2"}
    code, out, err = run_cli(["registry", "list", str(reg)], capsys, monkeypatch)
    assert code == 0 and "base-qwen2" in out
    code, out, err = run_cli(["registry", "remove", str(reg), "base-llama", "--json"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["removed"]["name"] == "base-llama"
    code, out, err = run_cli(["registry", "verify", str(reg), "--pubkey", str(world.pub)], capsys, monkeypatch)
    assert code == 0 and "2 of 2" in out, err
    code, out, err = run_cli(["registry", "add", str(reg), bundles[0]], capsys, monkeypatch)
    assert code == 4 and "--pubkey" in err
    stranger = forge_variant(world.bundles["base-llama"], world.stranger_key, 3, tmp_path / "s.attest")
    code, out, err = run_cli(
        ["registry", "add", str(reg), str(stranger), "--pubkey", str(world.pub)], capsys, monkeypatch
    )
    assert code == 3 and "untrusted" in err


_WRITER = """
import sys, time
from pathlib import Path
from attest.crypto.keys import TrustStore
from attest.registry import add
reg, pub, go, out, *bundles = sys.argv[1:]
trust = TrustStore.from_pubkey(Path(pub))
while not Path(go).exists():
    time.sleep(0.005)
added = skipped = 0
for b in bundles:  # one add per bundle: many separate transactions, interleaved with the other writer
    r = add(reg, [b], trust)
    added += len(r.added)
    skipped += len(r.skipped)
Path(out).write_text(f"{added} {skipped}")
"""


def test_two_writer_processes_keep_the_index_consistent(world, trust, tmp_path) -> None:
    variants = [forge_variant(world.bundles["base-gpt2"], world.key, i, tmp_path / f"v{i}.attest") for i in range(16)]
    first, second = variants[:10], variants[6:][::-1]  # 4 bundles are added by both, in opposite orders
    reg, go = tmp_path / "reg", tmp_path / "go"  # the registry does not exist yet: creation races too
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WRITER,
                str(reg),
                str(world.pub),
                str(go),
                str(tmp_path / f"out{k}"),
                *map(str, part),
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k, part in enumerate((first, second))
    ]
    time.sleep(0.5)
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    counts = [tuple(map(int, (tmp_path / f"out{k}").read_text().split())) for k in range(2)]
    assert sum(a for a, _ in counts) == 16 and sum(s for _, s in counts) == 4
    entries = list_entries(reg)
    assert sorted(e.name for e in entries) == sorted(f"variant-{i}" for i in range(16))
    assert len({e.subject_root for e in entries}) == 16
    stored = sorted(p.name for p in (reg / "bundles").iterdir())
    assert stored == sorted(f"{e.bundle_sha256}.attest" for e in entries)
    with sqlite3.connect(reg / "registry.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert verify(reg, trust).problems == []


def test_the_index_holds_each_bundles_probe_tokens_and_verify_checks_them(world, trust, tmp_path) -> None:
    from attest.bundle.container import read_attestation
    from attest.registry.entry import decode_probe_tokens
    from attest.sketch.statement import StatementView

    reg = tmp_path / "reg"
    add(reg, world.bundles.values(), trust)
    for e in list_entries(reg):
        doc = read_attestation(world.bundles[e.name].read_bytes(), trust).document
        assert decode_probe_tokens(e.probe_tokens, e.n_tokens) == StatementView.parse(doc).tokens
        assert "probe_tokens" not in e.to_json() and e.to_json()["probe_tokens_indexed"] is True
    assert verify(reg, trust).problems == []
    # Index rows are hostile input too: an edited token list is tampering, and a
    # malformed one is never trusted for screening.
    with sqlite3.connect(reg / "registry.sqlite") as conn:
        conn.execute("UPDATE bases SET probe_tokens = ? WHERE name = 'base-gpt2'", (b"\x82\x61a\x61b",))
    problems = verify(reg, trust).problems
    assert [(p.kind, p.name) for p in problems] == [("index_edited", "base-gpt2")]
    assert "probe_tokens" in problems[0].detail
    assert decode_probe_tokens(b"\x82\x61a\x61b", 128) is None  # wrong count
    assert decode_probe_tokens(b"\xff", 1) is None  # not CBOR
    assert decode_probe_tokens(b"\x81\x01", 1) is None  # not text


def test_a_version_2_registry_is_migrated_and_its_bundles_are_always_opened(world, trust, tmp_path) -> None:
    from attest.arch.detect import load_model
    from attest.workflows.identify import identify

    reg = tmp_path / "reg"
    add(reg, world.bundles.values(), trust)
    with sqlite3.connect(reg / "registry.sqlite") as conn:  # what version 2 wrote
        conn.execute("ALTER TABLE bases DROP COLUMN probe_tokens")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with Registry.open(reg) as r:
        assert r.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(
            SCHEMA_VERSION
        )
        entries = r.entries()
        assert len(entries) == 3 and all(e.probe_tokens is None for e in entries)
        result = identify(load_model(world.models["base-llama"]), r, trust)
    # Rows without tokens are not an index edit, and identify opens every bundle.
    assert verify(reg, trust).problems == []
    assert result.to_json()["registry"]["screened"] == 0 and all(c.verification is not None for c in result.candidates)
    assert result.base is not None and result.base.entry.name == "base-llama"
