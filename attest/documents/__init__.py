"""Documents read from a model folder (config, tokenizer, shard index): bounded JSON and their schemas."""
