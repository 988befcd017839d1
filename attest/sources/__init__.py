"""Weight sources: lazy, memory-mapped, tensor-by-tensor readers of checkpoints."""

from attest.sources.base import WeightSource
from attest.sources.open import open_weights

__all__ = ["WeightSource", "open_weights"]
