"""The canonical model view (DESIGN §3), read lazily one layer at a time.

Linear weights are `[out, in]` so that `y = x @ W.T`.  Gains are kept apart
from the weights that read them; `attest.invariants` decides how to fold them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from attest.arch.spec import ArchSpec, ExpertNames, NormKind, QKVLayout
from attest.errors import InputError
from attest.model_docs import checked_dims
from attest.sources.base import WeightSource
from attest.vocab.vocabulary import Vocabulary

Tensor = torch.Tensor


@dataclass(frozen=True)
class Dims:
    hidden: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    n_experts: int = 0


@dataclass
class Attention:
    q: Tensor  # [H*dh, d]
    k: Tensor  # [Hkv*dh, d]
    v: Tensor  # [Hkv*dh, d]
    o: Tensor  # [d, H*dh]
    n_heads: int
    n_kv_heads: int
    head_dim: int
    q_norm: Tensor | None = None  # [dh] gain applied to every query head
    k_norm: Tensor | None = None


@dataclass
class Mlp:
    up: Tensor  # [f, d]
    down: Tensor  # [d, f]
    gate: Tensor | None = None  # [f, d] when gated


@dataclass
class Layer:
    index: int
    attn: Attention
    attn_norm: Tensor | None  # gain read by q/k/v, None = all ones
    ffn_norm: Tensor | None  # gain read by the FFN / router
    mlp: Mlp | None = None
    experts: list[Mlp] = field(default_factory=list)
    shared_experts: list[Mlp] = field(default_factory=list)
    router: Tensor | None = None  # [E, d]
    attn_out_norm: Tensor | None = None  # gain on attention output (Gemma-2 post-norm)
    ffn_out_norm: Tensor | None = None


def _config_value(config: dict[str, Any] | None, keys: Sequence[str]) -> Any:
    if not config:
        return None
    for key in keys:
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
    return None


class CanonicalModel:
    """A checkpoint seen through its family table."""

    def __init__(
        self,
        source: WeightSource,
        spec: ArchSpec,
        vocab: Vocabulary | None,
        config: dict[str, Any] | None,
        *,
        gguf_dims: dict[str, int] | None = None,
    ) -> None:
        self.source = source
        self.spec = spec.resolve(config)
        self.config = config
        self.family = spec.family
        self.warnings: list[str] = []
        # (layer, term) cells whose matrix could not be computed (attest.invariants.skipped)
        self.skipped_cells: list[Any] = []
        self._names = set(source.names())
        self.embed_name = self._pick(self.spec.embed, "embedding", required=True)
        self.layer_prefix = self._pick_prefix()
        self.dims = self._dims(gguf_dims or {})
        if vocab is None:
            self.warnings.append("no tokenizer found: tokens are matched by id, not by string")
            vocab = Vocabulary.ids_only(self.dims.vocab)
        elif len(vocab) < self.dims.vocab:
            vocab.strings.extend([None] * (self.dims.vocab - len(vocab)))
        self.vocab = vocab
        self.lm_head_name = self._pick(self.spec.lm_head, "output head", required=False)
        if self.lm_head_name is None and config is not None and config.get("tie_word_embeddings") is False:
            self.warnings.append("config says the output head is untied but no head tensor was found; using the embedding")
        self.final_norm_name = self._pick(self.spec.final_norm, "final norm", required=False)

    # -- name resolution -------------------------------------------------
    def _pick(self, names: Sequence[str], what: str, *, required: bool) -> str | None:
        for n in names:
            if n in self._names:
                return n
        if required and names:
            raise InputError(
                f"{self.source.root}: {self.family} checkpoint has no {what} tensor "
                f"(looked for {', '.join(names)})"
            )
        return None

    def _pick_prefix(self) -> str:
        for prefix in self.spec.layer_prefix:
            probe = re.compile(re.escape(prefix).replace(r"\{i\}", r"(\d+)"))
            if any(probe.match(n) for n in self._names):
                return prefix
        raise InputError(f"{self.source.root}: no transformer layers found for family {self.family}")

    def _layer_name(self, i: int, names: Sequence[str], what: str, *, required: bool) -> str | None:
        prefix = self.layer_prefix.format(i=i)
        return self._pick([prefix + n for n in names], f"layer {i} {what}", required=required)

    def _count_layers(self) -> int:
        probe = re.compile(re.escape(self.layer_prefix).replace(r"\{i\}", r"(\d+)"))
        found = {int(m.group(1)) for n in self._names if (m := probe.match(n))}
        if not found:
            raise InputError(f"{self.source.root}: no transformer layers found")
        n = max(found) + 1
        if found != set(range(n)):
            missing = sorted(set(range(n)) - found)
            raise InputError(f"{self.source.root}: layers {missing[:5]} are missing from the checkpoint")
        return n

    def _dims(self, gguf_dims: dict[str, int]) -> Dims:
        keys = self.spec.config_keys
        embed_shape = self.source.shape(self.embed_name)
        checked_dims(self.config, keys, embed_shape, self.source.root)
        if len(embed_shape) != 2:
            raise InputError(f"{self.source.root}: embedding has shape {embed_shape}, expected 2-D")
        vocab_size, hidden = embed_shape
        n_layers = self._count_layers()
        cfg_layers = _config_value(self.config, keys.layers) or gguf_dims.get("layers")
        if cfg_layers is not None and int(cfg_layers) != n_layers:
            raise InputError(
                f"{self.source.root}: config says {cfg_layers} layers but the checkpoint has {n_layers}"
            )
        cfg_hidden = _config_value(self.config, keys.hidden) or gguf_dims.get("hidden")
        if cfg_hidden is not None and int(cfg_hidden) != hidden:
            raise InputError(
                f"{self.source.root}: config hidden size {cfg_hidden} does not match the embedding width {hidden}"
            )
        heads = _config_value(self.config, keys.heads) or gguf_dims.get("heads")
        kv_heads = _config_value(self.config, keys.kv_heads) or gguf_dims.get("kv_heads")
        if self.family == "falcon" and self.config is not None and not self.config.get("new_decoder_architecture"):
            # As transformers' FalconAttention: the old decoder with multi_query has one KV head
            # even when a re-saved config.json carries num_kv_heads (= the head count).
            kv_heads = 1 if self.config.get("multi_query", True) else (kv_heads or heads)
        head_dim = _config_value(self.config, keys.head_dim) or gguf_dims.get("head_dim")
        if heads is None:
            # No metadata: q and KV widths come from layer 0's shapes, the head size is a guess.
            q_rows, kv_rows = self._qkv_rows_of_layer0(hidden)
            head_dim = head_dim or self._q_norm_width() or _guess_head_dim(q_rows, kv_rows)
            heads = max(1, q_rows // head_dim)
            kv_heads = kv_heads or max(1, kv_rows // head_dim)
            self.warnings.append(f"no head count in the metadata: assuming head_dim={head_dim}")
        heads = int(heads)
        head_dim = int(head_dim or hidden // heads)
        kv_heads = int(kv_heads or heads)
        if heads % kv_heads != 0:
            raise InputError(f"{self.source.root}: {heads} query heads do not split into {kv_heads} KV groups")
        n_experts = 0
        if self.spec.experts is not None:
            n_experts = int(_config_value(self.config, keys.experts) or gguf_dims.get("experts") or 0)
        return Dims(hidden, n_layers, heads, kv_heads, head_dim, vocab_size, n_experts)

    def _qkv_rows_of_layer0(self, hidden: int) -> tuple[int, int]:
        """Widths of q and of k (= v) in layer 0.

        A fused contiguous or grouped tensor holds [q; k; v] in H*dh + 2*Hkv*dh rows;
        q is taken to be `hidden` wide (H*dh = d), which holds for every such family.
        """
        axis = 0 if not self.spec.transposed else 1
        name = self._layer_name(0, self.spec.q, "q", required=False) if self.spec.q else None
        if name:
            k_name = self._layer_name(0, self.spec.k, "k", required=True)
            assert k_name is not None
            return self.source.shape(name)[axis], self.source.shape(k_name)[axis]
        fused = self._layer_name(0, self.spec.qkv, "qkv", required=True)
        assert fused is not None
        rows = self.source.shape(fused)[axis]
        grouped = self.spec.qkv_layout in (QKVLayout.CONTIGUOUS, QKVLayout.GROUPED)
        if grouped and rows > hidden and (rows - hidden) % 2 == 0:
            return hidden, (rows - hidden) // 2
        return rows // 3, rows // 3

    def _q_norm_width(self) -> int | None:
        """Per-head q norms (Qwen3) are exactly one head wide."""
        name = self._layer_name(0, self.spec.q_norm, "q norm", required=False) if self.spec.q_norm else None
        return self.source.shape(name)[0] if name else None

    # -- tensor reads ------------------------------------------------------
    def _weight(self, name: str) -> Tensor:
        t = self.source.get(name)
        return t.t() if self.spec.transposed and t.dim() == 2 else t

    def _gain(self, name: str | None, width: int | None = None) -> Tensor | None:
        if name is None:
            return None
        g = self._check(self.source.get(name).float(), (width or self.dims.hidden,), f"norm gain '{name}'")
        return g + self.spec.norm_gain_offset if self.spec.norm_gain_offset else g

    def _check(self, t: Tensor, shape: tuple[int, ...], what: str) -> Tensor:
        if tuple(t.shape) != shape:
            raise InputError(
                f"{self.source.root}: {what} has shape {tuple(t.shape)}, expected {shape}"
            )
        return t

    @property
    def norm_kind(self) -> NormKind:
        return self.spec.norm

    @property
    def n_layers(self) -> int:
        return self.dims.n_layers

    def embedding_rows(self, ids: Sequence[int]) -> Tensor:
        return self.source.get_rows(self.embed_name, ids)

    def embed_norm_gain(self) -> Tensor | None:
        return self._gain(self._pick(self.spec.embed_norm, "embedding norm", required=False))

    def final_norm_gain(self) -> Tensor | None:
        return self._gain(self.final_norm_name)

    def head_rows(self, ids: Sequence[int]) -> Tensor:
        name = self.lm_head_name or self.embed_name
        return self.source.get_rows(name, ids)

    @property
    def tied_head(self) -> bool:
        return self.lm_head_name is None

    def _attention(self, i: int) -> Attention:
        d = self.dims
        qd, kd = d.n_heads * d.head_dim, d.n_kv_heads * d.head_dim
        spec = self.spec
        q_name = self._layer_name(i, spec.q, "q", required=False) if spec.q else None
        if q_name:
            q = self._weight(q_name)
            k = self._weight(self._layer_name(i, spec.k, "k", required=True))  # type: ignore[arg-type]
            v = self._weight(self._layer_name(i, spec.v, "v", required=True))  # type: ignore[arg-type]
        else:
            fused_name = self._layer_name(i, spec.qkv, "fused qkv", required=True)
            fused = self._weight(fused_name)  # type: ignore[arg-type]
            self._check(fused, (qd + 2 * kd, d.hidden), f"layer {i} fused qkv")
            q, k, v = split_qkv(fused, spec.qkv_layout, d.n_heads, d.n_kv_heads, d.head_dim)
        o = self._weight(self._layer_name(i, spec.o, "attention output", required=True))  # type: ignore[arg-type]
        self._check(q, (qd, d.hidden), f"layer {i} q")
        self._check(k, (kd, d.hidden), f"layer {i} k")
        self._check(v, (kd, d.hidden), f"layer {i} v")
        self._check(o, (d.hidden, qd), f"layer {i} attention output")
        q_norm = self._gain(self._layer_name(i, spec.q_norm, "q norm", required=False), d.head_dim) if spec.q_norm else None
        k_norm = self._gain(self._layer_name(i, spec.k_norm, "k norm", required=False), d.head_dim) if spec.k_norm else None
        return Attention(q, k, v, o, d.n_heads, d.n_kv_heads, d.head_dim, q_norm, k_norm)

    def _mlp(self, i: int, up: Sequence[str], gate: Sequence[str], down: Sequence[str], gate_up: Sequence[str], what: str) -> Mlp | None:
        down_name = self._layer_name(i, down, f"{what} down", required=False)
        if down_name is None:
            return None
        down_w = self._weight(down_name)
        fused = self._layer_name(i, gate_up, f"{what} gate_up", required=False) if gate_up else None
        if fused:
            gu = self._weight(fused)
            f = gu.shape[0] // 2
            gate_w, up_w = gu[:f], gu[f:]
        else:
            up_w = self._weight(self._layer_name(i, up, f"{what} up", required=True))  # type: ignore[arg-type]
            gate_name = self._layer_name(i, gate, f"{what} gate", required=False) if gate else None
            gate_w = self._weight(gate_name) if gate_name else None
        f = up_w.shape[0]
        self._check(up_w, (f, self.dims.hidden), f"layer {i} {what} up")
        self._check(down_w, (self.dims.hidden, f), f"layer {i} {what} down")
        if gate_w is not None:
            self._check(gate_w, (f, self.dims.hidden), f"layer {i} {what} gate")
        return Mlp(up=up_w, down=down_w, gate=gate_w)

    def _experts(self, i: int, ex: ExpertNames) -> list[Mlp]:
        prefix = self.layer_prefix.format(i=i)
        stacked_down = self._pick([prefix + n for n in ex.stacked_down], "stacked experts", required=False)
        if stacked_down:
            down = self.source.get(stacked_down)
            gu_name = self._pick([prefix + n for n in ex.stacked_gate_up], "", required=False)
            if gu_name:
                gu = self.source.get(gu_name)
                f = gu.shape[1] // 2
                gates, ups = gu[:, :f], gu[:, f:]
            else:
                ups = self.source.get(self._pick([prefix + n for n in ex.stacked_up], "stacked up", required=True))  # type: ignore[arg-type]
                g_name = self._pick([prefix + n for n in ex.stacked_gate], "", required=False)
                gates = self.source.get(g_name) if g_name else None
            out = []
            for e in range(down.shape[0]):
                out.append(Mlp(up=ups[e], down=down[e], gate=None if gates is None else gates[e]))
            return out
        experts: list[Mlp] = []
        e = 0
        while True:
            names = lambda rel: [ex.prefix.format(e=e) + n for n in rel]  # noqa: E731
            mlp = self._mlp(i, names(ex.up), names(ex.gate), names(ex.down), (), f"expert {e}")
            if mlp is None:
                break
            experts.append(mlp)
            e += 1
        if not experts:
            raise InputError(f"{self.source.root}: layer {i} has no experts")
        if self.dims.n_experts and len(experts) != self.dims.n_experts:
            raise InputError(
                f"{self.source.root}: layer {i} has {len(experts)} experts, config says {self.dims.n_experts}"
            )
        return experts

    def layer(self, i: int) -> Layer:
        if not 0 <= i < self.n_layers:
            raise InputError(f"layer {i} out of range (model has {self.n_layers})")
        spec = self.spec
        attn = self._attention(i)
        if spec.attn_norm_from_previous_layer:
            if i == 0:
                attn_norm = self.embed_norm_gain()
            else:
                attn_norm = self._gain(self._layer_name(i - 1, spec.attn_norm, "attention norm", required=False))
        else:
            attn_norm = self._gain(self._layer_name(i, spec.attn_norm, "attention norm", required=False)) if spec.attn_norm else None
        ffn_norm = self._gain(self._layer_name(i, spec.ffn_norm, "FFN norm", required=False)) if spec.ffn_norm else None
        layer = Layer(index=i, attn=attn, attn_norm=attn_norm, ffn_norm=ffn_norm)
        if spec.attn_out_norm:
            layer.attn_out_norm = self._gain(self._layer_name(i, spec.attn_out_norm, "attention post-norm", required=False))
        if spec.ffn_out_norm:
            layer.ffn_out_norm = self._gain(self._layer_name(i, spec.ffn_out_norm, "FFN post-norm", required=False))
        if spec.experts is not None:
            layer.experts = self._experts(i, spec.experts)
            router_name = self._layer_name(i, spec.router, "router", required=True)
            layer.router = self._check(self._weight(router_name), (len(layer.experts), self.dims.hidden), f"layer {i} router")  # type: ignore[arg-type]
            shared = self._mlp(i, spec.shared_up, spec.shared_gate, spec.shared_down, (), "shared expert") if spec.shared_down else None
            if shared is not None:
                layer.shared_experts = [shared]
        else:
            layer.mlp = self._mlp(i, spec.up, spec.gate, spec.down, spec.gate_up, "FFN")
            if layer.mlp is None:
                raise InputError(f"{self.source.root}: layer {i} has no FFN down projection")
        return layer


def _guess_head_dim(q_rows: int, kv_rows: int) -> int:
    """The usual head sizes first; it must divide both the q and the KV width."""
    for dh in (128, 64, 256, 96, 80, 160, 32, 16):
        if q_rows % dh == 0 and kv_rows % dh == 0:
            return dh
    return math.gcd(q_rows, kv_rows) or 1


def split_qkv(fused: Tensor, layout: QKVLayout, n_heads: int, n_kv: int, dh: int) -> tuple[Tensor, Tensor, Tensor]:
    """Split a fused QKV weight [rows, d] into canonical q, k, v."""
    d = fused.shape[1]
    if layout == QKVLayout.CONTIGUOUS:
        qd, kd = n_heads * dh, n_kv * dh
        return fused[:qd], fused[qd:qd + kd], fused[qd + kd:]
    if layout == QKVLayout.PER_HEAD:
        if n_kv != n_heads:
            raise InputError("per-head interleaved QKV with grouped KV heads is not a known layout")
        w = fused.reshape(n_heads, 3, dh, d)
        return w[:, 0].reshape(-1, d), w[:, 1].reshape(-1, d), w[:, 2].reshape(-1, d)
    if layout == QKVLayout.GROUPED:
        g = n_heads // n_kv
        w = fused.reshape(n_kv, g + 2, dh, d)
        return w[:, :g].reshape(-1, d), w[:, g].reshape(-1, d), w[:, g + 1].reshape(-1, d)
    raise InputError(f"unknown QKV layout {layout}")
