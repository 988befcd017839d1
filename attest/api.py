"""attest's public Python API: the five workflows as plain calls over paths.

    import attest

    result = attest.compare("base-model/", "suspect-model/")
    print(result.verdict, result.score)

    issued = attest.issue("base-model/", "keys/acme.key", "base.attest", issuer="ACME Labs")
    v = attest.verify("suspect/", "base.attest", trust="keys/", evidence="evidence.cbor")
    print(v.verdict, v.signature["trusted_identity"])
    info = attest.inspect("evidence.cbor", trust="keys/")

Every function takes paths (or already-loaded keys and trust stores), returns a
typed result with `.to_json()`, and raises only the typed errors of
`attest.errors` for anything a caller can cause (`InputError` for unusable
input, `BundleError` for a bad, tampered or untrusted bundle).  None of them
touches torch's global thread count unless `threads=` is given.  The CLI, the
demo and the benchmarks call only this module.  docs/api.md has the details.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from attest.arch.canonical import CanonicalModel
from attest.arch.detect import load_model
from attest.bundle.container import (
    MAX_ATTESTATION_BYTES,
    MAX_EVIDENCE_BYTES,
    OpenedAttestation,
    inspect_attestation,
    read_attestation,
    read_bounded,
    read_evidence,
)
from attest.crypto.keys import (
    TrustStore,
    key_file_is_encrypted,
    load_private_key,
    private_key_exposure,
)
from attest.crypto.local_verifier import local_verifier_key, verifier_trust_dir
from attest.errors import BundleError, InputError
from attest.formats import EVIDENCE_FORMAT
from attest.invariants.device import use_device
from attest.invariants.methods import Method, get_method
from attest.invariants.precision import torch_threads
from attest.progress import SILENT, Tracker
from attest.scoring.decision import DEFAULT_POLICY, Policy, Verdict
from attest.sketch.sampling import DEFAULT_PAIRS
from attest.sketch.statement import StatementView
from attest.workflows.compare import Comparison, compare_models
from attest.workflows.evidence import EvidenceCheck, recheck
from attest.workflows.fingerprint import write_fingerprint
from attest.workflows.identify import Identification
from attest.workflows.issue import Issued, bundle_paths, issue_bundle, subject_of
from attest.workflows.outputs import VerificationOutputs, write_outputs
from attest.workflows.verify import Verification, plain, signature_record, verify_suspect

__all__ = [
    "Comparison",
    "Inspection",
    "Issued",
    "Verification",
    "Verdict",
    "Policy",
    "DEFAULT_POLICY",
    "TsaOptions",
    "compare",
    "fingerprint",
    "identify",
    "Identification",
    "inspect",
    "issue",
    "load",
    "open_bundle",
    "resolve_policy",
    "scan",
    "trust_store",
    "verify",
]

PathLike = Union[str, "os.PathLike[str]"]
TrustLike = Union[TrustStore, PathLike]
KeyLike = Union[Ed25519PrivateKey, PathLike]


# -- inputs -------------------------------------------------------------------


@dataclass(frozen=True)
class TsaOptions:
    """Ask an RFC 3161 time-stamp authority to stamp what a workflow signed (docs/transparency.md).

    `optional`: if the TSA fails, keep the file unstamped (with a warning)
    instead of failing; `roots`: PEM root CAs the new token must chain to.
    """

    url: str
    optional: bool = False
    roots: tuple[PathLike, ...] = ()
    timeout: float = 10.0


def _stamp_file(path: Path, tsa: TsaOptions, warnings: list[str]) -> bool:
    from attest.output.paths import atomic_write
    from attest.timestamp import load_tsa_roots, stamp_container_result

    data = read_bounded(path, MAX_EVIDENCE_BYTES, what="file")
    res = stamp_container_result(
        data,
        tsa.url,
        timeout=tsa.timeout,
        optional=tsa.optional,
        tsa_roots=load_tsa_roots([Path(r) for r in tsa.roots]),
    )
    if res.stamped:
        atomic_write(path, res.data)
    else:
        warnings.append(f"{path} was written WITHOUT a timestamp: {res.reason}")
    return bool(res.stamped)


def load(model: PathLike, tokenizer: PathLike | None = None) -> CanonicalModel:
    """Open a model path lazily (nothing is read beyond headers until a workflow streams it)."""
    return load_model(Path(model), Path(tokenizer) if tokenizer is not None else None)


def trust_store(trust: TrustLike) -> TrustStore:
    """A TrustStore, or a path to one `.pub` file or a folder of them."""
    return trust if isinstance(trust, TrustStore) else TrustStore.from_path(Path(trust))


def _private_key(key: KeyLike, passphrase: bytes | None, strict: bool, warnings: list[str]) -> Ed25519PrivateKey:
    if isinstance(key, Ed25519PrivateKey):
        return key
    path = Path(key)
    if not path.is_file():
        raise InputError(f"{path}: no such key file")
    exposure = private_key_exposure(path)
    if exposure:
        if strict:
            raise InputError(f"{exposure} (refused under --strict)")
        warnings.append(exposure)
    if key_file_is_encrypted(path) and passphrase is None:
        raise InputError(f"private key {path} is encrypted: give its passphrase (--passphrase-env VAR)")
    return load_private_key(path, passphrase)


def resolve_policy(policy: Policy | PathLike | None = None, threshold: float | None = None) -> Policy:
    """The verifier's policy: the shipped calibration, a Policy or a policy JSON file, optionally re-thresholded."""
    if policy is None:
        chosen = DEFAULT_POLICY
    elif isinstance(policy, Policy):
        bad = policy.problems()
        if bad:
            raise InputError(f"policy: {'; '.join(bad)}")
        chosen = policy
    else:
        chosen = Policy.from_file(Path(policy))
    return chosen if threshold is None else chosen.with_threshold(threshold)


def _method(method: str | Method, tokens: int | None, layers: str | None, terms: tuple[str, ...] | None) -> Method:
    base = get_method(method) if isinstance(method, str) else method
    return base.with_options(n_tokens=tokens, layers=layers, terms=terms)


# -- compare and fingerprint -----------------------------------------------------


def compare(
    a: PathLike | CanonicalModel,
    b: PathLike | CanonicalModel,
    *,
    method: str | Method = "attest-v1",
    tokens: int | None = None,
    layers: str | None = None,
    terms: tuple[str, ...] | None = None,
    precision: str = "auto",
    device: str = "auto",
    policy: Policy | PathLike | None = None,
    threshold: float | None = None,
    tokenizer_a: PathLike | None = None,
    tokenizer_b: PathLike | None = None,
    threads: int | None = None,
    progress: Tracker = SILENT,
) -> Comparison:
    """Exact similarity of two locally held models, layer by layer, with a verdict."""
    m = _method(method, tokens, layers, terms)
    pol = resolve_policy(policy, threshold)
    ma = a if isinstance(a, CanonicalModel) else load(a, tokenizer_a)
    mb = b if isinstance(b, CanonicalModel) else load(b, tokenizer_b)
    with torch_threads(threads), use_device(device):
        return compare_models(ma, mb, m, policy=pol, precision=precision, tracker=progress)


def fingerprint(
    model: PathLike | CanonicalModel,
    out: PathLike,
    *,
    method: str | Method = "attest-v1",
    tokens: int | None = None,
    layers: str | None = None,
    terms: tuple[str, ...] | None = None,
    precision: str = "auto",
    device: str = "auto",
    tokenizer: PathLike | None = None,
    threads: int | None = None,
    progress: Tracker = SILENT,
) -> dict[str, Any]:
    """Write the standardised invariant matrices and summary.json into the new or empty folder `out`."""
    m = _method(method, tokens, layers, terms)
    cm = model if isinstance(model, CanonicalModel) else load(model, tokenizer)
    with torch_threads(threads), use_device(device):
        return write_fingerprint(cm, m, Path(out), precision=precision, tracker=progress)


# -- issue ----------------------------------------------------------------------


def issue(
    model: PathLike | CanonicalModel,
    key: KeyLike,
    out: PathLike,
    *,
    name: str | None = None,
    issuer: str = "unknown publisher",
    meta: Mapping[str, str] | None = None,
    method: str | Method = "attest-v1",
    tokens: int | None = None,
    layers: str | None = None,
    precision: str = "auto",
    device: str = "auto",
    tokenizer: PathLike | None = None,
    passphrase: bytes | None = None,
    strict: bool = False,
    force: bool = False,
    tsa: TsaOptions | None = None,
    pairs: int | None = None,
    threads: int | None = None,
    progress: Tracker = SILENT,
) -> Issued:
    """Fingerprint `model` and sign it as OUT.attest (with the dog at OUT.png).

    `pairs` asks for another number of sketch pairs m than the default (the
    bundle-size budget still caps it; bench/sketch_accuracy.py measures the trade-off).
    """
    bundle_paths(Path(out), force)  # refuse a bad output before reading a key or a weight
    warnings: list[str] = []
    priv = _private_key(key, passphrase, strict, warnings)
    m = _method(method, tokens, layers, None)
    cm = model if isinstance(model, CanonicalModel) else load(model, tokenizer)
    if name is None:
        name = Path(model).resolve().name if not isinstance(model, CanonicalModel) else cm.source.root.name
    with torch_threads(threads), use_device(device):
        issued = issue_bundle(
            cm,
            priv,
            Path(out),
            pairs_requested=pairs if pairs is not None else DEFAULT_PAIRS,
            method=m,
            name=name,
            issuer=issuer,
            meta=dict(meta or {}),
            precision=precision,
            tracker=progress,
            force=force,
        )
    if tsa is not None:
        _stamp_file(issued.bundle_path, tsa, warnings)
        issued.bundle_bytes = issued.bundle_path.stat().st_size
    issued.warnings.extend(warnings)
    return issued


# -- verify ---------------------------------------------------------------------


def open_bundle(
    bundle: PathLike | bytes,
    trust: TrustLike,
    *,
    expect_issuer: str | None = None,
    expect_subject: str | None = None,
) -> OpenedAttestation:
    """Read a bundle and check its signature against `trust` (BundleError on any failure).

    `expect_issuer` pins the trust-store identity of the signing key (never the
    name the bundle claims for itself); `expect_subject` pins the signed model name.
    The statement is validated here too, before any suspect is read.
    """
    store = trust_store(trust)
    data = (
        bytes(bundle)
        if isinstance(bundle, (bytes, bytearray))
        else read_bounded(Path(bundle), MAX_ATTESTATION_BYTES, what="bundle")
    )
    opened = read_attestation(data, store)
    signer = opened.verified.signer
    if expect_issuer is not None and signer != expect_issuer:
        raise BundleError(
            f"the bundle was signed by the key the trust store names {signer!r}, not {expect_issuer!r} "
            f"(it claims issuer {opened.verified.issuer!r})"
        )
    if expect_subject is not None and opened.verified.subject != expect_subject:
        raise BundleError(f"the bundle attests {opened.verified.subject!r}, not {expect_subject!r}")
    StatementView.parse(opened.document)
    return opened


def verify(
    suspect: PathLike | CanonicalModel,
    bundle: PathLike | bytes | OpenedAttestation,
    *,
    trust: TrustLike | None = None,
    policy: Policy | PathLike | None = None,
    threshold: float | None = None,
    expect_issuer: str | None = None,
    expect_subject: str | None = None,
    tokenizer: PathLike | None = None,
    precision: str = "auto",
    device: str = "auto",
    evidence: PathLike | None = None,
    report: PathLike | None = None,
    sheet: PathLike | None = None,
    verifier_key: KeyLike | None = None,
    passphrase: bytes | None = None,
    strict: bool = False,
    force: bool = False,
    tsa: TsaOptions | None = None,
    threads: int | None = None,
    progress: Tracker = SILENT,
) -> Verification:
    """Check the bundle's signature, recompute the suspect, decide under the verifier's policy.

    The policy is the shipped calibration unless `policy` or `threshold` says
    otherwise; the bundle's own recorded policy is reported, never applied.
    Evidence is always signed: by `verifier_key`, else by the local verifier key
    (created on first use; see attest.crypto.local_verifier).
    """
    outputs = VerificationOutputs(
        evidence=Path(evidence) if evidence is not None else None,
        report=Path(report) if report is not None else None,
        sheet=Path(sheet) if sheet is not None else None,
        force=force,
    ).check()  # before any work: a long run never ends in "cannot write"
    if tsa is not None and outputs.evidence is None:
        raise InputError("--tsa stamps the evidence file: give --evidence too")
    pol = resolve_policy(policy, threshold)
    if isinstance(bundle, OpenedAttestation):
        opened = bundle
    else:
        if trust is None:
            raise InputError("verify needs a trust store: trust=PATH (a .pub file or a folder of them)")
        opened = open_bundle(bundle, trust, expect_issuer=expect_issuer, expect_subject=expect_subject)
    view = StatementView.parse(opened.document)
    warnings: list[str] = []
    signer: Ed25519PrivateKey | None = None
    signer_note = None
    if outputs.evidence is not None:
        if verifier_key is not None:
            signer = _private_key(verifier_key, passphrase, strict, warnings)
        else:
            local = local_verifier_key()
            signer = local.key
            signer_note = (
                f"evidence signed with the local verifier key {local.private_path} (kid {local.kid_hex[:16]}…"
                f"{', created now' if local.created else ''}); share {local.public_path} with whoever "
                f"re-checks it"
            )
    cm = suspect if isinstance(suspect, CanonicalModel) else load(suspect, tokenizer)
    suspect_name = Path(suspect).name if not isinstance(suspect, CanonicalModel) else cm.source.root.name
    with torch_threads(threads), use_device(device):
        suspect_subject = subject_of(cm, progress)
        v = verify_suspect(
            opened, cm, policy=pol, precision=precision, suspect_subject=suspect_subject, tracker=progress, view=view
        )
    v.notes.extend(warnings)
    if signer_note:
        v.notes.append(signer_note)
    if outputs.evidence or outputs.report or outputs.sheet:
        written = write_outputs(opened.raw, opened.png, v, suspect_name, suspect_subject, outputs, signer=signer)
        v.artefacts.update({k: written[k] for k in ("evidence", "report", "sheet", "time") if k in written})
    if tsa is not None:
        if outputs.evidence is None:
            raise InputError("--tsa stamps the evidence file: give --evidence too")
        _stamp_file(outputs.evidence, tsa, v.notes)
    return v


# -- identify -------------------------------------------------------------------


def identify(
    suspect: PathLike | CanonicalModel,
    registry: PathLike,
    *,
    trust: TrustLike,
    alpha: float | None = None,
    tokenizer: PathLike | None = None,
    precision: str = "auto",
    evidence: PathLike | None = None,
    report: PathLike | None = None,
    top: int | None = None,
    verifier_key: KeyLike | None = None,
    passphrase: bytes | None = None,
    strict: bool = False,
    force: bool = False,
    device: str = "auto",
    threads: int | None = None,
    progress: Tracker = SILENT,
    screen: bool = True,
) -> Identification:
    """Which registered base, if any, `suspect` derives from: one read of the suspect for all N bases
    (docs/registry.md).  Every stored bundle it opens is re-checked against `trust` first;
    with `screen` (the default) the bases whose indexed probe tokens the suspect lacks are
    set aside unopened (docs/registry.md, "Screening"); `screen=False` opens every bundle.

    `evidence` writes a signed identify evidence file and `report` an HTML report
    (the ranking, the answer and the dogs of the first `top` candidates); as for
    `verify`, evidence is signed by `verifier_key`, else by the local verifier key,
    and no existing file is overwritten without `force`.
    """
    from attest.registry import Registry
    from attest.workflows.identify import DEFAULT_ALPHA, DEFAULT_TOP
    from attest.workflows.identify import identify as run_identify
    from attest.workflows.identify_outputs import IdentifyOutputs, detail_count, write_identify_outputs

    outputs = IdentifyOutputs(
        evidence=Path(evidence) if evidence is not None else None,
        report=Path(report) if report is not None else None,
        force=force,
    ).check()  # before any work: a long run never ends in "cannot write"
    shown = DEFAULT_TOP if top is None else top
    signer: Ed25519PrivateKey | None = None
    notes: dict[str, str] = {}
    if outputs.evidence is not None:
        warnings: list[str] = []
        if verifier_key is not None:
            signer = _private_key(verifier_key, passphrase, strict, warnings)
        else:
            local = local_verifier_key()
            signer = local.key
            notes["signer_note"] = (
                f"evidence signed with the local verifier key {local.private_path} (kid {local.kid_hex[:16]}…"
                f"{', created now' if local.created else ''}); share {local.public_path} with whoever "
                f"re-checks it"
            )
        if warnings:
            notes["key_warning"] = "; ".join(warnings)
    store = trust_store(trust)
    with Registry.open(Path(registry)) as reg:
        cm = suspect if isinstance(suspect, CanonicalModel) else load(suspect, tokenizer)
        suspect_name = Path(suspect).name if not isinstance(suspect, CanonicalModel) else cm.source.root.name
        with torch_threads(threads), use_device(device):
            subject = subject_of(cm, progress)
            result = run_identify(
                cm,
                reg,
                store,
                alpha=DEFAULT_ALPHA if alpha is None else alpha,
                precision=precision,
                suspect_subject=subject,
                tracker=progress,
                detail=detail_count(shown) if outputs.any else 0,
                screen=screen,
            )
        if outputs.any:
            result.artefacts.update(
                write_identify_outputs(result, reg, store, suspect_name, outputs, top=shown, signer=signer)
            )
            result.artefacts.update(notes)
    return result


# -- scan -----------------------------------------------------------------------


def scan(
    roots: list[PathLike],
    registry: PathLike,
    *,
    trust: TrustLike,
    engine: str = "local",
    ray_address: str | None = None,
    key: KeyLike | None = None,
    passphrase: bytes | None = None,
    issuer: str | None = None,
    tokens: int | None = None,
    max_retries: int | None = None,
    show_progress: bool = False,
    device: str = "auto",
) -> Any:
    """Fingerprint every model under `roots`, record it in `registry` and identify it against the
    registry's bases, on one machine or on Ray (docs/scale.md).  Returns a `ScanSummary`."""
    from attest.invariants.methods import DEFAULT
    from attest.scan import run_scan
    from attest.scan.runner import DEFAULT_ISSUER, DEFAULT_MAX_RETRIES

    private = None if key is None else _private_key(key, passphrase, False, [])
    return run_scan(
        [Path(r) for r in roots],
        Path(registry),
        trust_store(trust),
        engine=engine,
        ray_address=ray_address,
        key=private,
        issuer=issuer or DEFAULT_ISSUER,
        method=DEFAULT.with_options(n_tokens=tokens) if tokens is not None else DEFAULT,
        max_retries=DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
        show_progress=show_progress,
        device=device,
    )


# -- inspect --------------------------------------------------------------------


def looks_like_evidence(raw: bytes) -> bool:
    """A signed evidence file is a bare COSE_Sign1 (tag 18 = 0xd2); an unsigned one is a
    map whose format names it; bundles are maps with another format."""
    return raw[:1] == b"\xd2" or EVIDENCE_FORMAT.encode() in raw[:512]


@dataclass
class Inspection:
    """What `inspect` found; `ok` only when every check passed."""

    kind: str  # "attestation", "evidence" (verify) or "identify-evidence"
    info: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    check: EvidenceCheck | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        out = dict(self.info, kind=self.kind, ok=self.ok, problems=list(self.problems))
        if self.check is not None:
            out["recomputation"] = self.check.to_json()
        return out


def inspect(
    path: PathLike,
    *,
    trust: TrustLike,
    verifier_trust: TrustLike | None = None,
    suspect: PathLike | None = None,
    suspect_tokenizer: PathLike | None = None,
    tsa_roots: tuple[PathLike, ...] = (),
    ts_keys: tuple[PathLike, ...] = (),
    progress: Tracker = SILENT,
) -> Inspection:
    """Re-verify a bundle or an evidence file offline.

    For evidence: the publisher's signature against `trust`; the verifier's
    signature against `verifier_trust` (default: the local verifier trust
    folder), which must exist; the verdict and score recomputed from the
    sketches; and, with `suspect`, the suspect's file digests.  Every failed
    check is listed in `problems`; a bad or untrusted signature raises BundleError.
    """
    file = Path(path)
    raw = read_bounded(file, MAX_EVIDENCE_BYTES, what="file")
    store = trust_store(trust)
    info: dict[str, Any] = {"file": str(file), "bytes": len(raw)}
    problems: list[str] = []
    check: EvidenceCheck | None = None
    from attest.bundle.identify_evidence import IDENTIFY_EVIDENCE_CONTENT_TYPE, signed_content_type

    if signed_content_type(raw) == IDENTIFY_EVIDENCE_CONTENT_TYPE:
        return _inspect_identify(raw, info, store, verifier_trust, suspect, suspect_tokenizer, progress)
    if looks_like_evidence(raw):
        kind = "evidence"
        vstore = _verifier_store(verifier_trust)
        try:
            ev = read_evidence(raw, store, verifier_trust=vstore if vstore is not None else TrustStore())
        except BundleError as exc:
            if vstore is None and raw[:1] == b"\xd2":
                raise BundleError(
                    f"{exc} (no verifier trust store: give --verifier-trust DIR or --verifier-pubkey K)"
                ) from None
            raise
        att = ev.attestation
        if ev.signed is None:
            problems.append("the evidence is not signed by a verifier")
        check = recheck(ev)
        if check.reason:
            problems.append(f"the verdict cannot be recomputed: {check.reason}")
        problems.extend(f"recorded result differs from the recomputation: {d}" for d in check.differences)
        info["evidence"] = {
            "time": ev.body["time"],
            "tool": plain(ev.body["tool"]),
            "results": plain(ev.body["results"]),
            "suspect": {k: plain(v) for k, v in ev.body["suspect"].items() if k not in ("sketch", "covered")},
            "signed": ev.signed is not None,
            "verifier_kid": ev.signed.kid.hex() if ev.signed else None,
            "verifier_identity": ev.signed.signer if ev.signed else None,
            "verifier_claimed_issuer": ev.signed.issuer if ev.signed else None,
        }
        if suspect is not None:
            cm = load(suspect, suspect_tokenizer)
            actual = plain(subject_of(cm, progress)).get("root")
            recorded = plain(ev.body["suspect"].get("subject") or {}).get("root")
            info["suspect_check"] = {"path": str(suspect), "root": actual, "recorded_root": recorded}
            if actual != recorded:
                problems.append(f"the evidence is about other files: recorded root {recorded}, {suspect} has {actual}")
    else:
        kind = "attestation"
        att = read_attestation(raw, store)
    doc = att.document
    info["signature"] = signature_record(att)
    info["model"] = plain(doc["model"])
    info["subject"] = plain(doc["subject"])
    info["method"] = {k: plain(v) for k, v in doc["method"].items() if k not in ("tokens", "pairs")}
    info["method"]["tokens"] = len(doc["method"]["tokens"])
    info["sketch_shape"] = list(doc["sketch"]["shape"])
    info["policy"] = plain(doc["policy"])
    info["meta"] = plain(doc.get("meta", {}))
    import hashlib

    info["image"] = {"sha256": hashlib.sha256(att.png).hexdigest(), "bytes": len(att.png), **plain(doc["image"])}
    _proofs(raw, info, problems, tsa_roots, ts_keys)
    return Inspection(kind, info, problems, check)


def _inspect_identify(
    raw: bytes,
    info: dict[str, Any],
    store: TrustStore,
    verifier_trust: TrustLike | None,
    suspect: PathLike | None,
    suspect_tokenizer: PathLike | None,
    progress: Tracker,
) -> Inspection:
    """An identify evidence file: the verifier's signature, each detailed bundle's, and the recomputation."""
    from attest.bundle.identify_evidence import read_identify_evidence
    from attest.workflows.identify_outputs import recheck_identification

    vstore = _verifier_store(verifier_trust)
    if vstore is None:
        raise BundleError(
            "identify evidence: no verifier trust store to check its signature against "
            "(give --verifier-trust DIR or --verifier-pubkey K)"
        )
    ev = read_identify_evidence(raw, store, verifier_trust=vstore)
    body = ev.body
    check = recheck_identification(ev)
    problems = [f"recorded result differs from the recomputation: {d}" for d in check.differences]
    if check.reason:
        problems.append(f"the answer cannot be recomputed: {check.reason}")
    info["identify"] = {
        "time": body["time"],
        "tool": plain(body["tool"]),
        "answer": plain(body["answer"]),
        "registry": plain(body["registry"]),
        "multiple_testing": plain(body["multiple_testing"]),
        "policy": plain(body["policy"]),
        "suspect": plain(body["suspect"]),
        "ranking": plain(body["ranking"]),
        "details": [
            {"name": d.row["name"], "rank": d.row["rank"], "signature": signature_record(d.attestation)}
            for d in ev.details
        ],
        "signed": True,
        "verifier_kid": ev.signed.kid.hex(),
        "verifier_identity": ev.signed.signer,
        "verifier_claimed_issuer": ev.signed.issuer,
    }
    if suspect is not None:
        cm = load(suspect, suspect_tokenizer)
        actual = plain(subject_of(cm, progress)).get("root")
        subject = plain(body["suspect"].get("subject"))
        recorded = subject.get("root") if isinstance(subject, dict) else None
        info["suspect_check"] = {"path": str(suspect), "root": actual, "recorded_root": recorded}
        if actual != recorded:
            problems.append(f"the evidence is about other files: recorded root {recorded}, {suspect} has {actual}")
    return Inspection("identify-evidence", info, problems, check)


def _proofs(
    raw: bytes,
    info: dict[str, Any],
    problems: list[str],
    tsa_roots: tuple[PathLike, ...],
    ts_keys: tuple[PathLike, ...],
) -> None:
    """Time-stamp tokens and SCITT receipts: each shown verified, or not verified with the reason.

    A token or receipt that fails while its root or key was given is a problem;
    without roots or keys they are listed as unverified, since nothing was asked.
    """
    from attest.timestamp import load_tsa_roots, timestamp_report
    from attest.transparency import load_ts_keys, receipt_report

    stamps = timestamp_report(raw, load_tsa_roots([Path(r) for r in tsa_roots]))
    receipts = receipt_report(raw, load_ts_keys([Path(k) for k in ts_keys]))
    info["timestamps"] = [c.to_json() for c in stamps]
    info["receipts"] = [r.to_json() for r in receipts]
    if tsa_roots:
        problems.extend(f"timestamp not verified: {c.reason}" for c in stamps if not c.verified)
    if ts_keys:
        problems.extend(f"receipt not verified: {r.reason}" for r in receipts if not r.verified)


def _verifier_store(verifier_trust: TrustLike | None) -> TrustStore | None:
    if verifier_trust is not None:
        return trust_store(verifier_trust)
    folder = verifier_trust_dir()
    if folder.is_dir() and any(folder.glob("*.pub")):
        return TrustStore.from_dir(folder)
    return None


def bundle_latent(path: PathLike) -> tuple[Any, str]:
    """The latent and renderer name of a bundle, with no signature check (drawing is harmless)."""
    import numpy as np

    file = Path(path)
    raw = read_bounded(file, MAX_EVIDENCE_BYTES, what="file")
    if looks_like_evidence(raw):
        raise InputError(f"{file} is an evidence file; render takes the publisher's .attest bundle")
    doc = inspect_attestation(raw).document
    latent = np.frombuffer(doc["latent"], dtype="<f4")
    renderer = doc["image"].get("renderer", {})
    name = str(renderer.get("name", "dog-v1")) if isinstance(renderer, Mapping) else "dog-v1"
    return latent, name
