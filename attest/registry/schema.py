"""The registry's SQLite index: schema, version check and connection settings.

The index is a cache of facts read from signed bundles, never a source of
truth: `attest registry verify` re-derives every row from its bundle.  What
lives here is what `attest identify` needs to list candidates without opening
every bundle, plus a table reserved for unsigned scan records.

Concurrency (docs/registry.md): WAL journal, a busy timeout, and every write
inside ``BEGIN IMMEDIATE`` so two writers queue on the database lock instead
of failing or interleaving half-done changes.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from attest.errors import InputError

SCHEMA_VERSION = 3
# Versions this attest can open: older ones are migrated in place (MIGRATIONS).
REGISTRY_FORMAT = "attest-registry"
# PRAGMA application_id ('ATRG'): lets `file(1)` and our own check tell an
# attest registry from any other SQLite database.
APPLICATION_ID = 0x41545247
BUSY_TIMEOUT_MS = 60_000

DDL = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- One row per registered base, keyed by the subject root digest (hex).
-- Every column is re-derivable from the bundle file bundles/<bundle_sha256>.attest.
CREATE TABLE IF NOT EXISTS bases (
    id            INTEGER PRIMARY KEY,
    subject_root  TEXT NOT NULL UNIQUE CHECK (length(subject_root) = 64),
    bundle_sha256 TEXT NOT NULL UNIQUE CHECK (length(bundle_sha256) = 64),
    bundle_bytes  INTEGER NOT NULL,
    name          TEXT NOT NULL,   -- the signed CWT subject
    model_name    TEXT NOT NULL,   -- model.name in the statement
    issuer        TEXT NOT NULL,   -- the signed CWT issuer
    kid           TEXT NOT NULL,   -- publisher key id (hex)
    iat           INTEGER NOT NULL,
    family        TEXT NOT NULL,
    layers        INTEGER NOT NULL,
    hidden        INTEGER NOT NULL,
    vocab         INTEGER NOT NULL,
    parameters    INTEGER NOT NULL,
    method        TEXT NOT NULL,
    n_tokens      INTEGER NOT NULL,
    token_mode    TEXT NOT NULL,
    n_cells       INTEGER NOT NULL,
    n_pairs       INTEGER NOT NULL,
    added_at      TEXT NOT NULL,
    probe_tokens  BLOB             -- canonical CBOR of the probe token strings (version 3; NULL before)
) STRICT;
CREATE INDEX IF NOT EXISTS bases_name ON bases (name);
CREATE INDEX IF NOT EXISTS bases_shape ON bases (family, hidden, layers);

-- `attest scan`'s work log: one row per model found on disk, keyed by its
-- subject root when hashing worked.  Nothing here is signed and nothing here is
-- ever used to decide a verdict.  Columns after recorded_at arrived in version 2.
CREATE TABLE IF NOT EXISTS scan_records (
    id           INTEGER PRIMARY KEY,
    path         TEXT NOT NULL,
    subject_root TEXT CHECK (subject_root IS NULL OR length(subject_root) = 64),
    status       TEXT NOT NULL CHECK (status IN ('ok', 'error', 'skipped')),
    error        TEXT,
    exit_class   INTEGER,          -- attest.errors.ExitCode of the outcome
    record       BLOB,             -- canonical CBOR of the unsigned fingerprint
    tool_version TEXT NOT NULL,
    recorded_at  TEXT NOT NULL,
    source_bytes INTEGER,
    source_mtime INTEGER,
    verdict      TEXT,
    base_name    TEXT,
    base_root    TEXT,
    score        REAL,
    p_value      REAL,
    p_holm       REAL,
    bundle_sha256 TEXT,
    parameters   INTEGER,
    engine       TEXT,
    seconds      REAL
) STRICT;
-- One row per subject: two writers (or a retried task) cannot record a model twice.
CREATE UNIQUE INDEX IF NOT EXISTS scan_records_root ON scan_records (subject_root) WHERE subject_root IS NOT NULL;
CREATE INDEX IF NOT EXISTS scan_records_path ON scan_records (path);
"""


def connect(db_path: Path, *, create: bool) -> sqlite3.Connection:
    """Open (and with `create`, initialise) the index; InputError if it is not a usable registry."""
    if not create and not db_path.is_file():
        raise InputError(f"{db_path.parent} is not an attest registry (no {db_path.name})")
    try:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so the
        # write lock is taken before reading what we are about to change.
        conn = sqlite3.connect(str(db_path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise InputError(f"cannot open registry index {db_path}: {exc}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Before changing anything (WAL mode is persistent): is this ours?
        _refuse_foreign(conn, db_path)
        _ensure_wal(conn, db_path)
        # FULL: a committed add survives power loss, not only a crash of attest.
        conn.execute("PRAGMA synchronous = FULL")
        if create:
            _initialise(conn)
        _check_version(conn, db_path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise InputError(f"{db_path} is not a readable attest registry index: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _ensure_wal(conn: sqlite3.Connection, db_path: Path) -> None:
    """Switch to WAL once, retrying while another process holds the lock.

    Changing the journal mode needs an exclusive lock, and SQLite does not
    always call the busy handler for it: two processes creating one registry
    at the same moment would otherwise see "database is locked" at once.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode != "wal":
                mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            if mode != "wal":
                raise InputError(f"registry index {db_path}: cannot switch to WAL mode (got {mode})")
            return
        except sqlite3.OperationalError as exc:
            transient = "locked" in str(exc) or "busy" in str(exc)
            if not transient or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _initialise(conn: sqlite3.Connection) -> None:
    with write_transaction(conn):
        # An existing index is left to the version check (and its migration):
        # running today's DDL over an older or unknown layout could half-change it.
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
            return
        for statement in _statements(DDL):
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('format', ?)", (REGISTRY_FORMAT,))
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def _refuse_foreign(conn: sqlite3.Connection, db_path: Path) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if app_id not in (0, APPLICATION_ID) or (tables and "meta" not in tables):
        raise InputError(f"{db_path} is some other SQLite database, not an attest registry; refusing to touch it")


def _statements(script: str) -> list[str]:
    # executescript() commits any open transaction first, which would break
    # BEGIN IMMEDIATE; split the DDL and run it statement by statement instead.
    out: list[str] = []
    buf = ""
    for line in script.splitlines():
        code = line.split("--", 1)[0]
        buf += code + "\n"
        if code.rstrip().endswith(";") and sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out


def _check_version(conn: sqlite3.Connection, db_path: Path) -> None:
    try:
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.OperationalError:
        raise InputError(f"{db_path} is not an attest registry index (no meta table)") from None
    if rows.get("format") != REGISTRY_FORMAT:
        raise InputError(f"{db_path} is not an attest registry index (format {rows.get('format')!r})")
    version = rows.get("schema_version")
    if version in MIGRATIONS:
        _migrate(conn, str(version))
        return
    if version != str(SCHEMA_VERSION):
        raise InputError(
            f"registry {db_path.parent} has schema version {version!r}; this attest reads version "
            f"{SCHEMA_VERSION} only (upgrade attest, or rebuild the registry from its bundles)"
        )


# Version 1 reserved `scan_records` with its first nine columns; version 2 adds
# what `attest scan` records about each model and makes the subject unique.
_V2_COLUMNS = (
    ("source_bytes", "INTEGER"),
    ("source_mtime", "INTEGER"),
    ("verdict", "TEXT"),
    ("base_name", "TEXT"),
    ("base_root", "TEXT"),
    ("score", "REAL"),
    ("p_value", "REAL"),
    ("p_holm", "REAL"),
    ("bundle_sha256", "TEXT"),
    ("parameters", "INTEGER"),
    ("engine", "TEXT"),
    ("seconds", "REAL"),
)


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    for column, kind in _V2_COLUMNS:
        conn.execute(f"ALTER TABLE scan_records ADD COLUMN {column} {kind}")
    # Version 1 had no writer, but a hand-filled table may repeat a subject: keep the first row.
    conn.execute(
        "DELETE FROM scan_records WHERE subject_root IS NOT NULL AND id NOT IN "
        "(SELECT min(id) FROM scan_records WHERE subject_root IS NOT NULL GROUP BY subject_root)"
    )
    conn.execute("DROP INDEX IF EXISTS scan_records_subject")
    conn.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS scan_records_root ON scan_records (subject_root) "
        "WHERE subject_root IS NOT NULL"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS scan_records_path ON scan_records (path)")


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    # Version 3 indexes each bundle's probe tokens, so identify can set aside the
    # bases a suspect shares too few tokens with without opening them.  Older rows
    # stay NULL: their bundles are opened as before (re-adding them fills nothing,
    # since a subject already present is skipped; remove and add to index them).
    columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(bases)")}
    if "probe_tokens" not in columns:
        conn.execute("ALTER TABLE bases ADD COLUMN probe_tokens BLOB")


MIGRATIONS = {"1": _migrate_1_to_2, "2": _migrate_2_to_3}


def _migrate(conn: sqlite3.Connection, version: str) -> None:
    """Bring an older index up to SCHEMA_VERSION, one step at a time, each step under the write lock."""
    while version != str(SCHEMA_VERSION):
        with write_transaction(conn):
            # Re-read under the lock: another process may have migrated meanwhile.
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
            step = MIGRATIONS.get(version)
            if step is None:
                break
            step(conn)
            version = str(int(version) + 1)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
