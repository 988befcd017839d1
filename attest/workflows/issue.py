"""`attest issue`: fingerprint a model and sign the result as a `.attest` bundle."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from attest.arch.canonical import CanonicalModel
from attest.arch.model_info import describe
from attest.bundle import issue_statement, write_attestation
from attest.formats import LATENT_SEED, MANIFEST_LAYOUT, PAIR_SEED
from attest.invariants.methods import Method, parse_layers
from attest.invariants.precision import compute_dtype
from attest.lineage.payload import build_payload
from attest.output.paths import atomic_write, check_output
from attest.progress import SILENT, Tracker
from attest.render.base import DEFAULT_RENDERER, get_renderer
from attest.render.sheet import png_bytes
from attest.scoring.decision import DEFAULT_POLICY, Policy
from attest.sketch.latent import project
from attest.sketch.model_sketch import sketch_model
from attest.sketch.sampling import DEFAULT_PAIRS, choose_pairs, pairs_for_budget
from attest.sketch.statement import build_document
from attest.subject import hash_files
from attest.vocab.selection import DEFAULT_SELECTION_KEY, select


@dataclass
class Issued:
    bundle_path: Path
    png_path: Path
    bundle_bytes: int
    document_bytes: int
    sketch_shape: tuple[int, int]
    seconds: dict[str, float]
    kid_hex: str
    subject_root_hex: str
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "bundle": str(self.bundle_path),
            "image": str(self.png_path),
            "bundle_bytes": self.bundle_bytes,
            "statement_bytes": self.document_bytes,
            "sketch_shape": list(self.sketch_shape),
            "kid": self.kid_hex,
            "subject_root": self.subject_root_hex,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "warnings": list(self.warnings),
        }


def bundle_paths(out: Path, force: bool = False) -> tuple[Path, Path]:
    """OUT.attest and the OUT.png beside it, both checked as outputs."""
    out = check_output(Path(out), what="--out", suffixes=(".attest",), force=force)
    png = check_output(out.with_suffix(".png"), what="the dog image", suffixes=(".png",), force=force)
    return out, png


def subject_of(
    model: CanonicalModel, tracker: Tracker = SILENT, *, allow_outside_symlinks: bool = False
) -> dict[str, object]:
    files = model.source.files()
    if not files:
        return {"files": [], "root": b"", "algorithm": "sha256", "layout": MANIFEST_LAYOUT}
    base = model.source.root if model.source.root.is_dir() else model.source.root.parent
    total = sum(f.stat().st_size for f in files)
    task = tracker.task("hashing weight files", total)
    subject = hash_files(
        files, base, progress=lambda n: tracker.advance(task, n), allow_outside_symlinks=allow_outside_symlinks
    )
    return subject.to_cbor_obj()


@dataclass
class Fingerprinted:
    """An unsigned statement document and its dog, before any signature."""

    document: dict[str, Any]
    png: bytes
    subject: dict[str, object]
    sketch_shape: tuple[int, int]
    seconds: dict[str, float]


def fingerprint_document(
    model: CanonicalModel,
    *,
    method: Method,
    name: str,
    meta: Mapping[str, str],
    policy: Policy = DEFAULT_POLICY,
    precision: str = "auto",
    pairs_requested: int = DEFAULT_PAIRS,
    tracker: Tracker = SILENT,
    subject: dict[str, object] | None = None,
) -> Fingerprinted:
    """Hash (unless `subject` is given) and sketch `model` into the statement document `issue` signs."""
    method = method.for_models(model)  # attention kind: ssm
    timings: dict[str, float] = {}
    t = time.perf_counter()
    if subject is None:
        subject = subject_of(model, tracker)
    timings["hash"] = time.perf_counter() - t

    t = time.perf_counter()
    dtype = compute_dtype(precision)
    tokens = select(model.vocab, method.n_tokens, DEFAULT_SELECTION_KEY)
    ids = [model.vocab.index()[s] for s in tokens]
    layers = parse_layers(method.layers, model.n_layers)
    n_cells = len(layers) * len(method.terms) + len(method.global_terms)
    m = pairs_for_budget(len(tokens), n_cells, pairs_requested)
    pairs = choose_pairs(len(tokens), m, PAIR_SEED)
    cells, values = sketch_model(model, ids, method, layers, pairs, dtype, tracker)
    timings["invariants"] = time.perf_counter() - t

    t = time.perf_counter()
    # What a verifier needs to run the lineage test without the base (docs/lineage.md).
    lineage = build_payload(model, ids, tracker=tracker)
    timings["lineage"] = time.perf_counter() - t

    t = time.perf_counter()
    latent = project(values, LATENT_SEED)
    renderer = get_renderer(DEFAULT_RENDERER)
    png = png_bytes(renderer.render(latent))
    timings["render"] = time.perf_counter() - t

    document = build_document(
        model={**describe(model), "name": name},
        subject=subject,
        method=method,
        tokens=tokens,
        token_mode="ids" if model.vocab.by_ids else "strings",
        selection_key=DEFAULT_SELECTION_KEY,
        layers=layers,
        cells=cells,
        pairs=pairs,
        pair_seed=PAIR_SEED,
        latent_seed=LATENT_SEED,
        values=values.astype(np.float16),
        latent=latent,
        image_sha256=hashlib.sha256(png).digest(),
        renderer={"name": renderer.name, "version": renderer.version},
        policy=policy,
        precision=str(dtype).replace("torch.", ""),
        meta=meta,
        lineage=lineage,
    )
    return Fingerprinted(document, png, subject, (int(values.shape[0]), int(values.shape[1])), timings)


def issue_bundle(
    model: CanonicalModel,
    key: Ed25519PrivateKey,
    out: Path,
    *,
    method: Method,
    name: str,
    issuer: str,
    meta: Mapping[str, str],
    policy: Policy = DEFAULT_POLICY,
    precision: str = "auto",
    pairs_requested: int = DEFAULT_PAIRS,
    tracker: Tracker = SILENT,
    force: bool = False,
    subject: dict[str, object] | None = None,
) -> Issued:
    """Fingerprint `model`, sign the statement with `key`, write OUT.attest and OUT.png.

    Both output paths are checked before any work (see attest.output.paths).
    `subject`, when given, is the already computed manifest of the model's files.
    """
    out, png_path = bundle_paths(out, force)
    fp = fingerprint_document(
        model,
        method=method,
        name=name,
        meta=meta,
        policy=policy,
        precision=precision,
        pairs_requested=pairs_requested,
        tracker=tracker,
        subject=subject,
    )
    document, png, subject, timings = fp.document, fp.png, fp.subject, fp.seconds
    statement = issue_statement(document, key, issuer=issuer, subject=name)
    data = write_attestation(out, statement, png)
    atomic_write(png_path, png)
    from attest.crypto.keys import key_id

    return Issued(
        bundle_path=out,
        png_path=png_path,
        bundle_bytes=len(data),
        document_bytes=len(statement),
        sketch_shape=fp.sketch_shape,
        seconds=timings,
        kid_hex=key_id(key.public_key()).hex(),
        subject_root_hex=root.hex() if isinstance(root := subject.get("root"), bytes) else "",
    )
