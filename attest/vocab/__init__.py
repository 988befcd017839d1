"""Token strings of a model's vocabulary, canonicalised across tokenizer kinds."""

from attest.vocab.readers import load_vocabulary
from attest.vocab.vocabulary import Vocabulary

__all__ = ["Vocabulary", "load_vocabulary"]
