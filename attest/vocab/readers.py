"""Read token strings from the tokenizer files that ship next to weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from attest.documents.bounded_json import read_capped
from attest.documents.model_docs import read_tokenizer_json, read_vocab_json
from attest.errors import InputError
from attest.limits import MAX_TOKENIZER_BYTES, MAX_VOCAB, MAX_VOCAB_TXT_BYTES
from attest.vocab.vocabulary import (
    Vocabulary,
    canonical_sentencepiece,
    canonical_wordpiece,
    decode_byte_level,
)


def _uses_byte_level(tok: dict[str, Any]) -> bool:
    def mentions(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel":
                return True
            return any(mentions(v) for v in node.values())
        if isinstance(node, list):
            return any(mentions(v) for v in node)
        return False

    return mentions(tok.get("pre_tokenizer")) or mentions(tok.get("decoder"))


def _place(strings: list[str | None], i: int, s: str | None) -> None:
    # The schema bounded ids already; this guards callers that skip it.
    if not 0 <= i < MAX_VOCAB:
        raise InputError(f"token id {i} out of range (0..{MAX_VOCAB - 1:,})")
    if i >= len(strings):
        strings.extend([None] * (i + 1 - len(strings)))
    strings[i] = s


def from_tokenizer_json(path: Path) -> Vocabulary:
    tok = read_tokenizer_json(path)
    model = tok["model"]
    mtype = model.get("type")
    vocab = model.get("vocab")
    strings: list[str | None] = []
    canon: Callable[[str], str | None]
    if mtype == "Unigram" and isinstance(vocab, list):
        kind = "sentencepiece"
        for i, entry in enumerate(vocab):
            _place(strings, i, canonical_sentencepiece(entry[0]))
    elif isinstance(vocab, dict):
        if mtype == "WordPiece":
            kind = "wordpiece"
            prefix = model.get("continuing_subword_prefix") or "##"
            canon = lambda p: canonical_wordpiece(p, prefix)  # noqa: E731
        elif _uses_byte_level(tok):
            kind = "bpe-bytelevel"
            canon = decode_byte_level
        else:
            kind = "sentencepiece"
            canon = canonical_sentencepiece
        for piece, i in vocab.items():
            _place(strings, i, canon(piece))
    else:
        raise InputError(f"{path}: unsupported tokenizer model type {mtype!r}")
    for added in tok.get("added_tokens") or []:
        # Added and special tokens are not ordinary word pieces.
        _place(strings, added["id"], None)
    return Vocabulary(strings, kind=kind, source=str(path.name))


def from_vocab_json(path: Path) -> Vocabulary:
    vocab = read_vocab_json(path)
    strings: list[str | None] = []
    for piece, i in vocab.items():
        _place(strings, i, decode_byte_level(piece))
    return Vocabulary(strings, kind="bpe-bytelevel", source=path.name)


def from_vocab_txt(path: Path) -> Vocabulary:
    # Capped before reading: without it a 2 GB sparse file is one 2 GB "line".
    raw = read_capped(path, MAX_VOCAB_TXT_BYTES, "vocabulary")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: vocabulary is not UTF-8 text (byte {exc.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) > MAX_VOCAB:
        raise InputError(f"{path}: {len(lines):,} tokens, more than {MAX_VOCAB:,}")
    strings: list[str | None] = []
    for line in lines:
        piece = line.rstrip("\r")
        special = piece.startswith("[") and piece.endswith("]")
        strings.append(None if special or not piece else canonical_wordpiece(piece))
    return Vocabulary(strings, kind="wordpiece", source=path.name)


def from_sentencepiece(path: Path) -> Vocabulary:
    try:
        import sentencepiece as spm
    except ImportError:  # pragma: no cover - it is a core dependency
        raise InputError("reading tokenizer.model needs the 'sentencepiece' package") from None
    sp = spm.SentencePieceProcessor()
    try:
        # From bytes we have bounded, not from a path sentencepiece would read whole.
        sp.LoadFromSerializedProto(read_capped(path, MAX_TOKENIZER_BYTES, "tokenizer model"))
    except (OSError, RuntimeError) as exc:
        raise InputError(f"{path}: not a SentencePiece model ({exc})") from None
    if sp.GetPieceSize() > MAX_VOCAB:
        raise InputError(f"{path}: {sp.GetPieceSize():,} pieces, more than {MAX_VOCAB:,}")
    strings: list[str | None] = []
    for i in range(sp.GetPieceSize()):
        if sp.IsControl(i) or sp.IsUnknown(i) or sp.IsByte(i) or sp.IsUnused(i):
            strings.append(None)
        else:
            strings.append(canonical_sentencepiece(sp.IdToPiece(i)))
    return Vocabulary(strings, kind="sentencepiece", source=path.name)


def from_gguf_metadata(meta: dict[str, Any]) -> Vocabulary | None:
    tokens = meta.get("tokenizer.ggml.tokens")
    if not tokens:
        return None
    # The header is untrusted: a non-string token list would otherwise fail deep in decoding.
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise InputError("GGUF metadata 'tokenizer.ggml.tokens' is not a list of strings")
    if len(tokens) > MAX_VOCAB:
        raise InputError(f"GGUF metadata 'tokenizer.ggml.tokens' has {len(tokens):,} entries, more than {MAX_VOCAB:,}")
    model = meta.get("tokenizer.ggml.model", "llama")
    types = meta.get("tokenizer.ggml.token_type")
    types = types if isinstance(types, list) else []
    strings: list[str | None] = []
    byte_level = model == "gpt2"
    for i, piece in enumerate(tokens):
        ttype = types[i] if i < len(types) else 1
        if ttype not in (1,):  # 1 = normal; control, user-defined, unknown, unused and byte are not words
            strings.append(None)
        elif byte_level:
            strings.append(decode_byte_level(piece))
        else:
            strings.append(canonical_sentencepiece(piece))
    return Vocabulary(strings, kind="bpe-bytelevel" if byte_level else "sentencepiece", source="gguf")


_FILE_READERS = (
    ("tokenizer.json", from_tokenizer_json),
    ("tokenizer.model", from_sentencepiece),
    ("vocab.json", from_vocab_json),
    ("vocab.txt", from_vocab_txt),
)


def load_vocabulary_file(path: Path) -> Vocabulary:
    """A vocabulary from one named tokenizer file (tokenizer.json, tokenizer.model, vocab.json, vocab.txt)."""
    if not path.is_file():
        raise InputError(f"{path}: tokenizer file not found")
    by_suffix = {".json": from_tokenizer_json, ".model": from_sentencepiece, ".txt": from_vocab_txt}
    if path.name == "vocab.json":
        return from_vocab_json(path)
    reader = by_suffix.get(path.suffix)
    if reader is None:
        raise InputError(
            f"{path}: unknown tokenizer file type (tokenizer.json, tokenizer.model, vocab.json or vocab.txt)"
        )
    return reader(path)


def load_vocabulary(model_path: Path, gguf_meta: dict[str, Any] | None = None) -> Vocabulary | None:
    """The vocabulary next to a model, or None when there is no tokenizer at all."""
    if gguf_meta:
        v = from_gguf_metadata(gguf_meta)
        if v is not None:
            return v
    folder = model_path if model_path.is_dir() else model_path.parent
    for name, reader in _FILE_READERS:
        p = folder / name
        if p.is_file():
            return reader(p)
    return None
