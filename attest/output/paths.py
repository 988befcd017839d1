"""Every file attest writes goes through here.

The rules (docs/cli.md, "Output files"): an output path is checked before any
computation starts, so a long run never ends in "cannot write"; an existing
file is replaced only with ``force``; a symlink is never written through; the
suffix must fit what is written (a bundle is not written over a ``.png``); and
the bytes land atomically (a temporary file in the same folder, then a rename),
so a reader never sees half a file and a failed write leaves the old one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from attest.errors import InputError


def check_output(path: Path, *, what: str, suffixes: Iterable[str] = (), force: bool = False) -> Path:
    """Refuse an output path that would surprise: wrong suffix, a symlink, a folder,
    a missing parent folder, or an existing file without `force`."""
    path = Path(path)
    allowed = tuple(s.lower() for s in suffixes)
    if allowed and path.suffix.lower() not in allowed:
        raise InputError(f"{what} {path}: expected a file name ending in {' or '.join(allowed)}")
    if path.is_symlink():
        raise InputError(f"{what} {path} is a symbolic link; attest never writes through one")
    if path.exists():
        if path.is_dir():
            raise InputError(f"{what} {path} is a folder")
        if not force:
            raise InputError(f"{what} {path} exists; use --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{what} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{what} {path}: the folder {parent} is not writable")
    return path


def check_distinct(paths: Iterable[Path | None]) -> None:
    """Two outputs of one command must not be the same file."""
    seen: dict[Path, Path] = {}
    for p in paths:
        if p is None:
            continue
        key = Path(os.path.abspath(p))
        if key in seen:
            raise InputError(f"{seen[key]} is named for two outputs of this command")
        seen[key] = p


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` to `path` atomically; never through a symlink."""
    path = Path(path)
    if path.is_symlink():
        raise InputError(f"{path} is a symbolic link; attest never writes through one")
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        # rename() replaces a symlink itself, never its target; the check above
        # keeps a link planted after it from being silently replaced instead.
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
