"""Local text corpora for benchmarks that train models (no network).

Two deliberately different corpora:

- ``python_source``: the Python standard library's own ``.py`` files (code and
  docstrings), used for pretraining;
- ``prose``: licence texts from ``/usr/share/common-licenses`` and the Debian
  ``/usr/share/doc/*/copyright`` files (English legal prose, de-duplicated by
  content), used for "SFT-like" continued training and for masked-LM fine-tuning.

Both are read in sorted path order and truncated to a byte budget, so the text is
the same on every run of the same machine image.
"""

from __future__ import annotations

import hashlib
import json
import sysconfig
from pathlib import Path
from typing import Iterable, Iterator

SPECIAL = "<|endoftext|>"


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _read_files(paths: Iterable[Path], max_bytes: int) -> tuple[str, list[str]]:
    out: list[str] = []
    used: list[str] = []
    seen: set[bytes] = set()
    total = 0
    for p in paths:
        try:
            raw = p.read_bytes()
        except OSError:
            continue
        digest = hashlib.sha256(raw).digest()
        if digest in seen or not raw.strip():
            continue
        seen.add(digest)
        text = raw.decode("utf-8", errors="replace")
        out.append(text)
        used.append(str(p))
        total += len(raw)
        if total >= max_bytes:
            break
    return "\n\n".join(out)[:max_bytes], used


def python_source(max_bytes: int = 8_000_000) -> tuple[str, list[str]]:
    """Text of the stdlib .py files (excluding site-packages), and the files used."""
    root = _stdlib_root()
    paths = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    return _read_files(paths, max_bytes)


def prose(max_bytes: int = 8_000_000) -> tuple[str, list[str]]:
    """Licence and copyright texts (English prose), de-duplicated."""
    paths = sorted(Path("/usr/share/common-licenses").glob("*"))
    paths += sorted(Path("/usr/share/doc").glob("*/copyright"))
    return _read_files([p for p in paths if p.is_file()], max_bytes)


def chunks(text: str, size: int = 4096) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i : i + size]


def train_bpe(text: str, vocab_size: int) -> str:
    """A byte-level BPE tokenizer.json (as text), id 0 = ``<|endoftext|>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(chunks(text), trainer)
    return tok.to_str()


def encode(tokenizer_json: str, text: str) -> "list[int]":
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    ids: list[int] = []
    for enc in tok.encode_batch(list(chunks(text, 20000))):
        ids.extend(enc.ids)
    return ids


def token_strings(tokenizer_json: str) -> list[str]:
    """Vocabulary strings in id order (byte-level form, as a GGUF token list holds them)."""
    data = json.loads(tokenizer_json)
    vocab: dict[str, int] = dict(data["model"]["vocab"])
    for t in data.get("added_tokens", []):
        vocab[t["content"]] = t["id"]
    out = [""] * (max(vocab.values()) + 1)
    for s, i in vocab.items():
        out[i] = s
    return out
