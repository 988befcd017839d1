"""Expert storage kinds: how each way of storing a layer's MoE experts is read into canonical FFNs.

A registry, `EXPERT_LAYOUTS`, from `ExpertLayout` to an `ExpertStorage`:
`present` says whether layer i is stored that way, `read` returns one
`ExpertFFN` per expert in canonical orientation (up/gate `[f, d]`, down
`[d, f]`). `attest.arch.assembly` tries the table's kinds in order
(`ExpertNames.storage_kinds`) and never branches on them.

Every stacked tensor is shape-checked against the (E, f, d) it implies before
it is cut: E from the config or header (else the tensor itself), d the hidden
size, f from the down tensor. A tensor stored in another layout (say
[E, d, 2f] under a name the table reads as [E, 2f, d]) is a clear InputError
naming the tensor, never a silent misreading.

To add a kind: add a member to `attest.arch.spec.ExpertLayout`, write its
`present`/`read` (find each stacked tensor's name and stored shape with
`stacked`, `down_last` / `down_first`, check the shapes with
`ExpertTensors.check` before reading with `ExpertTensors.get`, and cut the
tensors with `split_experts`), register it below, and list it in the family's `ExpertNames.layouts`
(or set `stacked_layout` for a `stacked_gate_up` / `stacked_down` pair).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from attest.arch.mxfp4 import dequantise_stacked, is_mxfp4, mxfp4_stacked_shape, scales_name
from attest.arch.names import TensorNames
from attest.arch.spec import ExpertLayout, ExpertNames
from attest.errors import InputError
from attest.sources.base import WeightSource

Tensor = torch.Tensor


@dataclass(frozen=True)
class ExpertFFN:
    """One expert's FFN: up and gate [f, d], down [d, f]."""

    up: Tensor
    down: Tensor
    gate: Tensor | None = None


@dataclass(frozen=True)
class ExpertTensors:
    """What an expert reader needs: the tensors, their names, the hidden size and the declared expert count."""

    source: WeightSource
    names: TensorNames
    hidden: int
    n_experts: int  # 0 when neither the config nor the header says

    @property
    def root(self) -> object:
        return self.source.root

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's stored shape from the metadata; for MXFP4 `_blocks`, the shape it dequantises to."""
        found = tuple(self.source.shape(name))
        return mxfp4_stacked_shape(found, f"{self.root}: '{name}'") if is_mxfp4(name) else found

    def check(self, found: tuple[int, ...], shape: tuple[int, ...], what: str) -> None:
        """A stored shape (read before any tensor is) against the one the layout implies."""
        if tuple(found) != shape:
            raise InputError(f"{self.root}: {what} has shape {tuple(found)}, expected {shape}")

    def get(self, name: str) -> Tensor:
        """A tensor; MXFP4 `_blocks` are dequantised with the `_scales` beside them (attest.arch.mxfp4)."""
        if not is_mxfp4(name):
            return self.source.get(name)
        scales = self.names.pick([scales_name(name)], f"MXFP4 scales for '{name}'")
        return dequantise_stacked(self.source.get(name), self.source.get(scales), f"{self.root}: '{name}'")


@dataclass(frozen=True)
class ExpertStorage:
    present: Callable[[TensorNames, int, ExpertNames], bool]
    read: Callable[[ExpertTensors, int, ExpertNames], list[ExpertFFN]]


# --------------------------------------------------------------------------- stacked kinds
# Shapes are checked from the source's metadata before a tensor is read, so a
# misshaped (or absurdly large) stacked tensor costs nothing.
def stacked(x: ExpertTensors, i: int, rel: Sequence[str], what: str) -> tuple[str, tuple[int, ...]]:
    """The name and stored shape of a stacked tensor, which must be 3-D [E, ., .]."""
    name = x.names.in_layer(i, rel, what)
    shape = x.shape(name)
    if len(shape) != 3:
        raise InputError(f"{x.root}: stacked expert tensor '{name}' has shape {shape}, expected 3-D [E, ., .]")
    return name, shape


def _expert_count(x: ExpertTensors, shape: tuple[int, ...]) -> int:
    """E: the declared count when there is one (the tensor must agree), else the tensor's first dimension."""
    return x.n_experts or int(shape[0])


def down_last(x: ExpertTensors, i: int, ex: ExpertNames) -> tuple[str, int, int]:
    """down stored [E, d, f]: its name, E and f (its shape checked on E and d)."""
    name, shape = stacked(x, i, ex.stacked_down, "stacked expert down")
    e, f = _expert_count(x, shape), int(shape[2])
    x.check(shape, (e, x.hidden, f), f"stacked expert down '{name}' ([E, d, f])")
    return name, e, f


def down_first(x: ExpertTensors, i: int, ex: ExpertNames) -> tuple[str, int, int]:
    """down stored [E, f, d] (transposed layouts): its name, E and f."""
    name, shape = stacked(x, i, ex.stacked_down, "stacked expert down")
    e, f = _expert_count(x, shape), int(shape[1])
    x.check(shape, (e, f, x.hidden), f"stacked expert down '{name}' ([E, f, d])")
    return name, e, f


def split_experts(ups: Tensor, gates: Tensor | None, downs: Tensor) -> list[ExpertFFN]:
    """Canonical per-expert views of stacked up/gate [E, f, d] and down [E, d, f]."""
    return [
        ExpertFFN(up=ups[e], down=downs[e], gate=None if gates is None else gates[e]) for e in range(downs.shape[0])
    ]


def _read_stacked(x: ExpertTensors, i: int, ex: ExpertNames) -> list[ExpertFFN]:
    """up and gate [E, f, d], down [E, d, f] (GGUF `ffn_{up,gate,down}_exps`)."""
    down_name, e, f = down_last(x, i, ex)
    up_name, up_shape = stacked(x, i, ex.stacked_up, "stacked expert up")
    x.check(up_shape, (e, f, x.hidden), f"stacked expert up '{up_name}' ([E, f, d])")
    gate_name = x.names.find_in_layer(i, ex.stacked_gate) if ex.stacked_gate else None
    if gate_name:
        x.check(x.shape(gate_name), (e, f, x.hidden), f"stacked expert gate '{gate_name}' ([E, f, d])")
    gates = x.get(gate_name) if gate_name else None
    return split_experts(x.get(up_name), gates, x.get(down_name))


def _read_stacked_halves(x: ExpertTensors, i: int, ex: ExpertNames) -> list[ExpertFFN]:
    """gate_up [E, 2f, d] with the gate half first, down [E, d, f] (transformers 5, GraniteMoE on disk)."""
    down_name, e, f = down_last(x, i, ex)
    gu_name, gu_shape = stacked(x, i, ex.stacked_gate_up, "stacked expert gate_up")
    x.check(gu_shape, (e, 2 * f, x.hidden), f"stacked expert gate_up '{gu_name}' ([E, 2f, d])")
    gu = x.get(gu_name)
    return split_experts(gu[:, f:], gu[:, :f], x.get(down_name))


def _stacked_gate_up_last(x: ExpertTensors, i: int, ex: ExpertNames) -> tuple[Tensor, Tensor, int]:
    """gate_up [E, d, 2f] and down [E, f, d], both shape-checked: (gate_up, down, f)."""
    down_name, e, f = down_first(x, i, ex)
    gu_name, gu_shape = stacked(x, i, ex.stacked_gate_up, "stacked expert gate_up")
    x.check(gu_shape, (e, x.hidden, 2 * f), f"stacked expert gate_up '{gu_name}' ([E, d, 2f])")
    return x.get(gu_name), x.get(down_name), f


def _read_stacked_transposed(x: ExpertTensors, i: int, ex: ExpertNames) -> list[ExpertFFN]:
    """gate_up [E, d, 2f] with the gate columns first, down [E, f, d] (Llama-4: `x @ gate_up`, `chunk(2)`)."""
    gu, down, f = _stacked_gate_up_last(x, i, ex)
    return split_experts(gu[:, :, f:].transpose(1, 2), gu[:, :, :f].transpose(1, 2), down.transpose(1, 2))


def _read_stacked_interleaved(x: ExpertTensors, i: int, ex: ExpertNames) -> list[ExpertFFN]:
    """gate_up [E, d, 2f] with gate = [..., ::2] and up = [..., 1::2], down [E, f, d] (GPT-OSS, bf16 or MXFP4)."""
    gu, down, _ = _stacked_gate_up_last(x, i, ex)
    return split_experts(gu[:, :, 1::2].transpose(1, 2), gu[:, :, 0::2].transpose(1, 2), down.transpose(1, 2))


def _found(names: TensorNames, i: int, *rels: Sequence[str]) -> bool:
    return all(rel and names.find_in_layer(i, rel) is not None for rel in rels)


def stacked_pair_present(names: TensorNames, i: int, ex: ExpertNames) -> bool:
    """A `stacked_gate_up` / `stacked_down` pair (read as the table's `stacked_layout`)."""
    return _found(names, i, ex.stacked_gate_up, ex.stacked_down)


def _stacked_separate_present(names: TensorNames, i: int, ex: ExpertNames) -> bool:
    return _found(names, i, ex.stacked_up, ex.stacked_down)


# --------------------------------------------------------------------------- per-expert tensors
def _per_expert_present(names: TensorNames, i: int, ex: ExpertNames) -> bool:
    return bool(ex.down) and names.find_in_layer(i, [ex.prefix.format(e=0) + n for n in ex.down]) is not None


def _read_per_expert(x: ExpertTensors, i: int, ex: ExpertNames) -> list[ExpertFFN]:
    """One tensor per expert and role, experts numbered from 0 until the first missing down projection."""
    experts: list[ExpertFFN] = []
    e = 0
    while True:
        prefix = ex.prefix.format(e=e)
        down_name = x.names.find_in_layer(i, [prefix + n for n in ex.down])
        if down_name is None:
            break
        up_name = x.names.in_layer(i, [prefix + n for n in ex.up], f"expert {e} up")
        up_shape = tuple(x.source.shape(up_name))
        f = int(up_shape[0]) if len(up_shape) == 2 else 0
        x.check(up_shape, (f, x.hidden), f"layer {i} expert {e} up '{up_name}'")
        x.check(x.source.shape(down_name), (x.hidden, f), f"layer {i} expert {e} down '{down_name}'")
        gate_name = x.names.find_in_layer(i, [prefix + n for n in ex.gate]) if ex.gate else None
        if gate_name:
            x.check(x.source.shape(gate_name), (f, x.hidden), f"layer {i} expert {e} gate '{gate_name}'")
        gate = x.get(gate_name) if gate_name else None
        experts.append(ExpertFFN(up=x.get(up_name), down=x.get(down_name), gate=gate))
        e += 1
    return experts


EXPERT_LAYOUTS: dict[ExpertLayout, ExpertStorage] = {
    ExpertLayout.PER_EXPERT: ExpertStorage(_per_expert_present, _read_per_expert),
    ExpertLayout.STACKED: ExpertStorage(_stacked_separate_present, _read_stacked),
    ExpertLayout.STACKED_HALVES: ExpertStorage(stacked_pair_present, _read_stacked_halves),
    ExpertLayout.STACKED_TRANSPOSED: ExpertStorage(stacked_pair_present, _read_stacked_transposed),
    ExpertLayout.STACKED_INTERLEAVED: ExpertStorage(stacked_pair_present, _read_stacked_interleaved),
}


def read_experts(x: ExpertTensors, i: int, ex: ExpertNames) -> list[ExpertFFN]:
    """Layer i's experts, read by the first of the table's storage kinds present in the checkpoint."""
    for kind in ex.storage_kinds():
        storage = EXPERT_LAYOUTS.get(kind)
        if storage is None:
            raise InputError(f"{x.root}: no reader for expert layout '{kind.value}'")
        if storage.present(x.names, i, ex):
            experts = storage.read(x, i, ex)
            if experts:
                _check_count(x, i, len(experts))
                return experts
    raise InputError(f"{x.root}: layer {i} has no experts")


def _check_count(x: ExpertTensors, i: int, found: int) -> None:
    if x.n_experts and found != x.n_experts:
        raise InputError(f"{x.root}: layer {i} has {found} experts, config says {x.n_experts}")
