"""Invariant terms (DESIGN §4): products of weights over token embeddings."""
