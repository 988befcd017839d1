"""Layer assembly: one transformer layer's canonical tensors, read lazily from the source.

Linear weights are `[out, in]` so that `y = x @ W.T`. Gains are kept apart
from the weights that read them; `attest.invariants` decides how to fold
them. Every tensor is shape-checked against the model's `Dims`, so a
malformed checkpoint fails with the role and layer named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from attest.arch.attention import attention_reader
from attest.arch.dims import Dims
from attest.arch.experts import ExpertTensors, read_experts
from attest.arch.mixers import read_mixer
from attest.arch.mla import MlaAttention
from attest.arch.moe_layers import moe_layer_flags
from attest.arch.names import TensorNames
from attest.arch.parts import Attention, Layer, Mlp
from attest.arch.spec import ArchSpec, ExpertNames
from attest.errors import InputError
from attest.sources.base import WeightSource

Tensor = torch.Tensor

# Re-exported: the canonical parts were defined here first.
__all__ = ["Attention", "Layer", "LayerAssembler", "Mlp"]


def _nested(flat: Mapping[str, Any]) -> dict[str, Any] | None:
    """`{"a.b.c": v}` as `{"a": {"b": {"c": v}}}`; a key that would nest under a value is left out."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                break
            node = nxt
        else:
            node.setdefault(parts[-1], value)
    return out or None


class LayerAssembler:
    """Reads layers of one checkpoint through its (resolved) family table."""

    def __init__(
        self,
        source: WeightSource,
        spec: ArchSpec,
        names: TensorNames,
        dims: Dims,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.source = source
        self.spec = spec
        self.names = names
        self.dims = dims
        self.root = source.root
        self._attention = attention_reader(spec.attention, source.root)
        # What a mixer table's size keys are looked up in: config.json, or for a file that names its
        # own architecture (GGUF, no config.json) its header, nested at the dots ("mamba2.ssm.group_count").
        self.config = (
            config if config is not None or source.embedded_architecture() is None else _nested(source.metadata())
        )
        # Which layers carry experts when the config says (dense layers of a MoE model); else None.
        self._moe_flags = (
            moe_layer_flags(spec.moe_layers, config, dims.n_layers, source.root) if spec.experts is not None else None
        )

    # -- tensor reads ------------------------------------------------------
    def weight(self, name: str) -> Tensor:
        t = self.source.get(name)
        return t.t() if self.spec.transposed and t.dim() == 2 else t

    def gain(self, name: str | None, width: int | None = None) -> Tensor | None:
        """A norm gain, shape-checked (a wrong-shaped gain is a clean input error), offset applied."""
        if name is None:
            return None
        g = self.check(self.source.get(name).float(), (width or self.dims.hidden,), f"norm gain '{name}'")
        return g + self.spec.norm_gain_offset if self.spec.norm_gain_offset else g

    def check(self, t: Tensor, shape: tuple[int, ...], what: str) -> Tensor:
        if tuple(t.shape) != shape:
            raise InputError(f"{self.root}: {what} has shape {tuple(t.shape)}, expected {shape}")
        return t

    # -- what a mixer reader needs (attest.arch.mixers) --------------------
    @property
    def hidden(self) -> int:
        return self.dims.hidden

    def find(self, i: int, rel: Sequence[str]) -> str | None:
        return self.names.find_in_layer(i, rel)

    def need(self, i: int, rel: Sequence[str], what: str) -> str:
        return self.names.in_layer(i, rel, what)

    def optional_gain(self, i: int, rel: Sequence[str], width: int | None = None) -> Tensor | None:
        return self.gain(self.names.find_in_layer(i, rel), width) if rel else None

    # -- parts of a layer --------------------------------------------------
    def attention(self, i: int) -> Attention | MlaAttention:
        """Layer i's token mixer, read by the reader registered for the table's attention kind."""
        return self._attention.read(self, i)  # type: ignore[no-any-return]

    def mlp(
        self, i: int, up: Sequence[str], gate: Sequence[str], down: Sequence[str], gate_up: Sequence[str], what: str
    ) -> Mlp | None:
        names = self.names
        down_name = names.find_in_layer(i, down)
        if down_name is None:
            return None
        down_w = self.weight(down_name)
        fused = names.find_in_layer(i, gate_up) if gate_up else None
        gate_w: Tensor | None
        if fused:
            gu = self.weight(fused)
            f = gu.shape[0] // 2
            gate_w, up_w = gu[:f], gu[f:]
        else:
            up_w = self.weight(names.in_layer(i, up, f"{what} up"))
            gate_name = names.find_in_layer(i, gate) if gate else None
            gate_w = self.weight(gate_name) if gate_name else None
        f = up_w.shape[0]
        self.check(up_w, (f, self.dims.hidden), f"layer {i} {what} up")
        self.check(down_w, (self.dims.hidden, f), f"layer {i} {what} down")
        if gate_w is not None:
            self.check(gate_w, (f, self.dims.hidden), f"layer {i} {what} gate")
        return Mlp(up=up_w, down=down_w, gate=gate_w)

    def experts(self, i: int, ex: ExpertNames) -> list[Mlp]:
        """Layer i's experts, read by the first of the table's expert layouts present (attest.arch.experts)."""
        x = ExpertTensors(self.source, self.names, self.dims.hidden, self.dims.n_experts)
        return [Mlp(up=e.up, down=e.down, gate=e.gate) for e in read_experts(x, i, ex)]

    def is_mixer_layer(self, i: int) -> bool:
        """attention kind: ssm -- whether layer i has a mixer: every layer, or as the config's layer_types say.

        Without a config entry, the mixer's in_proj tensor decides.
        """
        mixer = self.spec.mixer
        if mixer is None:
            return False
        if mixer.layer_types is None:
            return True
        key, value = mixer.layer_types
        kinds = self.config.get(key) if self.config else None
        if isinstance(kinds, list) and len(kinds) == self.dims.n_layers:
            return bool(kinds[i] == value)
        if kinds is not None:
            raise InputError(f"{self.root}: config {key} must list one entry per layer ({self.dims.n_layers})")
        return self.names.find_in_layer(i, mixer.in_proj) is not None

    def is_moe_layer(self, i: int) -> bool:
        """Whether layer i carries experts: the config's rule, else the presence of its router."""
        if self.spec.experts is None:
            return False
        if self._moe_flags is not None:
            return self._moe_flags[i]
        return self.names.find_in_layer(i, self.spec.router) is not None

    # -- the layer ---------------------------------------------------------
    def layer(self, i: int, embed_norm: Tensor | None) -> Layer:
        """Layer i; `embed_norm` is what a post-LN layer 0 reads as its attention norm."""
        spec, names = self.spec, self.names
        # A table without attention roles has no attention (pure Mamba-2), and a
        # mixer layer of an alternating table (Qwen3-Next's linear_attention layers) has none either
        mixer_layer = self.is_mixer_layer(i)
        alternating = spec.mixer is not None and spec.mixer.layer_types is not None
        attn = self.attention(i) if spec.has_attention and not (mixer_layer and alternating) else None
        attn_norm: Tensor | None
        if spec.attn_norm_from_previous_layer:
            attn_norm = embed_norm if i == 0 else self.gain(names.find_in_layer(i - 1, spec.attn_norm))
        else:
            attn_norm = self.optional_gain(i, spec.attn_norm)
        ffn_norm = self.optional_gain(i, spec.ffn_norm)
        layer = Layer(index=i, attn=attn, attn_norm=attn_norm, ffn_norm=ffn_norm)
        if spec.mixer is not None and mixer_layer:  # attention kind: ssm
            layer.mixer = read_mixer(self, i, spec.mixer)
        if spec.attn_out_norm:
            layer.attn_out_norm = self.gain(names.find_in_layer(i, spec.attn_out_norm))
        if spec.ffn_out_norm:
            layer.ffn_out_norm = self.gain(names.find_in_layer(i, spec.ffn_out_norm))
        if spec.experts is not None and self.is_moe_layer(i):
            layer.experts = self.experts(i, spec.experts)
            router = self.weight(names.in_layer(i, spec.router, "router"))
            layer.router = self.check(router, (len(layer.experts), self.dims.hidden), f"layer {i} router")
            shared = (
                self.mlp(i, spec.shared_up, spec.shared_gate, spec.shared_down, (), "shared expert")
                if spec.shared_down
                else None
            )
            if shared is not None:
                layer.shared_experts = [shared]
        else:
            layer.mlp = self.mlp(i, spec.up, spec.gate, spec.down, spec.gate_up, "FFN") if spec.down else None
            if layer.mlp is None and layer.mixer is None:  # a Mamba-2 block is its mixer alone
                raise InputError(f"{self.root}: layer {i} has no FFN down projection")
        return layer
