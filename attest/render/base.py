"""The renderer interface and a small registry.

A renderer turns a latent into a picture. Bundles record the renderer's name
and version next to the image digest, so a verifier can redraw the same dog
(or notice it cannot). Another generator can be plugged in by calling
`register` with a factory.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from attest.errors import InputError

DEFAULT_RENDERER = "dog-v1"


@runtime_checkable
class Renderer(Protocol):
    name: str
    version: str

    def render(self, latent: np.ndarray) -> Image.Image:
        """Draw `latent` (any scale; only its direction counts) as an RGB image."""
        ...


_FACTORIES: dict[str, Callable[[], Renderer]] = {}


def register(name: str, factory: Callable[[], Renderer]) -> None:
    _FACTORIES[name] = factory


def available() -> list[str]:
    _ensure_builtin()
    return sorted(_FACTORIES)


def _ensure_builtin() -> None:
    # Imported lazily so `import attest.render.base` stays cheap and cycle-free.
    if DEFAULT_RENDERER not in _FACTORIES:
        from attest.render.dog import DogRenderer

        register(DEFAULT_RENDERER, DogRenderer)


def get_renderer(name: str = DEFAULT_RENDERER) -> Renderer:
    """A fresh renderer instance by registry name (e.g. "dog-v1")."""
    _ensure_builtin()
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise InputError(f"unknown renderer {name!r}; available: {', '.join(sorted(_FACTORIES))}") from None
    return factory()
