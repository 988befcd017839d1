"""The head count of a multi-head latent attention checkpoint, from its tensor shapes alone.

Used only when the metadata names no head count (a folder without config.json).
With H heads, per-head widths d_n (nope), d_r (rope), d_v (value) and latent r_kv:

    q (or q_b) rows   a = H·(d_n + d_r)        kv_a rows = r_kv + d_r, kv_a norm width = r_kv
    kv_b rows         b = H·(d_n + d_v)        (or k_b rows H·d_n and v_b rows H·d_v)
    o columns         c = H·d_v

so H·d_r = a − b + c (= a − k_b rows), and d_r is known from kv_a: H follows exactly.
"""

from __future__ import annotations

from collections.abc import Callable

from attest.arch.names import TensorNames
from attest.arch.spec import MlaNames

Shape = Callable[[str], tuple[int, ...]]


def mla_heads_from_shapes(names: TensorNames, mla: MlaNames, shape: Shape) -> int | None:
    """H from layer 0's MLA shapes, or None when they do not determine a whole positive count."""

    def rows(role: tuple[str, ...], axis: int = 0) -> int | None:
        name = names.find_in_layer(0, role) if role else None
        dims = shape(name) if name else ()
        return int(dims[axis]) if len(dims) > axis else None

    kv_a, rank = rows(mla.kv_a), rows(mla.kv_a_norm)
    q = rows(mla.q) or rows(mla.q_b)
    if kv_a is None or rank is None or q is None or kv_a <= rank:
        return None
    rope = kv_a - rank
    kv_b, o_cols, k_b = rows(mla.kv_b), rows(mla.o, 1), rows(mla.k_b)
    if kv_b is not None and o_cols is not None:
        heads_rope = q - kv_b + o_cols
    elif k_b is not None:
        heads_rope = q - k_b
    else:
        return None
    if heads_rope <= 0 or heads_rope % rope != 0:
        return None
    return heads_rope // rope
