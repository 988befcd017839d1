"""Stacked-expert layouts: how each kind of stacked gate/up and down tensor is cut into canonical experts.

Canonical experts are `[out, in]` like every linear weight: gate and up `[E, f, d]`,
down `[E, d, f]`. Checkpoints stack them three ways (`ExpertLayout`):

- `OUT_IN_HALVES`: gate_up `[E, 2f, d]` with the gate rows first, down `[E, d, f]`
  (Mixtral/Qwen-MoE as transformers 5 holds them in memory, GraniteMoE on disk);
- `IN_OUT_HALVES`: gate_up `[E, d, 2f]` with the gate columns first, down `[E, f, d]`
  (Llama-4: `x @ gate_up`, then `chunk(2, dim=-1)`);
- `IN_OUT_INTERLEAVED`: gate_up `[E, d, 2f]` with gate and up alternating along the
  last axis (gate = `[..., ::2]`, up = `[..., 1::2]`), down `[E, f, d]` (GPT-OSS).

Separately stacked experts (GGUF's `ffn_{up,gate,down}_exps`) are already
`[out, in]`: `check_separate` only checks their shapes.

Every layout states the exact shapes it expects of both tensors, so a tensor
stored the other way round is an `InputError` naming it, never silently read
transposed (when `d == 2f` the gate_up shape alone cannot tell, but down's can).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from attest.arch.spec import ExpertLayout
from attest.errors import InputError

Tensor = torch.Tensor
# gates [E, f, d], ups [E, f, d], downs [E, d, f]
Experts = tuple[Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class StackedLayout:
    """One layout: its stored shapes for (experts, width f, hidden d), the axis holding 2f, and the split."""

    describe: str
    shapes: Callable[[int, int, int], tuple[tuple[int, int, int], tuple[int, int, int]]]  # gate_up, down
    wide_axis: int  # axis of gate_up that is 2f wide
    split: Callable[[Tensor, Tensor], Experts]


def split_out_in_halves(gate_up: Tensor, down: Tensor) -> Experts:
    """gate_up [E, 2f, d] (gate rows first), down [E, d, f]: already [out, in]."""
    f = gate_up.shape[1] // 2
    return gate_up[:, :f], gate_up[:, f:], down


def split_in_out_halves(gate_up: Tensor, down: Tensor) -> Experts:
    """gate_up [E, d, 2f] (gate columns first), down [E, f, d]: transposed to [out, in]."""
    f = gate_up.shape[2] // 2
    return gate_up[:, :, :f].transpose(1, 2), gate_up[:, :, f:].transpose(1, 2), down.transpose(1, 2)


def split_in_out_interleaved(gate_up: Tensor, down: Tensor) -> Experts:
    """gate_up [E, d, 2f] with gate = [..., ::2] and up = [..., 1::2], down [E, f, d]."""
    return gate_up[:, :, 0::2].transpose(1, 2), gate_up[:, :, 1::2].transpose(1, 2), down.transpose(1, 2)


STACKED_LAYOUTS: dict[ExpertLayout, StackedLayout] = {
    ExpertLayout.OUT_IN_HALVES: StackedLayout(
        "gate_up [E, 2f, d] and down [E, d, f]", lambda e, f, d: ((e, 2 * f, d), (e, d, f)), 1, split_out_in_halves
    ),
    ExpertLayout.IN_OUT_HALVES: StackedLayout(
        "gate_up [E, d, 2f] and down [E, f, d]", lambda e, f, d: ((e, d, 2 * f), (e, f, d)), 2, split_in_out_halves
    ),
    ExpertLayout.IN_OUT_INTERLEAVED: StackedLayout(
        "gate_up [E, d, 2f] (gate/up interleaved) and down [E, f, d]",
        lambda e, f, d: ((e, d, 2 * f), (e, f, d)),
        2,
        split_in_out_interleaved,
    ),
}


def split_stacked(
    layout: ExpertLayout, gate_up: Tensor, down: Tensor, hidden: int, names: tuple[str, str], where: str
) -> Experts:
    """Canonical (gates, ups, downs) of stacked experts, after checking both tensors' shapes exactly.

    `names` are the gate_up and down tensor names, `where` prefixes the error
    (checkpoint and layer); E and f are read off gate_up, then both shapes must
    be exactly what `layout` stores.
    """
    entry = STACKED_LAYOUTS.get(layout)
    if entry is None:
        raise InputError(f"{where}: unknown stacked-expert layout {layout}")
    expect = f"{layout.value} stores {entry.describe} for hidden size d={hidden}"
    if gate_up.dim() != 3 or down.dim() != 3:
        raise InputError(
            f"{where}: stacked experts '{names[0]}' {tuple(gate_up.shape)} and '{names[1]}' "
            f"{tuple(down.shape)} must both be 3-D ({expect})"
        )
    wide = gate_up.shape[entry.wide_axis]
    if wide % 2:
        raise InputError(
            f"{where}: stacked gate_up '{names[0]}' {tuple(gate_up.shape)} has an odd gate/up width ({expect})"
        )
    gu_shape, down_shape = entry.shapes(gate_up.shape[0], wide // 2, hidden)
    for name, t, shape in ((names[0], gate_up, gu_shape), (names[1], down, down_shape)):
        if tuple(t.shape) != shape:
            raise InputError(
                f"{where}: stacked expert tensor '{name}' has shape {tuple(t.shape)}, expected {shape} ({expect})"
            )
    return entry.split(gate_up, down)


def check_separate(
    up: Tensor, gate: Tensor | None, down: Tensor, hidden: int, names: tuple[str, str | None, str], where: str
) -> None:
    """Separately stacked experts: up (and gate) `[E, f, d]`, down `[E, d, f]`, checked exactly."""
    if up.dim() != 3:
        raise InputError(
            f"{where}: stacked expert tensor '{names[0]}' has shape {tuple(up.shape)}, expected [E, f, {hidden}]"
        )
    e, f = up.shape[0], up.shape[1]
    for name, t, shape in (
        (names[0], up, (e, f, hidden)),
        (names[1], gate, (e, f, hidden)),
        (names[2], down, (e, hidden, f)),
    ):
        if t is not None and tuple(t.shape) != shape:
            raise InputError(f"{where}: stacked expert tensor '{name}' has shape {tuple(t.shape)}, expected {shape}")
