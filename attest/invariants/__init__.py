"""Invariant terms (docs/method.md): products of weights over token embeddings."""
