"""`attest issue`: fingerprint a model and sign the result as a `.attest` bundle."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from attest.arch.canonical import CanonicalModel
from attest.bundle import issue_statement, write_attestation
from attest.decision import DEFAULT_POLICY, Policy
from attest.subject import hash_files
from attest.invariants.methods import Method, parse_layers
from attest.invariants.precision import compute_dtype, use_all_cores
from attest.latent import DEFAULT_LATENT_SEED, project
from attest.model_info import describe
from attest.progress import SILENT, Tracker
from attest.render.base import DEFAULT_RENDERER, get_renderer
from attest.render.sheet import png_bytes
from attest.sketch import DEFAULT_PAIRS, choose_pairs, pairs_for_budget
from attest.sketch_model import sketch_model
from attest.statement import build_document
from attest.tokens import DEFAULT_SELECTION_KEY, select

from attest.compare import LATENT_PAIR_SEED as DEFAULT_PAIR_SEED


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


def subject_of(model: CanonicalModel, tracker: Tracker = SILENT) -> dict[str, object]:
    files = model.source.files()
    if not files:
        return {"files": [], "root": b"", "algorithm": "sha256", "layout": "attest-manifest/1"}
    base = model.source.root if model.source.root.is_dir() else model.source.root.parent
    total = sum(f.stat().st_size for f in files)
    task = tracker.task("hashing weight files", total)
    subject = hash_files(files, base, progress=lambda n: tracker.advance(task, n))
    return subject.to_cbor_obj()


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
) -> Issued:
    use_all_cores()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    subject = subject_of(model, tracker)
    timings["hash"] = time.perf_counter() - t

    t = time.perf_counter()
    dtype = compute_dtype(precision)
    tokens = select(model.vocab, method.n_tokens, DEFAULT_SELECTION_KEY)
    ids = [model.vocab.index()[s] for s in tokens]
    layers = parse_layers(method.layers, model.n_layers)
    n_cells = len(layers) * len(method.terms) + len(method.global_terms)
    m = pairs_for_budget(len(tokens), n_cells, pairs_requested)
    pairs = choose_pairs(len(tokens), m, DEFAULT_PAIR_SEED)
    cells, values = sketch_model(model, ids, method, layers, pairs, dtype, tracker)
    timings["invariants"] = time.perf_counter() - t

    t = time.perf_counter()
    latent = project(values, DEFAULT_LATENT_SEED)
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
        pair_seed=DEFAULT_PAIR_SEED,
        latent_seed=DEFAULT_LATENT_SEED,
        values=values.astype(np.float16),
        latent=latent,
        image_sha256=hashlib.sha256(png).digest(),
        renderer={"name": renderer.name, "version": renderer.version},
        policy=policy,
        precision=str(dtype).replace("torch.", ""),
        meta=meta,
    )
    statement = issue_statement(document, key, issuer=issuer, subject=name)
    data = write_attestation(out, statement, png)
    png_path = out.with_suffix(".png")
    png_path.write_bytes(png)
    from attest.crypto.keys import key_id

    return Issued(
        bundle_path=out,
        png_path=png_path,
        bundle_bytes=len(data),
        document_bytes=len(statement),
        sketch_shape=(int(values.shape[0]), int(values.shape[1])),
        seconds=timings,
        kid_hex=key_id(key.public_key()).hex(),
        subject_root_hex=bytes(subject["root"]).hex() if subject.get("root") else "",  # type: ignore[arg-type]
    )
