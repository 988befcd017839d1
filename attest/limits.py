"""Size limits applied to everything attest reads, in one place.

Each limit is generous for every real model we know of and small enough that
a few kilobytes of hostile input cannot make attest allocate gigabytes.  A
limit that both the publisher and the verifier apply (probe tokens, say) is
defined once here, so the two sides can never disagree about what is valid.
"""

from __future__ import annotations

# -- probe tokens: `issue --tokens N` and the verifier's reading of a bundle ----
#: Fewest and most probe tokens a method may use.  The terms are n×n matrices,
#: so 16,384 tokens already mean 1 GB of float32 per matrix; a bundle that
#: claims more is refused before anything is computed.
MIN_PROBE_TOKENS = 8
MAX_PROBE_TOKENS = 16_384

# -- lineage payload (attest-statement/2) ---------------------------------------
#: Bytes of sampled-neuron (and attention-head) responses a bundle may carry.
#: `issue` spends about 3.6 MB on neurons and 0.3 MB on heads at 7B shape and
#: never more than 6 MB at any depth (`lineage.payload.default_layout`,
#: docs/lineage.md); a reader accepts up to this.
MAX_LINEAGE_BYTES = 8 * 1024 * 1024
#: Sampled neurons per layer a payload may carry (issue stores 256).
MAX_LINEAGE_NEURONS = 65_536

# -- model dimensions ----------------------------------------------------------
#: Largest vocabulary accepted (XLM-V has ~0.9 M tokens; nothing real comes near
#: 2^21).  Bounds the per-id tables built for a vocabulary.
MAX_VOCAB = 2_097_152
#: Largest single model dimension (hidden size, FFN width, head size ...).
MAX_DIM = 1_048_576
#: Most transformer layers, attention heads and experts a config may declare.
MAX_LAYERS = 4_096
MAX_HEADS = 65_536
MAX_EXPERTS = 65_536

# -- JSON documents read from a model folder -----------------------------------
#: config.json, generation configs, tokenizer_config.json, special_tokens_map.json.
MAX_CONFIG_BYTES = 16 * 1024 * 1024
#: model.safetensors.index.json / pytorch_model.bin.index.json (one line per tensor).
MAX_INDEX_BYTES = 64 * 1024 * 1024
#: tokenizer.json / vocab.json (large multilingual vocabularies with merges reach ~30 MB).
MAX_TOKENIZER_BYTES = 256 * 1024 * 1024
#: vocab.txt (WordPiece, one token a line).
MAX_VOCAB_TXT_BYTES = 64 * 1024 * 1024
#: Nesting depth of any JSON document (real ones stay under 10).
MAX_JSON_DEPTH = 64
#: Digits in a JSON integer (sizes and ids have at most 19; Python's own cap is 4,300).
MAX_JSON_INT_DIGITS = 40

# -- GGUF metadata --------------------------------------------------------------
#: String values in all GGUF metadata together.  The largest real ones are a
#: 256 k BPE vocabulary plus its merges (~0.51 M; Llama-3 has 0.41 M).  gguf-py
#: builds numpy objects for every string (~1.6 KB and ~30 us each, measured),
#: so without a cap 12 MB of empty strings cost gigabytes and minutes.
MAX_GGUF_METADATA_STRINGS = 786_432
