"""A model's vocabulary as canonical strings, independent of token ids.

Canonical form (docs/method.md, "Probe tokens"): a word-initial piece carries one leading ASCII
space, whatever the tokenizer's own marker was (SentencePiece `▁`, byte-level
BPE `Ġ`, WordPiece's absence of `##`).  Byte-level pieces are decoded to text.
Special, control and added tokens are not canonical strings (None).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from attest.errors import InputError
from attest.limits import MAX_VOCAB


@lru_cache(maxsize=1)
def byte_encoder() -> dict[int, str]:
    """GPT-2's bytes_to_unicode table: each byte as a printable character (byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """Inverse of `byte_encoder`."""
    return {c: b for b, c in byte_encoder().items()}


def decode_byte_level(piece: str) -> str | None:
    table = byte_decoder()
    try:
        raw = bytes(table[ch] for ch in piece)
        return raw.decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return None


def canonical_sentencepiece(piece: str) -> str:
    return piece.replace("\u2581", " ")


def canonical_wordpiece(piece: str, prefix: str = "##") -> str:
    if piece.startswith(prefix) and len(piece) > len(prefix):
        return piece[len(prefix) :]
    return " " + piece


def is_eligible(canonical: str) -> bool:
    """Ordinary word pieces only: letters, with an optional single leading space."""
    body = canonical[1:] if canonical.startswith(" ") else canonical
    return len(body) >= 2 and body.isalpha()


@dataclass
class Vocabulary:
    """id -> canonical string (None where the id is special or undecodable)."""

    strings: list[str | None]
    kind: str  # "bpe-bytelevel", "sentencepiece", "wordpiece", "ids"
    source: str = ""
    _index: dict[str, int] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.strings)

    @property
    def by_ids(self) -> bool:
        return self.kind == "ids"

    def index(self) -> dict[str, int]:
        """canonical string -> lowest id holding it (duplicates keep the first)."""
        if self._index is None:
            idx: dict[str, int] = {}
            for i, s in enumerate(self.strings):
                if s is not None and s not in idx:
                    idx[s] = i
            self._index = idx
        return self._index

    def eligible(self) -> list[str]:
        return [s for s in self.index() if is_eligible(s)]

    @classmethod
    def ids_only(cls, size: int) -> "Vocabulary":
        # Without a tokenizer the only shared handle across models is the id.
        # One string per id: bound the size before building them.
        if not 0 <= size <= MAX_VOCAB:
            raise InputError(f"vocabulary of {size:,} ids is out of range (at most {MAX_VOCAB:,})")
        return cls([f"#{i}" for i in range(size)], kind="ids", source="none")
