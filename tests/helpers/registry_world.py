"""Tiny attested bases for the registry and identify tests.

`build_world(root)` saves a few tiny `transformers` models of different
families (and probe-token counts, so their probe strings differ), issues a
signed bundle for each with one publisher key, and returns the paths.
`forge_variant` re-signs a bundle's statement with another subject, which
gives many distinct, validly signed bundles without recomputing sketches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from helpers.models import build_tiny_model, save_model
from helpers.statement_docs import thaw

# (name, tiny-model case, seed, probe tokens)
BASES = (
    ("base-llama", "llama", 21, 128),
    ("base-qwen2", "qwen2", 22, 160),
    ("base-gpt2", "gpt2", 23, 128),
    ("base-mistral", "mistral", 24, 96),
)


@dataclass
class World:
    root: Path
    models: dict[str, Path]
    bundles: dict[str, Path]
    subject_roots: dict[str, str]
    families: dict[str, str]
    pub: Path
    key: Any  # Ed25519PrivateKey
    stranger_pub: Path
    stranger_key: Any


def build_world(root: Path, names: tuple[str, ...] | None = None) -> World:
    from attest.arch.detect import load_model
    from attest.crypto.keys import generate_keypair, load_private_key
    from attest.invariants.methods import DEFAULT
    from attest.workflows.issue import issue_bundle

    generate_keypair(root / "publisher", None)
    generate_keypair(root / "stranger", None)
    key = load_private_key(root / "publisher.key", None)
    world = World(
        root,
        {},
        {},
        {},
        {},
        root / "publisher.pub",
        key,
        root / "stranger.pub",
        load_private_key(root / "stranger.key", None),
    )
    for name, case, seed, n_tokens in BASES:
        if names is not None and name not in names:
            continue
        folder = save_model(build_tiny_model(case, seed=seed), root / name)
        bundle = root / f"{name}.attest"
        issued = issue_bundle(
            load_model(folder),
            key,
            bundle,
            method=DEFAULT.with_options(n_tokens=n_tokens),
            name=name,
            issuer="Registry Test Lab",
            meta={},
        )
        world.models[name] = folder
        world.bundles[name] = bundle
        world.subject_roots[name] = issued.subject_root_hex
        world.families[name] = case
    return world


def save_derivative(case: str, seed: int, folder: Path, noise: float = 0.25) -> Path:
    """A fine-tune stand-in: the base's weights plus `noise`·std Gaussian drift."""
    model = build_tiny_model(case, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * p.std() * torch.randn(p.shape, generator=gen))
    return save_model(model, folder)


def forge_variant(
    bundle: Path, key: Any, i: int, out: Path, *, name: str | None = None, files: list[Any] | None = None
) -> Path:
    """A re-signed copy of `bundle` whose subject names another weight file (so another root)."""
    from attest.bundle.container import (
        encode_attestation,
        inspect_attestation,
        issue_statement,
    )
    from attest.subject import FileDigest, Subject, root_digest

    opened = inspect_attestation(bundle.read_bytes())
    doc = thaw(opened.document)
    if files is None:
        digest = hashlib.sha256(f"variant-{i}".encode()).digest()
        subject = Subject.from_files([FileDigest(name="model.safetensors", sha256=digest, size=1000 + i)]).to_cbor_obj()
    else:  # a hand-made subject (the root is that of an empty list; right only when `files` is empty)
        subject = {"algorithm": "sha256", "layout": "attest-manifest/1", "files": files, "root": root_digest([])}
    doc["subject"] = subject
    statement = issue_statement(doc, key, issuer="Registry Test Lab", subject=name or f"variant-{i}")
    out.write_bytes(encode_attestation(statement, opened.png))
    return out
