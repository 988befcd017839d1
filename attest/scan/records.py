"""`scan_records`: the registry's work log of scanned models (docs/registry.md).

Only the scan's driver writes here.  A row is keyed by the model's subject
root (a UNIQUE index), so writing an outcome is idempotent: a task Ray ran
twice, a model found at two paths, or two scanners racing all end in one row.
A model whose files could not be hashed has no root; its row is keyed by path
and replaced on the next scan, which tries it again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from attest import __version__
from attest.registry.schema import write_transaction
from attest.registry.store import Registry
from attest.scan.work import Outcome

COLUMNS = (
    "path",
    "subject_root",
    "status",
    "error",
    "exit_class",
    "record",
    "tool_version",
    "recorded_at",
    "source_bytes",
    "source_mtime",
    "verdict",
    "base_name",
    "base_root",
    "score",
    "p_value",
    "p_holm",
    "bundle_sha256",
    "parameters",
    "engine",
    "seconds",
)


@dataclass(frozen=True)
class Recorded:
    path: str
    subject_root: str | None
    status: str
    source_bytes: int | None
    source_mtime: int | None


def recorded(reg: Registry) -> list[Recorded]:
    rows = reg.conn.execute(
        "SELECT path, subject_root, status, source_bytes, source_mtime FROM scan_records ORDER BY id"
    ).fetchall()
    return [Recorded(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def write(
    reg: Registry,
    out: Outcome,
    *,
    source_bytes: int,
    source_mtime: int,
    engine: str,
    bundle_sha256: str | None = None,
) -> bool:
    """Record `out`; False when its subject was already recorded (nothing written)."""
    values = (
        out.path,
        out.subject_root,
        "ok" if out.status == "ok" else "error",
        out.error,
        out.exit_class,
        out.record,
        __version__,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        source_bytes,
        source_mtime,
        out.verdict,
        out.base_name,
        out.base_root,
        out.score,
        out.p_value,
        out.p_holm,
        bundle_sha256,
        out.parameters,
        engine,
        round(out.seconds, 3),
    )
    with write_transaction(reg.conn) as conn:
        # A path that failed before hashing last time is replaced by this outcome.
        conn.execute("DELETE FROM scan_records WHERE path = ? AND subject_root IS NULL", (out.path,))
        cur = conn.execute(
            f"INSERT INTO scan_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
            "ON CONFLICT (subject_root) WHERE subject_root IS NOT NULL DO NOTHING",
            values,
        )
        return cur.rowcount == 1
