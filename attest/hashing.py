"""SHA-256 digests of a model's files: the *subject* of an attest bundle.

The layout follows OpenSSF model-signing's manifest (sigstore/model-transparency,
serialization method "files"): one entry per file, named by its path relative
to the model folder as a POSIX path, entries sorted by that path, and a root
digest over the sorted entries.  See `Subject` for the exact root definition.

Hashing streams each file in fixed-size chunks, so memory stays at one chunk
per worker whatever the checkpoint size.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attest.errors import BundleError, InputError

__all__ = [
    "ALGORITHM",
    "LAYOUT",
    "FileDigest",
    "Subject",
    "hash_file",
    "hash_files",
    "name_sort_key",
    "root_digest",
    "model_signing_root",
]

ALGORITHM = "sha256"
LAYOUT = "attest-manifest/1"
DEFAULT_CHUNK = 8 * 1024 * 1024
DIGEST_SIZE = 32

# Domain separation: a root can never be confused with a digest of some other
# byte string that happens to have the same entry encoding.
_ROOT_PREFIX = LAYOUT.encode("ascii") + b"\x00"

# Caps for decoding hostile bundles (DESIGN §8): generous for any real
# checkpoint (the largest public ones have a few hundred shards).
MAX_FILES = 100_000
MAX_NAME_BYTES = 4096
MAX_SIZE = (1 << 63) - 1

ProgressFn = Callable[[int], None]


# --------------------------------------------------------------------------
# names and ordering


def name_sort_key(name: str) -> tuple[str, ...]:
    """Canonical order of entry names: component-wise, by Unicode code point.

    model-signing sorts `PurePosixPath` keys, which compare their '/'-separated
    components; comparing the tuples gives the same order, so for the same file
    set our entry order (and `model_signing_root`) matches theirs.  Note that
    this differs from plain string order: "a/b" sorts before "a-b".
    """
    return tuple(name.split("/"))


def _check_name(name: object) -> str:
    """Return `name` if it is a canonical relative POSIX path, else raise ValueError."""
    if not isinstance(name, str):
        raise ValueError(f"file name must be a string, got {type(name).__name__}")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"file name is not valid UTF-8: {name!r}") from exc
    if not encoded or len(encoded) > MAX_NAME_BYTES:
        raise ValueError(f"file name must be 1..{MAX_NAME_BYTES} bytes: {name!r}")
    if "\x00" in name or "\\" in name:
        # A backslash is a separator on Windows, so the same name would denote
        # a different file there; no real checkpoint uses one.
        raise ValueError(f"file name contains NUL or backslash: {name!r}")
    if name.startswith("/"):
        raise ValueError(f"file name must be relative: {name!r}")
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"file name is not a normalised relative path: {name!r}")
    return name


# --------------------------------------------------------------------------
# data model


@dataclass(frozen=True)
class FileDigest:
    """One subject entry: relative POSIX name, SHA-256 of the content, byte size."""

    name: str
    sha256: bytes
    size: int

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.sha256, bytes) or len(self.sha256) != DIGEST_SIZE:
            raise ValueError(f"{self.name}: sha256 must be {DIGEST_SIZE} bytes")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise ValueError(f"{self.name}: size must be an integer")
        if not 0 <= self.size <= MAX_SIZE:
            raise ValueError(f"{self.name}: size out of range: {self.size}")


def _entries_in_order(files: Sequence[FileDigest]) -> None:
    for prev, cur in zip(files, files[1:]):
        if name_sort_key(prev.name) >= name_sort_key(cur.name):
            what = "duplicate" if prev.name == cur.name else "unsorted"
            raise ValueError(f"{what} subject entries: {prev.name!r}, {cur.name!r}")


def root_digest(files: Sequence[FileDigest]) -> bytes:
    """The subject root over `files` taken in the order given (see `Subject`)."""
    h = hashlib.sha256(_ROOT_PREFIX)
    for f in files:
        name = f.name.encode("utf-8")
        h.update(struct.pack(">I", len(name)))
        h.update(name)
        h.update(struct.pack(">Q", f.size))
        h.update(f.sha256)
    return h.digest()


def model_signing_root(files: Sequence[FileDigest]) -> bytes:
    """model-signing v1.0's subject digest: SHA-256 of the concatenated file digests.

    It binds neither names nor sizes (model-signing binds those through the
    signed resource list), so attest's own `root_digest` is what the bundle
    records; this one is offered to cross-check against a model-signing
    signature of the same folder.
    """
    h = hashlib.sha256()
    for f in files:
        h.update(f.sha256)
    return h.digest()


@dataclass(frozen=True)
class Subject:
    """The digests of every file of a model, plus a root digest over them.

    ``files`` is sorted by `name_sort_key` with no duplicate names.  ``root`` is

        SHA-256( b"attest-manifest/1" || 0x00
                 || for each entry in ``files`` order:
                      u32be(len(N)) || N || u64be(size) || sha256 )

    where N is the entry's name encoded as UTF-8, u32be/u64be are unsigned
    big-endian integers of 4 and 8 bytes, and sha256 is the 32-byte raw digest
    of the file's bytes.  Names are paths relative to the model folder with '/'
    separators, no '.', '..' or empty components, no leading '/', no backslash
    or NUL.  Entries are ordered by comparing the tuples of '/'-separated
    components, each compared by Unicode code point (the order of Python's
    `PurePosixPath`, which model-signing uses).

    Any change to a file's bytes, a name, a size, or the set or order of
    entries changes the root.
    """

    files: list[FileDigest]
    root: bytes = field(default=b"")

    def __post_init__(self) -> None:
        files = list(self.files)
        if len(files) > MAX_FILES:
            raise ValueError(f"too many subject files: {len(files)} > {MAX_FILES}")
        for f in files:
            if not isinstance(f, FileDigest):
                raise ValueError("subject entries must be FileDigest")
        _entries_in_order(files)
        object.__setattr__(self, "files", files)
        expected = root_digest(files)
        if self.root == b"":
            object.__setattr__(self, "root", expected)
        elif self.root != expected:
            raise ValueError("subject root does not match its entries")

    @classmethod
    def from_files(cls, files: Sequence[FileDigest]) -> Subject:
        """Sort `files` canonically and compute the root."""
        return cls(sorted(files, key=lambda f: name_sort_key(f.name)))

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def model_signing_root(self) -> bytes:
        return model_signing_root(self.files)

    def diff(self, other: Subject) -> dict[str, list[str]]:
        """Names that differ between two subjects: changed, missing (only in self), extra."""
        mine = {f.name: (f.sha256, f.size) for f in self.files}
        theirs = {f.name: (f.sha256, f.size) for f in other.files}
        return {
            "changed": sorted((n for n in mine.keys() & theirs.keys() if mine[n] != theirs[n]),
                              key=name_sort_key),
            "missing": sorted(mine.keys() - theirs.keys(), key=name_sort_key),
            "extra": sorted(theirs.keys() - mine.keys(), key=name_sort_key),
        }

    def to_cbor_obj(self) -> dict[str, Any]:
        return {
            "algorithm": ALGORITHM,
            "layout": LAYOUT,
            "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in self.files],
            "root": self.root,
        }

    @classmethod
    def from_cbor_obj(cls, obj: object) -> Subject:
        """Parse and fully validate a decoded subject; BundleError if malformed.

        Accepts any Mapping/Sequence (cbor2 6.x yields frozendicts and tuples).
        The root is recomputed and must equal the recorded one.
        """
        try:
            return cls._from_cbor_obj(obj)
        except BundleError:
            raise
        except (ValueError, TypeError) as exc:
            raise BundleError(f"malformed subject: {exc}") from exc

    @classmethod
    def _from_cbor_obj(cls, obj: object) -> Subject:
        if not isinstance(obj, Mapping):
            raise ValueError("subject is not a map")
        keys = set(obj.keys())
        expected_keys = {"algorithm", "layout", "files", "root"}
        if keys != expected_keys:
            raise ValueError(f"subject keys must be {sorted(expected_keys)}, got {sorted(map(str, keys))}")
        if obj["algorithm"] != ALGORITHM:
            raise ValueError(f"unsupported algorithm {obj['algorithm']!r}")
        if obj["layout"] != LAYOUT:
            raise ValueError(f"unsupported layout {obj['layout']!r}")
        raw_files = obj["files"]
        if not isinstance(raw_files, Sequence) or isinstance(raw_files, (str, bytes, bytearray)):
            raise ValueError("files is not an array")
        if len(raw_files) > MAX_FILES:
            raise ValueError(f"too many files: {len(raw_files)}")
        files = []
        for i, entry in enumerate(raw_files):
            if not isinstance(entry, Mapping) or set(entry.keys()) != {"name", "sha256", "size"}:
                raise ValueError(f"files[{i}] must be a map with keys name, sha256, size")
            digest = entry["sha256"]
            if not isinstance(digest, bytes):
                raise ValueError(f"files[{i}].sha256 is not a byte string")
            files.append(FileDigest(name=entry["name"], sha256=bytes(digest), size=entry["size"]))
        root = obj["root"]
        if not isinstance(root, bytes) or len(root) != DIGEST_SIZE:
            raise ValueError(f"root must be {DIGEST_SIZE} bytes")
        return cls(files, bytes(root))


# --------------------------------------------------------------------------
# hashing


class _Cancelled(Exception):
    """Another worker failed or the caller was interrupted: stop reading."""


def _hash_open_file(f: io.FileIO, chunk: int, progress: ProgressFn | None,
                    cancel: threading.Event | None = None) -> tuple[bytes, int]:
    fd = f.fileno()
    if hasattr(os, "posix_fadvise"):
        # Doubles kernel readahead on Linux, which helps cold multi-GB shards.
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    total = 0
    while True:
        # readinto and sha256.update on >2 KiB both release the GIL, so threads
        # hashing different files really run on different cores.
        n = f.readinto(buf)
        if not n:
            break
        h.update(view[:n])
        total += n
        if cancel is not None and cancel.is_set():
            raise _Cancelled
        if progress is not None:
            progress(n)
    return h.digest(), total


def hash_file(path: Path, chunk: int = DEFAULT_CHUNK, progress: ProgressFn | None = None) -> bytes:
    """SHA-256 of a file's bytes, read in `chunk`-byte pieces.

    A single file's SHA-256 is inherently sequential (each block's compression
    depends on the previous state), so one file always uses one core; only
    hashing several files at once (`hash_files`) uses more.  Splitting a file
    into independently hashed shards would parallelise it but would define a
    different digest, which no plain `sha256sum` could check.
    """
    if chunk <= 0:
        raise ValueError("chunk must be positive")
    try:
        f = io.FileIO(path, "r")
    except FileNotFoundError as exc:
        raise InputError(f"file not found: {path}") from exc
    except OSError as exc:
        raise InputError(f"cannot open {path}: {exc.strerror}") from exc
    with f:
        try:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise InputError(f"not a regular file: {path}")
            digest, _ = _hash_open_file(f, chunk, progress)
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    return digest


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _resolve_entry(path: Path, base_abs: str, base_real: str, allow_outside_symlinks: bool) -> tuple[str, str]:
    """Return (subject name, real path to read) for one input path."""
    p_abs = os.path.abspath(path)
    if _within(p_abs, base_abs):
        rel = os.path.relpath(p_abs, base_abs)
    else:
        # The caller may hand us resolved paths while `base` goes through a
        # symlinked directory (or the reverse); compare with the parent resolved.
        p_parent_real = os.path.join(os.path.realpath(os.path.dirname(p_abs)), os.path.basename(p_abs))
        if not _within(p_parent_real, base_real):
            raise InputError(f"{path} is not inside {base_abs}")
        rel = os.path.relpath(p_parent_real, base_real)
    if rel == ".":
        raise InputError(f"{path} is the base folder itself, not a file")
    name = Path(rel).as_posix()

    if not os.path.lexists(p_abs):
        raise InputError(f"file not found: {path}")
    real = os.path.realpath(p_abs)
    if not os.path.exists(real):
        raise InputError(f"file not found (dangling symlink): {path}")
    if not allow_outside_symlinks and not _within(real, base_real):
        # A link out of the model folder would make the signed subject depend
        # on files the publisher may not be looking at.
        raise InputError(f"{path} is a symlink to {real}, outside {base_real} "
                         "(a Hugging Face cache snapshot links its files to ../../blobs; "
                         "allow outside symlinks to hash those)")
    if not os.path.isfile(real):
        raise InputError(f"not a regular file: {path}")
    try:
        name = _check_name(name)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    return name, real


def hash_files(
    paths: Sequence[Path],
    base: Path,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
    allow_outside_symlinks: bool = False,
) -> Subject:
    """Hash `paths` (files inside `base`) in parallel and build their Subject.

    Names are the paths relative to `base`, as POSIX paths.  Files are spread
    over `workers` threads (default: one per CPU), largest first so the last
    big shard does not run alone.  One file is never split across threads:
    SHA-256 of a whole file is sequential (see `hash_file`).

    `progress(n)` is called with each chunk's byte count as it is hashed; calls
    are serialised by a lock, so the callback need not be thread-safe.

    Raises InputError for a missing file, a non-file, a path outside `base`, a
    duplicate name, a file that changes size while hashed, or (unless
    `allow_outside_symlinks`, needed for Hugging Face cache snapshots whose
    files link to ../../blobs) a symlink that resolves outside `base`.
    """
    base_abs = os.path.abspath(base)
    if not os.path.isdir(base_abs):
        raise InputError(f"not a folder: {base}")
    base_real = os.path.realpath(base_abs)

    entries: dict[str, str] = {}
    for p in paths:
        name, real = _resolve_entry(Path(p), base_abs, base_real, allow_outside_symlinks)
        if name in entries:
            raise InputError(f"file given twice: {name}")
        entries[name] = real

    sizes = {name: os.stat(real).st_size for name, real in entries.items()}
    lock = threading.Lock()
    cancel: threading.Event | None = None

    def report(n: int) -> None:
        assert progress is not None
        with lock:
            progress(n)

    def one(name: str) -> FileDigest:
        real = entries[name]
        try:
            f = io.FileIO(real, "r")
        except OSError as exc:
            raise InputError(f"cannot open {name}: {exc.strerror}") from exc
        with f:
            try:
                expected = os.fstat(f.fileno()).st_size
                digest, n = _hash_open_file(f, chunk, report if progress is not None else None, cancel)
            except OSError as exc:
                raise InputError(f"cannot read {name}: {exc.strerror}") from exc
        if n != expected:
            raise InputError(f"{name} changed while being hashed ({expected} -> {n} bytes)")
        return FileDigest(name=name, sha256=digest, size=n)

    order = sorted(entries, key=lambda n: -sizes[n])
    n_workers = max(1, min(workers if workers is not None else (os.cpu_count() or 1), len(order) or 1))
    if n_workers == 1:
        return Subject.from_files([one(n) for n in order])
    # On the first error (or Ctrl-C) stop the other workers mid-file instead of
    # letting them finish gigabytes of hashing whose result is thrown away.
    cancel = threading.Event()
    pool = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="attest-hash")
    try:
        futures = [pool.submit(one, n) for n in order]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [fut for fut in futures if fut in done and fut.exception() is not None]
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
        results = [fut.result() for fut in futures]
    except BaseException:
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return Subject.from_files(results)
