"""Token selection and cross-model alignment by string (docs/method.md, "Probe tokens").

Selection depends only on canonical token strings: the same strings are chosen
whatever the ids, so id permutation, vocabulary extension and re-export by
another tool leave it unchanged.  Strings are ranked by a keyed SHA-256 so the
choice is deterministic, spread over the whole vocabulary and reproducible from
the recorded key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

from attest.errors import InputError
from attest.vocab.vocabulary import Vocabulary, is_eligible

DEFAULT_SELECTION_KEY = "attest/token-selection/v1"


def rank(strings: Iterable[str], key: str) -> list[str]:
    k = key.encode("utf-8") + b"\x00"
    return sorted(strings, key=lambda s: hashlib.sha256(k + s.encode("utf-8")).digest())


def eligible_strings(vocab: Vocabulary) -> list[str]:
    if vocab.by_ids:
        return [s for s in vocab.index()]
    return [s for s in vocab.index() if is_eligible(s)]


def select(vocab: Vocabulary, n: int, key: str = DEFAULT_SELECTION_KEY) -> list[str]:
    """The first n eligible strings of `vocab` in keyed-hash order."""
    pool = eligible_strings(vocab)
    if not pool:
        raise InputError("the vocabulary has no ordinary word-piece tokens to probe with")
    return rank(pool, key)[:n]


@dataclass(frozen=True)
class Alignment:
    """Selected strings and where each lives in model A and model B."""

    strings: list[str]
    ids_a: list[int]
    ids_b: list[int]
    considered: int  # candidate strings walked to find them
    mode: str  # "strings" or "ids"

    @property
    def coverage(self) -> float:
        return len(self.strings) / self.considered if self.considered else 0.0


def align_pair(vocab_a: Vocabulary, vocab_b: Vocabulary, n: int, key: str = DEFAULT_SELECTION_KEY) -> Alignment:
    """Walk A's ranking and keep the strings B also has, until n are found."""
    if vocab_a.by_ids != vocab_b.by_ids:
        raise InputError("one model has a tokenizer and the other does not; cannot align tokens")
    index_a, index_b = vocab_a.index(), vocab_b.index()
    strings: list[str] = []
    considered = 0
    for s in rank(eligible_strings(vocab_a), key):
        considered += 1
        if s in index_b:
            strings.append(s)
            if len(strings) == n:
                break
    return Alignment(
        strings=strings,
        ids_a=[index_a[s] for s in strings],
        ids_b=[index_b[s] for s in strings],
        considered=considered,
        mode="ids" if vocab_a.by_ids else "strings",
    )


def locate(vocab: Vocabulary, strings: list[str]) -> list[int | None]:
    """Ids of recorded strings in a (suspect's) vocabulary; None where missing."""
    index = vocab.index()
    return [index.get(s) for s in strings]
