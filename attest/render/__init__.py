"""Latent -> picture: the dog portrait, comparison sheets and galleries."""

from attest.render.base import DEFAULT_RENDERER, Renderer, get_renderer, register

__all__ = ["DEFAULT_RENDERER", "Renderer", "get_renderer", "register"]
