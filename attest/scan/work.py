"""One model's work, as a pure function of plain data: what a Ray task runs.

`scan_one(job, ctx)` hashes the model's files (its subject digest), skips it
if that digest is already recorded, fingerprints it (the unsigned statement
document `attest issue` would sign) and identifies it against the registry's
attested bases.  It never writes to the registry and never raises: every
failure comes back as an `Outcome` with its message and exit class, so one
corrupt file cannot stop a scan, and the driver alone records outcomes (each
model exactly once, even when Ray re-runs a task whose worker died).

Signing happens in the driver too: the scanner's private key never travels to
a worker.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attest.errors import AttestError, ExitCode, InputError
from attest.invariants.methods import Method


@dataclass(frozen=True)
class Job:
    path: str
    display: str
    source_bytes: int
    source_mtime: int
    threads: int  # torch threads for this task (its CPU request)


@dataclass(frozen=True)
class Context:
    """What every task shares (put once in Ray's object store)."""

    registry: str  # the registry folder, read-only here (bases and their bundles)
    bases: frozenset[str]  # subject roots of the bases to identify against, fixed when the scan starts
    known: frozenset[str]  # subject roots already recorded: those models are skipped
    trusted_keys: tuple[tuple[str, bytes], ...]  # (name, raw Ed25519 public key) the bases are verified under
    method: Method
    alpha: float
    roots: tuple[str, ...] = ()  # the scan roots: symlinks may lead anywhere under them (and to HF cache blobs)
    device: str = "auto"  # resolved on the worker: a Ray node's own accelerator, if it has one


@dataclass
class Outcome:
    path: str
    display: str
    status: str  # "ok", "error" or "skipped" (already recorded)
    subject_root: str | None = None
    error: str | None = None
    exit_class: int | None = None
    document: dict[str, Any] | None = None  # the unsigned fingerprint (statement document)
    png: bytes = b""
    record: bytes | None = None  # canonical CBOR of `document`
    verdict: str | None = None
    base_name: str | None = None
    base_root: str | None = None
    score: float | None = None
    p_value: float | None = None
    p_holm: float | None = None
    subject_match: bool = False
    parameters: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    pid: int = field(default_factory=os.getpid)


def _trust(ctx: Context) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from attest.crypto.keys import TrustStore

    return TrustStore.from_public_keys({n: Ed25519PublicKey.from_public_bytes(raw) for n, raw in ctx.trusted_keys})


def _finite(x: Any) -> float | None:
    import math

    return float(x) if x is not None and math.isfinite(float(x)) else None


def scan_one(job: Job, ctx: Context) -> Outcome:
    """Hash, fingerprint and identify one model; any failure becomes the outcome."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = Outcome(job.path, job.display, "error")
    try:
        _work(job, ctx, out)
    except AttestError as exc:
        out.status, out.error, out.exit_class = "error", str(exc), int(exc.exit_code)
    except MemoryError:
        out.status, out.error, out.exit_class = "error", "out of memory", int(ExitCode.INTERNAL_ERROR)
    except Exception as exc:  # a bug or an unforeseen file: recorded, never fatal to the scan
        out.status, out.error = "error", f"internal error: {exc.__class__.__name__}: {exc}"
        out.exit_class = int(ExitCode.INTERNAL_ERROR)
    out.seconds = time.perf_counter() - t0
    out.cpu_seconds = time.process_time() - c0
    return out


def _work(job: Job, ctx: Context, out: Outcome) -> None:
    from attest.arch.detect import load_model
    from attest.arch.model_info import describe
    from attest.bundle.container import encode_document
    from attest.invariants.device import use_device
    from attest.invariants.precision import torch_threads
    from attest.registry.store import Registry
    from attest.scan.discovery import recheck
    from attest.workflows.identify import identify
    from attest.workflows.issue import fingerprint_document, subject_of

    with torch_threads(max(1, job.threads)), use_device(ctx.device):
        # Discovery refused symlinks leading out of bounds; check again now, just
        # before reading, in case the tree changed since.  Within those bounds
        # (an HF cache snapshot's links to ../../blobs) hashing may follow them.
        refusal = recheck(job.path, ctx.roots)
        if refusal:
            raise InputError(refusal)
        try:
            model = load_model(Path(job.path))
        except AttestError:
            # An unreadable model is still keyed by the digest of its files, so
            # a rerun skips it until those bytes change.
            out.subject_root = _files_root(Path(job.path))
            if out.subject_root in ctx.known:
                out.status = "skipped"
                return
            raise
        out.parameters = int(describe(model).get("parameters") or 0)
        subject = subject_of(model, allow_outside_symlinks=True)
        root = subject.get("root")
        out.subject_root = root.hex() if isinstance(root, bytes) and root else None
        if out.subject_root is None:
            out.exit_class = int(ExitCode.INPUT_ERROR)
            out.error = "no weight files to hash"
            return
        if out.subject_root in ctx.known:
            out.status = "skipped"
            return
        fp = fingerprint_document(model, method=ctx.method, name=job.display, meta={}, subject=subject)
        out.document, out.png = fp.document, fp.png
        out.record = encode_document(fp.document)
        with Registry.open(ctx.registry) as reg:
            result = identify(model, reg, _trust(ctx), alpha=ctx.alpha, suspect_subject=subject, bases=ctx.bases)
    out.status = "ok"
    out.verdict = result.verdict.value
    out.exit_class = int(result.verdict.exit_code)
    top = result.base if result.base is not None else (result.candidates[0] if result.candidates else None)
    if top is not None:
        out.base_name, out.base_root = top.entry.name, top.entry.subject_root
        out.score, out.p_value, out.p_holm = _finite(top.evidence.score), _finite(top.evidence.p_value), top.p_holm
        out.subject_match = top.subject_match


def _files_root(path: Path) -> str | None:
    """The manifest root over every file of the model (what discovery saw), or None if they cannot be read."""
    from attest.scan.discovery import model_files
    from attest.subject import hash_files

    try:
        files = model_files(path)
        subject = hash_files(files, path if path.is_dir() else path.parent, allow_outside_symlinks=True)
    except (AttestError, OSError):
        return None
    root = subject.to_cbor_obj().get("root")
    return root.hex() if isinstance(root, bytes) and root else None
