"""A registry folder: signed bundles stored by content digest, indexed in SQLite.

Layout (docs/registry.md)::

    REG/registry.sqlite            the index (WAL: also -wal and -shm files)
    REG/bundles/<sha256>.attest    each bundle, named by the SHA-256 of its bytes

Entries are keyed by the subject root digest (the weights a bundle attests),
so the same base is registered once whoever re-issues it.  Every change to
the index *and* to `bundles/` happens while holding the database write lock
(BEGIN IMMEDIATE), so concurrent writers see each other's work whole.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attest.bundle.container import (
    MAX_ATTESTATION_BYTES,
    OpenedAttestation,
    read_attestation,
    read_bounded,
)
from attest.crypto.keys import TrustStore
from attest.errors import AttestError, BundleError, InputError
from attest.registry.entry import DERIVED_FIELDS, Entry, entry_from_bundle
from attest.registry.schema import connect, write_transaction

DB_NAME = "registry.sqlite"
BUNDLES_DIR = "bundles"
_HEX = re.compile(r"^[0-9a-f]+$")
MIN_PREFIX = 8  # shortest digest prefix `remove` accepts, so a typo cannot pick an entry at random


class Registry:
    """An open registry folder.  Use as a context manager, or call `close()`."""

    def __init__(self, root: Path, conn: sqlite3.Connection) -> None:
        self.root = root
        self.conn = conn
        self.conn.row_factory = sqlite3.Row

    @classmethod
    def open(cls, root: str | Path, *, create: bool = False) -> Registry:
        """Open REG; with `create`, make it when the folder is missing or empty."""
        root = Path(root)
        db = root / DB_NAME
        if create and not db.exists():
            if root.exists() and not root.is_dir():
                raise InputError(f"registry {root} is a file, not a folder")
            if root.is_dir() and any(
                p.name not in (BUNDLES_DIR,) and not p.name.startswith(DB_NAME) for p in root.iterdir()
            ):
                raise InputError(
                    f"{root} exists, is not empty and holds no {DB_NAME}: refusing to turn it into a registry"
                )
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot create registry {root}: {exc.strerror}") from None
        elif not root.is_dir():
            raise InputError(f"registry not found: {root}")
        conn = connect(db, create=create)
        try:
            (root / BUNDLES_DIR).mkdir(exist_ok=True)
        except OSError as exc:
            conn.close()
            raise InputError(f"cannot create {root / BUNDLES_DIR}: {exc.strerror}") from None
        return cls(root, conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Registry:  # noqa: PYI034 (Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def entries(self) -> list[Entry]:
        rows = self.conn.execute("SELECT * FROM bases ORDER BY name, subject_root").fetchall()
        return [Entry.from_row(r) for r in rows]

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM bases").fetchone()[0])

    def bundle_path(self, entry: Entry) -> Path:
        return self.root / entry.bundle_file

    def resolve(self, ref: str) -> Entry:
        """The one entry named `ref`: its signed name, or a subject-root / bundle digest (prefix)."""
        rows = self.conn.execute("SELECT * FROM bases WHERE name = ?", (ref,)).fetchall()
        if not rows:
            key = ref.lower()
            if len(key) < MIN_PREFIX or not _HEX.match(key):
                raise InputError(f"no registry entry named {ref!r} (digests need at least {MIN_PREFIX} hex digits)")
            rows = self.conn.execute(
                "SELECT * FROM bases WHERE substr(subject_root, 1, ?) = ? OR substr(bundle_sha256, 1, ?) = ?",
                (len(key), key, len(key), key),
            ).fetchall()
        if not rows:
            raise InputError(f"no registry entry matches {ref!r}")
        if len(rows) > 1:
            roots = ", ".join(r["subject_root"][:16] for r in rows)
            raise InputError(f"{ref!r} is ambiguous: {len(rows)} entries match (subject roots {roots}…); give a digest")
        return Entry.from_row(rows[0])

    def read_bundle(self, entry: Entry, trust: TrustStore) -> OpenedAttestation:
        """A stored bundle, checked against its index digest and re-verified under `trust`."""
        path = self.bundle_path(entry)
        raw = read_bounded(path, MAX_ATTESTATION_BYTES, what="registered bundle")
        if not hmac.compare_digest(hashlib.sha256(raw).hexdigest(), entry.bundle_sha256):
            raise BundleError(f"registered bundle {path} does not match its digest in the index (tampered?)")
        try:
            return read_attestation(raw, trust)
        except BundleError as exc:
            raise BundleError(f"registered bundle {entry.name!r} ({path.name}): {exc}") from None


def _as_registry(reg: Registry | str | Path, *, create: bool = False) -> tuple[Registry, bool]:
    if isinstance(reg, Registry):
        return reg, False
    return Registry.open(reg, create=create), True


@contextmanager
def _opened(reg: Registry | str | Path, *, create: bool = False) -> Iterator[Registry]:
    r, owned = _as_registry(reg, create=create)
    try:
        yield r
    finally:
        if owned:
            r.close()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _fsync_dir(path: Path) -> None:
    # The rename that publishes a bundle is durable only once its directory is synced.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- add
@dataclass
class AddReport:
    added: list[Entry] = field(default_factory=list)
    skipped: list[tuple[str, Entry]] = field(default_factory=list)  # (path given, entry already present)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": [e.to_json() for e in self.added],
            "skipped": [{"path": p, "reason": "already registered", "entry": e.to_json()} for p, e in self.skipped],
        }


def _check_bundle(path: Path, trust: TrustStore) -> tuple[Entry, bytes]:
    what = f"bundle {path}"
    raw = read_bounded(path, MAX_ATTESTATION_BYTES, what="bundle")
    try:
        opened = read_attestation(raw, trust)
    except BundleError as exc:
        raise BundleError(f"{path}: refused: {exc}") from None
    return entry_from_bundle(opened, what), raw


def add(reg: Registry | str | Path, bundle_paths: Iterable[str | Path], trust: TrustStore) -> AddReport:
    """Register bundles; every one is verified under `trust` before anything is written.

    A malformed or untrusted bundle raises BundleError naming it and nothing is
    added.  A bundle whose subject root is already registered is skipped.
    """
    checked = [(str(p), *_check_bundle(Path(p), trust)) for p in bundle_paths]
    report = AddReport()
    with _opened(reg, create=True) as r:
        folder = r.root / BUNDLES_DIR
        for given, entry, raw in checked:
            # The slow part (writing and syncing the bytes) happens before the
            # lock; publishing is a rename under it.
            fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", suffix=".tmp", dir=folder)
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(raw)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o644)
                with write_transaction(r.conn) as conn:
                    row = conn.execute("SELECT * FROM bases WHERE subject_root = ?", (entry.subject_root,)).fetchone()
                    if row is not None:
                        report.skipped.append((given, Entry.from_row(row)))
                        continue
                    final = r.bundle_path(entry)
                    existed = final.exists()
                    os.replace(tmp, final)
                    try:
                        cols = DERIVED_FIELDS + ("added_at",)
                        values = [*entry.derived().values(), _now()]
                        cur = conn.execute(
                            f"INSERT INTO bases ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", values
                        )
                    except BaseException:
                        if not existed:
                            final.unlink(missing_ok=True)
                        raise
                    report.added.append(Entry(**{**entry.derived(), "id": cur.lastrowid, "added_at": values[-1]}))
                _fsync_dir(folder)
            except OSError as exc:
                raise InputError(f"cannot store {given} in registry {r.root}: {exc.strerror or exc}") from None
            finally:
                tmp.unlink(missing_ok=True)
    return report


# ---------------------------------------------------------------------- list / remove
def list_entries(reg: Registry | str | Path) -> list[Entry]:
    with _opened(reg) as r:
        return r.entries()


def remove(reg: Registry | str | Path, ref: str) -> Entry:
    """Remove the entry named `ref` (name, subject root or bundle digest) and its bundle file."""
    with _opened(reg) as r:
        trash: Path | None = None
        final: Path | None = None
        try:
            with write_transaction(r.conn):
                entry = r.resolve(ref)
                final = r.bundle_path(entry)
                if final.exists():
                    # Renamed, not deleted, until the row is gone: a failed
                    # commit puts it back, and no other writer can re-add the
                    # same file in between (they wait for our lock).
                    trash = final.with_name(f".removed-{os.getpid()}-{final.name}")
                    os.replace(final, trash)
                r.conn.execute("DELETE FROM bases WHERE id = ?", (entry.id,))
        except BaseException:
            if trash is not None and final is not None and trash.exists():
                os.replace(trash, final)
            raise
        if trash is not None:
            trash.unlink(missing_ok=True)
        return entry


# ---------------------------------------------------------------------- verify
TAMPER_KINDS = ("database", "missing", "modified", "untrusted", "malformed", "index_edited")


@dataclass(frozen=True)
class Problem:
    kind: str  # one of TAMPER_KINDS, or "stray" (an unindexed file: reported, not tampering)
    detail: str
    name: str = ""
    subject_root: str = ""

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "detail": self.detail, "name": self.name, "subject_root": self.subject_root}


@dataclass
class VerifyReport:
    checked: int
    ok: int
    problems: list[Problem]

    @property
    def tampered(self) -> bool:
        return any(p.kind != "stray" for p in self.problems)

    def to_json(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "ok": self.ok,
            "tampered": self.tampered,
            "problems": [p.to_json() for p in self.problems],
        }


def _check_entry(r: Registry, entry: Entry, trust: TrustStore) -> Problem | None:
    def problem(kind: str, detail: str) -> Problem:
        return Problem(kind, detail, entry.name, entry.subject_root)

    path = r.bundle_path(entry)
    if not path.is_file():
        return problem("missing", f"{entry.bundle_file} is missing")
    try:
        raw = read_bounded(path, MAX_ATTESTATION_BYTES, what="registered bundle")
    except AttestError as exc:
        return problem("modified", str(exc))
    digest = hashlib.sha256(raw).hexdigest()
    if not hmac.compare_digest(digest, entry.bundle_sha256):
        return problem(
            "modified", f"{entry.bundle_file} has SHA-256 {digest[:16]}…, not the indexed {entry.bundle_sha256[:16]}…"
        )
    try:
        opened = read_attestation(raw, trust)
    except BundleError as exc:
        return problem("untrusted", f"{entry.bundle_file}: {exc}")
    try:
        fresh = entry_from_bundle(opened, entry.bundle_file)
    except BundleError as exc:
        return problem("malformed", str(exc))
    stored, derived = entry.derived(), fresh.derived()
    edited = entry.disagreements(fresh)
    if edited:
        shown = "; ".join(f"{k}: index {stored[k]!r}, bundle {derived[k]!r}" for k in edited[:4])
        return problem("index_edited", f"index row disagrees with its bundle ({shown})")
    return None


def verify(reg: Registry | str | Path, trust: TrustStore) -> VerifyReport:
    """Re-check every stored signature, file digest and index row; report what was tampered with."""
    with _opened(reg) as r:
        problems: list[Problem] = []
        check = [row[0] for row in r.conn.execute("PRAGMA integrity_check").fetchall()]
        if check != ["ok"]:
            problems.append(Problem("database", "SQLite integrity check: " + "; ".join(map(str, check[:5]))))
        # One read transaction: a consistent snapshot of the rows even while another process writes.
        r.conn.execute("BEGIN")
        try:
            entries = r.entries()
        finally:
            r.conn.execute("COMMIT")
        ok = 0
        for entry in entries:
            p = _check_entry(r, entry, trust)
            if p is None:
                ok += 1
            else:
                problems.append(p)
        known = {Path(e.bundle_file).name for e in entries}
        for f in sorted((r.root / BUNDLES_DIR).iterdir()):
            if not f.name.startswith(".") and f.name not in known:
                problems.append(Problem("stray", f"{BUNDLES_DIR}/{f.name} is not in the index"))
        return VerifyReport(checked=len(entries), ok=ok, problems=problems)
