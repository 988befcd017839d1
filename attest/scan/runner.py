"""`attest scan`: discover, plan, run on an engine, record, summarise.

The driver is the only writer of the registry: it records each outcome as it
arrives (so a crash loses at most the models in flight, and a rerun does only
the rest), and with a scanner key it signs each fingerprint and adds the
bundle.  docs/scale.md gives the cost model; docs/registry.md the records.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from attest.crypto.keys import TrustedKey, TrustStore, key_id
from attest.errors import ExitCode, InputError
from attest.invariants.device import resolve_device
from attest.invariants.methods import DEFAULT, Method
from attest.registry import store
from attest.registry.store import Registry
from attest.scan import records
from attest.scan.discovery import Found, discover
from attest.scan.engines import DEFAULT_MAX_RETRIES, ENGINES, RayEngine, WorkFn, run_local
from attest.scan.plan import resources
from attest.scan.work import Context, Job, Outcome, scan_one

DEFAULT_ISSUER = "attest scan"


@dataclass
class ScanSummary:
    engine: str
    scanned: int = 0  # models fingerprinted and recorded in this run (ok or failed)
    skipped: int = 0  # already recorded (by subject digest, or unchanged path and size)
    failed: list[dict[str, Any]] = field(default_factory=list)
    flagged: list[dict[str, Any]] = field(default_factory=list)
    found: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # summed over the models' tasks
    parameters: int = 0  # summed over the models scanned
    bundles_added: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned,
            "skipped": self.skipped,
            "failed": len(self.failed),
            "failures": self.failed,
            "flagged": self.flagged,
            "found": self.found,
            "bundles_added": self.bundles_added,
            "parameters": self.parameters,
            "cpu_seconds": round(self.cpu_seconds, 3),
            "engine": self.engine,
            "seconds": round(self.seconds, 3),
        }


class _Progress:
    """Models done, failed, flagged, rate and ETA on one line (stderr, terminals only)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.t0 = time.perf_counter()
        self.total, self.done, self.failed, self.flagged = total, 0, 0, 0
        self._p: Any = None
        if enabled and total and os.isatty(2):
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._p = Progress(
                TextColumn("scanning"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                console=Console(stderr=True),
                transient=True,
            )
            self._p.start()
            self._task = self._p.add_task("scan", total=total, status="")

    def update(self, out: Outcome) -> None:
        self.done += 1
        self.failed += out.status == "error"
        self.flagged += out.verdict == "match"
        if self._p is None:
            return
        elapsed = time.perf_counter() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        status = (
            f"failed {self.failed}  flagged {self.flagged}  {rate * 3600:,.0f} models/h  "
            f"ETA {_clock(eta) if eta != float('inf') else '?'}"
        )
        self._p.update(self._task, advance=1, status=status)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _raw_keys(trust: TrustStore, scanner: Ed25519PrivateKey | None) -> tuple[tuple[str, bytes], ...]:
    keys = [(k.name, k.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)) for k in trust]
    if scanner is not None:
        keys.append(("attest scan", scanner.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)))
    return tuple(keys)


def _with_scanner(trust: TrustStore, scanner: Ed25519PrivateKey | None) -> TrustStore:
    # The scanner trusts its own signature: its bundles are bases for later scans.
    if scanner is None:
        return trust
    pk = scanner.public_key()
    return TrustStore([*trust, TrustedKey("attest scan", key_id(pk), pk)])


@contextmanager
def _engine(engine: str, address: str | None, num_cpus: int | None) -> Iterator[RayEngine | None]:
    if engine == "local":
        yield None
        return
    ray_engine = RayEngine(address, num_cpus)
    try:
        yield ray_engine
    finally:
        ray_engine.close()


def run_scan(
    roots: list[Path],
    registry: Path,
    trust: TrustStore,
    *,
    engine: str = "local",
    ray_address: str | None = None,
    ray_cpus: int | None = None,
    key: Ed25519PrivateKey | None = None,
    issuer: str = DEFAULT_ISSUER,
    method: Method = DEFAULT,
    alpha: float = 0.01,
    max_retries: int = DEFAULT_MAX_RETRIES,
    show_progress: bool = False,
    work: WorkFn = scan_one,
    device: str = "auto",
) -> ScanSummary:
    """Scan every model under `roots` into `registry`; see the module docstring."""
    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if ray_address and engine != "ray":
        raise InputError("--ray-address needs --engine ray")
    if engine == "local":
        resolve_device(device)  # an unavailable device fails before any work, not once per model
    missing = [str(r) for r in roots if not Path(r).exists()]
    if missing:
        raise InputError(f"scan root not found: {', '.join(missing)}")
    t0 = time.perf_counter()
    summary = ScanSummary(engine)
    trust = _with_scanner(trust, key)
    with Registry.open(registry, create=True) as reg:
        bases = reg.entries()
        for entry in bases:  # an untrusted or tampered base stops the scan once, not every model
            reg.read_bundle(entry, trust)
        done = records.recorded(reg)
        known = frozenset(r.subject_root for r in done if r.subject_root)
        # Same path, size and newest mtime as a recorded model (or a recorded
        # refusal): not even re-hashed.  Any change to its files makes it work again.
        unchanged = {(r.path, r.source_bytes, r.source_mtime) for r in done}
        found = discover(list(roots))
        summary.found = len(found)
        todo: list[Found] = []
        for f in found:
            if (f.path, f.source_bytes, f.source_mtime) in unchanged:
                summary.skipped += 1
            else:
                todo.append(f)
        ctx = Context(
            registry=str(Path(registry).absolute()),
            bases=frozenset(e.subject_root for e in bases),
            known=known,
            trusted_keys=_raw_keys(trust, None),
            method=method,
            alpha=alpha,
            roots=tuple(str(Path(r).absolute()) for r in roots),
            device=device,
        )
        probe_tokens = method.n_tokens + sum(e.n_tokens for e in bases)
        jobs = [Job(f.path, f.display, f.source_bytes, f.source_mtime, 1) for f in todo]
        bar = _Progress(show_progress, len(todo))
        try:
            with _engine(engine, ray_address, ray_cpus) as ray_engine:
                refused = {i for i, f in enumerate(todo) if f.refusal}
                runnable = [i for i in range(len(todo)) if i not in refused]
                stream: Iterator[tuple[int, Outcome]]
                plans = [resources(todo[i].path, todo[i].source_bytes, probe_tokens) for i in runnable]
                if ray_engine is None:
                    stream = ((runnable[k], o) for k, o in run_local([jobs[i] for i in runnable], plans, ctx, work))
                else:
                    stream = (
                        (runnable[k], o)
                        for k, o in ray_engine.run([jobs[i] for i in runnable], plans, ctx, work, max_retries)
                    )
                for i in sorted(refused):
                    out = Outcome(todo[i].path, todo[i].display, "error", error=todo[i].refusal)
                    out.exit_class = int(ExitCode.INPUT_ERROR)
                    _record(reg, out, todo[i], summary, engine, key, issuer, trust)
                    bar.update(out)
                for i, out in stream:
                    _record(reg, out, todo[i], summary, engine, key, issuer, trust)
                    bar.update(out)
        finally:
            bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _record(
    reg: Registry,
    out: Outcome,
    found: Found,
    summary: ScanSummary,
    engine: str,
    key: Ed25519PrivateKey | None,
    issuer: str,
    trust: TrustStore,
) -> None:
    summary.cpu_seconds += out.cpu_seconds
    if out.status == "skipped":
        summary.skipped += 1
        return
    bundle_sha = None
    if key is not None and out.status == "ok" and out.document is not None:
        bundle_sha = _add_bundle(reg, out, key, issuer, trust, summary)
    if not records.write(
        reg,
        out,
        source_bytes=found.source_bytes,
        source_mtime=found.source_mtime,
        engine=engine,
        bundle_sha256=bundle_sha,
    ):
        summary.skipped += 1  # the same weights at a second path, or recorded meanwhile by another scanner
        return
    summary.scanned += 1
    summary.parameters += out.parameters
    if out.status == "error":
        summary.failed.append({"path": out.path, "error": out.error, "exit_class": out.exit_class})
    elif out.verdict == "match":
        summary.flagged.append(
            {
                "path": out.path,
                "model": out.display,
                "base": out.base_name,
                "base_subject_root": out.base_root,
                "p_value": out.p_value,
                "p_holm": out.p_holm,
                "score": out.score,
                "subject_match": out.subject_match,
            }
        )


def _add_bundle(
    reg: Registry, out: Outcome, key: Ed25519PrivateKey, issuer: str, trust: TrustStore, summary: ScanSummary
) -> str | None:
    """Sign the fingerprint with the scanner's key and register the bundle (skipped if its subject is there)."""
    import hashlib

    from attest.bundle.container import encode_attestation, issue_statement

    assert out.document is not None
    statement = issue_statement(out.document, key, issuer=issuer, subject=out.display)
    data = encode_attestation(statement, out.png)
    with tempfile.TemporaryDirectory(prefix=".scan-", dir=reg.root) as tmp:
        path = Path(tmp) / "model.attest"
        path.write_bytes(data)
        report = store.add(reg, [path], trust)
    summary.bundles_added += len(report.added)
    return hashlib.sha256(data).hexdigest() if report.added else None
