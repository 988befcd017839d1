from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import cbor2
import pytest

from attest.errors import BundleError, InputError
from attest.subject import (
    FileDigest,
    Subject,
    hash_file,
    hash_files,
    model_signing_root,
    name_sort_key,
    root_digest,
)

CHUNK = 64 * 1024  # small chunk so "bigger than a chunk" stays cheap in tests


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    rng = random.Random(1234)
    d = tmp_path / "model"
    sizes = {
        "empty.bin": 0,
        "one.bin": 1,
        "config.json": 517,
        "exact-chunk.bin": CHUNK,
        "model-00001-of-00002.safetensors": 3 * CHUNK + 17,
        "model-00002-of-00002.safetensors": 2 * CHUNK - 1,
        "sub/dir/tokenizer.json": 4099,
        "a-b": 3,
        "a/b": 5,
    }
    for name, size in sizes.items():
        _write(d / name, rng.randbytes(size))
    return d


def _all_files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file())


def _independent_root(entries: list[tuple[str, bytes, int]]) -> bytes:
    """Recompute the root from the Subject docstring alone."""
    h = hashlib.sha256(b"attest-manifest/1\x00")
    for name, digest, size in entries:
        n = name.encode()
        h.update(len(n).to_bytes(4, "big") + n + size.to_bytes(8, "big") + digest)
    return h.digest()


@pytest.mark.parametrize("chunk", [1, 7, CHUNK, 8 * 1024 * 1024])
def test_hash_file_matches_hashlib(model_dir: Path, chunk: int) -> None:
    for p in _all_files(model_dir):
        if chunk == 1 and p.stat().st_size > 5000:
            continue
        assert hash_file(p, chunk=chunk) == hashlib.sha256(p.read_bytes()).digest(), p


def test_hash_file_reports_progress(model_dir: Path) -> None:
    p = model_dir / "model-00001-of-00002.safetensors"
    seen: list[int] = []
    hash_file(p, chunk=CHUNK, progress=seen.append)
    assert sum(seen) == p.stat().st_size
    assert len(seen) > 1


def test_hash_files_entries(model_dir: Path) -> None:
    files = _all_files(model_dir)
    seen: list[int] = []
    subj = hash_files(files, model_dir, workers=2, progress=seen.append, chunk=CHUNK)
    by_name = {f.name: f for f in subj.files}
    assert len(by_name) == len(files)
    for p in files:
        name = p.relative_to(model_dir).as_posix()
        data = p.read_bytes()
        assert by_name[name].sha256 == hashlib.sha256(data).digest()
        assert by_name[name].size == len(data)
    assert sum(seen) == sum(p.stat().st_size for p in files)
    names = [f.name for f in subj.files]
    assert names == sorted(names, key=name_sort_key)
    # component order, as PurePosixPath (model-signing) orders them
    assert names.index("a/b") < names.index("a-b")
    assert subj.root == _independent_root([(f.name, f.sha256, f.size) for f in subj.files])


def test_parallel_equals_serial(model_dir: Path) -> None:
    files = _all_files(model_dir)
    serial = hash_files(files, model_dir, workers=1, chunk=CHUNK)
    parallel = hash_files(list(reversed(files)), model_dir, workers=4, chunk=CHUNK)
    default = hash_files(files, model_dir)
    assert serial == parallel == default


def test_relative_paths_and_base(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _all_files(model_dir)
    absolute = hash_files(files, model_dir)
    monkeypatch.chdir(model_dir.parent)
    relative = hash_files([p.relative_to(model_dir.parent) for p in files], Path("model"))
    assert relative == absolute


def test_root_changes_with_any_byte(model_dir: Path) -> None:
    files = _all_files(model_dir)
    before = hash_files(files, model_dir).root
    target = model_dir / "model-00001-of-00002.safetensors"
    data = bytearray(target.read_bytes())
    for pos in (0, CHUNK, len(data) - 1):
        data[pos] ^= 0x01
        target.write_bytes(bytes(data))
        after = hash_files(files, model_dir).root
        assert after != before
        data[pos] ^= 0x01
    target.write_bytes(bytes(data))
    assert hash_files(files, model_dir).root == before


def test_root_changes_with_name(model_dir: Path) -> None:
    files = _all_files(model_dir)
    before = hash_files(files, model_dir)
    (model_dir / "config.json").rename(model_dir / "config2.json")
    after = hash_files(_all_files(model_dir), model_dir)
    # Same digests in the same order: only the name differs, and the root still moves.
    assert [f.sha256 for f in before.files] == [f.sha256 for f in after.files]
    assert after.root != before.root


def test_root_changes_with_order_and_size() -> None:
    a = FileDigest("a", hashlib.sha256(b"x").digest(), 1)
    b = FileDigest("b", hashlib.sha256(b"y").digest(), 1)
    assert root_digest([a, b]) != root_digest([b, a])
    assert root_digest([a]) != root_digest([FileDigest("a", a.sha256, 2)])
    # Entry boundaries are length-prefixed, so moving bytes between name and
    # digest cannot collide.
    assert root_digest([a, b]) != root_digest([a])
    with pytest.raises(ValueError):
        Subject([b, a])
    assert Subject.from_files([b, a]).files == [a, b]


def test_model_signing_root(model_dir: Path) -> None:
    subj = hash_files(_all_files(model_dir), model_dir)
    # model-signing's subject digest: SHA-256 over the raw digests in path order
    h = hashlib.sha256()
    for p in sorted(_all_files(model_dir), key=lambda p: p.relative_to(model_dir).parts):
        h.update(hashlib.sha256(p.read_bytes()).digest())
    assert subj.model_signing_root == h.digest() == model_signing_root(subj.files)


def test_missing_file(model_dir: Path) -> None:
    with pytest.raises(InputError):
        hash_files([model_dir / "nope.safetensors"], model_dir)
    with pytest.raises(InputError):
        hash_file(model_dir / "nope.safetensors")


def test_dangling_symlink(model_dir: Path) -> None:
    (model_dir / "dangling").symlink_to(model_dir / "gone")
    with pytest.raises(InputError):
        hash_files([model_dir / "dangling"], model_dir)


def test_symlink_escaping_base(tmp_path: Path, model_dir: Path) -> None:
    outside = _write(tmp_path / "secret.bin", b"outside")
    link = model_dir / "escape.safetensors"
    link.symlink_to(outside)
    with pytest.raises(InputError):
        hash_files([link], model_dir)
    rel_link = model_dir / "sub" / "escape-rel"
    rel_link.symlink_to(Path("..") / ".." / "secret.bin")
    with pytest.raises(InputError):
        hash_files([rel_link], model_dir)
    # Explicit opt-in (Hugging Face cache snapshots link to ../../blobs).
    subj = hash_files([link], model_dir, allow_outside_symlinks=True)
    assert subj.files[0].name == "escape.safetensors"
    assert subj.files[0].sha256 == hashlib.sha256(b"outside").digest()


def test_symlink_inside_base_is_hashed_under_its_own_name(model_dir: Path) -> None:
    link = model_dir / "alias.json"
    link.symlink_to("config.json")
    subj = hash_files([link], model_dir)
    assert subj.files[0].name == "alias.json"
    assert subj.files[0].sha256 == hashlib.sha256((model_dir / "config.json").read_bytes()).digest()


def test_paths_outside_base_dirs_and_duplicates(tmp_path: Path, model_dir: Path) -> None:
    other = _write(tmp_path / "other.bin", b"z")
    with pytest.raises(InputError):
        hash_files([other], model_dir)
    with pytest.raises(InputError):
        hash_files([model_dir / ".." / "other.bin"], model_dir)
    with pytest.raises(InputError):
        hash_files([model_dir / "sub"], model_dir)
    with pytest.raises(InputError):
        hash_files([model_dir / "one.bin", model_dir / "sub" / ".." / "one.bin"], model_dir)
    with pytest.raises(InputError):
        hash_files([model_dir / "one.bin"], model_dir / "one.bin")


def test_cbor_round_trip(model_dir: Path) -> None:
    subj = hash_files(_all_files(model_dir), model_dir)
    obj = subj.to_cbor_obj()
    assert set(obj) == {"files", "root", "algorithm", "layout"}
    assert obj["layout"] == "attest-manifest/1" and obj["algorithm"] == "sha256"
    encoded = cbor2.dumps(obj, canonical=True)
    decoded = cbor2.loads(encoded)
    assert Subject.from_cbor_obj(decoded) == subj
    # Tuples and read-only mappings, as cbor2 6.x hands back for tagged content.
    from types import MappingProxyType

    frozen = MappingProxyType({**obj, "files": tuple(MappingProxyType(f) for f in obj["files"])})
    assert Subject.from_cbor_obj(frozen) == subj


def _mutations(obj: dict) -> list[object]:
    f0 = dict(obj["files"][0])
    bad: list[object] = [
        None,
        [],
        {**obj, "extra": 1},
        {k: v for k, v in obj.items() if k != "root"},
        {**obj, "algorithm": "sha512"},
        {**obj, "layout": "attest-manifest/2"},
        {**obj, "files": "abc"},
        {**obj, "files": b"abc"},
        {**obj, "files": {"a": 1}},
        {**obj, "root": obj["root"][:-1]},
        {**obj, "root": bytes(32)},
        {**obj, "root": obj["root"].hex()},
        {**obj, "files": list(reversed(obj["files"]))},
        {**obj, "files": obj["files"] + [obj["files"][-1]]},
        {**obj, "files": obj["files"][1:]},
    ]
    for field, value in [
        ("sha256", f0["sha256"][:31]),
        ("sha256", f0["sha256"].hex()),
        ("size", -1),
        ("size", True),
        ("size", 1.0),
        ("size", 1 << 64),
        ("name", 7),
        ("name", ""),
        ("name", "/abs"),
        ("name", "../up"),
        ("name", "a//b"),
        ("name", "./a"),
        ("name", "a\\b"),
        ("name", "a\x00b"),
        ("name", "\udcff"),
        ("name", "x" * 5000),
    ]:
        bad.append({**obj, "files": [{**f0, field: value}] + obj["files"][1:]})
    bad.append({**obj, "files": [{**f0, "mode": 0o644}] + obj["files"][1:]})
    bad.append({**obj, "files": [1] + obj["files"][1:]})
    return bad


def test_from_cbor_obj_rejects_malformed(model_dir: Path) -> None:
    obj = hash_files(_all_files(model_dir), model_dir).to_cbor_obj()
    for i, bad in enumerate(_mutations(obj)):
        with pytest.raises(BundleError):
            Subject.from_cbor_obj(bad)
            pytest.fail(f"mutation {i} accepted")


def test_from_cbor_obj_rejects_too_many_files() -> None:
    entry = {"name": "x", "sha256": bytes(32), "size": 0}
    obj = {"algorithm": "sha256", "layout": "attest-manifest/1", "files": [entry] * 100_001, "root": bytes(32)}
    with pytest.raises(BundleError):
        Subject.from_cbor_obj(obj)


def test_diff() -> None:
    d = hashlib.sha256
    a = Subject.from_files([FileDigest("x", d(b"1").digest(), 1), FileDigest("y", d(b"2").digest(), 1)])
    b = Subject.from_files([FileDigest("x", d(b"3").digest(), 1), FileDigest("z", d(b"2").digest(), 1)])
    assert a.diff(b) == {"changed": ["x"], "missing": ["y"], "extra": ["z"]}
    assert a.diff(a) == {"changed": [], "missing": [], "extra": []}


def test_large_file_streams(tmp_path: Path) -> None:
    # Several chunks at the default 8 MiB size, written sparse-free but cheap.
    p = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(p, "wb") as fh:
        for _ in range(17):
            fh.write(block)
    expected = hashlib.sha256(block * 17).digest()
    assert hash_file(p) == expected
    subj = hash_files([p], tmp_path)
    assert subj.files[0].sha256 == expected
    assert subj.files[0].size == 17 << 20


def test_first_error_stops_other_workers(tmp_path: Path) -> None:
    size = 32 << 20
    files = [_write(tmp_path / f"shard{i}.bin", os.urandom(size)) for i in range(2)]
    seen: list[int] = []

    def progress(n: int) -> None:
        seen.append(n)
        if len(seen) == 1:
            raise RuntimeError("boom")  # the first worker dies after one chunk

    with pytest.raises(RuntimeError):
        hash_files(files, tmp_path, workers=2, progress=progress, chunk=4096)
    # The other worker was stopped before finishing its file.
    assert sum(seen) < size
