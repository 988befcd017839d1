"""State-space mixers: one layer's Mamba-2 tensors, split into canonical parts (docs/method.md).

A Mamba-2 mixer (also Falcon-H1's mamba branch) reads the normalised residual
through one fused projection, rows `[z (C); x (C); B (G*S); C (G*S); dt (H)]`
for C mixer channels in H heads of P channels, G groups of S states.  x, B and
C go through a depthwise causal conv1d (one kernel per channel) and SiLU; the
scan mixes tokens per channel; the output is gated by SiLU(z), normalised over
each group by a gated RMSNorm with gain w [C], and read back by `out` [d, C].

Qwen3-Next's gated DeltaNet has the same shape of parts and the same
symmetries (docs/method.md), so it is read into the same `SsmMixer`: its value
rows v play x, its keys k play B, its queries q play C (grouped by key head:
n_groups = key heads, d_state = key head size), the value heads' decay and beta
rows [a; b] play dt, and the conv kernels are reordered from its [q; k; v] to
[v; k; q].  Its gated norm's one [d_v] gain, shared by every value head, is
tiled to [C].

The canonical view keeps every part apart, as `[out, in]` weights, and keeps the
conv kernels whole: `attest.invariants.mixers` decides what to fold.  muP
multipliers (Falcon-H1's per-segment `ssm_multipliers` and `ssm_in_multiplier`)
are scalars on the projection's rows and are folded here, so the canonical
weights are what the model computes with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from attest.arch.spec import MixerNames
from attest.documents.model_docs import config_value
from attest.errors import InputError

Tensor = torch.Tensor

SEGMENTS = ("z", "x", "B", "C", "dt")


@dataclass
class SsmMixer:
    """One Mamba-2 mixer in canonical form."""

    z: Tensor  # [C, d] gate rows
    x: Tensor  # [C, d] value rows (conv channels 0..C-1)
    b: Tensor  # [G*S, d] input-to-state rows (conv channels C..C+GS-1)
    c: Tensor  # [G*S, d] state-to-output rows (conv channels C+GS..C+2GS-1)
    dt: Tensor  # [H, d] time-step rows
    conv: Tensor  # [C + 2*G*S, K] depthwise kernels, last tap = the current token
    out: Tensor  # [d, C]
    norm: Tensor | None  # [C] gated-RMSNorm gain, None when the mixer has no norm
    n_heads: int
    head_dim: int
    n_groups: int
    d_state: int

    @property
    def channels(self) -> int:
        return int(self.x.shape[0])

    def taps(self) -> tuple[Tensor, Tensor, Tensor]:
        """The current-token conv tap of every x, B and C channel (what a single token sees)."""
        last = self.conv[:, -1].float()
        ch, gs = self.channels, self.n_groups * self.d_state
        return last[:ch], last[ch : ch + gs], last[ch + gs :]


class _Reader(Protocol):
    """What `attest.arch.assembly.LayerAssembler` offers a mixer reader."""

    root: Any
    config: Mapping[str, Any] | None

    def weight(self, name: str) -> Tensor: ...

    def check(self, t: Tensor, shape: tuple[int, ...], what: str) -> Tensor: ...

    def find(self, i: int, rel: tuple[str, ...]) -> str | None: ...

    def need(self, i: int, rel: tuple[str, ...], what: str) -> str: ...

    @property
    def hidden(self) -> int: ...


def _count(value: Any, what: str, root: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{root}: mixer {what} must be a positive integer, got {value!r}")
    return value


def _multipliers(names: MixerNames, config: Mapping[str, Any] | None, root: Any) -> tuple[list[float], float]:
    seg = config_value(config, names.segment_multipliers) if names.segment_multipliers else None
    scale = config_value(config, names.input_multiplier) if names.input_multiplier else None
    factors = [1.0] * len(SEGMENTS)
    if seg is not None:
        if not isinstance(seg, (list, tuple)) or len(seg) != len(SEGMENTS):
            raise InputError(f"{root}: config ssm multipliers must be a list of {len(SEGMENTS)} numbers")
        factors = [float(v) for v in seg]
    return factors, 1.0 if scale is None else float(scale)


def _kernels(conv: Tensor, r: _Reader, i: int) -> Tensor:
    if conv.dim() == 3:  # nn.Conv1d stores [channels, 1, K]
        conv = conv.reshape(conv.shape[0], conv.shape[-1])
    if conv.dim() != 2:
        raise InputError(f"{r.root}: layer {i} mixer conv1d has rank {conv.dim()}, expected 2 or 3")
    return conv


def read_gated_deltanet(r: _Reader, i: int, names: MixerNames) -> SsmMixer:
    """Layer i's gated DeltaNet (Qwen3-Next `linear_attn`) as an `SsmMixer`; sizes from the config (or GGUF header).

    The value head size, when no key gives it (a GGUF header), is out_proj's width over the value heads.
    q, k, v and z come fused per key head (`in_proj_qkvz`) or, when the layer has `in_proj_z`, as
    [q; k; v] over all heads plus z apart (llama.cpp's `attn_qkv` / `attn_gate`): the same rows either way.
    """
    cfg = r.config
    hv = _count(config_value(cfg, names.heads), "value heads", r.root)
    hk, dk = (
        _count(config_value(cfg, k), what, r.root)
        for k, what in ((names.groups, "key heads"), (names.state, "key head size"))
    )
    if hv % hk:
        raise InputError(f"{r.root}: {hv} value heads do not split among {hk} key heads")
    d, g = r.hidden, hv // hk
    out = r.weight(r.need(i, names.out, "out_proj"))
    declared_dv = config_value(cfg, names.head_dim) if names.head_dim else None
    if declared_dv is None and (out.dim() != 2 or out.shape[1] % hv):
        raise InputError(f"{r.root}: layer {i} out_proj has shape {tuple(out.shape)}, not {hv} value heads wide")
    dv = _count(declared_dv, "value head size", r.root) if declared_dv is not None else int(out.shape[1]) // hv
    kd = hk * dk
    z_name = r.find(i, names.in_proj_z) if names.in_proj_z else None
    if z_name is not None:  # z stored apart, in_proj [q; k; v] over all heads (llama.cpp's attn_gate / attn_qkv)
        qkv = r.check(r.weight(r.need(i, names.in_proj, "attn_qkv")), (2 * kd + hv * dv, d), f"layer {i} attn_qkv")
        z = r.check(r.weight(z_name), (hv * dv, d), f"layer {i} attn_gate").float()
        q, k, v = torch.split(qkv.float(), [kd, kd, hv * dv], 0)
    else:
        qkvz = r.check(
            r.weight(r.need(i, names.in_proj, "in_proj_qkvz")), (2 * kd + 2 * hv * dv, d), f"layer {i} in_proj_qkvz"
        )
        # rows per key head: [q (dk); k (dk); v (g*dv); z (g*dv)] (transformers' fix_query_key_value_ordering)
        per = qkvz.float().reshape(hk, 2 * dk + 2 * g * dv, d)
        q, k, v, z = (t.reshape(-1, d) for t in torch.split(per, [dk, dk, g * dv, g * dv], 1))
    ba = r.check(r.weight(r.need(i, names.in_proj_ba, "in_proj_ba")), (2 * hv, d), f"layer {i} in_proj_ba")
    conv = _kernels(r.weight(r.need(i, names.conv, "conv1d")), r, i)
    if conv.shape[0] != 2 * kd + hv * dv:
        raise InputError(f"{r.root}: layer {i} conv1d has {conv.shape[0]} channels, expected {2 * kd + hv * dv}")
    r.check(out, (d, hv * dv), f"layer {i} out_proj")
    pb = ba.float().reshape(hk, 2 * g, d)
    b, a = (t.reshape(-1, d) for t in torch.split(pb, [g, g], 1))
    kernels = torch.cat([conv[2 * kd :], conv[kd : 2 * kd], conv[:kd]])  # [q; k; v] -> [v; k; q]
    norm_name = r.find(i, names.norm) if names.norm else None
    norm = r.check(r.weight(norm_name).float(), (dv,), f"layer {i} gated norm").repeat(hv) if norm_name else None
    return SsmMixer(z, v, k, q, torch.cat([a, b]), kernels, out, norm, hv, dv, hk, dk)


def read_mixer(r: _Reader, i: int, names: MixerNames) -> SsmMixer:
    """Layer i's mixer, by the table's layout."""
    reader = MIXER_LAYOUTS.get(names.layout)
    if reader is None:
        raise InputError(f"unknown mixer layout {names.layout!r}")
    return reader(r, i, names)


def read_ssm_mixer(r: _Reader, i: int, names: MixerNames) -> SsmMixer:
    """Layer i's mixer, shape-checked against its config (or its own shapes when there is none)."""
    d = r.hidden
    fused = r.weight(r.need(i, names.in_proj, "mixer in_proj"))
    conv = r.weight(r.need(i, names.conv, "mixer conv1d"))
    out = r.weight(r.need(i, names.out, "mixer out_proj"))
    conv = _kernels(conv, r, i)
    if out.dim() != 2 or fused.dim() != 2:
        raise InputError(f"{r.root}: layer {i} mixer tensors have unexpected ranks")
    channels = int(out.shape[1])
    cfg = r.config
    groups = _count(config_value(cfg, names.groups) or 1, "group count", r.root)
    gs2 = int(conv.shape[0]) - channels
    if gs2 <= 0 or gs2 % (2 * groups):
        raise InputError(f"{r.root}: layer {i} mixer conv1d has {conv.shape[0]} channels for {channels} mixer channels")
    d_state = gs2 // (2 * groups)
    heads = int(fused.shape[0]) - 2 * channels - gs2
    declared = config_value(cfg, names.heads)
    if declared is not None and _count(declared, "head count", r.root) != heads:
        raise InputError(f"{r.root}: layer {i} mixer in_proj has {heads} dt rows, config says {declared} heads")
    if heads <= 0 or channels % heads:
        raise InputError(f"{r.root}: layer {i} mixer in_proj rows do not split into z, x, B, C and dt")
    state = config_value(cfg, names.state)
    if state is not None and _count(state, "state size", r.root) != d_state:
        raise InputError(f"{r.root}: layer {i} mixer state size {d_state} does not match the config's {state}")
    r.check(fused, (2 * channels + gs2 + heads, d), f"layer {i} mixer in_proj")
    r.check(out, (d, channels), f"layer {i} mixer out_proj")
    norm_name = r.find(i, names.norm) if names.norm else None
    norm = r.check(r.weight(norm_name).float(), (channels,), f"layer {i} mixer norm") if norm_name else None
    factors, scale = _multipliers(names, cfg, r.root)
    gs = gs2 // 2
    sizes = [channels, channels, gs, gs, heads]
    parts = list(torch.split(fused.float(), sizes, 0))
    z, x, b, c, dt = (p * (f * scale) if f * scale != 1.0 else p for p, f in zip(parts, factors))
    return SsmMixer(z, x, b, c, dt, conv, out, norm, heads, channels // heads, groups, d_state)


MIXER_LAYOUTS: dict[str, Callable[[_Reader, int, MixerNames], SsmMixer]] = {
    "mamba2": read_ssm_mixer,
    "gated_deltanet": read_gated_deltanet,
}
