"""Function-preserving disguises of Hugging Face causal LMs (DESIGN §10).

Each transform takes a `Subject` (a real `transformers` model object plus its
tokenizer.json) and rewrites it in place so that the model computes the same
function: the same logits, up to float error, on the same text.  Used by
tests/test_transforms.py and reusable by benchmarks:

    subj = transforms.Subject.of(model, "llama", tokenizer_dict)
    transforms.apply(subj, ["rotation", "head-perm"], seed=0)
    path = transforms.save(subj, folder)          # save_pretrained + tokenizer.json
    cm = transforms.attest_model(subj, folder)    # what attest reads

How it works: a small family table (`read` / `write`) turns the model's
parameters into a canonical float64 view (`Canon`: q, k, v, o as [out, in],
norms, FFN or stacked experts, embedding, head), the transform edits that view,
and `_write` puts it back with the family's real layout (GPT-NeoX per-head
interleaved QKV, GPT-2 Conv1D [in, out], Mixtral stacked gate_up).  Structural
changes (LayerNorm -> RMSNorm modules, untied head, head bias, vocabulary
resize) are made on the module tree.  The tests check the HF forward pass, so a
mistake in this table shows up as a logits mismatch, not as a false pass.

Conventions: the residual stream is a row vector h; a hidden-space change
h -> h·M applies `t @ M` along every tensor axis that lives in the residual
stream (readers' input columns, writers' output rows, embeddings, biases
written into the stream).  For M orthogonal that is exactly function
preserving once every norm reading the stream has unit gain.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

Tensor = torch.Tensor

LLAMA_LIKE = ("llama", "qwen2", "mixtral", "stablelm", "gpt_oss", "llama4")
LAYERNORM_FAMILIES = ("gpt_neox", "gpt2", "stablelm")
GATED = ("llama", "qwen2", "mixtral", "stablelm", "llama4")
# GPT-OSS is gated, but its clamped SwiGLU ((clamp(up) + 1) · glu(clamp(gate))) makes
# per-neuron up/down rescaling change the function: its FFN transform only permutes.
MOE = ("mixtral", "gpt_oss", "llama4")
# Llama-4: RoPE on adjacent pairs (2j, 2j+1), and a gain-free L2 norm of each q/k head
# after RoPE, so a q/k map must be orthogonal (norm preserving) to keep the function.
ADJACENT_ROPE = ("llama4",)
QK_L2_NORM = ("llama4",)
RELU_ACTS = ("relu",)


# ---------------------------------------------------------------------------
# Subject: the model object, its tokenizer and the bookkeeping of id changes
# ---------------------------------------------------------------------------


@dataclass
class Subject:
    model: nn.Module
    family: str
    tokenizer: dict[str, Any]  # tokenizer.json contents
    vocab_map: Tensor  # new id of every original id (identity until the vocabulary is permuted)
    rms_converted: bool = False  # LayerNorm modules swapped for RMSNorm (not a savable HF class any more)
    applied: list[str] = field(default_factory=list)
    expert_map: list[Tensor] | None = None  # per MoE layer: original index of each (new) expert

    @classmethod
    def of(cls, model: nn.Module, family: str, tokenizer: dict[str, Any]) -> "Subject":
        n = model.get_input_embeddings().weight.shape[0]
        return cls(model, family, copy.deepcopy(tokenizer), torch.arange(n))

    def copy(self) -> "Subject":
        return copy.deepcopy(self)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def tied(self) -> bool:
        out = self.model.get_output_embeddings().weight
        return out is self.model.get_input_embeddings().weight

    @property
    def gated(self) -> bool:
        return self.family in GATED

    @property
    def is_moe(self) -> bool:
        return self.family in MOE

    @property
    def activation(self) -> str:
        c = self.config
        return str(getattr(c, "hidden_act", None) or getattr(c, "activation_function", ""))


# ---------------------------------------------------------------------------
# Canonical view of the weights
# ---------------------------------------------------------------------------


@dataclass
class Canon:
    embed: Tensor  # [V, d]
    pos: Tensor | None  # [P, d] learned positions (GPT-2)
    head: Tensor | None  # [V, d]; None while tied to the embedding
    head_bias: Tensor | None  # [V]
    final_w: Tensor
    final_b: Tensor | None
    layers: list[dict[str, Tensor | None]]
    n_heads: int
    n_kv: int
    head_dim: int
    norm: str  # "rms" or "layer"


# Which tensors read the output of which norm (inputs along the last axis) and their biases.
READ_1 = (("q", "bq"), ("k", "bk"), ("v", "bv"))
READ_2 = (("up", "bup"), ("gate", "bgate"), ("eu", None), ("eg", None), ("router", None), ("su", None), ("sg", None))
# Tensors that write into the residual stream: (name, axis holding the hidden dimension).
# GPT-OSS' expert down biases `ebd` [E, d] and Llama-4's shared expert (su, sg, sd) too.
WRITE = (("o", 0), ("down", 0), ("ed", 1), ("bo", 0), ("bdown", 0), ("ebd", 1), ("sd", 0))
# GPT-OSS' per-expert neuron biases [E, f] (gate, up) and router bias [E]: no residual axis.
EXPERT_KEYS = ("eg", "eu", "ed", "router", "ebg", "ebu", "ebd", "brouter")


def _t(p: Tensor | None) -> Tensor | None:
    return None if p is None else p.detach().double().clone()


def _layers(model: nn.Module, family: str) -> nn.ModuleList:
    if family in LLAMA_LIKE:
        return model.model.layers
    if family == "gpt_neox":
        return model.gpt_neox.layers
    if family == "gpt2":
        return model.transformer.h
    raise KeyError(family)


def _final_norm_owner(model: nn.Module, family: str) -> tuple[nn.Module, str]:
    if family in LLAMA_LIKE:
        return model.model, "norm"
    if family == "gpt_neox":
        return model.gpt_neox, "final_layer_norm"
    return model.transformer, "ln_f"


def _norm_names(family: str) -> tuple[str, str]:
    return ("ln_1", "ln_2") if family == "gpt2" else ("input_layernorm", "post_attention_layernorm")


def _heads(config: Any) -> tuple[int, int, int]:
    h = int(config.num_attention_heads)
    kv = int(getattr(config, "num_key_value_heads", None) or h)
    d = int(config.hidden_size)
    dh = int(getattr(config, "head_dim", None) or d // h)
    return h, kv, dh


def read(subj: Subject) -> Canon:
    m, fam = subj.model, subj.family
    h, kv, dh = _heads(subj.config)
    d = int(subj.config.hidden_size)
    layers: list[dict[str, Tensor | None]] = []
    n1, n2 = _norm_names(fam)
    for layer in _layers(m, fam):
        L: dict[str, Tensor | None] = {}
        for key, name in (("n1", n1), ("n2", n2)):
            mod = getattr(layer, name)
            L[key + "_w"] = _t(mod.weight)
            L[key + "_b"] = _t(getattr(mod, "bias", None))
        if fam in LLAMA_LIKE:
            a = layer.self_attn
            for key, lin in (("q", a.q_proj), ("k", a.k_proj), ("v", a.v_proj), ("o", a.o_proj)):
                L[key], L["b" + key] = _t(lin.weight), _t(lin.bias)
            if fam == "mixtral":
                ex = layer.mlp.experts
                gu = _t(ex.gate_up_proj)
                f = gu.shape[1] // 2
                L["eg"], L["eu"], L["ed"] = gu[:, :f].clone(), gu[:, f:].clone(), _t(ex.down_proj)
                L["router"] = _t(layer.mlp.gate.weight)
            elif fam == "gpt_oss":
                # stacked [E, d, 2f] with gate/up interleaved on the last axis, down [E, f, d]
                ex = layer.mlp.experts
                gu, bgu = _t(ex.gate_up_proj), _t(ex.gate_up_proj_bias)
                L["eg"], L["eu"] = (
                    gu[:, :, 0::2].transpose(1, 2).contiguous(),
                    gu[:, :, 1::2].transpose(1, 2).contiguous(),
                )
                L["ebg"], L["ebu"] = bgu[:, 0::2].contiguous(), bgu[:, 1::2].contiguous()
                L["ed"], L["ebd"] = _t(ex.down_proj).transpose(1, 2).contiguous(), _t(ex.down_proj_bias)
                L["router"], L["brouter"] = _t(layer.mlp.router.weight), _t(layer.mlp.router.bias)
                L["sinks"] = _t(a.sinks)
            elif fam == "llama4" and hasattr(layer.feed_forward, "experts"):
                # stacked [E, d, 2f] with the gate half first on the last axis, down [E, f, d]
                ff = layer.feed_forward
                gu = _t(ff.experts.gate_up_proj)
                f = gu.shape[2] // 2
                L["eg"], L["eu"] = gu[:, :, :f].transpose(1, 2).contiguous(), gu[:, :, f:].transpose(1, 2).contiguous()
                L["ed"] = _t(ff.experts.down_proj).transpose(1, 2).contiguous()
                L["router"] = _t(ff.router.weight)
                sh = ff.shared_expert
                L["su"], L["sg"], L["sd"] = _t(sh.up_proj.weight), _t(sh.gate_proj.weight), _t(sh.down_proj.weight)
            elif fam == "llama4":
                ff = layer.feed_forward
                L["up"], L["gate"], L["down"] = _t(ff.up_proj.weight), _t(ff.gate_proj.weight), _t(ff.down_proj.weight)
            else:
                mlp = layer.mlp
                for key, lin in (("up", mlp.up_proj), ("gate", mlp.gate_proj), ("down", mlp.down_proj)):
                    L[key], L["b" + key] = _t(lin.weight), _t(lin.bias)
        elif fam == "gpt_neox":
            a = layer.attention
            w = _t(a.query_key_value.weight).reshape(h, 3, dh, d)
            b = _t(a.query_key_value.bias).reshape(h, 3, dh)
            for j, key in enumerate("qkv"):
                L[key] = w[:, j].reshape(h * dh, d).clone()
                L["b" + key] = b[:, j].reshape(h * dh).clone()
            L["o"], L["bo"] = _t(a.dense.weight), _t(a.dense.bias)
            L["up"], L["bup"] = _t(layer.mlp.dense_h_to_4h.weight), _t(layer.mlp.dense_h_to_4h.bias)
            L["down"], L["bdown"] = _t(layer.mlp.dense_4h_to_h.weight), _t(layer.mlp.dense_4h_to_h.bias)
        elif fam == "gpt2":
            a = layer.attn
            w = _t(a.c_attn.weight).t()  # Conv1D stores [in, out]
            b = _t(a.c_attn.bias)
            for j, key in enumerate("qkv"):
                L[key] = w[j * d : (j + 1) * d].clone()
                L["b" + key] = b[j * d : (j + 1) * d].clone()
            L["o"], L["bo"] = _t(a.c_proj.weight).t().contiguous(), _t(a.c_proj.bias)
            L["up"], L["bup"] = _t(layer.mlp.c_fc.weight).t().contiguous(), _t(layer.mlp.c_fc.bias)
            L["down"], L["bdown"] = _t(layer.mlp.c_proj.weight).t().contiguous(), _t(layer.mlp.c_proj.bias)
        layers.append(L)
    owner, attr = _final_norm_owner(m, fam)
    fn = getattr(owner, attr)
    out = m.get_output_embeddings()
    norm = "layer" if fam in LAYERNORM_FAMILIES and not subj.rms_converted else "rms"
    return Canon(
        embed=_t(m.get_input_embeddings().weight),
        pos=_t(m.transformer.wpe.weight) if fam == "gpt2" else None,
        head=None if subj.tied else _t(out.weight),
        head_bias=_t(out.bias),
        final_w=_t(fn.weight),
        final_b=_t(getattr(fn, "bias", None)),
        layers=layers,
        n_heads=h,
        n_kv=kv,
        head_dim=dh,
        norm=norm,
    )


@torch.no_grad()
def _put(param: Tensor, value: Tensor | None, what: str) -> None:
    if value is None:
        raise ValueError(f"{what}: no value for an existing parameter")
    if tuple(param.shape) != tuple(value.shape):
        raise ValueError(f"{what}: shape {tuple(value.shape)} != parameter {tuple(param.shape)}")
    param.copy_(value.to(param.dtype))


def _put_opt(owner: nn.Module, attr: str, value: Tensor | None, what: str) -> None:
    """Write an optional bias.  A linear layer without one gets one when the value is non-zero
    (folding a LayerNorm bias into a bias-free linear); other modules must not need one."""
    p = getattr(owner, attr, None)
    if p is None:
        if value is not None and bool(value.abs().max() > 0):
            if not isinstance(owner, nn.Linear):
                raise ValueError(f"{what}: the module has no {attr} to hold a non-zero value")
            owner.bias = nn.Parameter(value.to(owner.weight.dtype).clone())
        return
    _put(p, value, what)


def untie_head(subj: Subject) -> None:
    """Give the output head its own copy of the embedding (function preserving)."""
    if not subj.tied:
        return
    m = subj.model
    out = m.get_output_embeddings()
    out.weight = nn.Parameter(m.get_input_embeddings().weight.detach().clone())
    m.config.tie_word_embeddings = False
    text = getattr(m.config, "get_text_config", None)
    if text is not None:
        text().tie_word_embeddings = False


def write(subj: Subject, c: Canon) -> None:
    m, fam = subj.model, subj.family
    h, _kv, dh = c.n_heads, c.n_kv, c.head_dim
    n1, n2 = _norm_names(fam)
    for i, (layer, L) in enumerate(zip(_layers(m, fam), c.layers)):
        w = f"layer {i}"
        for key, name in (("n1", n1), ("n2", n2)):
            mod = getattr(layer, name)
            _put(mod.weight, L[key + "_w"], f"{w} {name}")
            _put_opt(mod, "bias", L[key + "_b"], f"{w} {name}")
        if fam in LLAMA_LIKE:
            a = layer.self_attn
            for key, lin in (("q", a.q_proj), ("k", a.k_proj), ("v", a.v_proj), ("o", a.o_proj)):
                _put(lin.weight, L[key], f"{w} {key}")
                _put_opt(lin, "bias", L["b" + key], f"{w} b{key}")
            if fam == "mixtral":
                ex = layer.mlp.experts
                _put(ex.gate_up_proj, torch.cat([L["eg"], L["eu"]], 1), f"{w} gate_up")
                _put(ex.down_proj, L["ed"], f"{w} experts down")
                _put(layer.mlp.gate.weight, L["router"], f"{w} router")
            elif fam == "gpt_oss":
                ex = layer.mlp.experts
                e, f, d = L["eg"].shape
                gu = torch.stack([L["eg"].transpose(1, 2), L["eu"].transpose(1, 2)], dim=-1).reshape(e, d, 2 * f)
                _put(ex.gate_up_proj, gu, f"{w} gate_up")
                _put(ex.gate_up_proj_bias, torch.stack([L["ebg"], L["ebu"]], dim=-1).reshape(e, 2 * f), f"{w} bias")
                _put(ex.down_proj, L["ed"].transpose(1, 2), f"{w} experts down")
                _put(ex.down_proj_bias, L["ebd"], f"{w} experts down bias")
                _put(layer.mlp.router.weight, L["router"], f"{w} router")
                _put(layer.mlp.router.bias, L["brouter"], f"{w} router bias")
                _put(a.sinks, L["sinks"], f"{w} sinks")
            elif fam == "llama4" and hasattr(layer.feed_forward, "experts"):
                ff = layer.feed_forward
                gu = torch.cat([L["eg"].transpose(1, 2), L["eu"].transpose(1, 2)], dim=2)
                _put(ff.experts.gate_up_proj, gu, f"{w} gate_up")
                _put(ff.experts.down_proj, L["ed"].transpose(1, 2), f"{w} experts down")
                _put(ff.router.weight, L["router"], f"{w} router")
                sh = ff.shared_expert
                for key, lin in (("su", sh.up_proj), ("sg", sh.gate_proj), ("sd", sh.down_proj)):
                    _put(lin.weight, L[key], f"{w} shared {key}")
            elif fam == "llama4":
                ff = layer.feed_forward
                for key, lin in (("up", ff.up_proj), ("gate", ff.gate_proj), ("down", ff.down_proj)):
                    _put(lin.weight, L[key], f"{w} {key}")
            else:
                mlp = layer.mlp
                for key, lin in (("up", mlp.up_proj), ("gate", mlp.gate_proj), ("down", mlp.down_proj)):
                    _put(lin.weight, L[key], f"{w} {key}")
                    _put_opt(lin, "bias", L["b" + key], f"{w} b{key}")
        elif fam == "gpt_neox":
            a = layer.attention
            d = L["q"].shape[1]
            qkv = torch.stack([L[k].reshape(h, dh, d) for k in "qkv"], 1).reshape(3 * h * dh, d)
            bqkv = torch.stack([L["b" + k].reshape(h, dh) for k in "qkv"], 1).reshape(-1)
            _put(a.query_key_value.weight, qkv, f"{w} qkv")
            _put(a.query_key_value.bias, bqkv, f"{w} qkv bias")
            _put(a.dense.weight, L["o"], f"{w} o")
            _put(a.dense.bias, L["bo"], f"{w} o bias")
            _put(layer.mlp.dense_h_to_4h.weight, L["up"], f"{w} up")
            _put(layer.mlp.dense_h_to_4h.bias, L["bup"], f"{w} up bias")
            _put(layer.mlp.dense_4h_to_h.weight, L["down"], f"{w} down")
            _put(layer.mlp.dense_4h_to_h.bias, L["bdown"], f"{w} down bias")
        elif fam == "gpt2":
            a = layer.attn
            _put(a.c_attn.weight, torch.cat([L["q"], L["k"], L["v"]], 0).t(), f"{w} c_attn")
            _put(a.c_attn.bias, torch.cat([L["bq"], L["bk"], L["bv"]]), f"{w} c_attn bias")
            _put(a.c_proj.weight, L["o"].t(), f"{w} c_proj")
            _put(a.c_proj.bias, L["bo"], f"{w} c_proj bias")
            _put(layer.mlp.c_fc.weight, L["up"].t(), f"{w} c_fc")
            _put(layer.mlp.c_fc.bias, L["bup"], f"{w} c_fc bias")
            _put(layer.mlp.c_proj.weight, L["down"].t(), f"{w} mlp c_proj")
            _put(layer.mlp.c_proj.bias, L["bdown"], f"{w} mlp c_proj bias")
    owner, attr = _final_norm_owner(m, fam)
    fn = getattr(owner, attr)
    _put(fn.weight, c.final_w, "final norm")
    _put_opt(fn, "bias", c.final_b, "final norm bias")
    _put(m.get_input_embeddings().weight, c.embed, "embedding")
    if c.pos is not None:
        _put(m.transformer.wpe.weight, c.pos, "position embedding")
    if c.head is not None:
        untie_head(subj)
        _put(m.get_output_embeddings().weight, c.head, "output head")
    elif not subj.tied:
        raise ValueError("the canonical view has a tied head but the model's head is untied")
    out = m.get_output_embeddings()
    if c.head_bias is not None and out.bias is None:
        if not subj.tied:
            out.bias = nn.Parameter(torch.zeros(out.weight.shape[0], dtype=out.weight.dtype))
        else:
            raise ValueError("a tied head cannot take a bias here: untie first")
    _put_opt(out, "bias", c.head_bias, "output head bias")


def _edit(fn: Callable[[Subject, Canon, torch.Generator], None]) -> Callable[[Subject, torch.Generator], None]:
    """Wrap a transform of the canonical view as a transform of the model."""

    def run(subj: Subject, gen: torch.Generator) -> None:
        c = read(subj)
        fn(subj, c, gen)
        write(subj, c)

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


# ---------------------------------------------------------------------------
# Random helpers (float64)
# ---------------------------------------------------------------------------


def random_orthogonal(n: int, gen: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]


def random_invertible(n: int, gen: torch.Generator, spread: float = 0.7) -> Tensor:
    """U·diag(e^u)·V with u in [-spread, spread]: invertible and well conditioned."""
    s = torch.exp((torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * spread)
    return random_orthogonal(n, gen) @ torch.diag(s) @ random_orthogonal(n, gen)


def randperm(n: int, gen: torch.Generator) -> Tensor:
    """A random permutation other than the identity (for n > 1)."""
    while True:
        p = torch.randperm(n, generator=gen)
        if n < 2 or not torch.equal(p, torch.arange(n)):
            return p


def random_scales(n: int, gen: torch.Generator, spread: float = 1.0) -> Tensor:
    return torch.exp((torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * spread)


# ---------------------------------------------------------------------------
# Hidden-space maps: permutation and rotation
# ---------------------------------------------------------------------------


def _map_hidden(c: Canon, m: Tensor, perm: Tensor | None) -> None:
    """h -> h·m on every residual-stream axis.  Norm gains are permuted by `perm`, or must be 1."""

    def along(t: Tensor | None, axis: int) -> Tensor | None:
        if t is None:
            return None
        return torch.movedim(torch.movedim(t, axis, -1) @ m, -1, axis).contiguous()

    c.embed = along(c.embed, 1)
    c.pos = along(c.pos, 1)
    c.head = along(c.head, 1)
    for L in c.layers:
        for key, _ in READ_1 + READ_2:
            L[key] = along(L.get(key), -1)
        for key, axis in WRITE:
            L[key] = along(L.get(key), axis)
    gains = [(c.layers[i], k) for i in range(len(c.layers)) for k in ("n1_w", "n1_b", "n2_w", "n2_b")]
    if perm is not None:
        for L, k in gains:
            L[k] = None if L[k] is None else L[k][perm]
        c.final_w = c.final_w[perm]
        c.final_b = None if c.final_b is None else c.final_b[perm]
        return
    for L, k in gains:
        _require_unit(L[k], k.endswith("_b"), k)
    _require_unit(c.final_w, False, "final norm")
    _require_unit(c.final_b, True, "final norm bias")
    if c.norm != "rms":
        raise ValueError("rotating a LayerNorm model: convert it to RMSNorm first")


def _require_unit(t: Tensor | None, is_bias: bool, what: str) -> None:
    if t is None:
        return
    target = 0.0 if is_bias else 1.0
    if not torch.allclose(t, torch.full_like(t, target)):
        raise ValueError(f"{what}: fold norm gains/biases before rotating")


@_edit
def hidden_permutation(subj: Subject, c: Canon, gen: torch.Generator) -> None:
    """Permute the hidden dimension everywhere (norm gains and biases included)."""
    d = c.embed.shape[1]
    p = randperm(d, gen)
    _map_hidden(c, torch.eye(d, dtype=torch.float64)[:, p], p)


def _fold_rms_gains(c: Canon) -> None:
    """Fold every RMSNorm gain into the weights that read it; gains become 1 (QuaRot/SpinQuant step 1)."""
    if c.norm != "rms":
        raise ValueError("folding gains of a LayerNorm model: convert it to RMSNorm first")
    for L in c.layers:
        for keys, g in ((READ_1, "n1_w"), (READ_2, "n2_w")):
            gain = L[g]
            for key, _ in keys:
                if L.get(key) is not None:
                    L[key] = L[key] * gain
            L[g] = torch.ones_like(gain)
    if c.head is None:
        c.head = c.embed.clone()  # folding the final gain unties the head
    c.head = c.head * c.final_w
    c.final_w = torch.ones_like(c.final_w)


def _rotate(subj: Subject, c: Canon, gen: torch.Generator) -> None:
    _fold_rms_gains(c)
    _map_hidden(c, random_orthogonal(c.embed.shape[1], gen), None)


def rotation(subj: Subject, gen: torch.Generator) -> None:
    """Fold norm gains, then rotate the residual stream by a random orthogonal matrix.

    LayerNorm families are first converted to RMSNorm (`layernorm_to_rmsnorm`).
    """
    if subj.family in LAYERNORM_FAMILIES and not subj.rms_converted:
        layernorm_to_rmsnorm(subj, gen)
    _edit(_rotate)(subj, gen)


def layernorm_to_rmsnorm(subj: Subject, gen: torch.Generator) -> None:
    """SliceGPT's conversion: an equivalent model whose norms are RMSNorm with unit gain.

    Centre the embedding (and GPT-2's position) rows and the output rows of every
    matrix and bias writing to the residual stream, so the stream has zero mean
    and LayerNorm equals RMSNorm; fold each LayerNorm's gain and bias into the
    linears that read it (their biases absorb W·β; linears without a bias, such
    as the output head or a gated MLP's gate/up, get one);
    replace every LayerNorm module by an RMSNorm with unit gain and the same eps.
    """
    if subj.family not in LAYERNORM_FAMILIES or subj.rms_converted:
        raise ValueError(f"{subj.family}: no LayerNorm to convert")
    c = read(subj)
    if c.head is None:
        c.head = c.embed.clone()  # the head reads the un-centred embedding
    centre = lambda t, axis: None if t is None else t - t.mean(axis, keepdim=True)  # noqa: E731
    c.embed = centre(c.embed, 1)
    c.pos = centre(c.pos, 1)
    for L in c.layers:
        for key, axis in WRITE:
            L[key] = centre(L.get(key), axis)
        for keys, g, b in ((READ_1, "n1_w", "n1_b"), (READ_2, "n2_w", "n2_b")):
            for key, bkey in keys:
                if L.get(key) is None:
                    continue
                if L[b] is not None:
                    if bkey is None:
                        raise ValueError(f"{key} cannot take a bias to absorb the LayerNorm bias")
                    folded = L[key] @ L[b]
                    L[bkey] = folded if L.get(bkey) is None else L[bkey] + folded
                L[key] = L[key] * L[g]
            L[g] = torch.ones_like(L[g])
            L[b] = None
    bias = c.head @ c.final_b if c.final_b is not None else None
    c.head_bias = bias if c.head_bias is None else (c.head_bias + bias if bias is not None else c.head_bias)
    c.head = c.head * c.final_w
    c.final_w, c.final_b = torch.ones_like(c.final_w), None
    c.norm = "rms"
    # Structure: RMSNorm modules in place of LayerNorm, untied head.
    m, fam = subj.model, subj.family
    n1, n2 = _norm_names(fam)
    owners = [(layer, n) for layer in _layers(m, fam) for n in (n1, n2)] + [_final_norm_owner(m, fam)]
    for owner, attr in owners:
        ln = getattr(owner, attr)
        rms = nn.RMSNorm(ln.normalized_shape, eps=ln.eps, elementwise_affine=True, dtype=ln.weight.dtype)
        setattr(owner, attr, rms)
    subj.rms_converted = True
    untie_head(subj)
    write(subj, c)


# ---------------------------------------------------------------------------
# Scale, heads, neurons, experts
# ---------------------------------------------------------------------------


@_edit
def gain_scale(subj: Subject, c: Canon, gen: torch.Generator) -> None:
    """Move scale between norm gains and their readers: γ -> γ·s (β -> β·s), W -> W / s per input channel.

    The final norm is included when the head is untied (a tied head is also the embedding).
    """
    d = c.embed.shape[1]
    for L in c.layers:
        for keys, g, b in ((READ_1, "n1_w", "n1_b"), (READ_2, "n2_w", "n2_b")):
            s = random_scales(d, gen)
            L[g] = L[g] * s
            if L[b] is not None:
                L[b] = L[b] * s
            for key, _ in keys:
                if L.get(key) is not None:
                    L[key] = L[key] / s
    if c.head is not None:
        s = random_scales(d, gen)
        c.final_w = c.final_w * s
        if c.final_b is not None:
            c.final_b = c.final_b * s
        c.head = c.head / s


@_edit
def head_permutation(subj: Subject, c: Canon, gen: torch.Generator) -> None:
    """Permute attention heads, GQA-aware: permute KV groups, and query heads within each group."""
    h, kv, dh = c.n_heads, c.n_kv, c.head_dim
    g = h // kv
    for L in c.layers:
        while True:
            groups = torch.randperm(kv, generator=gen)
            within = [torch.randperm(g, generator=gen) for _ in range(kv)]
            order = torch.tensor(
                [int(groups[a]) * g + int(within[int(groups[a])][b]) for a in range(kv) for b in range(g)]
            )
            if h < 2 or not torch.equal(order, torch.arange(h)):
                break
        d = L["q"].shape[1]
        L["q"] = L["q"].reshape(h, dh, d)[order].reshape(h * dh, d)
        if L.get("bq") is not None:
            L["bq"] = L["bq"].reshape(h, dh)[order].reshape(-1)
        for key in ("k", "v"):
            L[key] = L[key].reshape(kv, dh, d)[groups].reshape(kv * dh, d)
            if L.get("b" + key) is not None:
                L["b" + key] = L["b" + key].reshape(kv, dh)[groups].reshape(-1)
        o = L["o"]
        L["o"] = o.reshape(o.shape[0], h, dh)[:, order].reshape(o.shape[0], h * dh)
        if L.get("sinks") is not None:  # GPT-OSS: one sink logit per query head moves with its head
            L["sinks"] = L["sinks"][order]


def _scales_neurons(subj: Subject) -> bool:
    """Positive per-neuron rescaling of up/down is function preserving for gated and ReLU FFNs only."""
    return subj.gated or subj.activation in RELU_ACTS


@_edit
def ffn_permutation_scale(subj: Subject, c: Canon, gen: torch.Generator) -> None:
    """Permute FFN neurons (every expert separately) and, where it is function preserving,
    rescale each neuron: up row × s, down column / s (gated FFNs: the gate row is untouched)."""
    scale = _scales_neurons(subj)
    for L in c.layers:
        if L.get("ed") is not None:
            for e in range(L["ed"].shape[0]):
                f = L["eu"].shape[1]
                p = randperm(f, gen)
                s = random_scales(f, gen) if scale else torch.ones(f, dtype=torch.float64)
                L["eu"][e] = L["eu"][e][p] * s[:, None]
                L["eg"][e] = L["eg"][e][p]
                L["ed"][e] = L["ed"][e][:, p] / s[None, :]
                for key in ("ebu", "ebg"):  # GPT-OSS' neuron biases (no scaling: see MOE)
                    if L.get(key) is not None:
                        L[key][e] = L[key][e][p]
            if L.get("sd") is not None:  # Llama-4's shared expert
                f = L["su"].shape[0]
                p = randperm(f, gen)
                s = random_scales(f, gen) if scale else torch.ones(f, dtype=torch.float64)
                L["su"], L["sg"], L["sd"] = L["su"][p] * s[:, None], L["sg"][p], L["sd"][:, p] / s[None, :]
            continue
        f = L["up"].shape[0]
        p = randperm(f, gen)
        s = random_scales(f, gen) if scale else torch.ones(f, dtype=torch.float64)
        L["up"] = L["up"][p] * s[:, None]
        if L.get("bup") is not None:
            L["bup"] = L["bup"][p] * s
        if L.get("gate") is not None:
            L["gate"] = L["gate"][p]
            if L.get("bgate") is not None:
                L["bgate"] = L["bgate"][p]
        L["down"] = L["down"][:, p] / s[None, :]


@_edit
def qk_vo_maps(subj: Subject, c: Canon, gen: torch.Generator) -> None:
    """Per-head scalar Q/K rescaling (Q_h × a, K × 1/a; one a per KV group so GQA stays exact;
    a scalar commutes with RoPE), and a per-KV-head invertible V/O map: V_g -> A·V_g (bias too),
    O_h -> O_h·A⁻¹ for every query head h of the group."""
    h, kv, dh = c.n_heads, c.n_kv, c.head_dim
    g = h // kv
    for L in c.layers:
        d = L["q"].shape[1]
        a = random_scales(kv, gen)
        L["q"] = (L["q"].reshape(kv, g, dh, d) * a[:, None, None, None]).reshape(h * dh, d)
        if L.get("bq") is not None:
            L["bq"] = (L["bq"].reshape(kv, g, dh) * a[:, None, None]).reshape(-1)
        L["k"] = (L["k"].reshape(kv, dh, d) / a[:, None, None]).reshape(kv * dh, d)
        if L.get("bk") is not None:
            L["bk"] = (L["bk"].reshape(kv, dh) / a[:, None]).reshape(-1)
        maps = torch.stack([random_invertible(dh, gen) for _ in range(kv)])  # [kv, dh, dh]
        inv = torch.linalg.inv(maps)
        L["v"] = (maps @ L["v"].reshape(kv, dh, d)).reshape(kv * dh, d)
        if L.get("bv") is not None:
            L["bv"] = (maps @ L["bv"].reshape(kv, dh, 1)).reshape(-1)
        o = L["o"].reshape(-1, kv, g, dh)
        L["o"] = torch.einsum("dkgi,kij->dkgj", o, inv).reshape(-1, h * dh)


def rotary_dims(subj: Subject) -> int:
    """How many leading dims of each head RoPE rotates (0 without RoPE: GPT-2's learned positions)."""
    if subj.family == "gpt2":
        return 0
    cfg = subj.config
    rope = getattr(cfg, "rope_parameters", None) or {}
    factor = rope.get("partial_rotary_factor", getattr(cfg, "partial_rotary_factor", 1.0))
    return int(_heads(cfg)[2] * factor)


def rope_commuting_map(
    dh: int, rot: int, gen: torch.Generator, adjacent: bool = False, orthogonal: bool = False
) -> Tensor:
    """An invertible [dh, dh] map commuting with RoPE's rotations (rotate_half pairs (j, j+rot/2),
    or adjacent pairs (2j, 2j+1) with `adjacent`, Llama-4's complex RoPE).

    On each rotary pair: a rotation-scaling ρ·R(θ) (any 2×2 rotation commutes with
    RoPE's; ρ = 1 with `orthogonal`); on the dims RoPE leaves alone: any well-conditioned
    invertible map.
    """
    m = torch.zeros(dh, dh, dtype=torch.float64)
    half = rot // 2
    for j in range(half):
        rho = float(random_scales(1, gen)[0])
        rho = 1.0 if orthogonal else rho
        th = float(torch.rand(1, generator=gen, dtype=torch.float64)[0]) * 2 * math.pi
        a, b = (2 * j, 2 * j + 1) if adjacent else (j, j + half)
        m[a, a], m[a, b] = rho * math.cos(th), -rho * math.sin(th)
        m[b, a], m[b, b] = rho * math.sin(th), rho * math.cos(th)
    if rot < dh:
        m[rot:, rot:] = random_orthogonal(dh - rot, gen) if orthogonal else random_invertible(dh - rot, gen)
    return m


@_edit
def qk_rope_maps(subj: Subject, c: Canon, gen: torch.Generator) -> None:
    """Per-KV-group invertible Q/K maps: Q_h -> M·Q_h for the heads of group g, K_g -> M⁻ᵀ·K_g
    (biases too), with M commuting with RoPE (`rope_commuting_map`); without RoPE (GPT-2) M is
    any invertible map.  Stronger than the scalar rescaling of `qk_vo_maps`."""
    h, kv, dh = c.n_heads, c.n_kv, c.head_dim
    g = h // kv
    rot = rotary_dims(subj)
    for L in c.layers:
        d = L["q"].shape[1]
        adjacent, orthogonal = subj.family in ADJACENT_ROPE, subj.family in QK_L2_NORM
        maps = torch.stack([rope_commuting_map(dh, rot, gen, adjacent, orthogonal) for _ in range(kv)])
        inv_t = torch.linalg.inv(maps).transpose(-1, -2)
        L["q"] = (maps[:, None] @ L["q"].reshape(kv, g, dh, d)).reshape(h * dh, d)
        if L.get("bq") is not None:
            L["bq"] = (maps[:, None] @ L["bq"].reshape(kv, g, dh, 1)).reshape(-1)
        L["k"] = (inv_t @ L["k"].reshape(kv, dh, d)).reshape(kv * dh, d)
        if L.get("bk") is not None:
            L["bk"] = (inv_t @ L["bk"].reshape(kv, dh, 1)).reshape(-1)


@_edit
def expert_permutation(subj: Subject, c: Canon, gen: torch.Generator) -> None:
    """Permute the experts of every MoE layer, with the router rows permuted alike."""
    moe = [L for L in c.layers if L.get("router") is not None]  # Llama-4 interleaves dense layers
    if subj.expert_map is None:
        subj.expert_map = [torch.arange(L["router"].shape[0]) for L in moe]
    for i, L in enumerate(moe):
        e = L["router"].shape[0]
        p = randperm(e, gen)  # new expert j is old expert p[j]
        for key in EXPERT_KEYS:
            if L.get(key) is not None:
                L[key] = L[key][p].contiguous()
        subj.expert_map[i] = subj.expert_map[i][p]


# ---------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------


def _resize_vocab(subj: Subject, n: int) -> None:
    """Replace the embedding and head modules by ones with `n` rows (values set by `write`)."""
    m = subj.model
    inp = m.get_input_embeddings()
    dtype = inp.weight.dtype
    tied = subj.tied
    new_in = nn.Embedding(n, inp.weight.shape[1], dtype=dtype)
    m.set_input_embeddings(new_in)
    out = m.get_output_embeddings()
    if tied:
        out.weight = new_in.weight
    else:
        new_out = nn.Linear(out.weight.shape[1], n, bias=out.bias is not None, dtype=dtype)
        m.set_output_embeddings(new_out)
    out = m.get_output_embeddings()
    out.out_features = n
    m.config.vocab_size = n
    text = getattr(m.config, "get_text_config", None)
    if text is not None:
        text().vocab_size = n


def vocab_permutation(subj: Subject, gen: torch.Generator) -> None:
    """Permute token ids: embedding rows, head rows (and head bias) and the tokenizer.json ids."""
    c = read(subj)
    n = c.embed.shape[0]
    p = randperm(n, gen)  # new id of old id t is p[t]

    def rows(t: Tensor | None) -> Tensor | None:
        if t is None:
            return None
        out = torch.empty_like(t)
        out[p] = t
        return out

    c.embed, c.head, c.head_bias = rows(c.embed), rows(c.head), rows(c.head_bias)
    write(subj, c)
    tok = subj.tokenizer
    vocab = tok["model"]["vocab"]
    for piece, i in list(vocab.items()):
        vocab[piece] = int(p[i])
    for added in tok.get("added_tokens") or []:
        added["id"] = int(p[added["id"]])
    subj.vocab_map = p[subj.vocab_map]


def _new_words(existing: set[str], k: int, gen: torch.Generator) -> list[str]:
    """Letters-only byte-level pieces ('Ġ' = leading space) absent from the vocabulary."""
    letters = "qxy"  # the tiny tokenizer's corpus never uses these letters
    out: list[str] = []
    while len(out) < k:
        n = 3 + int(torch.randint(0, 3, (1,), generator=gen))
        word = "".join(letters[int(j)] for j in torch.randint(0, len(letters), (n,), generator=gen))
        piece = "\u0120" + word
        if piece not in existing and piece not in out:
            out.append(piece)
    return out


def vocab_extension(subj: Subject, gen: torch.Generator, k: int = 64) -> None:
    """Append k new ordinary tokens (as a new-language extension would), with new embedding and head rows."""
    c = read(subj)
    n, d = c.embed.shape
    std = float(c.embed.std())
    new = torch.randn(k, d, generator=gen, dtype=torch.float64) * std
    c.embed = torch.cat([c.embed, new])
    if c.head is not None:
        c.head = torch.cat([c.head, torch.randn(k, d, generator=gen, dtype=torch.float64) * std])
    if c.head_bias is not None:
        c.head_bias = torch.cat([c.head_bias, torch.zeros(k, dtype=torch.float64)])
    _resize_vocab(subj, n + k)
    write(subj, c)
    vocab = subj.tokenizer["model"]["vocab"]
    used = set(vocab.values()) | {a["id"] for a in subj.tokenizer.get("added_tokens") or []}
    if max(used) != n - 1:
        raise ValueError("tokenizer ids do not fill the embedding")
    for j, piece in enumerate(_new_words(set(vocab), k, gen)):
        vocab[piece] = n + j


# ---------------------------------------------------------------------------
# Head tying and dtype
# ---------------------------------------------------------------------------


def untie(subj: Subject, gen: torch.Generator) -> None:
    """Untie a tied output head (it keeps the embedding's values)."""
    if not subj.tied:
        raise ValueError(f"{subj.family}: the head is already untied")
    untie_head(subj)


def to_dtype(dtype: torch.dtype) -> Callable[[Subject, torch.Generator], None]:
    def run(subj: Subject, gen: torch.Generator) -> None:
        subj.model.to(dtype)
        subj.model.config.dtype = dtype

    run.__name__ = f"to_{str(dtype).replace('torch.', '')}"
    return run


# ---------------------------------------------------------------------------
# Registry and composition
# ---------------------------------------------------------------------------

TRANSFORMS: dict[str, Callable[[Subject, torch.Generator], None]] = {
    "hidden-perm": hidden_permutation,
    "ln-to-rms": layernorm_to_rmsnorm,
    "rotation": rotation,
    "gain-scale": gain_scale,
    "head-perm": head_permutation,
    "ffn-perm-scale": ffn_permutation_scale,
    "qk-vo-maps": qk_vo_maps,
    "qk-rope-maps": qk_rope_maps,
    "expert-perm": expert_permutation,
    "vocab-perm": vocab_permutation,
    "vocab-extend": vocab_extension,
    "untie": untie,
    "to-fp32": to_dtype(torch.float32),
    "to-fp16": to_dtype(torch.float16),
    "to-bf16": to_dtype(torch.bfloat16),
}

# "All of the above" in a sensible order (rotation first: it needs unit gains).
COMBINED = (
    "rotation",
    "hidden-perm",
    "gain-scale",
    "head-perm",
    "ffn-perm-scale",
    "qk-vo-maps",
    "qk-rope-maps",
    "expert-perm",
    "vocab-extend",
    "vocab-perm",
    "untie",
)


def applicable(family: str, name: str, tied: bool) -> bool:
    if name == "ln-to-rms":
        return family in LAYERNORM_FAMILIES
    if name == "expert-perm":
        return family in MOE
    if name == "untie":
        return tied
    return name in TRANSFORMS


def apply(subj: Subject, names: Sequence[str], seed: int = 0) -> Subject:
    """Apply transforms in order, in place, skipping those that do not apply to the family."""
    gen = torch.Generator().manual_seed(seed)
    for name in names:
        if not applicable(subj.family, name, subj.tied):
            continue
        TRANSFORMS[name](subj, gen)
        subj.applied.append(name)
    return subj


# ---------------------------------------------------------------------------
# Checks and hand-off to attest
# ---------------------------------------------------------------------------


@torch.no_grad()
def logits(model: nn.Module, ids: Tensor) -> Tensor:
    return model(input_ids=ids, use_cache=False).logits.float()


def logit_errors(
    reference: Tensor, subj: Subject, ids: Tensor, model: nn.Module | None = None, exclude: Tensor | None = None
) -> tuple[float, float]:
    """(‖Δ‖/‖ref‖, max|Δ|/max|ref|) of the subject's logits against the original's, mapped to original ids.

    The subject runs on the original ids mapped through its vocabulary
    permutation, and its logits are read back over the original ids only
    (tokens added by a vocabulary extension are left out).  `exclude` (bool
    [B, T]) drops positions from the comparison (see `routing_flips`).
    """
    model = model if model is not None else subj.model
    out = logits(model, subj.vocab_map[ids])[..., subj.vocab_map]
    ref = reference
    if exclude is not None:
        keep = ~exclude
        out, ref = out[keep], ref[keep]
    diff = out - ref
    return float(diff.norm() / ref.norm()), float(diff.abs().max() / ref.abs().max())


@torch.no_grad()
def routes(model: nn.Module, ids: Tensor, expert_map: list[Tensor] | None = None) -> Tensor | None:
    """Top-k expert sets per MoE layer and position, as original expert indices: bool [layers, B, T, E].

    None for dense models.
    """
    k = getattr(model.config, "num_experts_per_tok", None)
    if not k:
        return None
    out = model(input_ids=ids, use_cache=False, output_router_logits=True)
    sets = []
    for i, r in enumerate(out.router_logits):
        top = r.float().topk(k, dim=-1).indices
        if expert_map is not None:
            top = expert_map[i][top]
        mask = torch.zeros(r.shape, dtype=torch.bool).scatter_(-1, top, True)
        sets.append(mask.reshape(*ids.shape, -1))
    return torch.stack(sets)


def routing_flips(reference: Tensor | None, subj: Subject, ids: Tensor, model: nn.Module | None = None) -> Tensor:
    """bool [B, T]: positions where some MoE layer routes to other experts than the original did.

    A top-k router near a tie can flip under 16-bit rounding; that is a discrete
    change of the computation, not a small error, so dtype checks report and
    exclude such positions.  All False for dense models.
    """
    model = model if model is not None else subj.model
    if reference is None:
        return torch.zeros(ids.shape, dtype=torch.bool)
    now = routes(model, subj.vocab_map[ids], subj.expert_map)
    assert now is not None
    return (now != reference).any(-1).any(0)


def save(subj: Subject, folder: Path) -> Path:
    """save_pretrained (safetensors, config.json) plus the rewritten tokenizer.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    subj.model.save_pretrained(folder)
    (folder / "tokenizer.json").write_text(json.dumps(subj.tokenizer, ensure_ascii=False), encoding="utf-8")
    return folder


def reload(folder: Path, dtype: torch.dtype | None = None) -> nn.Module:
    """The saved model read back by transformers (only for unconverted HF classes)."""
    from transformers import AutoModelForCausalLM

    kw: dict[str, Any] = {"attn_implementation": "eager"}
    if dtype is not None:
        kw["dtype"] = dtype
    return AutoModelForCausalLM.from_pretrained(folder, **kw).eval()


def attest_model(subj: Subject, folder: Path) -> Any:
    """What attest reads: `load_model(folder)` for a real HF class; for a LayerNorm family converted
    to RMSNorm, the saved tensors through `model_from_tensors` with the family table's norm set to RMS."""
    from attest.arch.detect import load_model, model_from_tensors

    folder = Path(folder)
    if not subj.rms_converted:
        return load_model(folder)
    import dataclasses

    from safetensors.torch import load_file

    from attest.arch import families
    from attest.arch.spec import NormKind
    from attest.vocab.readers import from_tokenizer_json

    table = {"gpt_neox": families.GPT_NEOX, "gpt2": families.GPT2, "stablelm": families.STABLELM}[subj.family]
    tensors: dict[str, Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(f))
    config = json.loads((folder / "config.json").read_text())
    vocab = from_tokenizer_json(folder / "tokenizer.json")
    return model_from_tensors(tensors, config, vocab, spec=dataclasses.replace(table, norm=NormKind.RMS))


def changed(a: Subject, b: Subject, rtol: float = 1e-6) -> set[str]:
    """Which parts of the canonical view differ between two subjects ("embed", "L0.q", ...),
    plus "tied", "dtype" and "vocab" (vocabulary size).  Used to show a disguise did something."""
    ca, cb = read(a), read(b)
    out: set[str] = set()
    if a.tied != b.tied:
        out.add("tied")
    if a.model.get_input_embeddings().weight.dtype != b.model.get_input_embeddings().weight.dtype:
        out.add("dtype")
    if ca.embed.shape != cb.embed.shape:
        out.add("vocab")

    def cmp(name: str, x: Tensor | None, y: Tensor | None) -> None:
        if x is None and y is None:
            return
        if x is None or y is None or x.shape != y.shape or bool((x - y).abs().max() > rtol * x.abs().max()):
            out.add(name)

    cmp("embed", ca.embed, cb.embed)
    cmp("final_w", ca.final_w, cb.final_w)
    for i, (la, lb) in enumerate(zip(ca.layers, cb.layers)):
        for k in sorted(set(la) | set(lb)):
            cmp(f"L{i}.{k}", la.get(k), lb.get(k))
    return out


def perturb_heads_only(subj: Subject, gen: torch.Generator) -> None:
    """A deliberately broken transform (query heads permuted, keys not): the logits must change."""
    c = read(subj)
    h, dh = c.n_heads, c.head_dim
    for L in c.layers:
        d = L["q"].shape[1]
        order = torch.roll(torch.arange(h), 1)
        L["q"] = L["q"].reshape(h, dh, d)[order].reshape(h * dh, d)
        if L.get("bq") is not None:
            L["bq"] = L["bq"].reshape(h, dh)[order].reshape(-1)
    write(subj, c)
