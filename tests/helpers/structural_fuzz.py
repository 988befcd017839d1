"""Structural mutations of valid documents, and the targets that read them.

Byte fuzzing mostly tests the parsers; this mutates *field values and types*
of documents that parse (configs, tokenizers, shard indexes, safetensors
headers, statement documents, evidence), so what is tested is the code that
uses the values.  Bundles and evidence are re-signed after mutation, so the
signature is valid and the semantic checks are what stands in the way.

One engine serves the hypothesis tests (tests/test_structural_fuzz.py, driven
by `st.randoms()`) and the long run (bench/fuzz_structure.py, a seeded
`random.Random`).  A target returns the exit code the CLI would give: 0 when
the mutant was accepted, the AttestError's code when it was refused; any
other exception escapes and is the bug being looked for.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attest.errors import AttestError

DEEP_SENTINEL = "__attest_fuzz_deep__"

#: Values a field can be replaced with: other types, edge numbers, near-misses.
REPLACEMENTS: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    3,
    7,
    64,
    2**31,
    2**63 - 1,
    2**64,
    -(2**63),
    10**30,
    0.5,
    -0.0,
    1.0,
    1e308,
    -1e308,
    "",
    "4x",
    "four",
    "llama",
    "qk",
    "float32",
    "x" * 300,
    [],
    [1],
    [4, 4],
    [[]],
    ["a"],
    {},
    {"a": 1},
    {"name": "x", "version": "y"},
]
BINARY_REPLACEMENTS: list[Any] = [b"", b"\x00" * 32, b"\xff" * 7, b"\x00" * 2048]


def _paths(doc: Any, limit: int = 4000) -> list[tuple[Any, ...]]:
    """Paths (key/index tuples) to the nodes of a JSON/CBOR-like value, breadth first."""
    out: list[tuple[Any, ...]] = []
    queue: list[tuple[tuple[Any, ...], Any]] = [((), doc)]
    while queue and len(out) < limit:
        path, node = queue.pop(0)
        out.append(path)
        if isinstance(node, dict):
            queue.extend((path + (k,), v) for k, v in node.items())
        elif isinstance(node, list):
            # Long lists (tokens, vocab entries): a few positions are enough.
            idx = range(len(node)) if len(node) <= 8 else [0, 1, len(node) // 2, len(node) - 1]
            queue.extend((path + (i,), node[i]) for i in idx)
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _value(rnd: random.Random, old: Any, binary: bool) -> Any:
    kind = rnd.randrange(10)
    if kind == 0 and isinstance(old, (int, float)) and not isinstance(old, bool):
        return rnd.choice([-old, old * 10**6, old + 1, old - 1, float(old), str(old), [old]])
    if kind == 1 and isinstance(old, str):
        return rnd.choice([old + "x", old[:1], old.upper(), len(old), [old], {old: old}])
    if kind == 2:
        return [old] if rnd.random() < 0.5 else {"k": old}
    if kind == 3:
        return DEEP_SENTINEL
    if kind == 4 and isinstance(old, list) and old:
        return old * rnd.choice([2, 50]) if rnd.random() < 0.5 else old[: rnd.randrange(len(old))]
    pool = REPLACEMENTS + (BINARY_REPLACEMENTS if binary else [])
    return copy.deepcopy(rnd.choice(pool))


def mutate(doc: Any, rnd: random.Random, *, binary: bool = False, max_ops: int = 3) -> Any:
    """A copy of `doc` with 1..max_ops structural edits (replace, delete, insert, wrap, nest)."""
    doc = copy.deepcopy(doc)
    for _ in range(rnd.randint(1, max_ops)):
        paths = _paths(doc)
        path = rnd.choice(paths)
        if not path:  # the root itself
            if rnd.random() < 0.2:
                doc = _value(rnd, doc, binary)
            continue
        parent = _get(doc, path[:-1])
        key = path[-1]
        op = rnd.randrange(6)
        if op == 0 and isinstance(parent, dict):
            del parent[key]
        elif op == 1 and isinstance(parent, dict):
            parent[rnd.choice(["extra", "vocab_size", "num_hidden_layers", "dtype", "name", str(key) + "_"])] = _value(
                rnd, None, binary
            )
        elif op == 2 and isinstance(parent, list):
            parent.insert(rnd.randrange(len(parent) + 1), _value(rnd, parent[key], binary))
        else:
            parent[key] = _value(rnd, parent[key], binary)
    return doc


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def to_json(doc: Any, rnd: random.Random) -> str:
    """JSON text of a mutant; the deep sentinel becomes 20..5000 levels of nesting."""
    text = json.dumps(doc)
    while f'"{DEEP_SENTINEL}"' in text:
        depth = rnd.choice([20, 70, 1500, 5000])
        text = text.replace(f'"{DEEP_SENTINEL}"', "[" * depth + "1" + "]" * depth, 1)
    return text


def to_cbor_value(doc: Any, rnd: random.Random) -> Any:
    """The mutant as a CBOR-encodable value; the deep sentinel becomes nested arrays."""
    if doc == DEEP_SENTINEL:
        return _nested(rnd.choice([5, 20, 40]))
    if isinstance(doc, dict):
        return {k: to_cbor_value(v, rnd) for k, v in doc.items()}
    if isinstance(doc, list):
        return [to_cbor_value(v, rnd) for v in doc]
    return doc


def run_target(fn: Callable[[], Any]) -> int:
    """0 if `fn` accepted its input, the AttestError's exit code if it refused it."""
    try:
        fn()
    except AttestError as exc:
        return int(exc.exit_code)
    return 0


# --------------------------------------------------------------------------- targets
@dataclass
class Targets:
    """Valid documents of every kind, and a folder to write mutants into."""

    work: Path
    model_dir: Path  # a valid tiny HF folder (config.json, model.safetensors, tokenizer.json)
    config: dict[str, Any]
    tokenizer: dict[str, Any]
    header: dict[str, Any]
    data: bytes
    index: dict[str, Any]
    statement: dict[str, Any]
    png: bytes
    key: Any
    trust: Any
    verifier_key: Any
    evidence: dict[str, Any]
    suspect: Any  # a loaded CanonicalModel to verify mutants against

    def names(self) -> list[str]:
        return ["config", "tokenizer", "shard_index", "safetensors_header", "bundle", "evidence"]

    def case(self, name: str, rnd: random.Random) -> int:
        return getattr(self, f"_{name}")(rnd)

    # Each target writes its mutant, then runs the real reader and a consumer of the values.
    def _folder(self, name: str) -> Path:
        folder = self.work / name
        if not folder.exists():
            shutil.copytree(self.model_dir, folder)
        return folder

    def _load_and_use(self, folder: Path) -> None:
        from attest.arch.detect import load_model

        model = load_model(folder)
        try:
            model.layer(0)
            model.embedding_rows([0, 1])
            model.vocab.eligible()
        finally:
            model.source.close()

    def _config(self, rnd: random.Random) -> int:
        folder = self._folder("config")
        (folder / "config.json").write_text(to_json(mutate(self.config, rnd), rnd))
        return run_target(lambda: self._load_and_use(folder))

    def _tokenizer(self, rnd: random.Random) -> int:
        from attest.vocab.readers import load_vocabulary_file

        path = self._folder("tokenizer") / "tokenizer.json"
        path.write_text(to_json(mutate(self.tokenizer, rnd), rnd))
        return run_target(lambda: load_vocabulary_file(path).eligible())

    def _shard_index(self, rnd: random.Random) -> int:
        folder = self._folder("shard_index")
        (folder / "model.safetensors.index.json").write_text(to_json(mutate(self.index, rnd), rnd))
        return run_target(lambda: self._load_and_use(folder))

    def _safetensors_header(self, rnd: random.Random) -> int:
        import struct

        folder = self._folder("header")
        head = to_json(mutate(self.header, rnd), rnd).encode()
        (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + self.data)
        return run_target(lambda: self._load_and_use(folder))

    def _bundle(self, rnd: random.Random) -> int:
        from attest.bundle.container import read_attestation
        from attest.sketch.statement import StatementView
        from attest.workflows.verify import verify_suspect
        from helpers.hostile_helpers import resign

        mutant = to_cbor_value(mutate(self.statement, rnd, binary=True), rnd)

        def use() -> None:
            data = resign(mutant, self.png, self.key)
            opened = read_attestation(data, self.trust)
            StatementView.parse(opened.document)
            verify_suspect(opened, self.suspect, precision="fp32")

        return run_target(use)

    def _evidence(self, rnd: random.Random) -> int:
        from attest.bundle.cbor_safe import canonical_dumps
        from attest.bundle.container import EVIDENCE_CONTENT_TYPE, read_evidence
        from attest.bundle.cose import sign1
        from attest.crypto.keys import key_id

        mutant = to_cbor_value(mutate(self.evidence, rnd, binary=True), rnd)

        def use() -> None:
            payload = canonical_dumps(mutant)
            data = sign1(
                payload,
                self.verifier_key,
                kid=key_id(self.verifier_key.public_key()),
                issuer="verifier",
                subject="tiny",
                iat=1_700_000_000,
                content_type=EVIDENCE_CONTENT_TYPE,
            )
            opened = read_evidence(data, self.trust)
            _consume(opened.body)

        return run_target(use)


def _consume(body: Mapping[str, Any]) -> None:
    """What a reader of evidence does with it: walk and print every value."""
    for key, value in body.items():
        if isinstance(value, Mapping):
            _consume(value)
        else:
            str(key), repr(value)[:80]


def build_targets(work: Path, model_dir: Path) -> Targets:
    """Issue a bundle and an evidence file for the tiny model at `model_dir`; collect valid documents."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from attest.arch.detect import load_model
    from attest.bundle.container import EVIDENCE_FORMAT, inspect_attestation
    from attest.crypto.keys import TrustStore
    from attest.invariants.methods import DEFAULT
    from attest.workflows.issue import issue_bundle
    from helpers.hostile_helpers import read_safetensors, thaw

    work.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"fuzz publisher").digest())
    verifier = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"fuzz verifier").digest())
    trust = TrustStore.from_public_keys({"publisher": key.public_key(), "verifier": verifier.public_key()})
    bundle = work / "base.attest"
    suspect = load_model(model_dir)
    issue_bundle(
        suspect, key, bundle, method=DEFAULT.with_options(n_tokens=64), name="tiny", issuer="Fuzz Lab", meta={}
    )
    raw = bundle.read_bytes()
    opened = inspect_attestation(raw)
    header, data = read_safetensors(model_dir / "model.safetensors")
    evidence = {
        "format": EVIDENCE_FORMAT,
        "attestation": raw,
        "time": "2026-12-01T00:00:00Z",
        "suspect": {"path": "suspect", "root": b"\x11" * 32},
        "results": {"verdict": "match", "score": 0.97, "coverage": 1.0, "layers": [{"a": 0, "b": 0, "mean": 0.9}]},
        "tool": {"name": "attest", "version": "0.1.0"},
        "images": {"base": opened.png, "suspect": opened.png},
    }
    return Targets(
        work=work,
        model_dir=model_dir,
        config=json.loads((model_dir / "config.json").read_text()),
        tokenizer=json.loads((model_dir / "tokenizer.json").read_text()),
        header=header,
        data=data,
        index={
            "metadata": {"total_size": len(data)},
            "weight_map": {n: "model.safetensors" for n in header if n != "__metadata__"},
        },
        statement=thaw(opened.document),
        png=opened.png,
        key=key,
        trust=trust,
        verifier_key=verifier,
        evidence=evidence,
        suspect=suspect,
    )
