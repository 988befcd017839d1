"""One registered base: the index row and how it is derived from a verified bundle."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from attest.bundle.cbor_safe import canonical_dumps, is_array, safe_loads
from attest.bundle.container import OpenedAttestation
from attest.errors import BundleError
from attest.sketch.statement import StatementView
from attest.subject import Subject

# Columns that are facts about the bundle (compared by `registry verify`);
# `id` and `added_at` are the registry's own bookkeeping.
DERIVED_FIELDS = (
    "subject_root",
    "bundle_sha256",
    "bundle_bytes",
    "name",
    "model_name",
    "issuer",
    "kid",
    "iat",
    "family",
    "layers",
    "hidden",
    "vocab",
    "parameters",
    "method",
    "n_tokens",
    "token_mode",
    "n_cells",
    "n_pairs",
    "probe_tokens",
)
# Bounds for decoding an index's probe-token list (the index is read as hostile too).
_MAX_PROBE_TOKEN_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """An index row: what identify needs to list a candidate without opening its bundle."""

    subject_root: str
    bundle_sha256: str
    bundle_bytes: int
    name: str
    model_name: str
    issuer: str
    kid: str
    iat: int
    family: str
    layers: int
    hidden: int
    vocab: int
    parameters: int
    method: str
    n_tokens: int
    token_mode: str
    n_cells: int
    n_pairs: int
    # The bundle's probe token strings as canonical CBOR (`encode_probe_tokens`), so that
    # identify can tell, without opening the bundle, that a suspect holds too few of them.
    # None in rows registered before schema version 3 (such bundles are always opened).
    probe_tokens: bytes | None = None
    id: int | None = None
    added_at: str = ""

    @property
    def bundle_file(self) -> str:
        """Path of the stored bundle relative to the registry folder (content-addressed)."""
        return f"bundles/{self.bundle_sha256}.attest"

    def derived(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in DERIVED_FIELDS}

    def disagreements(self, fresh: Entry) -> list[str]:
        """The derived fields where this (index) row differs from `fresh`, re-derived from its bundle.

        A row from before schema version 3 has no probe tokens: not a disagreement.
        """
        mine, theirs = self.derived(), fresh.derived()
        return [k for k in DERIVED_FIELDS if mine[k] != theirs[k] and not (k == "probe_tokens" and mine[k] is None)]

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "probe_tokens"}
        return {**out, "probe_tokens_indexed": self.probe_tokens is not None, "bundle_file": self.bundle_file}

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Entry:
        names = {f.name for f in fields(cls)}
        # (a Row iterates over its values; its column names come from keys())
        return cls(**{k: row[k] for k in names & set(row.keys())})


def encode_probe_tokens(tokens: Sequence[str]) -> bytes:
    """The index's form of a bundle's probe tokens: canonical CBOR of the list, in statement order."""
    return canonical_dumps([str(t) for t in tokens])


def decode_probe_tokens(raw: bytes | None, n_tokens: int) -> list[str] | None:
    """The probe tokens an index row holds, or None when it holds none or they do not check out."""
    if raw is None:
        return None
    try:
        tokens = safe_loads(
            raw, max_size=_MAX_PROBE_TOKEN_BYTES, max_depth=2, max_items=n_tokens + 1, what="indexed probe tokens"
        )
    except BundleError:
        return None
    if not is_array(tokens) or len(tokens) != n_tokens or not all(isinstance(t, str) for t in tokens):
        return None
    return list(tokens)


def parse_view(opened: OpenedAttestation, what: str) -> StatementView:
    """The typed reading of an opened bundle's statement (the structural checks verify relies on)."""
    try:
        return StatementView.parse(opened.document, checked=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{what}: malformed statement ({exc.__class__.__name__}: {exc})") from None


def _text(obj: Mapping[str, Any], key: str, what: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str):
        raise BundleError(f"{what}: model.{key} must be text")
    return v


def _count(obj: Mapping[str, Any], key: str, what: str) -> int:
    v = obj.get(key)
    # SQLite INTEGER is 64-bit signed; a hostile bundle must not overflow it.
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**63:
        raise BundleError(f"{what}: model.{key} must be a non-negative integer")
    return v


def entry_from_bundle(
    opened: OpenedAttestation, what: str, view: StatementView | None = None, digest: str | None = None
) -> Entry:
    """The index row for a bundle whose signature already verified.

    `view` is the bundle's parsed statement when the caller already has it
    (`attest identify` parses each bundle once), and `digest` the SHA-256 of
    `opened.raw` when the caller has just checked it (`Registry.read_bundle`).  Raises BundleError when the
    statement cannot be used as a registry entry (malformed parts, or no
    subject digest to key it by).
    """
    doc = opened.document
    if view is None:
        view = parse_view(opened, what)
    subject = Subject.from_cbor_obj(doc["subject"])  # recomputes the root from its entries
    if not subject.files:
        raise BundleError(f"{what}: the statement has no subject files, so no root digest to register it under")
    model = doc["model"]
    ver = opened.verified
    name = ver.subject
    return Entry(
        subject_root=subject.root.hex(),
        bundle_sha256=digest if digest is not None else hashlib.sha256(opened.raw).hexdigest(),
        bundle_bytes=len(opened.raw),
        name=name,
        model_name=str(model.get("name", name)),
        issuer=ver.issuer,
        kid=ver.kid.hex(),
        iat=int(ver.iat),
        family=_text(model, "family", what),
        layers=_count(model, "layers", what),
        hidden=_count(model, "hidden", what),
        vocab=_count(model, "vocab", what),
        parameters=_count(model, "parameters", what),
        method=view.method.name,
        n_tokens=len(view.tokens),
        token_mode=view.token_mode,
        n_cells=len(view.cells),
        n_pairs=int(view.pairs.shape[0]),
        probe_tokens=encode_probe_tokens(view.tokens),
    )
