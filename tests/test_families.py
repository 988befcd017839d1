"""Every family table against the real `transformers` model it describes.

For each case of `family_configs.CASES` a tiny random model (random norm gains and
biases) is built with the real `transformers` class, saved, and read back with
`load_model`.  One forward pass with hooks then records what the model itself
computes, and the canonical view must reproduce it:

- the attention input is `gain * normalise(residual) + norm_bias`, with the
  canonical pre-attention gain (so the gain, its Gemma 1+γ offset and the
  post-LN "previous layer" rule are checked);
- the per-head query, key and value states the attention function receives
  (pre-RoPE: positions are all zero, so rotary embeddings are the identity)
  equal that input times the canonical q, k, v, split into canonical heads,
  with q_norm/k_norm where present; for the three families that do not go
  through the attention interface (Falcon, BLOOM, MPT) the fused projection
  output is split with the model's own split;
- the o-projection output equals its input times the canonical o;
- the FFN input is built from the canonical pre-FFN gain, and the FFN output
  (or, for MoE, every expert and the router logits) equals the canonical
  weights applied with the family's activation;
- embedding rows, output head rows and the final norm gain;
- `compare_models(m, m)` is exactly 1 with a match, for both methods.

Linear biases are not part of the canonical view: a hook removes them from every
projection's output before anything is recorded.

Run `python tests/test_families.py` to print the families × layouts table.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from helpers.family_configs import CASES, EXPERT_COUNT_KEYS, MIXER_CASE_NAMES
from helpers.models import build_tiny_model, save_model, write_tokenizer

# --------------------------------------------------------------------------- what each case exercises
LAYOUTS: dict[str, list[str]] = {
    "llama": [
        "GQA",
        "separate q/k/v",
        "gated FFN",
        "RMSNorm",
        "untied head",
        "pytorch_model.bin (weights_only)",
        "detect w/o config",
    ],
    "mistral": ["GQA", "separate q/k/v", "gated FFN", "RMSNorm", "3 layers"],
    "qwen2": ["GQA", "q/k/v biases", "gated FFN", "RMSNorm"],
    "qwen3": ["GQA", "head_dim ≠ d/H (from config)", "per-head q/k RMSNorm", "gated FFN"],
    "gemma": ["MQA (1 KV head)", "Gemma (1+γ) norm", "tied head", "gated FFN (GeLU-tanh)"],
    "gemma2": ["GQA", "Gemma (1+γ) norm", "pre+post sublayer norms", "tied head"],
    "gemma3": ["GQA", "Gemma (1+γ) norm", "per-head q/k (1+γ) RMSNorm", "pre+post sublayer norms"],
    "phi3": ["GQA", "fused QKV contiguous", "fused gate_up", "detect w/o config"],
    "gpt2": ["Conv1D (transposed)", "fused QKV contiguous", "LayerNorm + biases", "tied head", "detect w/o config"],
    "gpt_neox": [
        "per-head interleaved QKV",
        "parallel residual",
        "partial rotary",
        "LayerNorm + biases",
        "untied head",
        "detect w/o config",
    ],
    "gptj": ["parallel block (one ln_1 for attn and FFN)", "separate q/k/v", "LayerNorm + biases"],
    "opt": ["separate q/k/v + biases", "pre-scaled q", "LayerNorm + biases", "tied head"],
    "falcon": ["multi-query grouped QKV [1, H+2, dh]", "parallel block (one input_layernorm)", "rotary"],
    "falcon-40b": ["GQA", "grouped QKV [Hkv, g+2, dh]", "ln_attn / ln_mlp"],
    "falcon2-11b": ["GQA", "grouped QKV [Hkv, g+2, dh]", "parallel block (one input_layernorm)"],
    "falcon-rw": ["per-head interleaved QKV", "ALiBi", "sequential block", "LayerNorm + biases"],
    "bloom": ["per-head interleaved QKV", "embedding LayerNorm", "ALiBi", "LayerNorm + biases", "tied head"],
    "mpt": ["fused QKV contiguous", "bias-free LayerNorm", "ALiBi", "tied head"],
    "starcoder2": ["GQA", "LayerNorm + biases", "non-gated FFN (c_fc/c_proj)"],
    "olmo": ["GQA", "parameter-free LayerNorm (no gains)"],
    "stablelm": ["GQA", "LayerNorm + biases", "q/k/v biases", "partial rotary"],
    "mixtral": [
        "GQA",
        "MoE 4 experts + router",
        "per-expert tensors (as saved)",
        "stacked experts [E,2f,d] (as in memory)",
        "detect w/o config",
    ],
    "qwen2_moe": ["GQA", "MoE 4 experts + router", "shared expert", "q/k/v biases"],
    "qwen3_moe": ["GQA", "MoE 4 experts + router", "per-head q/k RMSNorm"],
    "bert": [
        "post-LN (reads previous layer's output norm)",
        "embedding LayerNorm",
        "encoder via AutoModel",
        "detect w/o config",
    ],
    "olmo2": ["GQA", "post-sublayer norms only", "q/k RMSNorm over the whole projection", "gated FFN"],
    "olmo3": ["GQA", "post-sublayer norms only", "q/k RMSNorm over the whole projection", "sliding window"],
    "exaone4": ["GQA", "post-sublayer norms only", "per-head q/k RMSNorm", "sliding/full layers"],
    "granite": ["GQA", "embedding/residual/attention/logits multipliers", "gated FFN"],
    "smollm3": ["GQA", "NoPE layers", "gated FFN"],
    "ernie4_5": ["GQA", "head_dim ≠ d/H (from config)", "gated FFN"],
    "seed_oss": ["GQA", "q/k/v biases", "head_dim ≠ d/H (from config)"],
    "hunyuan_v1_dense": ["GQA", "per-head q/k RMSNorm (query/key_layernorm)", "gated FFN"],
    "apertus": ["GQA", "per-head q/k RMSNorm", "non-gated FFN, xIELU (learned)", "attention/feedforward_layernorm"],
    "cohere": ["GQA", "parallel block (one input_layernorm)", "bias-free LayerNorm", "tied head", "logit scale"],
    "cohere2": ["GQA", "parallel block (one input_layernorm)", "bias-free LayerNorm", "sliding window"],
    "phi": ["GQA", "parallel block (one LayerNorm)", "biases everywhere", "partial rotary", "dense/fc1/fc2"],
    "cohere-qknorm": ["GQA", "parallel block", "per-head q/k LayerNorm, a gain per head [H, dh]"],
    "phi-qkln": ["GQA", "parallel block", "per-head q/k LayerNorm with bias, one [dh] gain", "partial rotary"],
    "granitemoe": ["GQA", "MoE 4 experts + router", "stacked input_linear/output_linear [E,2f,d]", "multipliers"],
    "phimoe": ["GQA", "MoE 4 experts + router", "LayerNorm + biases", "per-expert w1/w2/w3"],
    "ernie4_5_moe": ["GQA", "dense layer 0 + MoE layers", "shared expert", "router correction bias"],
    "glm4_moe": ["GQA", "first_k_dense_replace", "shared expert", "per-head q/k RMSNorm", "q/k/v biases"],
    "deepseek_v2": ["MLA without q rank (V2-Lite)", "first_k_dense_replace", "shared experts", "softmax router"],
    "deepseek_v3": [
        "MLA with q rank",
        "interleaved rope",
        "first_k_dense_replace",
        "shared experts",
        "sigmoid router + correction bias",
    ],
    "gpt_oss": [
        "GQA",
        "stacked experts [E,d,2f] gate/up interleaved, down [E,f,d]",
        "expert + router biases",
        "attention sinks",
        "q/k/v/o biases",
        "sliding/full layers",
        "clamped SwiGLU",
    ],
    "llama4_text": [
        "GQA",
        "MoE every 2nd layer + shared expert",
        "stacked experts [E,d,2f] halves, down [E,f,d]",
        "NoPE layer",
        "gain-free L2 q/k norm (RoPE layers)",
        "sigmoid router",
    ],
}


# --------------------------------------------------------------------------- where each case computes what
@dataclass(frozen=True)
class Probe:
    """Module paths (with `{i}` = layer) of what the canonical view must reproduce."""

    attn_in: str  # module whose input is what the attention reads (q / fused qkv projection)
    attn_norm: str | Callable[[int], str] | None  # norm that produces that input (None: the raw residual)
    o: str  # attention output projection
    ffn_in: str  # module whose input is what the FFN reads
    ffn_norm: str | None
    ffn_out: str | None  # module whose output is the FFN output (dense FFNs, and dense layers of MoE ones)
    act: str = "silu"  # the family's FFN activation (transformers.activations name)
    act_module: str | None = None  # a learned activation (Apertus' xIELU): the layer's own module
    qkv: str = "interface"  # "interface" (attention function) or the model's own split: falcon, bloom, mpt
    attn: str = ""  # attention module, for the model's own split
    q_scale: float = 1.0  # the model multiplies q by this before attention (OPT)
    rope: bool = True  # rotary: run at position 0 so q/k are pre-rotary
    q_norm: str | None = None
    k_norm: str | None = None
    qk_norm_whole: bool = False  # the q/k norm normalises the whole projection, not each head (OLMo-2)
    final_norm: str | None = None
    embed_norm: str | None = None  # LayerNorm right after the embedding
    attn_out_norm: str | None = None
    ffn_out_norm: str | None = None
    router: str | None = None
    experts: str | None = None
    shared: str | None = None
    router_output: int = 0  # which element of the router's output tuple holds the logits (Llama-4: 1)
    expert_call: str = "indexed"  # "indexed": experts(x, expert ids, weights); "all": Llama-4's per-expert batch
    expert_fn: str = "mlp"  # "mlp": act(gate)*up; "gpt_oss": GPT-OSS' clamped SwiGLU with the model's biases
    qk_l2: bool = False  # gain-free L2 norm of q and k heads on layers whose `attn` module has `qk_norm` (Llama-4)


L = "model.layers.{i}."
H = "transformer.h.{i}."


def _llama(**kw: Any) -> Probe:
    base: dict[str, Any] = dict(
        attn_in=L + "self_attn.q_proj",
        attn_norm=L + "input_layernorm",
        o=L + "self_attn.o_proj",
        ffn_in=L + "mlp",
        ffn_norm=L + "post_attention_layernorm",
        ffn_out=L + "mlp",
        final_norm="model.norm",
    )
    return Probe(**{**base, **kw})


def _moe(**kw: Any) -> Probe:
    base: dict[str, Any] = dict(ffn_out=None, router=L + "mlp.gate", experts=L + "mlp.experts")
    return _llama(**{**base, **kw})


def _falcon(**kw: Any) -> Probe:
    base: dict[str, Any] = dict(
        attn_in=H + "self_attention.query_key_value",
        attn_norm=H + "input_layernorm",
        o=H + "self_attention.dense",
        ffn_in=H + "mlp",
        ffn_norm=H + "input_layernorm",
        ffn_out=H + "mlp",
        act="gelu",
        qkv="falcon",
        attn=H + "self_attention",
        rope=False,
        final_norm="transformer.ln_f",
    )
    return Probe(**{**base, **kw})


def _bert_attn_norm(i: int) -> str:
    return "embeddings.LayerNorm" if i == 0 else f"encoder.layer.{i - 1}.output.LayerNorm"


_QK_NORM = dict(q_norm=L + "self_attn.q_norm", k_norm=L + "self_attn.k_norm")
PROBES: dict[str, Probe] = {
    "llama": _llama(),
    "mistral": _llama(),
    "qwen2": _llama(),
    "qwen3": _llama(**_QK_NORM),
    "gemma": _llama(act="gelu_pytorch_tanh"),
    "gemma2": _llama(
        act="gelu_pytorch_tanh",
        ffn_norm=L + "pre_feedforward_layernorm",
        attn_out_norm=L + "post_attention_layernorm",
        ffn_out_norm=L + "post_feedforward_layernorm",
    ),
    "gemma3": _llama(
        act="gelu_pytorch_tanh",
        ffn_norm=L + "pre_feedforward_layernorm",
        **_QK_NORM,
        attn_out_norm=L + "post_attention_layernorm",
        ffn_out_norm=L + "post_feedforward_layernorm",
    ),
    "phi3": _llama(attn_in=L + "self_attn.qkv_proj"),
    "gpt2": Probe(
        attn_in=H + "attn.c_attn",
        attn_norm=H + "ln_1",
        o=H + "attn.c_proj",
        ffn_in=H + "mlp",
        ffn_norm=H + "ln_2",
        ffn_out=H + "mlp",
        act="gelu_new",
        rope=False,
        final_norm="transformer.ln_f",
    ),
    "gpt_neox": Probe(
        attn_in="gpt_neox.layers.{i}.attention.query_key_value",
        attn_norm="gpt_neox.layers.{i}.input_layernorm",
        o="gpt_neox.layers.{i}.attention.dense",
        ffn_in="gpt_neox.layers.{i}.mlp",
        ffn_norm="gpt_neox.layers.{i}.post_attention_layernorm",
        ffn_out="gpt_neox.layers.{i}.mlp",
        act="gelu",
        final_norm="gpt_neox.final_layer_norm",
    ),
    "gptj": Probe(
        attn_in=H + "attn.q_proj",
        attn_norm=H + "ln_1",
        o=H + "attn.out_proj",
        ffn_in=H + "mlp",
        ffn_norm=H + "ln_1",
        ffn_out=H + "mlp",
        act="gelu_new",
        final_norm="transformer.ln_f",
    ),
    "opt": Probe(
        attn_in="model.decoder.layers.{i}.self_attn.q_proj",
        attn_norm="model.decoder.layers.{i}.self_attn_layer_norm",
        o="model.decoder.layers.{i}.self_attn.out_proj",
        ffn_in="model.decoder.layers.{i}.fc1",
        ffn_norm="model.decoder.layers.{i}.final_layer_norm",
        ffn_out="model.decoder.layers.{i}.fc2",
        act="relu",
        q_scale=16**-0.5,
        rope=False,
        final_norm="model.decoder.final_layer_norm",
    ),
    "falcon": _falcon(),
    "falcon-40b": _falcon(attn_norm=H + "ln_attn", ffn_norm=H + "ln_mlp"),
    "falcon2-11b": _falcon(),
    "falcon-rw": _falcon(ffn_norm=H + "post_attention_layernorm"),
    # BloomMLP and MptMLP add the residual inside their forward: read their linears instead.
    "bloom": Probe(
        attn_in=H + "self_attention.query_key_value",
        attn_norm=H + "input_layernorm",
        o=H + "self_attention.dense",
        ffn_in=H + "mlp.dense_h_to_4h",
        ffn_norm=H + "post_attention_layernorm",
        ffn_out=H + "mlp.dense_4h_to_h",
        act="gelu_pytorch_tanh",
        qkv="bloom",
        attn=H + "self_attention",
        rope=False,
        final_norm="transformer.ln_f",
        embed_norm="transformer.word_embeddings_layernorm",
    ),
    "mpt": Probe(
        attn_in="transformer.blocks.{i}.attn.Wqkv",
        attn_norm="transformer.blocks.{i}.norm_1",
        o="transformer.blocks.{i}.attn.out_proj",
        ffn_in="transformer.blocks.{i}.ffn.up_proj",
        ffn_norm="transformer.blocks.{i}.norm_2",
        ffn_out="transformer.blocks.{i}.ffn.down_proj",
        act="gelu",
        qkv="mpt",
        attn="transformer.blocks.{i}.attn",
        rope=False,
        final_norm="transformer.norm_f",
    ),
    "starcoder2": _llama(act="gelu_pytorch_tanh"),
    "olmo": _llama(),
    "stablelm": _llama(),
    "mixtral": _moe(),
    "qwen2_moe": _moe(shared=L + "mlp.shared_expert"),
    "qwen3_moe": _moe(**_QK_NORM),
    "olmo2": _llama(
        attn_norm=None,
        ffn_norm=None,
        **_QK_NORM,
        qk_norm_whole=True,
        attn_out_norm=L + "post_attention_layernorm",
        ffn_out_norm=L + "post_feedforward_layernorm",
    ),
    "olmo3": _llama(
        attn_norm=None,
        ffn_norm=None,
        **_QK_NORM,
        qk_norm_whole=True,
        attn_out_norm=L + "post_attention_layernorm",
        ffn_out_norm=L + "post_feedforward_layernorm",
    ),
    "exaone4": _llama(
        attn_norm=None,
        ffn_norm=None,
        **_QK_NORM,
        attn_out_norm=L + "post_attention_layernorm",
        ffn_out_norm=L + "post_feedforward_layernorm",
    ),
    "granite": _llama(),
    "smollm3": _llama(),
    "ernie4_5": _llama(),
    "seed_oss": _llama(),
    "hunyuan_v1_dense": _llama(q_norm=L + "self_attn.query_layernorm", k_norm=L + "self_attn.key_layernorm"),
    "apertus": _llama(
        attn_norm=L + "attention_layernorm",
        ffn_norm=L + "feedforward_layernorm",
        act_module=L + "mlp.act_fn",
        **_QK_NORM,
    ),
    "cohere": _llama(ffn_norm=L + "input_layernorm"),
    "cohere2": _llama(ffn_norm=L + "input_layernorm"),
    "phi": _llama(
        o=L + "self_attn.dense",
        ffn_norm=L + "input_layernorm",
        act="gelu_new",
        final_norm="model.final_layernorm",
    ),
    "cohere-qknorm": _llama(ffn_norm=L + "input_layernorm", **_QK_NORM),
    "phi-qkln": _llama(
        o=L + "self_attn.dense",
        ffn_norm=L + "input_layernorm",
        act="gelu_new",
        final_norm="model.final_layernorm",
        q_norm=L + "self_attn.q_layernorm",
        k_norm=L + "self_attn.k_layernorm",
    ),
    "granitemoe": _moe(
        router=L + "block_sparse_moe.router",
        experts=L + "block_sparse_moe.experts",
        ffn_in=L + "block_sparse_moe",
    ),
    "phimoe": _moe(router=L + "mlp.router"),
    "ernie4_5_moe": _moe(ffn_out=L + "mlp", shared=L + "mlp.shared_experts"),
    "glm4_moe": _moe(ffn_out=L + "mlp", shared=L + "mlp.shared_experts", **_QK_NORM),
    # MLA: the attention reads its input through kv_a (and q or q_a); checked by check_mla
    "deepseek_v2": _moe(attn_in=L + "self_attn.kv_a_proj_with_mqa", ffn_out=L + "mlp", shared=L + "mlp.shared_experts"),
    "deepseek_v3": _moe(attn_in=L + "self_attn.kv_a_proj_with_mqa", ffn_out=L + "mlp", shared=L + "mlp.shared_experts"),
    "gpt_oss": _moe(router=L + "mlp.router", expert_fn="gpt_oss"),
    "llama4_text": _moe(
        ffn_in=L + "feed_forward",
        ffn_out=L + "feed_forward",
        router=L + "feed_forward.router",
        router_output=1,
        experts=L + "feed_forward.experts",
        expert_call="all",
        shared=L + "feed_forward.shared_expert",
        qk_l2=True,
        attn=L + "self_attn",
    ),
    "bert": Probe(
        attn_in="encoder.layer.{i}.attention.self.query",
        attn_norm=_bert_attn_norm,
        o="encoder.layer.{i}.attention.output.dense",
        ffn_in="encoder.layer.{i}.intermediate.dense",
        ffn_norm="encoder.layer.{i}.attention.output.LayerNorm",
        ffn_out="encoder.layer.{i}.output.dense",
        act="gelu",
        rope=False,
        embed_norm="embeddings.LayerNorm",
    ),
}

CASE_NAMES = [c for c in CASES if c not in MIXER_CASE_NAMES]  # mixer families: tests/test_ssm.py
assert set(PROBES) == set(CASE_NAMES) == set(LAYOUTS), "every case needs a probe and a layouts entry"


def _path(template: str | Callable[[int], str], i: int) -> str:
    return template(i) if callable(template) else template.format(i=i)


# --------------------------------------------------------------------------- recording the real model
@dataclass
class Run:
    """One forward pass of a case: the model, what its modules saw, and the attention states."""

    model: Any
    ios: dict[str, tuple[torch.Tensor, torch.Tensor]]  # module path -> (input, output), biases removed
    qkv: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # per layer, [B, heads, T, dh]


def _first_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)):
        return _first_tensor(x[0])
    raise TypeError(type(x))


@contextmanager
def _attention_states() -> Iterator[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """Record (query, key, value) as every attention module hands them to its attention function."""
    from transformers.modeling_utils import AttentionInterface

    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def attention(
        module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any
    ) -> Any:
        calls.append((query.detach().clone(), key.detach().clone(), value.detach().clone()))
        eager = sys.modules[type(module).__module__].eager_attention_forward
        return eager(module, query, key, value, *args, **kwargs)

    mapping = AttentionInterface._global_mapping
    previous = mapping.get("eager")
    mapping["eager"] = attention
    try:
        yield calls
    finally:
        if previous is None:
            mapping.pop("eager", None)
        else:
            mapping["eager"] = previous


def _model_split(run_model: Any, probe: Probe, i: int, fused: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q, k, v as [B, heads, T, dh] from a fused projection output, split by the model's own code."""
    attn = run_model.get_submodule(_path(probe.attn, i))
    if probe.qkv == "falcon":
        return tuple(t.transpose(1, 2) for t in attn._split_heads(fused))
    if probe.qkv == "bloom":
        return attn._reshape(fused)
    if probe.qkv == "mpt":  # MptAttention.forward: chunk(3) then reshape per head (no helper to call)
        b, t, _ = fused.shape
        return tuple(x.reshape(b, t, attn.n_heads, attn.head_dim).transpose(1, 2) for x in fused.chunk(3, dim=2))
    raise AssertionError(probe.qkv)


def _strip_bias(m: Any, _args: Any, out: Any) -> Any:
    """A projection's output without its bias; a router returning (logits, ...) loses it from the logits."""
    if isinstance(out, tuple):
        return (out[0] - m.bias, *out[1:])
    return out - m.bias


def record(case: str, model: Any, n_layers: int) -> Run:
    probe = PROBES[case]
    hooks = []
    # Biases are outside the canonical view: strip them from every projection's output.
    for _name, mod in model.named_modules():
        w, b = getattr(mod, "weight", None), getattr(mod, "bias", None)
        if (
            isinstance(w, torch.Tensor)
            and w.dim() == 2
            and isinstance(b, torch.Tensor)
            and not isinstance(mod, torch.nn.Embedding)
        ):
            hooks.append(mod.register_forward_hook(_strip_bias))
    paths = {p for p in (probe.final_norm, probe.embed_norm) if p}
    ios: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    fields = ("attn_in", "attn_norm", "o", "ffn_in", "ffn_norm", "ffn_out", "attn_out_norm", "ffn_out_norm", "router")
    wanted = {p for f in fields for i in range(n_layers) if (t := getattr(probe, f)) for p in [_path(t, i)]}
    wanted |= paths

    routers = {_path(probe.router, i) for i in range(n_layers)} if probe.router else set()

    def keep(path: str) -> Callable[..., None]:
        def hook(_m: Any, args: tuple, kwargs: dict, out: Any) -> None:
            x = args[0] if args else next(v for v in kwargs.values() if isinstance(v, torch.Tensor))
            if path in routers and isinstance(out, tuple):
                out = out[probe.router_output]
            ios[path] = (x.detach().clone(), _first_tensor(out).detach().clone())

        return hook

    for path in sorted(wanted):
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue  # a MoE-only module (router) in a dense layer of a MoE model: its checks read nothing here
        hooks.append(module.register_forward_hook(keep(path), with_kwargs=True))
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(1, model.config.vocab_size, (2, 9), generator=gen)
    kwargs: dict[str, Any] = {}
    if probe.rope:
        kwargs["position_ids"] = torch.zeros_like(ids)
    if CASES[case].auto == "causal":
        kwargs["use_cache"] = False
    try:
        with torch.no_grad(), _attention_states() as calls:
            model(input_ids=ids, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    if probe.qkv == "interface":
        assert len(calls) == n_layers, f"{case}: {len(calls)} attention calls for {n_layers} layers"
        qkv = calls
    else:
        qkv = [_model_split(model, probe, i, ios[_path(probe.attn_in, i)][1]) for i in range(n_layers)]
    return Run(model, ios, qkv)


# --------------------------------------------------------------------------- building, saving, loading
_RUNS: dict[str, Run] = {}
_FOLDERS: dict[tuple[str, str], Path] = {}


def _run(case: str) -> Run:
    if case not in _RUNS:
        model = build_tiny_model(case, seed=CASE_NAMES.index(case))
        _RUNS[case] = record(case, model, model.config.num_hidden_layers)
    return _RUNS[case]


def _save(case: str, form: str, root: Path) -> Path:
    """Save a case's model as `safetensors` (save_pretrained), `bin` or `stacked` (the in-memory state dict)."""
    key = (case, form)
    if key not in _FOLDERS:
        model = _run(case).model
        folder = root / f"{case}-{form}"
        folder.mkdir(parents=True)
        if form == "stacked":
            from safetensors.torch import save_file

            model.config.save_pretrained(folder)
            state = {
                k: v.contiguous()
                for k, v in model.state_dict().items()
                if k != "lm_head.weight" or not model.config.tie_word_embeddings
            }
            save_file(state, str(folder / "model.safetensors"))
            write_tokenizer(folder)
        else:
            save_model(model, folder, safe_serialization=form == "safetensors")
        _FOLDERS[key] = folder
    return _FOLDERS[key]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("families")


def _load(case: str, form: str, root: Path) -> Any:
    from attest.arch.detect import load_model

    return load_model(_save(case, form, root))


# --------------------------------------------------------------------------- numerical checks
def _close(actual: torch.Tensor, expected: torch.Tensor, what: str, tol: float = 2e-4) -> None:
    actual, expected = actual.float(), expected.float()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != model's {tuple(expected.shape)}"
    scale = max(1.0, float(expected.abs().max()))
    err = float((actual - expected).abs().max()) / scale
    assert err < tol, f"{what}: canonical view differs from the model (max relative error {err:.2e})"


def _eps(mod: Any) -> float:
    for attr in ("variance_epsilon", "eps", "epsilon"):
        v = getattr(mod, attr, None)
        if isinstance(v, float):
            return v
    return 1e-5  # OlmoLayerNorm hard-codes it


def _normalise(h: torch.Tensor, kind: Any, eps: float) -> torch.Tensor:
    from attest.arch.spec import NormKind

    h = h.float()
    if kind == NormKind.RMS:
        return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return F.layer_norm(h, h.shape[-1:], eps=eps)


def _through_norm(norm: Any, h: torch.Tensor, gain: torch.Tensor | None, kind: Any) -> torch.Tensor:
    """What `norm` outputs for input h if its gain were the canonical `gain` (norm bias from the model)."""
    x = _normalise(h, kind, _eps(norm))
    if gain is not None:
        x = x * gain
    bias = getattr(norm, "bias", None)
    return x + bias.detach() if isinstance(bias, torch.Tensor) else x


def _heads(y: torch.Tensor, n: int) -> torch.Tensor:
    b, t, _ = y.shape
    return y.reshape(b, t, n, -1).transpose(1, 2)


def _head_norm(y: torch.Tensor, gain: torch.Tensor | None, module: Any) -> torch.Tensor:
    if gain is None:
        return y
    return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + _eps(module)) * gain


def _norm_input(run: Run, norm: str | None, into: str, gain: torch.Tensor | None, kind: Any) -> torch.Tensor:
    """What a sublayer reads, rebuilt from the canonical gain; the raw residual when it reads no norm (OLMo-2)."""
    if norm is None:
        assert gain is None, f"{into}: a sublayer without an input norm must have no canonical input gain"
        return run.ios[into][0]
    return _through_norm(run.model.get_submodule(norm), run.ios[norm][0], gain, kind)


def _qk_norm(y: torch.Tensor, gain: torch.Tensor | None, module: Any, whole: bool, n_heads: int) -> torch.Tensor:
    """The model's q/k norm, with the canonical gain: over each head, or over the whole projection first.

    A LayerNorm's centring is already in the canonical rows (so RMS of them is the
    LayerNorm's deviation); a gain per head (Cohere) is [H*dh]; the norm's bias (Phi)
    comes from the model.
    """
    if whole:
        return _heads(_head_norm(y, gain, module), n_heads)
    h = _heads(y, n_heads)
    if gain is not None and gain.numel() != h.shape[-1]:
        gain = gain.reshape(n_heads, 1, -1)
    out = _head_norm(h, gain, module)
    bias = getattr(module, "bias", None)
    return out + bias.detach() if isinstance(bias, torch.Tensor) else out


def _mlp(m: Any, x: torch.Tensor, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    up = x @ m.up.float().T
    hidden = act(x @ m.gate.float().T) * up if m.gate is not None else act(up)
    return hidden @ m.down.float().T


def _rms(y: torch.Tensor, module: Any) -> torch.Tensor:
    return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + _eps(module))


def check_mla(case: str, cm: Any, run: Run, i: int, x: torch.Tensor) -> None:
    """MLA: the canonical tensors reproduce the model's q/k/v states, and so do the term code's per-row states.

    `x` is the attention input rebuilt from the canonical pre-attention gain.  The model's
    own latent norms (their eps) and rope layout are used: at position 0 RoPE is the
    identity, but DeepSeek-V3's interleaved form still de-interleaves the rope dims
    (`[0::2], [1::2]`), the same permutation for q and k.
    """
    from attest.invariants import mla as MLA

    model, layer = run.model, cm.layer(i)
    a = layer.attn
    attn = model.get_submodule(f"model.layers.{i}.self_attn")
    q_model, k_model, v_model = run.qkv[i]
    h, dn, dr = a.n_heads, a.nope_dim, a.rope_dim
    if a.q is not None:
        assert attn.q_lora_rank is None
        q = x @ a.q.float().T
    else:
        q = (_rms(x @ a.q_a.float().T, attn.q_a_layernorm) * a.q_a_norm) @ a.q_b.float().T
    q = _heads(q, h)
    c = x @ a.kv_a.float().T
    c_kv = _rms(c[..., : a.kv_rank], attn.kv_a_layernorm) * a.kv_a_norm
    k_nope, v = _heads(c_kv @ a.k_b.float().T, h), _heads(c_kv @ a.v_b.float().T, h)
    k_pe = c[..., a.kv_rank :].unsqueeze(1).expand(-1, h, -1, -1)
    order = torch.arange(dr)
    if getattr(model.config, "rope_interleave", False):
        order = torch.cat([order[0::2], order[1::2]])
    q = torch.cat([q[..., :dn], q[..., dn:][..., order]], -1)
    k = torch.cat([k_nope, k_pe[..., order]], -1)
    _close(q, q_model, f"{case} layer {i} MLA query states [q_nope; q_pe]")
    _close(k, k_model, f"{case} layer {i} MLA key states [k_nope; k_pe]")
    _close(v, v_model[..., : a.v_dim], f"{case} layer {i} MLA value states")
    o_in, o_out = run.ios[f"model.layers.{i}.self_attn.o_proj"]
    _close(o_in @ a.o.float().T, o_out, f"{case} layer {i} attention output projection")
    # The term code's per-row path from the raw residual rows gives the same heads' products.
    residual = run.ios[f"model.layers.{i}.input_layernorm"][0].reshape(-1, x.shape[-1])
    states = MLA.MlaStates(residual, layer.attn_norm, a, True, torch.float32)
    flat = lambda t: t.transpose(1, 2).reshape(-1, t.shape[1], t.shape[-1])  # noqa: E731  [B*T, H, dh]
    qm, km, vm = flat(q_model), flat(k_model), flat(v_model[..., : a.v_dim])
    _close(MLA.qk(states), torch.einsum("nhe,mhe->nm", qm, km), f"{case} layer {i} MLA qk term vs the model's states")
    x_out = torch.randn(residual.shape, generator=torch.Generator().manual_seed(i))
    o_heads = (x_out @ a.o.float()).reshape(-1, h, a.v_dim)
    _close(MLA.vo(states, x_out), torch.einsum("nhe,mhe->nm", vm, o_heads), f"{case} layer {i} MLA vo term")


def _l2(y: torch.Tensor, eps: float) -> torch.Tensor:
    return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps)


def _gpt_oss_expert(m: Any, x: torch.Tensor, experts: Any, e: int) -> torch.Tensor:
    """GPT-OSS' expert e from the canonical gate/up/down plus the model's own biases, alpha and limit."""
    bias = experts.gate_up_proj_bias[e].float()
    gate = (x @ m.gate.float().T + bias[0::2]).clamp(max=experts.limit)
    up = (x @ m.up.float().T + bias[1::2]).clamp(-experts.limit, experts.limit)
    hidden = (up + 1) * gate * torch.sigmoid(gate * experts.alpha)
    return hidden @ m.down.float().T + experts.down_proj_bias[e].float()


def _their_experts(probe: Probe, experts: Any, flat: torch.Tensor, n: int) -> list[torch.Tensor]:
    """Each of n experts' output for all tokens, computed by the model's own expert module."""
    if probe.expert_call == "all":  # Llama4TextExperts: tokens batched per expert, [E*T, d] in and out
        return list(experts(flat.repeat(n, 1)).reshape(n, flat.shape[0], -1))
    ones = torch.ones(flat.shape[0], 1)
    return [experts(flat, torch.full((flat.shape[0], 1), e, dtype=torch.long), ones) for e in range(n)]


def check_attention(case: str, cm: Any, run: Run) -> None:
    from attest.arch.mla import MlaAttention

    probe, model = PROBES[case], run.model
    for i in range(cm.n_layers):
        layer = cm.layer(i)
        a = layer.attn
        norm_path = _path(probe.attn_norm, i) if probe.attn_norm else None
        attn_in = _path(probe.attn_in, i)
        x = _norm_input(run, norm_path, attn_in, layer.attn_norm, cm.norm_kind)
        _close(x, run.ios[attn_in][0], f"{case} layer {i} attention input (pre-attention gain)")
        if isinstance(a, MlaAttention):
            check_mla(case, cm, run, i, x)
            continue
        q_model, k_model, v_model = run.qkv[i]
        if probe.q_norm:
            module = model.get_submodule(_path(probe.q_norm, i))
            q = _qk_norm(x @ a.q.float().T, a.q_norm, module, probe.qk_norm_whole, a.n_heads)
        else:
            assert a.q_norm is None
            q = _heads(x @ a.q.float().T, a.n_heads)
        # Llama-4's RoPE layers: a gain-free L2 norm of q and k heads (no gain to fold; the states are normed)
        l2 = getattr(model.get_submodule(_path(probe.attn, i)), "qk_norm", None) if probe.qk_l2 else None
        if l2 is not None:
            q = _l2(q, l2.eps)
        _close(q * probe.q_scale, q_model, f"{case} layer {i} query states")
        if probe.k_norm:
            module = model.get_submodule(_path(probe.k_norm, i))
            k = _qk_norm(x @ a.k.float().T, a.k_norm, module, probe.qk_norm_whole, a.n_kv_heads)
        else:
            k = _heads(x @ a.k.float().T, a.n_kv_heads)
        if l2 is not None:
            k = _l2(k, l2.eps)
        v = _heads(x @ a.v.float().T, a.n_kv_heads)
        for name, ours, theirs in (("key", k, k_model), ("value", v, v_model)):
            if theirs.shape[1] != ours.shape[1]:  # the model already repeated KV heads per query group
                ours = ours.repeat_interleave(theirs.shape[1] // ours.shape[1], dim=1)
            _close(ours, theirs, f"{case} layer {i} {name} states")
        o_in, o_out = run.ios[_path(probe.o, i)]
        _close(o_in @ a.o.float().T, o_out, f"{case} layer {i} attention output projection")
        if probe.attn_out_norm:
            h, y = run.ios[_path(probe.attn_out_norm, i)]
            _close(
                _through_norm(model.get_submodule(_path(probe.attn_out_norm, i)), h, layer.attn_out_norm, cm.norm_kind),
                y,
                f"{case} layer {i} attention post-norm",
            )


def check_ffn(case: str, cm: Any, run: Run) -> None:
    from transformers.activations import ACT2FN

    probe, model = PROBES[case], run.model
    n_experts = next((CASES[case].config[k] for k in EXPERT_COUNT_KEYS if k in CASES[case].config), None)
    for i in range(cm.n_layers):
        layer = cm.layer(i)
        act = model.get_submodule(_path(probe.act_module, i)) if probe.act_module else ACT2FN[probe.act]
        norm_path = _path(probe.ffn_norm, i) if probe.ffn_norm else None
        ffn_in = _path(probe.ffn_in, i)
        x = _norm_input(run, norm_path, ffn_in, layer.ffn_norm, cm.norm_kind)
        _close(x, run.ios[ffn_in][0], f"{case} layer {i} FFN input (pre-FFN gain)")
        # A dense FFN, or a dense layer of a MoE model (which the model must build as dense too).
        dense = not probe.experts or not hasattr(
            model.get_submodule(_path(probe.experts, i).rsplit(".", 1)[0]), "experts"
        )
        if dense:
            assert probe.ffn_out, f"{case} layer {i}: dense layer without an FFN output probe"
            assert layer.mlp is not None and not layer.experts, f"{case} layer {i}: expected a dense FFN"
            with torch.no_grad():  # a learned activation module (xIELU) carries parameters
                ours = _mlp(layer.mlp, x, act)
            _close(ours, run.ios[_path(probe.ffn_out, i)][1], f"{case} layer {i} FFN output")
        if probe.ffn_out_norm:
            h, y = run.ios[_path(probe.ffn_out_norm, i)]
            _close(
                _through_norm(model.get_submodule(_path(probe.ffn_out_norm, i)), h, layer.ffn_out_norm, cm.norm_kind),
                y,
                f"{case} layer {i} FFN post-norm",
            )
        if not dense:
            assert probe.experts and probe.router
            flat = x.reshape(-1, x.shape[-1])
            assert layer.mlp is None and len(layer.experts) == n_experts, f"{case} layer {i}: expected MoE"
            _close(flat @ layer.router.float().T, run.ios[_path(probe.router, i)][1], f"{case} layer {i} router logits")
            experts = model.get_submodule(_path(probe.experts, i))
            with torch.no_grad():
                theirs_all = _their_experts(probe, experts, flat, len(layer.experts))
                for e, (mlp, theirs) in enumerate(zip(layer.experts, theirs_all, strict=True)):
                    ours = (
                        _gpt_oss_expert(mlp, flat, experts, e) if probe.expert_fn == "gpt_oss" else _mlp(mlp, flat, act)
                    )
                    _close(ours, theirs, f"{case} layer {i} expert {e}")
                if probe.shared:
                    assert len(layer.shared_experts) == 1
                    theirs = model.get_submodule(_path(probe.shared, i))(flat)
                    _close(_mlp(layer.shared_experts[0], flat, act), theirs, f"{case} layer {i} shared expert")
                else:
                    assert not layer.shared_experts


def check_globals(case: str, cm: Any, run: Run) -> None:
    probe, model = PROBES[case], run.model
    ids = list(range(3, cm.dims.vocab, 37))
    emb = model.get_input_embeddings().weight.detach()
    _close(cm.embedding_rows(ids), emb[ids], f"{case} embedding rows")
    head = model.get_output_embeddings()
    if head is not None:
        _close(cm.head_rows(ids), head.weight.detach()[ids], f"{case} output head rows")
        assert cm.tied_head == bool(model.config.tie_word_embeddings), f"{case}: tied head flag"
    if probe.final_norm:
        h, y = run.ios[probe.final_norm]
        _close(
            _through_norm(model.get_submodule(probe.final_norm), h, cm.final_norm_gain(), cm.norm_kind),
            y,
            f"{case} final norm",
        )
    if probe.embed_norm:
        h, y = run.ios[probe.embed_norm]
        _close(
            _through_norm(model.get_submodule(probe.embed_norm), h, cm.embed_norm_gain(), cm.norm_kind),
            y,
            f"{case} embedding norm",
        )
    else:
        assert cm.embed_norm_gain() is None
    cfg = model.config
    assert cm.dims.vocab == cfg.vocab_size and cm.dims.hidden == 64
    assert cm.n_layers == cfg.num_hidden_layers


def _check_all(case: str, cm: Any) -> None:
    run = _run(case)
    check_attention(case, cm, run)
    check_ffn(case, cm, run)
    check_globals(case, cm, run)


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("case", CASE_NAMES)
def test_canonical_view_reproduces_the_model(case: str, root: Path) -> None:
    cm = _load(case, "safetensors", root)
    assert cm.family == CASES[case].family
    _check_all(case, cm)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_self_comparison_is_exact(case: str, root: Path) -> None:
    from attest.invariants.methods import DEFAULT, HUREF_2024
    from attest.scoring.decision import Verdict
    from attest.workflows.compare import compare_models

    cm = _load(case, "safetensors", root)
    for method in (DEFAULT, HUREF_2024):
        res = compare_models(cm, cm, method, precision="fp32")
        assert res.token_mode == "strings" and res.coverage == 1.0 and res.n_tokens >= 64, (case, method.name)
        # compare_models keeps standardised terms in float16 and reduces in float32: a model
        # against itself lands within ~2e-6 of 1 (measured), so 1e-5 is the exactness bound.
        assert abs(res.score - 1.0) < 1e-5, f"{case} {method.name}: self-similarity {res.score}"
        for pair in res.pairs:
            assert pair.a == pair.b and all(abs(v - 1.0) < 1e-5 for v in pair.terms.values()), (case, method.name, pair)
        assert res.verdict == Verdict.MATCH, (case, method.name, res.reasons)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_derived_copy_matches_and_other_seed_does_not(case: str, root: Path) -> None:
    """A lightly fine-tuned copy (every weight moved by 5% of its spread) matches; another seed does not."""
    import copy

    from attest.arch.detect import load_model
    from attest.invariants.methods import DEFAULT
    from attest.scoring.decision import Verdict
    from attest.workflows.compare import compare_models

    base = _load(case, "safetensors", root)
    derived = copy.deepcopy(_run(case).model)
    gen = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for p in derived.parameters():
            if p.numel() > 1:  # a scalar (xIELU's beta) has no spread to scale by
                p.add_(0.05 * p.std() * torch.randn(p.shape, generator=gen))
    derived_folder = save_model(derived, root / f"{case}-derived")
    other_folder = save_model(build_tiny_model(case, seed=100 + CASE_NAMES.index(case)), root / f"{case}-other")
    near = compare_models(base, load_model(derived_folder), DEFAULT, precision="fp32")
    far = compare_models(base, load_model(other_folder), DEFAULT, precision="fp32")
    assert near.verdict == Verdict.MATCH, (case, near.score, near.reasons)
    assert far.verdict == Verdict.NO_MATCH, (case, far.score, far.reasons)
    assert near.score > far.score


@pytest.mark.parametrize("case,form", [("llama", "bin"), ("mixtral", "stacked"), ("deepseek_v3", "stacked")])
def test_other_storage_forms(case: str, form: str, root: Path) -> None:
    """pytorch_model.bin through the weights-only loader; MoE experts stacked [E, 2f, d] on disk."""
    folder = _save(case, form, root)
    names = {p.name for p in folder.iterdir()}
    if form == "bin":
        assert "pytorch_model.bin" in names and not any(n.endswith(".safetensors") for n in names)
    else:
        from attest.sources import open_weights

        stored = set(open_weights(folder).names())
        assert any(n.endswith(".mlp.experts.gate_up_proj") for n in stored)  # layer 0 of DeepSeek is dense
        assert not any(".experts.0." in n for n in stored)
    cm = _load(case, form, root)
    assert cm.source.format == ("torch" if form == "bin" else "safetensors")
    _check_all(case, cm)
    # Same weights, other storage: the saved per-expert / safetensors form must give identical layers.
    ref = _load(case, "safetensors", root)
    for i in range(cm.n_layers):
        a, b = cm.layer(i), ref.layer(i)
        for f in dataclasses.fields(a.attn):
            x, y = getattr(a.attn, f.name), getattr(b.attn, f.name)
            assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y, f"attention {f.name}"
        mlps_a = a.experts or [a.mlp]
        mlps_b = b.experts or [b.mlp]
        for ma, mb in zip(mlps_a, mlps_b, strict=True):
            assert torch.equal(ma.up, mb.up) and torch.equal(ma.down, mb.down) and torch.equal(ma.gate, mb.gate)


@pytest.mark.parametrize("case", ["llama", "gpt2", "gpt_neox", "bert", "mixtral", "phi3", "gpt_oss"])
def test_family_detection_without_config(case: str, root: Path, tmp_path: Path) -> None:
    from attest.arch.detect import load_model

    src = _save(case, "safetensors", root)
    folder = tmp_path / case
    shutil.copytree(src, folder)
    (folder / "config.json").unlink()
    cm = load_model(folder)
    assert cm.family == CASES[case].family
    assert cm.config is None
    assert any("head_dim" in w for w in cm.warnings)
    # The head size of these tiny models (16) cannot be told from shapes alone: the guess
    # differs, but every layer must load, and all that does not depend on the head split
    # must equal the config-driven view.  Per-head interleaved QKV (GPT-NeoX) is split
    # by head, so only its o, gains and FFN are compared.
    ref = _load(case, "safetensors", root)
    assert cm.n_layers == ref.n_layers and cm.dims.hidden == ref.dims.hidden and cm.dims.vocab == ref.dims.vocab
    assert cm.tied_head == ref.tied_head
    for i in range(cm.n_layers):
        a, b = cm.layer(i), ref.layer(i)
        assert torch.equal(a.attn.o, b.attn.o)
        if case != "gpt_neox":
            assert (
                torch.equal(a.attn.q, b.attn.q) and torch.equal(a.attn.k, b.attn.k) and torch.equal(a.attn.v, b.attn.v)
            )
        for ga, gb in ((a.attn_norm, b.attn_norm), (a.ffn_norm, b.ffn_norm)):
            assert (ga is None) == (gb is None) and (ga is None or torch.equal(ga, gb))
        for ma, mb in zip(a.experts or [a.mlp], b.experts or [b.mlp], strict=True):
            assert torch.equal(ma.up, mb.up) and torch.equal(ma.down, mb.down)


def layouts_table() -> str:
    lines = ["| case | attest family | transformers class | layouts exercised |", "|---|---|---|---|"]
    for name, features in LAYOUTS.items():
        case = CASES[name]
        cls = "AutoModel" if case.auto == "base" else "AutoModelForCausalLM"
        lines.append(f"| {name} | {case.family} | {case.model_type} ({cls}) | {', '.join(features)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(layouts_table())


@pytest.mark.parametrize("case", ["ernie4_5_moe", "glm4_moe", "deepseek_v2", "deepseek_v3"])
def test_dense_layers_of_moe_models_follow_the_config(case: str, root: Path, tmp_path: Path) -> None:
    """The config's MoE-layer rule decides; without it the router's presence does; a bad value is an input error."""
    import json

    from attest.arch.detect import load_model
    from attest.errors import InputError

    ref = _load(case, "safetensors", root)
    kinds = [bool(ref.layer(i).experts) for i in range(ref.n_layers)]
    assert kinds == [False] + [True] * (ref.n_layers - 1)
    folder = tmp_path / case
    shutil.copytree(_save(case, "safetensors", root), folder)
    config = json.loads((folder / "config.json").read_text())
    key = "moe_layer_start_index" if case == "ernie4_5_moe" else "first_k_dense_replace"  # DeepSeek's too
    (folder / "config.json").write_text(json.dumps({**config, key: "one"}))
    with pytest.raises(InputError, match="integer"):
        load_model(folder)
    # A config that makes a dense layer MoE: its experts are missing, a clean error names the layer.
    (folder / "config.json").write_text(json.dumps({**config, key: 0}))
    with pytest.raises(InputError, match="layer 0"):
        load_model(folder).layer(0)
    # No config (as a GGUF header gives none of these keys): the router's presence decides.
    from attest.arch.canonical import CanonicalModel
    from attest.sources import open_weights

    cm = CanonicalModel(open_weights(folder), ref.spec, None, None)
    assert [bool(cm.layer(i).experts) for i in range(cm.n_layers)] == kinds


@pytest.mark.parametrize("case", ["deepseek_v2", "deepseek_v3"])
def test_mla_detection_and_hostile_widths(case: str, root: Path, tmp_path: Path) -> None:
    """MLA tensors name their family without a config; a config whose MLA widths contradict the tensors
    is a clean input error naming the key, never a wrong split."""
    import json

    from attest.arch.detect import load_model, spec_from_tensor_names
    from attest.errors import InputError
    from attest.sources import open_weights

    folder = tmp_path / case
    shutil.copytree(_save(case, "safetensors", root), folder)
    spec = spec_from_tensor_names(set(open_weights(folder).names()))
    assert spec is not None and spec.family == case
    # Without config.json the head count follows from the latent shapes (H·d_r = q − kv_b + o).
    from attest.arch.canonical import CanonicalModel

    bare, ref = CanonicalModel(open_weights(folder), spec, None, None), _load(case, "safetensors", root)
    assert bare.dims.n_heads == ref.dims.n_heads == 4
    assert torch.equal(bare.layer(1).attn.k_b, ref.layer(1).attn.k_b)
    config = json.loads((folder / "config.json").read_text())
    for key in ("qk_nope_head_dim", "v_head_dim", "kv_lora_rank"):
        (folder / "config.json").write_text(json.dumps({**config, key: config[key] + 1}))
        with pytest.raises(InputError, match=key):
            load_model(folder).layer(0)
    (folder / "config.json").write_text(json.dumps({**config, "rms_norm_eps": "tiny"}))
    with pytest.raises(InputError, match="epsilon"):
        load_model(folder).layer(0)


# --------------------------------------------------------------------------- frontier architectures (issue 13)
def _rewrite(folder: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path), metadata={"format": "pt"})


@pytest.mark.parametrize(
    "case,name",
    [
        ("gpt_oss", "model.layers.0.mlp.experts.gate_up_proj"),
        ("gpt_oss", "model.layers.0.mlp.experts.down_proj"),
        ("llama4_text", "model.layers.1.feed_forward.experts.gate_up_proj"),
        ("llama4_text", "model.layers.1.feed_forward.experts.down_proj"),
    ],
)
def test_a_transposed_stacked_expert_tensor_is_refused(case: str, name: str, root: Path, tmp_path: Path) -> None:
    """[E, d, 2f] stored as [E, 2f, d] (or down [E, f, d] as [E, d, f]) is an input error naming tensor and shapes."""
    from attest.arch.detect import load_model
    from attest.errors import InputError

    folder = tmp_path / case
    shutil.copytree(_save(case, "safetensors", root), folder)
    _rewrite(folder, lambda state: state.__setitem__(name, state[name].transpose(1, 2).contiguous()))
    cm = load_model(folder)
    layer = int(name.split(".")[2])
    with pytest.raises(InputError, match=rf"stacked expert \w+ '{re.escape(name)}' .*has shape .*expected"):
        cm.layer(layer)


def _mxfp4_blocks(shape: tuple[int, ...], gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random MXFP4 blocks [*shape, G, 16] and scales [*shape, G] (exponents near 2^0) for rows of width 32*G."""
    *rows, width = shape
    blocks = torch.randint(0, 256, (*rows, width // 32, 16), generator=gen, dtype=torch.uint8)
    scales = torch.randint(120, 131, (*rows, width // 32), generator=gen, dtype=torch.uint8)
    return blocks, scales


def test_mxfp4_dequantisation_equals_transformers() -> None:
    """attest.arch.mxfp4 gives bit-for-bit what transformers' own GPT-OSS loader computes."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    from attest.arch.mxfp4 import dequantise_stacked
    from attest.errors import InputError

    gen = torch.Generator().manual_seed(3)
    blocks, scales = _mxfp4_blocks((3, 48, 96), gen)
    ours = dequantise_stacked(blocks, scales, "test")
    theirs = convert_moe_packed_tensors(blocks.clone(), scales.clone(), dtype=torch.bfloat16)
    assert ours.shape == theirs.shape == (3, 96, 48)
    assert torch.equal(ours, theirs)
    with pytest.raises(InputError, match="do not fit"):
        dequantise_stacked(blocks, scales[:, :, :1], "test")
    with pytest.raises(InputError, match="uint8"):
        dequantise_stacked(blocks.float(), scales, "test")
    huge = scales.clone()
    huge[0, 0, 0] = 255
    with pytest.raises(InputError, match="overflow"):
        dequantise_stacked(blocks | 0x11, huge, "test")  # every code nonzero


def test_gpt_oss_mxfp4_checkpoint_reproduces_the_model(tmp_path: Path) -> None:
    """Experts stored as MXFP4 `_blocks`/`_scales` (the released layout): the canonical view equals the
    real GptOssExperts holding transformers' dequantisation of the same bytes, by the forward check."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    from attest.arch.detect import load_model

    model = build_tiny_model("gpt_oss", seed=5, intermediate_size=32)  # MXFP4 groups are 32 wide: f = 32
    gen = torch.Generator().manual_seed(4)
    packed: dict[str, torch.Tensor] = {}
    e, d, f = 4, 64, 32
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            for proj, out_in in (("gate_up_proj", (e, 2 * f, d)), ("down_proj", (e, d, f))):
                blocks, scales = _mxfp4_blocks(out_in, gen)
                getattr(layer.mlp.experts, proj).copy_(convert_moe_packed_tensors(blocks, scales).float())
                packed[f"model.layers.{i}.mlp.experts.{proj}_blocks"] = blocks
                packed[f"model.layers.{i}.mlp.experts.{proj}_scales"] = scales
    folder = save_model(model, tmp_path / "mxfp4")

    def to_mxfp4(state: dict[str, torch.Tensor]) -> None:
        for i in range(model.config.num_hidden_layers):
            del state[f"model.layers.{i}.mlp.experts.gate_up_proj"], state[f"model.layers.{i}.mlp.experts.down_proj"]
        state.update(packed)

    _rewrite(folder, to_mxfp4)
    cm = load_model(folder)
    run = record("gpt_oss", model, model.config.num_hidden_layers)
    check_ffn("gpt_oss", cm, run)
    # A missing scales tensor is a clean input error that names it.
    _rewrite(folder, lambda state: state.pop("model.layers.1.mlp.experts.down_proj_scales"))
    from attest.errors import InputError

    with pytest.raises(InputError, match="down_proj_scales"):
        load_model(folder).layer(1)


def test_llama4_multimodal_checkpoint_reads_its_text_decoder(tmp_path: Path) -> None:
    """`llama4` (Llama4ForConditionalGeneration) keeps the text decoder under `language_model.`, its
    dimensions under text_config: the canonical view reproduces that decoder's forward pass."""
    from helpers.family_configs import VOCAB_SIZE
    from helpers.models import randomise_
    from transformers import Llama4Config, Llama4ForConditionalGeneration

    from attest.arch.detect import load_model

    text = {"vocab_size": VOCAB_SIZE, **CASES["llama4_text"].config}
    vision = dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=28,
        patch_size=14,
        vision_output_dim=32,
        projector_input_dim=32,
        projector_output_dim=64,
    )
    config = Llama4Config(text_config=text, vision_config=vision, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = randomise_(Llama4ForConditionalGeneration(config).eval(), 8)
    folder = save_model(model, tmp_path / "llama4")
    cm = load_model(folder)
    assert cm.family == "llama4" and cm.layer_prefix == "language_model.model.layers.{i}."
    decoder = model.language_model
    decoder.config._attn_implementation = "eager"
    run = record("llama4_text", decoder, decoder.config.num_hidden_layers)
    check_attention("llama4_text", cm, run)
    check_ffn("llama4_text", cm, run)
    check_globals("llama4_text", cm, run)


def test_llama4_moe_layers_follow_the_config(root: Path, tmp_path: Path) -> None:
    """`moe_layers` lists the MoE layers; without it every `interleave_moe_layer_step`-th layer is MoE."""
    import json

    from attest.arch.detect import load_model
    from attest.errors import InputError

    folder = tmp_path / "llama4"
    shutil.copytree(_save("llama4_text", "safetensors", root), folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["moe_layers"] == [1, 3]
    expected = [False, True, False, True]
    assert [bool(load_model(folder).layer(i).experts) for i in range(4)] == expected
    del config["moe_layers"]
    (folder / "config.json").write_text(json.dumps(config))
    assert [bool(load_model(folder).layer(i).experts) for i in range(4)] == expected
    (folder / "config.json").write_text(json.dumps({**config, "moe_layers": "1,3"}))
    with pytest.raises(InputError, match="MoE layer list"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({**config, "moe_layers": [0, 1, 3]}))
    with pytest.raises(InputError, match="layer 0"):
        load_model(folder).layer(0)
