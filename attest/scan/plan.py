"""What one model's task needs: CPU and memory, sized from tensor headers alone.

attest streams a model one layer at a time (docs/method.md): the largest
resident tensors are one transformer block, converted to float32, and the
n×n float32 matrices of the invariant terms over n probe tokens.  So a task
needs, with L the float32 bytes of the largest block (or of the largest tensor
outside any block, such as a tied LM head, if that is larger) and n the probe
tokens of one pass (the union over the registered bases plus the model's own)::

    memory = BASE_BYTES + LAYER_COPIES * L + MATRICES * 4 * n * n
    cpus   = clamp(ceil(L / BYTES_PER_CPU), 1, MAX_TASK_CPUS)

BASE_BYTES is the interpreter with torch and attest imported (identify peaked at
510 MB RSS on a small model, docs/registry.md); LAYER_COPIES counts the block as
stored (or memory-mapped), its float32 copy, and one product of its size;
MATRICES bounds the term matrices alive at once.  A small model gets one core
(it is bound by file reads and Python, not by matmuls), so many run side by
side; a large block's matmuls use more threads well.

Headers only: safetensors and GGUF headers give every shape without touching
the data.  For a format whose reader must load everything anyway (an ONNX
protobuf, a torch pickle), or a file whose header cannot be read, L is the
model's total bytes: the honest bound for a reader that holds it all.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from attest.errors import AttestError

BASE_BYTES = 768 * 2**20
LAYER_COPIES = 3
MATRICES = 8
BYTES_PER_CPU = 512 * 2**20
MAX_TASK_CPUS = 8
# Below this largest-layer size the local engine runs a model on one thread:
# its matmuls are too small to share, and extra threads only spin (8 tiny
# models took 7x the CPU time on 2 threads as on 1 here: docs/scale.md).
SMALL_LAYER_BYTES = 64 * 2**20
# A tensor belongs to block N when its name has one of these segments.
_BLOCK = re.compile(r"(?:^|\.)(?:layers|layer|h|blk|block|blocks|decoder\.layers)\.(\d+)\.")


@dataclass(frozen=True)
class Resources:
    largest_layer_bytes: int  # L above (float32)
    parameters: int  # total elements, 0 when unknown
    memory_bytes: int
    cpus: int
    from_headers: bool  # False: L is the total size (no readable header)


def _header_shapes(path: Path) -> list[tuple[str, int]] | None:
    """(name, elements) of every tensor, from headers only; None for formats that would load the weights."""
    suffix = path.suffix.lower()
    folder_kinds = {p.suffix.lower() for p in path.iterdir()} if path.is_dir() else set()
    if path.is_file() and suffix not in (".safetensors", ".gguf"):
        return None
    if path.is_dir() and not ({".safetensors", ".gguf"} & folder_kinds):
        return None
    from attest.sources.open import open_weights

    try:
        source = open_weights(path)
        if source.format not in ("safetensors", "gguf"):
            return None
        return [(n, math.prod(source.shape(n))) for n in source.names()]
    except (AttestError, OSError, ValueError):
        return None  # the task will fail on it and record why; size it by its bytes meanwhile


def resources(path: str, source_bytes: int, probe_tokens: int) -> Resources:
    """The task's request for the model at `path` (see the module docstring for the formula)."""
    shapes = _header_shapes(Path(path))
    if shapes:
        blocks: dict[int, int] = {}
        loose = 0
        for name, elements in shapes:
            m = _BLOCK.search(name)
            if m:
                blocks[int(m.group(1))] = blocks.get(int(m.group(1)), 0) + elements
            else:
                loose = max(loose, elements)
        largest = 4 * max([loose, *blocks.values()])
        params = sum(e for _n, e in shapes)
        from_headers = True
    else:
        largest, params, from_headers = max(1, source_bytes), 0, False
    memory = BASE_BYTES + LAYER_COPIES * largest + MATRICES * 4 * probe_tokens * probe_tokens
    cpus = min(MAX_TASK_CPUS, max(1, math.ceil(largest / BYTES_PER_CPU)))
    return Resources(largest, params, memory, cpus, from_headers)


def local_threads(plan: Resources, cores: int) -> int:
    """Torch threads for one model on the local engine: every core, unless the model is small."""
    return 1 if plan.from_headers and plan.largest_layer_bytes < SMALL_LAYER_BYTES else max(1, cores)
