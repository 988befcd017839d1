"""The subject manifest: which files a bundle is about, and the root digest over them.

The layout follows OpenSSF model-signing's manifest (sigstore/model-transparency,
serialization method "files"): one entry per file, named by its path relative
to the model folder as a POSIX path, entries sorted by that path, and a root
digest over the sorted entries. See `Subject` for the exact root definition.

This module is the data model only (names, entries, root, CBOR form); it
never touches the file system. Reading and hashing files is
`attest.subject.files`.
"""

# Invalid entries of any kind raise ValueError: that is this module's contract
# (`Subject.from_cbor_obj` turns it into a BundleError), so TypeError is not used.
# ruff: noqa: TRY004

from __future__ import annotations

import hashlib
import itertools
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from attest.errors import BundleError
from attest.formats import MANIFEST_LAYOUT

ALGORITHM = "sha256"
LAYOUT = MANIFEST_LAYOUT
DIGEST_SIZE = 32

# Domain separation: a root can never be confused with a digest of some other
# byte string that happens to have the same entry encoding.
_ROOT_PREFIX = LAYOUT.encode("ascii") + b"\x00"

# Caps for decoding hostile bundles (docs/threat-model.md): generous for any real
# checkpoint (the largest public ones have a few hundred shards).
MAX_FILES = 100_000
MAX_NAME_BYTES = 4096
MAX_SIZE = (1 << 63) - 1

# --------------------------------------------------------------------------
# names and ordering


def name_sort_key(name: str) -> tuple[str, ...]:
    """Canonical order of entry names: component-wise, by Unicode code point.

    model-signing sorts `PurePosixPath` keys, which compare their '/'-separated
    components; comparing the tuples gives the same order, so for the same file
    set our entry order (and `model_signing_root`) matches theirs.  Note that
    this differs from plain string order: "a/b" sorts before "a-b".
    """
    return tuple(name.split("/"))


def check_name(name: object) -> str:
    """Return `name` if it is a canonical relative POSIX path, else raise ValueError."""
    if not isinstance(name, str):
        raise ValueError(f"file name must be a string, got {type(name).__name__}")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"file name is not valid UTF-8: {name!r}") from exc
    if not encoded or len(encoded) > MAX_NAME_BYTES:
        raise ValueError(f"file name must be 1..{MAX_NAME_BYTES} bytes: {name!r}")
    if "\x00" in name or "\\" in name:
        # A backslash is a separator on Windows, so the same name would denote
        # a different file there; no real checkpoint uses one.
        raise ValueError(f"file name contains NUL or backslash: {name!r}")
    if name.startswith("/"):
        raise ValueError(f"file name must be relative: {name!r}")
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"file name is not a normalised relative path: {name!r}")
    return name


# --------------------------------------------------------------------------
# data model


@dataclass(frozen=True)
class FileDigest:
    """One subject entry: relative POSIX name, SHA-256 of the content, byte size."""

    name: str
    sha256: bytes
    size: int

    def __post_init__(self) -> None:
        check_name(self.name)
        if not isinstance(self.sha256, bytes) or len(self.sha256) != DIGEST_SIZE:
            raise ValueError(f"{self.name}: sha256 must be {DIGEST_SIZE} bytes")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise ValueError(f"{self.name}: size must be an integer")
        if not 0 <= self.size <= MAX_SIZE:
            raise ValueError(f"{self.name}: size out of range: {self.size}")


def _entries_in_order(files: Sequence[FileDigest]) -> None:
    for prev, cur in itertools.pairwise(files):
        if name_sort_key(prev.name) >= name_sort_key(cur.name):
            what = "duplicate" if prev.name == cur.name else "unsorted"
            raise ValueError(f"{what} subject entries: {prev.name!r}, {cur.name!r}")


def root_digest(files: Sequence[FileDigest]) -> bytes:
    """The subject root over `files` taken in the order given (see `Subject`)."""
    h = hashlib.sha256(_ROOT_PREFIX)
    for f in files:
        name = f.name.encode("utf-8")
        h.update(struct.pack(">I", len(name)))
        h.update(name)
        h.update(struct.pack(">Q", f.size))
        h.update(f.sha256)
    return h.digest()


def model_signing_root(files: Sequence[FileDigest]) -> bytes:
    """model-signing v1.0's subject digest: SHA-256 of the concatenated file digests.

    It binds neither names nor sizes (model-signing binds those through the
    signed resource list), so attest's own `root_digest` is what the bundle
    records; this one is offered to cross-check against a model-signing
    signature of the same folder.
    """
    h = hashlib.sha256()
    for f in files:
        h.update(f.sha256)
    return h.digest()


@dataclass(frozen=True)
class Subject:
    """The digests of every file of a model, plus a root digest over them.

    ``files`` is sorted by `name_sort_key` with no duplicate names.  ``root`` is

        SHA-256( b"attest-manifest/1" || 0x00
                 || for each entry in ``files`` order:
                      u32be(len(N)) || N || u64be(size) || sha256 )

    where N is the entry's name encoded as UTF-8, u32be/u64be are unsigned
    big-endian integers of 4 and 8 bytes, and sha256 is the 32-byte raw digest
    of the file's bytes.  Names are paths relative to the model folder with '/'
    separators, no '.', '..' or empty components, no leading '/', no backslash
    or NUL.  Entries are ordered by comparing the tuples of '/'-separated
    components, each compared by Unicode code point (the order of Python's
    `PurePosixPath`, which model-signing uses).

    Any change to a file's bytes, a name, a size, or the set or order of
    entries changes the root.
    """

    files: list[FileDigest]
    root: bytes = field(default=b"")

    def __post_init__(self) -> None:
        files = list(self.files)
        if len(files) > MAX_FILES:
            raise ValueError(f"too many subject files: {len(files)} > {MAX_FILES}")
        for f in files:
            if not isinstance(f, FileDigest):
                raise ValueError("subject entries must be FileDigest")
        _entries_in_order(files)
        object.__setattr__(self, "files", files)
        expected = root_digest(files)
        if self.root == b"":
            object.__setattr__(self, "root", expected)
        elif self.root != expected:
            raise ValueError("subject root does not match its entries")

    @classmethod
    def from_files(cls, files: Sequence[FileDigest]) -> Subject:
        """Sort `files` canonically and compute the root."""
        return cls(sorted(files, key=lambda f: name_sort_key(f.name)))

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def model_signing_root(self) -> bytes:
        return model_signing_root(self.files)

    def diff(self, other: Subject) -> dict[str, list[str]]:
        """Names that differ between two subjects: changed, missing (only in self), extra."""
        mine = {f.name: (f.sha256, f.size) for f in self.files}
        theirs = {f.name: (f.sha256, f.size) for f in other.files}
        return {
            "changed": sorted((n for n in mine.keys() & theirs.keys() if mine[n] != theirs[n]), key=name_sort_key),
            "missing": sorted(mine.keys() - theirs.keys(), key=name_sort_key),
            "extra": sorted(theirs.keys() - mine.keys(), key=name_sort_key),
        }

    def to_cbor_obj(self) -> dict[str, Any]:
        return {
            "algorithm": ALGORITHM,
            "layout": LAYOUT,
            "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in self.files],
            "root": self.root,
        }

    @classmethod
    def from_cbor_obj(cls, obj: object) -> Subject:
        """Parse and fully validate a decoded subject; BundleError if malformed.

        Accepts any Mapping/Sequence (cbor2 6.x yields frozendicts and tuples).
        The root is recomputed and must equal the recorded one.
        """
        try:
            return cls._from_cbor_obj(obj)
        except BundleError:
            raise
        except (ValueError, TypeError) as exc:
            raise BundleError(f"malformed subject: {exc}") from exc

    @classmethod
    def _from_cbor_obj(cls, obj: object) -> Subject:
        if not isinstance(obj, Mapping):
            raise ValueError("subject is not a map")
        keys = set(obj.keys())
        expected_keys = {"algorithm", "layout", "files", "root"}
        if keys != expected_keys:
            raise ValueError(f"subject keys must be {sorted(expected_keys)}, got {sorted(map(str, keys))}")
        if obj["algorithm"] != ALGORITHM:
            raise ValueError(f"unsupported algorithm {obj['algorithm']!r}")
        if obj["layout"] != LAYOUT:
            raise ValueError(f"unsupported layout {obj['layout']!r}")
        raw_files = obj["files"]
        if not isinstance(raw_files, Sequence) or isinstance(raw_files, (str, bytes, bytearray)):
            raise ValueError("files is not an array")
        if len(raw_files) > MAX_FILES:
            raise ValueError(f"too many files: {len(raw_files)}")
        files = []
        for i, entry in enumerate(raw_files):
            if not isinstance(entry, Mapping) or set(entry.keys()) != {"name", "sha256", "size"}:
                raise ValueError(f"files[{i}] must be a map with keys name, sha256, size")
            digest = entry["sha256"]
            if not isinstance(digest, bytes):
                raise ValueError(f"files[{i}].sha256 is not a byte string")
            files.append(FileDigest(name=entry["name"], sha256=bytes(digest), size=entry["size"]))
        root = obj["root"]
        if not isinstance(root, bytes) or len(root) != DIGEST_SIZE:
            raise ValueError(f"root must be {DIGEST_SIZE} bytes")
        return cls(files, bytes(root))
