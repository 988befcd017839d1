"""Stream a model layer by layer and produce its standardised invariant matrices."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import torch

from attest.arch.assembly import Layer, Mlp
from attest.arch.canonical import CanonicalModel
from attest.arch.mla import MlaAttention
from attest.arch.spec import NormKind
from attest.errors import InputError
from attest.invariants import mla as MLA
from attest.invariants import skipped as S
from attest.invariants import streamed as ST
from attest.invariants import terms as T
from attest.invariants.device import accelerator
from attest.invariants.methods import Method
from attest.invariants.mixers import mixer_terms
from attest.sources import pages

Tensor = torch.Tensor


@dataclass
class Probe:
    """The probe rows X = E[S] prepared for one model (docs/method.md)."""

    x: Tensor  # [n, d] float32
    ids: list[int]


def _layernorm_rows(x: Tensor, gain: Tensor | None) -> Tensor:
    x = x - x.mean(1, keepdim=True)
    x = x / x.pow(2).mean(1, keepdim=True).clamp_min(1e-12).sqrt()
    return x * gain if gain is not None else x


def make_probe(model: CanonicalModel, ids: Sequence[int], method: Method) -> Probe:
    x = model.embedding_rows(ids).float()
    if method.center_layernorm:
        emb_gain = model.embed_norm_gain()
        if emb_gain is not None:
            # BLOOM and BERT normalise the embedding before layer 0: that is what layers read.
            x = _layernorm_rows(x, emb_gain)
        elif model.norm_kind == NormKind.LAYER:
            x = x - x.mean(1, keepdim=True)
    return Probe(x=x, ids=list(ids))


def _scaled(x: Tensor, gain: Tensor | None, fold: bool) -> Tensor:
    return x * gain if (fold and gain is not None) else x


def _stack_mlps(mlps: Sequence[Mlp]) -> Mlp:
    """Experts side by side along the neuron axis: Σ_e of a term = the term of the stack."""
    if len(mlps) == 1:
        return mlps[0]
    gates = [m.gate for m in mlps]
    return Mlp(
        up=torch.cat([m.up for m in mlps], 0),
        down=torch.cat([m.down for m in mlps], 1),
        gate=None if any(g is None for g in gates) else torch.cat(gates, 0),  # type: ignore[arg-type]
    )


def layer_terms(
    layer: Layer, probe: Probe, method: Method, model: CanonicalModel, dtype: torch.dtype
) -> Iterator[tuple[str, Tensor]]:
    """Raw (unstandardised) n×n matrices for the method's terms of one layer.

    A generator, so each matrix can be standardised and shrunk to float16
    before the next one is computed: peak memory holds one n×n float32.
    """
    for name, m in _layer_terms_on(accelerator(), layer, probe, method, model, dtype):
        yield name, m if m.device.type == "cpu" else m.cpu()


def _layer_terms_on(
    dev: torch.device | None, layer: Layer, probe: Probe, method: Method, model: CanonicalModel, dtype: torch.dtype
) -> Iterator[tuple[str, Tensor]]:
    fold = method.fold_gains
    x = probe.x if dev is None else probe.x.to(dev)
    # Cast each probe variant once per layer rather than inside every product,
    # and share one cast among the variants that carry no gain.
    x_plain = x.to(dtype)

    def probe_for(gain: Tensor | None) -> Tensor:
        if not (fold and gain is not None):
            return x_plain
        return (x * (gain if dev is None else gain.to(dev))).to(dtype)

    x_attn = probe_for(layer.attn_norm)
    x_ffn = probe_for(layer.ffn_norm)
    x_attn_out = probe_for(layer.attn_out_norm)
    x_ffn_out = probe_for(layer.ffn_out_norm)
    wanted = set(method.terms)
    if isinstance(layer.attn, MlaAttention):
        # Per-row states (attest.invariants.mla), on the CPU and not block-streamed: MLA's
        # projections are narrow (the latent ranks), so its tensors are small beside the FFN's.
        states = MLA.MlaStates(probe.x, layer.attn_norm, layer.attn, fold, dtype)
        if "qk" in wanted:
            yield "qk", MLA.qk(states)
        if "vo" in wanted:
            yield "vo", MLA.vo(states, x_attn_out.cpu())
        del states
    elif layer.attn is not None:  # a pure mixer layer has no attention
        # Block-streamed (attest.invariants.streamed): the resident set holds one block of a matrix.
        yield from ST.attention_terms(
            x_attn, x_attn_out, layer.attn, dtype, "qk" in wanted, "vo" in wanted, device=dev
        ).items()
    if layer.mixer is not None:
        # The mixer reads the attention norm; its terms run on the CPU, whole-matrix (attest.invariants.mixers).
        gain = layer.attn_norm if fold else None
        yield from mixer_terms(layer.mixer, x_attn.cpu(), x_attn_out.cpu(), gain, wanted, dtype)
    mlps = layer.experts + layer.shared_experts if layer.experts else ([layer.mlp] if layer.mlp else [])
    if not mlps:
        return
    center = method.center_layernorm and model.norm_kind == NormKind.LAYER
    yield from ST.ffn_terms(
        x_ffn,
        x_ffn_out,
        mlps,
        dtype,
        wanted,
        method.huref_ffn,
        layer.ffn_norm if fold else None,
        layer.ffn_out_norm if fold else None,
        center,
        device=dev,
    ).items()
    if method.huref_ffn:
        return
    if "router" in wanted and layer.router is not None:
        router = layer.router if dev is None else layer.router.to(dev)
        r = T.mm(x_ffn, router.t(), dtype).float()
        yield "router", T.mm(r, r.t(), torch.float32)


def global_terms(
    model: CanonicalModel, probe: Probe, method: Method, dtype: torch.dtype
) -> Iterator[tuple[str, Tensor]]:
    x = probe.x
    if "emb" in method.global_terms:
        yield "emb", T.mm(x, x.t(), dtype)
    if "head" in method.global_terms:
        head = model.head_rows(probe.ids).float()
        x_head = _scaled(x, model.final_norm_gain(), method.fold_gains)
        yield "head", T.mm(x_head, head.t(), dtype)


def _libc_trim() -> Callable[[], None]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: None if trim(0) else None


release_free_memory = _libc_trim()
"""Hand freed heap pages back to the OS.  glibc keeps a layer's freed
buffers in its arenas; without this the resident set grows by the largest
layer's temporaries even though Python released them."""


def release_layer_pages(layer: Layer) -> None:
    """Drop whatever pages of the layer's mapped weights are still resident (gains, router, the last block)."""
    parts = (layer.attn, layer.mixer)  # whichever kinds of token mixer the layer has
    pages.release(*(t for p in parts if p is not None for t in vars(p).values() if isinstance(t, Tensor)), layer.router)
    for m in ([layer.mlp] if layer.mlp else []) + layer.experts + layer.shared_experts:
        pages.release(m.up, m.down, m.gate)


@dataclass
class LayerResult:
    index: int
    terms: dict[str, Tensor]  # standardised, float16
    skipped: list[str] = field(default_factory=list)


def standardised(raw: Iterable[tuple[str, Tensor]], method: Method) -> tuple[dict[str, Tensor], list[str]]:
    """Standardise each raw matrix as it arrives and keep it as float16."""
    out: dict[str, Tensor] = {}
    skipped: list[str] = []
    for name, m in raw:
        z = T.standardise(m, drop_diagonal=method.drop_diagonal)
        del m
        if z is None:
            skipped.append(name)
        else:
            out[name] = z
    return out, skipped


def global_matrices(model: CanonicalModel, probe: Probe, method: Method, dtype: torch.dtype) -> dict[str, Tensor]:
    """Standardised global terms (emb, head); terms that cannot be standardised are noted on the model."""
    out, skipped = standardised(global_terms(model, probe, method, dtype), method)
    if skipped:
        weights = {"embedding rows": probe.x, "final norm": model.final_norm_gain()}
        if "head" in skipped:
            weights["output head rows"] = model.head_rows(probe.ids)
        S.record(model, S.GLOBAL, skipped, weights)
    return out


def iter_layers(
    model: CanonicalModel,
    probe: Probe,
    method: Method,
    layer_indices: Sequence[int],
    dtype: torch.dtype,
    on_layer: Callable[[int], None] | None = None,
    skipped: list[tuple[int, str]] | None = None,
    on_read: Callable[[int, Layer], None] | None = None,
) -> Iterator[LayerResult]:
    """Read, compute and release one layer at a time.

    With a `skipped` list, a layer whose tensors are missing or malformed is
    recorded there and passed over instead of ending the run (verification of
    an incomplete suspect is inconclusive, not a crash).  `on_read(i, layer)`
    sees each loaded layer before it is released, so another pass over the
    same weights (the lineage test) needs no second read.
    """
    for i in layer_indices:
        try:
            layer = model.layer(i)
        except InputError as exc:
            if skipped is None:
                raise
            skipped.append((i, str(exc)))
            if on_layer is not None:
                on_layer(i)
            continue
        z, constant_terms = standardised(layer_terms(layer, probe, method, model, dtype), method)
        S.record(model, i, constant_terms, layer)  # reported, never silently dropped
        if on_read is not None:
            on_read(i, layer)
        # only now: the lineage pass (on_read) reads the same mapped gate/up pages
        release_layer_pages(layer)
        del layer
        release_free_memory()
        yield LayerResult(i, z, constant_terms)
        if on_layer is not None:
            on_layer(i)
