"""Reading and hashing a model's files, in parallel, into a `Subject`.

Hashing streams each file in fixed-size chunks, so memory stays at one chunk
per worker whatever the checkpoint size. Entry names are resolved against
the model folder here (symlinks that leave the folder are refused unless
allowed); the manifest model itself is `attest.subject.manifest`.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from attest.errors import InputError
from attest.subject.manifest import FileDigest, Subject, check_name

DEFAULT_CHUNK = 8 * 1024 * 1024

ProgressFn = Callable[[int], None]


# --------------------------------------------------------------------------
# hashing


class _Cancelled(Exception):
    """Another worker failed or the caller was interrupted: stop reading."""


def _hash_open_file(
    f: io.FileIO, chunk: int, progress: ProgressFn | None, cancel: threading.Event | None = None
) -> tuple[bytes, int]:
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
        raise InputError(
            f"{path} is a symlink to {real}, outside {base_real} "
            "(a Hugging Face cache snapshot links its files to ../../blobs; "
            "allow outside symlinks to hash those)"
        )
    if not os.path.isfile(real):
        raise InputError(f"not a regular file: {path}")
    try:
        name = check_name(name)
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
