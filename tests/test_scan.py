"""`attest scan`: discovery, records, idempotence and fault tolerance, on the local engine and a real Ray instance."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from helpers.registry_world import World, build_world
from helpers.scan_helpers import CORRUPT, ESCAPING, GOOD, build_tree, killable

from attest.cli.app import main
from attest.crypto.keys import TrustStore
from attest.errors import ExitCode
from attest.invariants.methods import DEFAULT
from attest.registry import Registry, add
from attest.registry.schema import SCHEMA_VERSION
from attest.scan import discover, run_scan

METHOD = DEFAULT.with_options(n_tokens=128)  # tiny vocabularies; keeps each model's fingerprint cheap


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("scan-world"), names=("base-llama", "base-gpt2"))


@pytest.fixture(scope="module")
def hub(world: World) -> Path:
    return build_tree(world.root, world.root / "outside")


@pytest.fixture(scope="module")
def base_registry(world: World) -> Path:
    reg = world.root / "reg-bases"
    add(reg, [world.bundles["base-llama"]], TrustStore.from_pubkey(world.pub))
    return reg


def fresh_registry(base: Path, dest: Path) -> Path:
    shutil.copytree(base, dest)
    return dest


def rows(reg: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(reg / "registry.sqlite")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM scan_records ORDER BY path").fetchall()
    finally:
        conn.close()


def check_first_scan(summary: dict, reg: Path, hub: Path) -> None:
    """Every model recorded once: the good ones ok, the corrupt and escaping ones failed, the derivative flagged."""
    assert summary["found"] == 6
    assert summary["scanned"] == 6 and summary["skipped"] == 0 and summary["failed"] == 2
    recorded = rows(reg)
    assert len(recorded) == 6
    assert len({r["subject_root"] for r in recorded if r["subject_root"]}) == len(
        [r for r in recorded if r["subject_root"]]
    )
    by_path = {str(Path(r["path"]).relative_to(hub)): r for r in recorded}
    ok = [p for p, r in by_path.items() if r["status"] == "ok"]
    assert len(ok) == 4
    broken = by_path[CORRUPT]
    assert broken["status"] == "error" and broken["exit_class"] == int(ExitCode.INPUT_ERROR)
    assert broken["subject_root"] is not None  # hashed (bytes are bytes), then refused by the reader
    escaping = by_path[ESCAPING]
    assert escaping["status"] == "error" and "outside the scan roots" in escaping["error"]
    assert escaping["subject_root"] is None and escaping["exit_class"] == int(ExitCode.INPUT_ERROR)
    for r in recorded:
        if r["status"] == "ok":
            assert r["record"] and r["verdict"] in ("match", "no_match", "inconclusive")
    flagged = summary["flagged"]
    assert [f["model"] for f in flagged] == ["org-a/derived-llama"]
    assert flagged[0]["base"] == "base-llama" and flagged[0]["p_value"] < 1e-6 and not flagged[0]["subject_match"]
    assert by_path["org-b/qwen"]["verdict"] != "match" and by_path["gpt2-x"]["verdict"] != "match"


# --------------------------------------------------------------------------- discovery (no weights read)
def test_discovery_finds_each_model_once_and_refuses_escaping_symlinks(hub: Path) -> None:
    found = {f.display: f for f in discover([hub])}
    assert len(found) == 6, sorted(found)
    for name in GOOD:
        assert any(d.startswith(name) for d in found), name
    cache = next(f for d, f in found.items() if d.startswith("acme/tiny-mistral@"))
    assert cache.kind == "hf-cache" and cache.refusal is None and cache.source_bytes > 0
    assert found["gpt2-x"].kind == "hf-folder"  # and its onnx/model.onnx is not a model of its own
    assert found[CORRUPT].kind == "file"
    assert "outside the scan roots" in (found[ESCAPING].refusal or "")
    # Pointing at the snapshot itself: its blob symlinks lead out of the root, into its own blobs/: allowed.
    snap = Path(cache.path)
    (only,) = discover([snap])
    assert only.refusal is None
    # The same models given twice (and through a second root) are found once.
    assert len(discover([hub, hub / "org-a"])) == 6


def test_discovery_of_loose_files_and_a_gguf_repository(tmp_path: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.onnx").write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.safetensors").write_bytes(b"")
    repo = tmp_path / "models--org--x-GGUF" / "snapshots" / "r1"
    repo.mkdir(parents=True)
    (repo / "x.Q4_K_M.gguf").write_bytes(b"")
    (repo / "x.Q8_0.gguf").write_bytes(b"")
    names = sorted(f.display for f in discover([tmp_path]))
    assert names == ["a.gguf", "org/x-GGUF@r1/x.Q4_K_M.gguf", "org/x-GGUF@r1/x.Q8_0.gguf", "sub/b.onnx"]


def test_resources_come_from_headers(hub: Path) -> None:
    from attest.scan.plan import BASE_BYTES, resources

    found = {f.display: f for f in discover([hub])}
    r = resources(found["gpt2-x"].path, found["gpt2-x"].source_bytes, 256)
    assert r.from_headers and r.parameters > 0 and r.cpus == 1
    # One block's float32 bytes: more than nothing, less than the whole model.
    assert 0 < r.largest_layer_bytes < 4 * r.parameters
    assert r.memory_bytes == BASE_BYTES + 3 * r.largest_layer_bytes + 8 * 4 * 256 * 256
    broken = resources(found[CORRUPT].path, found[CORRUPT].source_bytes, 256)
    assert not broken.from_headers and broken.largest_layer_bytes == found[CORRUPT].source_bytes


# --------------------------------------------------------------------------- the local engine, through the CLI
def test_local_scan_records_flags_and_reruns_as_skips(world: World, hub: Path, base_registry: Path, tmp_path, capsys):
    reg = fresh_registry(base_registry, tmp_path / "reg")
    args = ["scan", str(hub), "--registry", str(reg), "--pubkey", str(world.pub), "--tokens", "128", "--json"]
    args += ["--key", str(world.root / "stranger.key")]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2  # some models failed
    summary = json.loads(capsys.readouterr().out)
    assert summary["engine"] == "local"
    check_first_scan(summary, reg, hub)
    # --key: each good model's fingerprint is signed by the scanner and registered.
    assert summary["bundles_added"] == 4
    with Registry.open(reg) as r:
        assert len(r) == 5
    assert all(r["bundle_sha256"] for r in rows(reg) if r["status"] == "ok")
    # Rerun: nothing left to do, nothing recorded twice.
    with pytest.raises(SystemExit):
        main(args)
    again = json.loads(capsys.readouterr().out)
    assert again["scanned"] == 0 and again["skipped"] == 6 and again["failed"] == 0
    assert len(rows(reg)) == 6
    # The human-readable form says the same.
    with pytest.raises(SystemExit) as exc:
        main([a for a in args if a != "--json"])
    assert exc.value.code == 0
    assert "6 models found: 0 scanned, 6 skipped, 0 failed, 0 flagged (local" in capsys.readouterr().out


def test_migrates_a_version_1_registry(base_registry: Path, tmp_path: Path) -> None:
    reg = fresh_registry(base_registry, tmp_path / "reg")
    conn = sqlite3.connect(reg / "registry.sqlite")
    conn.execute("DROP TABLE scan_records")
    conn.execute(
        "CREATE TABLE scan_records (id INTEGER PRIMARY KEY, path TEXT NOT NULL, subject_root TEXT, status TEXT NOT NULL, "
        "error TEXT, exit_class INTEGER, record BLOB, tool_version TEXT NOT NULL, recorded_at TEXT NOT NULL) STRICT"
    )
    conn.execute("CREATE INDEX scan_records_subject ON scan_records (subject_root)")
    for i in range(2):  # a repeated subject, which version 2 forbids: the first row is kept
        conn.execute(
            "INSERT INTO scan_records (path, subject_root, status, tool_version, recorded_at) VALUES (?, ?, 'ok', 'x', 'y')",
            (f"p{i}", "ab" * 32),
        )
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with Registry.open(reg) as r:
        assert r.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(
            SCHEMA_VERSION
        )
        assert [tuple(x) for x in r.conn.execute("SELECT path, verdict FROM scan_records")] == [("p0", None)]
        with pytest.raises(sqlite3.IntegrityError):
            r.conn.execute(
                "INSERT INTO scan_records (path, subject_root, status, tool_version, recorded_at) "
                "VALUES ('p2', ?, 'ok', 'x', 'y')",
                ("ab" * 32,),
            )


def test_the_ray_engine_without_ray_is_a_clear_input_error(world, hub, base_registry, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *a, **k):  # type: ignore[no-untyped-def]
        if name == "ray" or name.startswith("ray."):
            raise ImportError("no ray")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    from attest.errors import InputError

    with pytest.raises(InputError, match=r"\[scale\]"):
        run_scan([hub], fresh_registry(base_registry, tmp_path / "r"), TrustStore.from_pubkey(world.pub), engine="ray")


# --------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    here = Path(__file__).resolve().parent
    before = os.environ.get("PYTHONPATH")
    # Workers import the kill hook (tests/helpers/scan_helpers.py, as helpers.scan_helpers) and attest itself.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(here), str(here.parent), *([before] if before else [])])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


@pytest.mark.ray
def test_ray_scan_records_every_model_once_and_a_rerun_skips(ray_instance, world, hub, base_registry, tmp_path):
    reg = fresh_registry(base_registry, tmp_path / "reg")
    trust = TrustStore.from_pubkey(world.pub)
    summary = run_scan([hub], reg, trust, engine="ray", method=METHOD).to_json()
    assert summary["engine"] == "ray"
    check_first_scan(summary, reg, hub)
    assert {r["engine"] for r in rows(reg)} == {"ray"}
    assert ray_instance.is_initialized()  # a Ray it did not start is left running
    # Touch one model: it is hashed again, found by its subject digest, and skipped.
    weights = hub / "org-b" / "qwen" / "model.safetensors"
    os.utime(weights, ns=(time.time_ns(), time.time_ns()))
    again = run_scan([hub], reg, trust, engine="ray", method=METHOD).to_json()
    assert again["scanned"] == 0 and again["skipped"] == 6 and again["failed"] == 0
    assert len(rows(reg)) == 6


@pytest.mark.ray
def test_a_killed_worker_is_retried_and_nothing_is_lost_or_doubled(ray_instance, world, hub, base_registry, tmp_path):
    reg = fresh_registry(base_registry, tmp_path / "reg")
    signals = tmp_path / "signals"
    signals.mkdir()
    killed: list[int] = []

    def assassin() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (signals / "pid").exists():
            time.sleep(0.05)
        if (signals / "pid").exists():
            pid = int((signals / "pid").read_text())
            (signals / "killed").write_text("1")  # before the kill: the retry must not wait again
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=assassin, daemon=True)
    thread.start()
    work = functools.partial(killable, signal_dir=str(signals), target="org-b/qwen")
    summary = run_scan(
        [hub], reg, TrustStore.from_pubkey(world.pub), engine="ray", method=METHOD, work=work, max_retries=2
    ).to_json()
    thread.join(5)
    assert killed, "the worker never reached the kill point"
    check_first_scan(summary, reg, hub)
    qwen = [r for r in rows(reg) if r["path"].endswith("org-b/qwen")]
    assert len(qwen) == 1 and qwen[0]["status"] == "ok"


@pytest.mark.ray
def test_a_model_too_large_for_every_node_is_failed_not_left_waiting(
    ray_instance, world, hub, base_registry, tmp_path, monkeypatch
):
    import attest.scan.runner as runner
    from attest.scan.plan import Resources

    real = runner.resources

    def plan(path: str, source_bytes: int, tokens: int) -> Resources:
        r = real(path, source_bytes, tokens)
        if path.endswith("gpt2-x"):  # as if its largest layer needed a petabyte
            return Resources(r.largest_layer_bytes, r.parameters, 10**15, r.cpus, r.from_headers)
        return r

    monkeypatch.setattr(runner, "resources", plan)
    reg = fresh_registry(base_registry, tmp_path / "reg")
    summary = run_scan(
        [hub / "gpt2-x", hub / "org-b"], reg, TrustStore.from_pubkey(world.pub), engine="ray", method=METHOD
    )
    assert summary.scanned == 2
    (failure,) = summary.failed
    assert failure["path"].endswith("gpt2-x") and "largest Ray node" in failure["error"]
    assert failure["exit_class"] == int(ExitCode.INPUT_ERROR)
