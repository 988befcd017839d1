"""ONNX graphs of BERT-family encoders, read as Hugging Face BERT tensors.

An ONNX export rarely keeps the Hugging Face names of the weights that matter:
exporters fold `Linear` weights into anonymous `[in, out]` MatMul initializers
(`onnx::MatMul_470`, `val_49`), and quantizers replace them by int8 tensors
that a small constant subgraph turns back into floats.  So the roles are read
from what the graph *computes*, not from what it is called:

1. Constant folding (`_Constants`): any tensor computed only from initializers
   through a short chain of whitelisted ops (Cast, Mul, Sub, DequantizeLinear,
   Transpose, ...) is a weight.  This covers fp32 exports, QDQ int8
   (`DequantizeLinear`, per tensor, per axis or blocked), weight-only int8 as
   `Cast(q) * scale`, and the operator forms `MatMulInteger` and
   `QLinearMatMul`, whose weight scale lives outside the weight's own subgraph.
2. Events (`LINEAR_OPS`, `NORM_OPS`, decomposed LayerNorm): every linear
   layer, LayerNorm and embedding lookup, each knowing which earlier events its
   data input is computed from ("anchors", shape metadata excluded).
3. A declarative layer pattern (`BERT_LAYER`) is matched against the events in
   topological order, one layer after another; the last norm of a layer is the
   next layer's input.  Attention tracing then tells q from k (the pair that
   meets in the score MatMul; q on its left) and from v.

The result is exposed under plain HF BERT names, so the `BERT` family table
applies unchanged.  When the graph cannot be mapped but the initializers carry
HF names, those names are used instead; when both exist they are cross-checked.
"""

from __future__ import annotations

import heapq
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from attest.errors import InputError, UnsupportedModelError
from attest.sources.base import WeightSource

ONNX_EXTRA_HINT = "reading .onnx needs the optional extra: pip install 'attest-fingerprint[onnx]'"

# Protobuf cannot serialise a message above 2 GiB, so a bigger .onnx is not a
# model but an attack on the parser; real large models use external data.
MAX_ONNX_BYTES = 2 * 1024**3
MAX_EXTERNAL_BYTES = 1024**4
MAX_NODES = 1_000_000
# Weight subgraphs are a few ops deep; a long chain is not a weight and deep
# recursion on a hostile graph must not reach Python's stack limit.
MAX_FOLD_DEPTH = 24
MAX_SMALL_CONST = 64  # elements: shape vectors evaluated while analysing the graph

_ONNX: Any = None


def import_onnx() -> Any:
    """The `onnx` module, imported on first use because it is an optional extra."""
    global _ONNX
    if _ONNX is None:
        try:
            import onnx
            import onnx.numpy_helper  # noqa: F401
        except ImportError:
            raise InputError(ONNX_EXTRA_HINT) from None
        _ONNX = onnx
    return _ONNX


# --------------------------------------------------------------------------- graph model
@dataclass(frozen=True)
class GraphNode:
    op: str
    domain: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    order: int  # position in topological order; virtual nodes get -1


def _attr_values(node: Any, onnx: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    A = onnx.AttributeProto
    for a in node.attribute:
        # Subgraphs (If/Loop bodies) never hold a BERT encoder's weights, and
        # keeping any sub-message alive would pin the whole parsed file in memory.
        if a.type in (A.GRAPH, A.GRAPHS, A.SPARSE_TENSOR, A.SPARSE_TENSORS, A.TYPE_PROTO, A.TYPE_PROTOS):
            continue
        if a.type == A.TENSOR:
            try:
                out[a.name] = _plain(np.array(onnx.numpy_helper.to_array(a.t)))
            except Exception as exc:
                raise InputError(f"ONNX node '{node.name}': attribute '{a.name}' is unreadable ({exc})") from None
            continue
        if a.type == A.TENSORS:
            continue
        out[a.name] = onnx.helper.get_attribute_value(a)
    return out


def _topological(nodes: list[GraphNode], available: set[str]) -> list[GraphNode]:
    """Kahn's order, stable w.r.t. file order (the ONNX spec requires sorted nodes, files do not always comply)."""
    producers = {o: i for i, n in enumerate(nodes) for o in n.outputs if o}
    waiting = [0] * len(nodes)
    dependants: dict[int, list[int]] = defaultdict(list)
    for i, n in enumerate(nodes):
        for t in set(n.inputs):
            p = producers.get(t)
            if t and t not in available and p is not None and p != i:
                waiting[i] += 1
                dependants[p].append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in dependants.get(i, ()):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):
        raise InputError("ONNX graph has a cycle")
    return [GraphNode(n.op, n.domain, n.name, n.inputs, n.outputs, n.attrs, k) for k, n in enumerate(nodes[i] for i in order)]


# --------------------------------------------------------------------------- stored tensors
_SIMPLE_DTYPES: dict[int, np.dtype] = {}


def _simple_dtypes(onnx: Any) -> dict[int, np.dtype]:
    if not _SIMPLE_DTYPES:
        T = onnx.TensorProto
        for code, dt in (
            (T.FLOAT, np.float32), (T.FLOAT16, np.float16), (T.DOUBLE, np.float64),
            (T.INT8, np.int8), (T.UINT8, np.uint8), (T.INT16, np.int16), (T.UINT16, np.uint16),
            (T.INT32, np.int32), (T.UINT32, np.uint32), (T.INT64, np.int64), (T.UINT64, np.uint64),
            (T.BOOL, np.bool_),
        ):
            _SIMPLE_DTYPES[code] = np.dtype(dt).newbyteorder("<")
    return _SIMPLE_DTYPES


def _plain(arr: np.ndarray) -> np.ndarray:
    """ml_dtypes arrays (bfloat16, float8, int4) as ordinary numpy dtypes that torch understands."""
    kind = arr.dtype.name
    if kind.startswith(("int4", "int2")):
        return arr.astype(np.int8)
    if kind.startswith(("uint4", "uint2")):
        return arr.astype(np.uint8)
    if arr.dtype.kind == "V" or kind.startswith(("bfloat16", "float8", "float4")):
        return arr.astype(np.float32)
    return arr


@dataclass
class _Blob:
    """One initializer's bytes, kept out of the protobuf so rows can be sliced without a full copy."""

    dims: tuple[int, ...]
    data_type: int
    raw: bytes | None = None
    external: tuple[Path, int, int] | None = None  # file, offset, length
    array: np.ndarray | None = None  # already decoded (typed fields, Constant nodes, virtual constants)
    _mapped: np.ndarray | None = None

    def nbytes_expected(self, itemsize: int) -> int:
        return int(np.prod(self.dims, dtype=np.int64)) * itemsize

    def view(self, onnx: Any) -> np.ndarray:
        """A read-only array; memory-mapped for external data, a zero-copy view of the bytes otherwise."""
        if self.array is not None:
            return self.array
        simple = _simple_dtypes(onnx).get(self.data_type)
        buf: Any
        if self.external is not None:
            if self._mapped is None:
                path, offset, length = self.external
                self._mapped = np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(length,))
            buf = self._mapped
        else:
            buf = self.raw or b""
        if simple is not None:
            need = self.nbytes_expected(simple.itemsize)
            if len(buf) != need:
                raise InputError(f"ONNX tensor of shape {self.dims} holds {len(buf)} bytes, expected {need}")
            flat = buf.view(simple) if isinstance(buf, np.ndarray) else np.frombuffer(buf, dtype=simple)
            arr = flat.reshape(self.dims)
            return arr if sys.byteorder == "little" else arr.astype(simple.newbyteorder("="))
        # Packed or exotic types (int4, bfloat16, float8): let onnx decode them once.
        proto = onnx.TensorProto()
        proto.data_type = self.data_type
        proto.dims.extend(self.dims)
        proto.raw_data = bytes(buf)
        self.array = _plain(onnx.numpy_helper.to_array(proto))
        return self.array


def _external_location(tensor: Any, folder: Path) -> tuple[Path, int, int]:
    info = {e.key: e.value for e in tensor.external_data}
    loc = info.get("location", "")
    if not loc or Path(loc).is_absolute() or loc.startswith(("/", "\\")) or ":" in loc:
        raise InputError(f"ONNX tensor '{tensor.name}': external data location '{loc}' must be a relative file name")
    base = folder.resolve()
    target = (base / loc).resolve()
    if base not in target.parents:
        raise InputError(f"ONNX tensor '{tensor.name}': external data '{loc}' points outside the model folder")
    if not target.is_file():
        raise InputError(f"ONNX tensor '{tensor.name}': external data file '{loc}' not found")
    try:
        offset = int(info.get("offset", "0"))
        size = target.stat().st_size
        length = int(info["length"]) if "length" in info else size - offset
    except ValueError:
        raise InputError(f"ONNX tensor '{tensor.name}': bad external data offset or length") from None
    if offset < 0 or length < 0 or offset + length > size:
        raise InputError(f"ONNX tensor '{tensor.name}': external data range {offset}+{length} is past the end of '{loc}'")
    return target, offset, length


# --------------------------------------------------------------------------- constant folding
_ELEMENTWISE = {"Mul": np.multiply, "Sub": np.subtract, "Add": np.add, "Div": np.divide}
# Ops through which a constant stays a constant.  Anything else (Shape, Gather
# of a graph input, ...) makes the result depend on the input.
FOLDABLE_OPS = frozenset({"Identity", "Cast", "DequantizeLinear", "Transpose", "Reshape", "Squeeze", "Unsqueeze", *_ELEMENTWISE})


class _Constants:
    """Initializers, Constant nodes and the pure functions of them, evaluated on demand."""

    def __init__(self, onnx: Any, blobs: dict[str, _Blob], producer: dict[str, GraphNode]) -> None:
        self.onnx = onnx
        self.blobs = blobs
        self.producer = producer
        self._const: dict[str, bool] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._virtual = 0

    # -- structure -----------------------------------------------------------
    def is_const(self, name: str, depth: int = 0) -> bool:
        if not name:
            return False
        if name in self.blobs:
            return True
        hit = self._const.get(name)
        if hit is not None:
            return hit
        node = self.producer.get(name)
        ok = False
        if node is not None and node.op in FOLDABLE_OPS and node.domain in ("", "ai.onnx") and depth < MAX_FOLD_DEPTH:
            data = [t for t in node.inputs if t]
            ok = bool(data) and all(self.is_const(t, depth + 1) for t in data)
        self._const[name] = ok
        return ok

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self.blobs:
            return self.blobs[name].dims
        cached = self._shapes.get(name)
        if cached is not None:
            return cached
        node = self.producer[name]
        ins = node.inputs
        op = node.op
        if op in ("Identity", "Cast", "DequantizeLinear"):
            s = self.shape(ins[0])
        elif op in _ELEMENTWISE:
            try:
                s = tuple(np.broadcast_shapes(*(self.shape(t) for t in ins if t)))
            except ValueError:
                raise InputError(f"ONNX node '{node.name}': operands of {op} do not broadcast") from None
        elif op == "Transpose":
            src = self.shape(ins[0])
            perm = list(node.attrs.get("perm") or reversed(range(len(src))))
            if sorted(perm) != list(range(len(src))):
                raise InputError(f"ONNX node '{node.name}': bad Transpose perm {perm}")
            s = tuple(src[p] for p in perm)
        elif op == "Reshape":
            s = _reshaped(self.shape(ins[0]), self.small_ints(ins[1]), bool(node.attrs.get("allowzero", 0)), node.name)
        elif op in ("Squeeze", "Unsqueeze"):
            s = _squeezed(op, self.shape(ins[0]), self._axes(node), node.name)
        else:  # pragma: no cover - is_const() admits only the ops above
            raise InputError(f"ONNX node '{node.name}': cannot fold {op}")
        self._shapes[name] = s
        return s

    def _axes(self, node: GraphNode) -> list[int] | None:
        if len(node.inputs) > 1 and node.inputs[1]:
            return self.small_ints(node.inputs[1])
        axes = node.attrs.get("axes")
        return list(axes) if axes is not None else None

    def small_ints(self, name: str) -> list[int]:
        if not self.is_const(name) or int(np.prod(self.shape(name), dtype=np.int64)) > MAX_SMALL_CONST:
            raise InputError(f"ONNX tensor '{name}': expected a small constant integer vector")
        return [int(x) for x in np.asarray(self.value(name)).reshape(-1)]

    def add_virtual(self, op: str, inputs: Sequence[str], attrs: Mapping[str, Any] | None = None) -> str:
        """A node the file does not contain but whose value is the weight (MatMulInteger's scale, Gemm's alpha)."""
        self._virtual += 1
        out = f"<attest:{op}:{self._virtual}>"
        self.producer[out] = GraphNode(op, "", out, tuple(inputs), (out,), dict(attrs or {}), -1)
        return out

    def add_array(self, arr: np.ndarray) -> str:
        self._virtual += 1
        out = f"<attest:const:{self._virtual}>"
        self.blobs[out] = _Blob(tuple(arr.shape), 0, array=arr)
        return out

    def leaves(self, name: str, depth: int = 0) -> list[str]:
        """The initializers a constant is computed from (for reporting storage dtypes)."""
        if name in self.blobs or depth > MAX_FOLD_DEPTH:
            return [name]
        node = self.producer.get(name)
        return [leaf for t in (node.inputs if node else ()) if t for leaf in self.leaves(t, depth + 1)]

    # -- values ----------------------------------------------------------------
    def value(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """The constant's value, or only rows `rows` of its first axis (sliced before any full decode)."""
        if name in self.blobs:
            arr = self.blobs[name].view(self.onnx)
            return np.asarray(arr[rows]) if rows is not None else arr
        node = self.producer[name]
        op, ins = node.op, node.inputs
        if op == "Identity":
            return self.value(ins[0], rows)
        if op == "Cast":
            return _cast(self.value(ins[0], rows), int(node.attrs.get("to", 1)), self.onnx)
        if op in _ELEMENTWISE:
            out_shape = self.shape(name)
            parts = [self.value(t, _rows_for(self.shape(t), out_shape, rows)) for t in ins if t]
            res = parts[0]
            for p in parts[1:]:
                res = _ELEMENTWISE[op](res, p)
            return _broadcast_rows(np.asarray(res), out_shape, rows)
        if op == "DequantizeLinear":
            return self._dequantize(node, rows)
        full: np.ndarray
        if op == "Transpose":
            src = self.value(ins[0])
            full = np.transpose(src, node.attrs.get("perm") or None)
        elif op == "Reshape" or op in ("Squeeze", "Unsqueeze"):
            full = np.reshape(self.value(ins[0]), self.shape(name))
        else:  # pragma: no cover
            raise InputError(f"ONNX node '{node.name}': cannot fold {op}")
        return np.asarray(full[rows]) if rows is not None else full

    def _dequantize(self, node: GraphNode, rows: np.ndarray | None) -> np.ndarray:
        ins = list(node.inputs) + ["", ""]
        x_name, s_name, z_name = ins[0], ins[1], ins[2]
        x_shape, s_shape = self.shape(x_name), self.shape(s_name)
        rank = len(x_shape)
        axis = int(node.attrs.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        block = int(node.attrs.get("block_size", 0))
        per_tensor = int(np.prod(s_shape, dtype=np.int64)) == 1
        if not per_tensor and not 0 <= axis < rank:
            raise InputError(f"ONNX node '{node.name}': DequantizeLinear axis {axis} out of range")
        # Row slicing commutes with dequantization unless the scale varies along rows.
        slice_scale = rows is not None and not per_tensor and (axis == 0 or block > 0) and s_shape[0] == x_shape[0]
        if rows is not None and axis == 0 and block > 0:
            return self._dequantize(node, None)[rows]
        x = self.value(x_name, rows).astype(np.float32)
        scale = self.value(s_name, rows if slice_scale else None).astype(np.float32)
        zero = self.value(z_name, rows if slice_scale else None).astype(np.float32) if z_name else None
        if not per_tensor:
            if block > 0:
                scale = np.repeat(scale, block, axis=axis).take(range(x.shape[axis]), axis=axis)
                zero = None if zero is None else np.repeat(zero, block, axis=axis).take(range(x.shape[axis]), axis=axis)
            else:
                bshape = [1] * rank
                bshape[axis] = -1
                scale = scale.reshape(bshape)
                zero = None if zero is None else zero.reshape(bshape)
        else:
            scale = scale.reshape(())
            zero = None if zero is None else zero.reshape(())
        return (x - zero) * scale if zero is not None else x * scale


def _rows_follow(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
    return len(in_shape) == len(out_shape) and len(out_shape) > 0 and in_shape[0] == out_shape[0] and out_shape[0] != 1


def _rows_for(in_shape: tuple[int, ...], out_shape: tuple[int, ...], rows: np.ndarray | None) -> np.ndarray | None:
    """Rows to read from one operand of a broadcast op: the same rows, or all of a broadcast operand."""
    return rows if rows is not None and _rows_follow(in_shape, out_shape) else None


def _broadcast_rows(res: np.ndarray, out_shape: tuple[int, ...], rows: np.ndarray | None) -> np.ndarray:
    want = out_shape if rows is None else (len(rows),) + tuple(out_shape[1:])
    return res if res.shape == want else np.broadcast_to(res, want)


def _cast(arr: np.ndarray, to: int, onnx: Any) -> np.ndarray:
    simple = _simple_dtypes(onnx).get(to)
    if simple is not None:
        return arr.astype(simple.newbyteorder("="))
    try:
        target = onnx.helper.tensor_dtype_to_np_dtype(to)
        return _plain(arr.astype(target))
    except (KeyError, TypeError, ValueError):
        raise InputError(f"ONNX Cast to unsupported type {to}") from None


def _reshaped(src: tuple[int, ...], spec: list[int], allowzero: bool, where: str) -> tuple[int, ...]:
    total = int(np.prod(src, dtype=np.int64))
    out = [src[i] if (d == 0 and not allowzero and i < len(src)) else d for i, d in enumerate(spec)]
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise InputError(f"ONNX node '{where}': bad Reshape target {spec}")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1], dtype=np.int64))
        if known == 0 or total % known:
            raise InputError(f"ONNX node '{where}': cannot reshape {src} to {spec}")
        out[out.index(-1)] = total // known
    if int(np.prod(out, dtype=np.int64)) != total:
        raise InputError(f"ONNX node '{where}': cannot reshape {src} to {spec}")
    return tuple(out)


def _squeezed(op: str, src: tuple[int, ...], axes: list[int] | None, where: str) -> tuple[int, ...]:
    if op == "Squeeze":
        if axes is None:
            return tuple(d for d in src if d != 1)
        norm = {a + len(src) if a < 0 else a for a in axes}
        if any(not 0 <= a < len(src) or src[a] != 1 for a in norm):
            raise InputError(f"ONNX node '{where}': cannot squeeze axes {axes} of {src}")
        return tuple(d for i, d in enumerate(src) if i not in norm)
    if axes is None:
        raise InputError(f"ONNX node '{where}': Unsqueeze without axes")
    rank = len(src) + len(axes)
    norm = sorted(a + rank if a < 0 else a for a in axes)
    out = list(src)
    for a in norm:
        if not 0 <= a <= len(out):
            raise InputError(f"ONNX node '{where}': bad Unsqueeze axes {axes}")
        out.insert(a, 1)
    return tuple(out)


# --------------------------------------------------------------------------- events
@dataclass
class Event:
    """A linear layer, a LayerNorm or an embedding lookup found in the graph."""

    kind: str  # "linear" | "norm" | "lookup"
    node: GraphNode
    output: str  # where walks from later events stop
    data_inputs: tuple[str, ...]  # where this event's own walk starts
    weight: str  # constant: [in, out] or [out, in] weight, norm gain, or lookup table
    transposed: bool = False  # the weight is stored [in, out]
    bias: str | None = None
    anchors: frozenset[int] = frozenset()
    id: int = -1

    @property
    def order(self) -> int:
        return self.node.order


@dataclass(frozen=True)
class LinearRule:
    """How one operator type holds a linear layer `y = x·Wᵀ + b`."""

    op: str
    # (weight constant, stored [in, out]?, output tensor) for a node, or None when it is not a linear layer.
    resolve: Callable[["_GraphReader", GraphNode], tuple[str, bool, str] | None]
    act: int = 0  # activation input


@dataclass(frozen=True)
class NormRule:
    op: str
    data: tuple[int, ...]
    gain: int
    bias: int | None


NORM_OPS: tuple[NormRule, ...] = (
    NormRule("LayerNormalization", data=(0,), gain=1, bias=2),
    # onnxruntime's fused residual + LayerNorm (com.microsoft)
    NormRule("SkipLayerNormalization", data=(0, 1), gain=2, bias=3),
)

# Ops whose output describes a tensor's shape, not its values: a walk that
# crossed them would make every layer "read" whatever tensor was measured.
METADATA_OPS = frozenset({"Shape", "Size", "ConstantOfShape", "EyeLike", "Range"})
# Inputs from this index on are shapes, indices or bounds, not data.
SHAPE_ARGS: dict[str, int] = {"Reshape": 1, "Expand": 1, "Tile": 1, "Slice": 1, "Pad": 1, "Resize": 1, "Unsqueeze": 1, "Squeeze": 1}


def data_inputs(node: GraphNode) -> tuple[str, ...]:
    cut = SHAPE_ARGS.get(node.op)
    ins = node.inputs if cut is None else node.inputs[:cut]
    return tuple(t for t in ins if t)


@dataclass(frozen=True)
class Slot:
    """One step of a layer pattern: the next event of `kind` whose inputs come from `reads`.

    `reads[0]` must be among the event's anchors; the others may be (residual
    connections); nothing else may.  `count` events fill the slot together.
    """

    role: str
    kind: str
    reads: tuple[str, ...]
    count: int = 1


# A post-LN BERT layer (BERT, RoBERTa, MiniLM, ELECTRA, DistilBERT all share it).
BERT_LAYER: tuple[Slot, ...] = (
    Slot("qkv", "linear", reads=("input",), count=3),
    Slot("o", "linear", reads=("qkv",)),
    Slot("attn_norm", "norm", reads=("o", "input")),
    Slot("up", "linear", reads=("attn_norm",)),
    Slot("down", "linear", reads=("up",)),
    Slot("out_norm", "norm", reads=("down", "attn_norm")),
)
BERT_NEXT_INPUT = "out_norm"
# Canonical role -> HF BERT module path (the `BERT` table's names).
BERT_HF_NAMES: dict[str, str] = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "o": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "up": "intermediate.dense",
    "down": "output.dense",
    "out_norm": "output.LayerNorm",
}
HF_NAME = re.compile(r"^(?P<prefix>.*?)(?P<hf>(?:embeddings|encoder\.layer\.\d+)\.[A-Za-z0-9_.]+\.(?:weight|bias))$")


@dataclass(frozen=True)
class TensorRef:
    """Where an exposed HF tensor comes from: a graph constant, maybe stored [in, out]."""

    const: str
    transposed: bool = False


def _resolve_matmul(g: "_GraphReader", n: GraphNode) -> tuple[str, bool, str] | None:
    w = n.inputs[1] if len(n.inputs) > 1 else ""
    if not g.consts.is_const(w) or len(g.consts.shape(w)) != 2 or g.consts.is_const(n.inputs[0]):
        return None
    return w, True, n.outputs[0]


def _resolve_gemm(g: "_GraphReader", n: GraphNode) -> tuple[str, bool, str] | None:
    if int(n.attrs.get("transA", 0)) or len(n.inputs) < 2:
        return None
    w = n.inputs[1]
    if not g.consts.is_const(w) or len(g.consts.shape(w)) != 2:
        return None
    alpha = float(n.attrs.get("alpha", 1.0))
    if alpha != 1.0:
        w = g.consts.add_virtual("Mul", [w, g.consts.add_array(np.array(alpha, dtype=np.float32))])
    return w, not int(n.attrs.get("transB", 0)), n.outputs[0]


def _resolve_qlinear_matmul(g: "_GraphReader", n: GraphNode) -> tuple[str, bool, str] | None:
    # QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp)
    if len(n.inputs) < 6 or not all(g.consts.is_const(t) for t in n.inputs[3:6]):
        return None
    w = g.consts.add_virtual("DequantizeLinear", n.inputs[3:6], {"axis": 1})
    return w, True, n.outputs[0]


def _resolve_matmul_integer(g: "_GraphReader", n: GraphNode) -> tuple[str, bool, str] | None:
    """onnxruntime's dynamic quantization: the weight scale is folded into the output rescale.

    MatMulInteger(x_q, W_q, x_zp, W_zp) -> Cast -> Mul(·, Mul(x_scale, W_scale)).
    """
    ins = list(n.inputs) + ["", "", ""]
    w, w_zp = ins[1], ins[3]
    if not g.consts.is_const(w) or len(g.consts.shape(w)) != 2:
        return None
    cast = g.only_consumer(n.outputs[0], "Cast")
    mul = g.only_consumer(cast.outputs[0], "Mul") if cast else None
    if mul is None or cast is None:
        return None
    other = mul.inputs[1] if mul.inputs[0] == cast.outputs[0] else mul.inputs[0]
    w_scale: str | None = other if g.consts.is_const(other) else None
    if w_scale is None:
        combined = g.producer.get(other)
        if combined is not None and combined.op == "Mul":
            consts = [t for t in combined.inputs if g.consts.is_const(t)]
            w_scale = consts[0] if len(consts) == 1 else None
    if w_scale is None:
        return None
    inputs = [w, w_scale] + ([w_zp] if w_zp and g.consts.is_const(w_zp) else [])
    return g.consts.add_virtual("DequantizeLinear", inputs, {"axis": 1}), True, mul.outputs[0]


LINEAR_OPS: tuple[LinearRule, ...] = (
    LinearRule("MatMul", resolve=_resolve_matmul),
    LinearRule("Gemm", resolve=_resolve_gemm),
    LinearRule("MatMulInteger", resolve=_resolve_matmul_integer),
    LinearRule("QLinearMatMul", resolve=_resolve_qlinear_matmul),
)


@dataclass
class GraphMapping:
    """The outcome of reading a graph: HF name -> constant, plus what we learnt on the way."""

    tensors: dict[str, TensorRef] = field(default_factory=dict)
    layers: int = 0
    heads: int | None = None
    how: str = "graph"
    warnings: list[str] = field(default_factory=list)


class _GraphReader:
    """Finds the BERT encoder in a graph and names its weights."""

    def __init__(self, nodes: list[GraphNode], consts: _Constants, graph_inputs: list[str]) -> None:
        self.nodes = nodes
        self.consts = consts
        self.producer = consts.producer
        self.graph_inputs = set(graph_inputs)
        self.consumers: dict[str, list[GraphNode]] = defaultdict(list)
        for n in nodes:
            for t in n.inputs:
                if t:
                    self.consumers[t].append(n)
        self.warnings: list[str] = []

    def only_consumer(self, tensor: str, op: str) -> GraphNode | None:
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and users[0].op == op else None

    # -- events ----------------------------------------------------------------
    def find_events(self) -> list[Event]:
        linear = {r.op: r for r in LINEAR_OPS}
        norms = {r.op: r for r in NORM_OPS}
        events: list[Event] = []
        for n in self.nodes:
            rule = linear.get(n.op)
            if rule is not None:
                got = rule.resolve(self, n)
                if got is not None:
                    w, transposed, out = got
                    bias = self._bias(n, out, w, transposed)
                    events.append(Event("linear", n, out, (n.inputs[rule.act],), w, transposed, bias))
                continue
            nrule = norms.get(n.op)
            if nrule is not None and len(n.inputs) > nrule.gain and self.consts.is_const(n.inputs[nrule.gain]):
                bias = n.inputs[nrule.bias] if nrule.bias is not None and len(n.inputs) > nrule.bias and n.inputs[nrule.bias] else None
                events.append(Event("norm", n, n.outputs[0], tuple(n.inputs[i] for i in nrule.data), n.inputs[nrule.gain], bias=bias))
                continue
            if n.op == "Div":
                ev = self._decomposed_layernorm(n)
                if ev is not None:
                    events.append(ev)
                continue
            if n.op == "Gather" and int(n.attrs.get("axis", 0)) == 0 and self.consts.is_const(n.inputs[0]) \
                    and len(self.consts.shape(n.inputs[0])) == 2 and not self.consts.is_const(n.inputs[1]):
                events.append(Event("lookup", n, n.outputs[0], (n.inputs[1],), n.inputs[0]))
        events.sort(key=lambda e: e.order)
        by_output = {}
        for i, e in enumerate(events):
            e.id = i
            by_output[e.output] = i
        for e in events:
            if e.kind != "lookup":
                e.anchors = self._upstream(e.data_inputs, by_output)
        return events

    def _bias(self, n: GraphNode, out: str, w: str, transposed: bool) -> str | None:
        if n.op == "Gemm" and len(n.inputs) > 2 and n.inputs[2] and self.consts.is_const(n.inputs[2]):
            beta = float(n.attrs.get("beta", 1.0))
            c = n.inputs[2]
            return c if beta == 1.0 else self.consts.add_virtual("Mul", [c, self.consts.add_array(np.array(beta, dtype=np.float32))])
        n_out = self.consts.shape(w)[1 if transposed else 0]
        for user in self.consumers.get(out, []):
            if user.op == "Add":
                other = user.inputs[1] if user.inputs[0] == out else user.inputs[0]
                if self.consts.is_const(other) and int(np.prod(self.consts.shape(other))) == n_out:
                    return other
        return None

    def _decomposed_layernorm(self, div: GraphNode) -> Event | None:
        """(x - mean(x)) / sqrt(var(x) + eps) * γ + β spelled out in elementary ops (older exporters)."""
        num = self.producer.get(div.inputs[0])
        if num is None or num.op != "Sub":
            return None
        x = num.inputs[0]
        mean = self.producer.get(num.inputs[1])
        if mean is None or mean.op != "ReduceMean" or mean.inputs[0] != x:
            return None
        den = self.producer.get(div.inputs[1])
        if den is None or den.op != "Sqrt":
            return None
        scale = self.only_consumer(div.outputs[0], "Mul")
        if scale is None:
            return None
        gain = scale.inputs[1] if scale.inputs[0] == div.outputs[0] else scale.inputs[0]
        if not self.consts.is_const(gain):
            return None
        out, bias = scale.outputs[0], None
        shift = self.only_consumer(out, "Add")
        if shift is not None:
            other = shift.inputs[1] if shift.inputs[0] == out else shift.inputs[0]
            if self.consts.is_const(other):
                out, bias = shift.outputs[0], other
        return Event("norm", div, out, (x,), gain, bias=bias)

    def _upstream(self, starts: Iterable[str], by_output: Mapping[str, int]) -> frozenset[int]:
        """The events a tensor's values are computed from (stopping at those events)."""
        found: set[int] = set()
        seen: set[str] = set()
        stack = [t for t in starts if t]
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            hit = by_output.get(t)
            if hit is not None:
                found.add(hit)
                continue
            node = self.producer.get(t)
            if node is None or node.op in METADATA_OPS or self.consts.is_const(t):
                continue
            stack.extend(x for x in data_inputs(node) if x not in seen)
        return frozenset(found)

    def _reaches_graph_input(self, tensor: str) -> bool:
        seen: set[str] = set()
        stack = [tensor]
        while stack:
            t = stack.pop()
            if t in seen or not t:
                continue
            seen.add(t)
            if t in self.graph_inputs and not self.consts.is_const(t):
                return True
            node = self.producer.get(t)
            if node is not None and node.op not in METADATA_OPS:
                stack.extend(data_inputs(node))
        return False

    # -- matching --------------------------------------------------------------
    def match(self) -> GraphMapping:
        events = self.find_events()
        result = GraphMapping()
        lookups = [e for e in events if e.kind == "lookup"]
        norms = [e for e in events if e.kind == "norm"]
        # The embedding norm: the first norm computed only from lookups.
        emb_norm = next((n for n in norms if n.anchors and all(events[a].kind == "lookup" for a in n.anchors)), None)
        if emb_norm is None:
            raise self._unsupported(events, "no LayerNorm over embedding lookups")
        feeding = [events[a] for a in emb_norm.anchors]
        from_inputs = [e for e in feeding if self._reaches_graph_input(e.data_inputs[0])]
        word = max(from_inputs or feeding, key=lambda e: self.consts.shape(e.weight)[0])
        result.tensors["embeddings.word_embeddings.weight"] = TensorRef(word.weight)
        self._name_extra_lookups([e for e in feeding if e is not word], result)
        self._put_norm("embeddings.LayerNorm", emb_norm, result)

        used: set[int] = {e.id for e in feeding} | {emb_norm.id}
        layer_input = emb_norm
        layers: list[dict[str, list[Event]]] = []
        while True:
            roles = self._match_layer(events, layer_input, used)
            if roles is None:
                break
            layers.append(roles)
            used.update(e.id for evs in roles.values() for e in evs)
            layer_input = roles[BERT_NEXT_INPUT][0]
        if not layers:
            raise self._unsupported(events, "no encoder layer (3 projections reading one LayerNorm, then output, FFN and norms)")
        heads: list[int] = []
        for i, roles in enumerate(layers):
            q, k, v = self._order_qkv(roles["qkv"], i)
            named = {"q": q, "k": k, "v": v, **{r: evs[0] for r, evs in roles.items() if r != "qkv"}}
            for role, ev in named.items():
                path = f"encoder.layer.{i}.{BERT_HF_NAMES[role]}"
                if ev.kind == "norm":
                    self._put_norm(path, ev, result)
                else:
                    result.tensors[path + ".weight"] = TensorRef(ev.weight, ev.transposed)
                    if ev.bias is not None:
                        result.tensors[path + ".bias"] = TensorRef(ev.bias)
            h = self._heads(q)
            if h is not None:
                heads.append(h)
        result.layers = len(layers)
        unused = sum(1 for e in events if e.kind == "linear" and e.id not in used)
        if unused:
            self.warnings.append(f"{unused} linear layer(s) outside the encoder were ignored (pooler or task head)")
        if heads and len(set(heads)) == 1:
            result.heads = heads[0]
        elif heads:
            self.warnings.append(f"attention reshapes disagree on the head count ({sorted(set(heads))})")
        result.warnings = self.warnings
        return result

    def _match_layer(self, events: list[Event], layer_input: Event, used: set[int]) -> dict[str, list[Event]] | None:
        roles: dict[str, list[Event]] = {"input": [layer_input]}
        taken = set(used)
        for slot in BERT_LAYER:
            allowed = {e.id for r in slot.reads for e in roles.get(r, [])}
            required = {e.id for e in roles.get(slot.reads[0], [])}
            cands = [
                e for e in events
                if e.kind == slot.kind and e.id not in taken and e.anchors
                and e.anchors <= allowed and e.anchors & required
            ]
            if len(cands) != slot.count:
                return None
            roles[slot.role] = cands
            taken.update(e.id for e in cands)
        del roles["input"]
        return roles

    def _order_qkv(self, qkv: list[Event], layer: int) -> tuple[Event, Event, Event]:
        """q and k meet in the score MatMul (q on the left); v is the right side of the context MatMul."""
        slots: dict[int, list[tuple[str, int]]] = {}
        for e in qkv:
            slots[e.id] = self._attention_slots(e.output)
        by_matmul: dict[str, dict[int, Event]] = defaultdict(dict)
        for e in qkv:
            for mm, side in slots[e.id]:
                by_matmul[mm][side] = e
        for mm, sides in by_matmul.items():
            if 0 in sides and 1 in sides and sides[0] is not sides[1]:
                q, k = sides[0], sides[1]
                rest = [e for e in qkv if e is not q and e is not k]
                if len(rest) == 1 and any(side == 1 for _, side in slots[rest[0].id]):
                    return q, k, rest[0]
        self.warnings.append(f"layer {layer}: could not trace the attention; q, k, v taken in graph order")
        a, b, c = sorted(qkv, key=lambda e: e.order)
        return a, b, c

    def _attention_slots(self, start: str) -> list[tuple[str, int]]:
        """(MatMul, input index) pairs where a projection's output first meets another activation."""
        out: list[tuple[str, int]] = []
        seen: set[str] = set()
        stack = [start]
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            for user in self.consumers.get(t, []):
                if user.op in METADATA_OPS or t not in data_inputs(user):
                    continue
                if user.op == "MatMul" and not any(self.consts.is_const(x) for x in user.inputs):
                    out.extend((user.name or user.outputs[0], i) for i, x in enumerate(user.inputs) if x == t)
                    continue
                if user.op in ("MatMul", "Gemm", "LayerNormalization", "Softmax"):
                    continue
                stack.extend(o for o in user.outputs if o)
        return out

    def _heads(self, q: Event) -> int | None:
        """The head count from the Reshape that splits the query into [batch, seq, heads, head_dim]."""
        q_out = self.consts.shape(q.weight)[1 if q.transposed else 0]
        frontier, seen = [q.output], set()
        for _ in range(6):
            nxt: list[str] = []
            for t in frontier:
                for user in self.consumers.get(t, []):
                    if user.op == "Reshape" and user.inputs[0] == t:
                        dims = self._partial_ints(user.inputs[1])
                        if dims is not None and len(dims) == 4:
                            return _heads_from(dims[2], dims[3], q_out)
                    # Gemm exports flatten to 2-D and reshape back to 3-D before the head split.
                    if user.op in ("Add", "Identity", "Cast", "Reshape") and t in data_inputs(user) \
                            and user.outputs[0] not in seen:
                        seen.add(user.outputs[0])
                        nxt.append(user.outputs[0])
            frontier = nxt
        return None

    def heads_of_weight(self, weight: str) -> int | None:
        """The head count around a query weight found by name (the fallback path)."""
        for user in self.consumers.get(weight, []):
            rule = next((r for r in LINEAR_OPS if r.op == user.op), None)
            got = rule.resolve(self, user) if rule is not None else None
            if got is not None:
                return self._heads(Event("linear", user, got[2], (), got[0], got[1]))
        return None

    def _partial_ints(self, name: str, depth: int = 0) -> list[int | None] | None:
        """An integer shape vector with unknown (runtime) entries as None."""
        if self.consts.is_const(name):
            try:
                return list(self.consts.small_ints(name))
            except InputError:
                return None
        node = self.producer.get(name)
        if node is None or depth > 8:
            return None
        if node.op == "Concat":
            parts: list[int | None] = []
            for t in node.inputs:
                p = self._partial_ints(t, depth + 1)
                if p is None:
                    return None
                parts.extend(p)
            return parts
        if node.op == "Unsqueeze":
            return [None]
        if node.op == "Cast":
            return self._partial_ints(node.inputs[0], depth + 1)
        if node.op == "Shape" and "end" in node.attrs:
            start, end = int(node.attrs.get("start", 0)), int(node.attrs["end"])
            return [None] * (end - start) if 0 <= start <= end else None
        return None

    def _name_extra_lookups(self, others: list[Event], result: GraphMapping) -> None:
        """Position and token-type tables only count as parameters; name hints first, then size."""
        for e in others:
            hint = e.weight.lower()
            rows = self.consts.shape(e.weight)[0]
            if "position" in hint or ("token_type" not in hint and rows > 16):
                name = "embeddings.position_embeddings.weight"
            else:
                name = "embeddings.token_type_embeddings.weight"
            if name not in result.tensors:
                result.tensors[name] = TensorRef(e.weight)

    @staticmethod
    def _put_norm(path: str, ev: Event, result: GraphMapping) -> None:
        result.tensors[path + ".weight"] = TensorRef(ev.weight)
        if ev.bias is not None:
            result.tensors[path + ".bias"] = TensorRef(ev.bias)

    def _unsupported(self, events: list[Event], why: str) -> UnsupportedModelError:
        kinds = Counter(e.kind for e in events)
        ops = Counter(n.op for n in self.nodes)
        top = ", ".join(f"{op}×{c}" for op, c in ops.most_common(8))
        return UnsupportedModelError(
            "ONNX graph: only BERT-family encoders are supported; found "
            f"{why}: {kinds.get('linear', 0)} linear layers with constant weights, "
            f"{kinds.get('norm', 0)} LayerNorms, {kinds.get('lookup', 0)} embedding lookups (ops: {top})"
        )


def _heads_from(a: int | None, b: int | None, q_out: int) -> int | None:
    if a is not None and a > 0 and b is not None and b > 0:
        return a if a * b == q_out else None
    if b is not None and b > 0 and q_out % b == 0:  # [.., -1, head_dim]
        return q_out // b
    if a is not None and a > 0 and q_out % a == 0:  # [.., heads, -1]
        return a
    return None


def _names_mapping(consts: _Constants, consumers: Mapping[str, list[GraphNode]], names: Iterable[str]) -> GraphMapping | None:
    """Fallback for graphs we cannot trace: weights that still carry HF names."""
    found: dict[str, str] = {}
    for name in names:
        m = HF_NAME.match(name)
        if m and consts.is_const(name):
            found.setdefault(m.group("hf"), name)
    if "embeddings.word_embeddings.weight" not in found or not any(
        k.endswith("attention.self.query.weight") for k in found
    ):
        return None
    result = GraphMapping(how="names")
    for hf, name in found.items():
        transposed = False
        if len(consts.shape(name)) == 2 and not hf.startswith("embeddings."):
            users = consumers.get(name, [])
            # Stored [in, out] when the graph multiplies by it directly.
            transposed = any(
                (u.op == "MatMul" and len(u.inputs) > 1 and u.inputs[1] == name)
                or (u.op == "Gemm" and len(u.inputs) > 1 and u.inputs[1] == name and not int(u.attrs.get("transB", 0)))
                for u in users
            )
        result.tensors[hf] = TensorRef(name, transposed)
    layer_ids = {int(m.group(1)) for k in found if (m := re.match(r"encoder\.layer\.(\d+)\.", k))}
    result.layers = max(layer_ids) + 1 if layer_ids else 0
    return result


def _hf_name_of(consts: _Constants, name: str) -> str | None:
    """The HF name a graph constant was exported under, looking through Identity/Cast/Transpose."""
    for _ in range(4):
        m = HF_NAME.match(name)
        if m:
            return m.group("hf")
        node = consts.producer.get(name)
        if node is None or node.op not in ("Identity", "Cast", "Transpose") or not node.inputs:
            return None
        name = node.inputs[0]
    return None


# --------------------------------------------------------------------------- the source
# What numpy and our own indexing raise on inconsistent shapes, dtypes or
# references in a malformed file: a user error (exit 4), never a traceback.
_MALFORMED = (ValueError, IndexError, KeyError, TypeError, OverflowError, RecursionError)


class OnnxSource(WeightSource):
    """A BERT-family encoder in one .onnx file (plus external data files in its folder)."""

    format = "onnx"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        onnx = import_onnx()
        self._onnx = onnx
        self._path = path
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc})") from None
        if size > MAX_ONNX_BYTES:
            raise InputError(f"{path}: {size} bytes is more than an .onnx file can hold; weights above 2 GiB must be external data")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # protobuf raises DecodeError, onnx its own types
            raise InputError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {exc})") from None
        self._producer_name = f"{model.producer_name} {model.producer_version}".strip()
        self._opsets = {o.domain or "ai.onnx": int(o.version) for o in model.opset_import}
        graph = model.graph
        if len(graph.node) > MAX_NODES:
            raise InputError(f"{path}: {len(graph.node)} nodes is implausibly many")
        self._external: set[Path] = set()
        blobs = self._take_initializers(graph, path.parent)
        nodes: list[GraphNode] = []
        for i, n in enumerate(graph.node):
            attrs = _attr_values(n, onnx)
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                blobs[n.output[0]] = self._constant_blob(attrs)
                continue
            nodes.append(GraphNode(n.op_type, n.domain, n.name, tuple(n.input), tuple(n.output), attrs, i))
        graph_inputs = [i.name for i in graph.input]
        del model, graph  # the weights now live in `blobs`; let the protobuf go
        try:
            self._analyse(nodes, blobs, graph_inputs)
        except _MALFORMED as exc:
            raise InputError(f"{path}: malformed ONNX graph ({type(exc).__name__}: {exc})") from None

    def _analyse(self, nodes: list[GraphNode], blobs: dict[str, _Blob], graph_inputs: list[str]) -> None:
        path = self._path
        nodes = _topological(nodes, set(blobs) | set(graph_inputs))
        producer = {o: n for n in nodes for o in n.outputs if o}
        self._consts = _Constants(self._onnx, blobs, producer)
        reader = _GraphReader(nodes, self._consts, graph_inputs)
        try:
            mapping = reader.match()
            self._cross_check(mapping)
        except UnsupportedModelError as exc:
            names = list(blobs) + list(producer)
            fallback = _names_mapping(self._consts, reader.consumers, names)
            if fallback is None:
                raise UnsupportedModelError(f"{path}: {exc}") from None
            mapping = fallback
            q0 = mapping.tensors.get("encoder.layer.0.attention.self.query.weight")
            mapping.heads = reader.heads_of_weight(q0.const) if q0 is not None else None
            mapping.warnings.append(f"graph not traced ({exc}); weights taken by their Hugging Face names")
        self._map = mapping
        self._tensors = dict(sorted(mapping.tensors.items(), key=lambda kv: _natural(kv[0])))
        self._config = self._make_config()

    @classmethod
    def from_path(cls, path: Path) -> "OnnxSource":
        return cls(Path(path))

    # -- loading -----------------------------------------------------------------
    def _take_initializers(self, graph: Any, folder: Path) -> dict[str, _Blob]:
        onnx = self._onnx
        blobs: dict[str, _Blob] = {}
        external_total = 0
        if len(graph.sparse_initializer):
            raise InputError(f"{self._path}: sparse initializers are not supported")
        for t in graph.initializer:
            if t.name in blobs:
                raise InputError(f"{self._path}: initializer '{t.name}' appears twice")
            dims = tuple(int(d) for d in t.dims)
            if any(d < 0 for d in dims):
                raise InputError(f"{self._path}: initializer '{t.name}' has a negative dimension")
            if t.data_location == onnx.TensorProto.EXTERNAL:
                where = _external_location(t, folder)
                external_total += where[2]
                if external_total > MAX_EXTERNAL_BYTES:
                    raise InputError(f"{self._path}: external data is implausibly large")
                self._external.add(where[0])
                blobs[t.name] = _Blob(dims, int(t.data_type), external=where)
            elif t.HasField("raw_data"):
                blobs[t.name] = _Blob(dims, int(t.data_type), raw=t.raw_data)
            else:
                try:
                    arr = onnx.numpy_helper.to_array(t)
                except Exception as exc:
                    raise InputError(f"{self._path}: initializer '{t.name}' is unreadable ({exc})") from None
                blobs[t.name] = _Blob(dims, int(t.data_type), array=_plain(np.asarray(arr)))
        return blobs

    def _constant_blob(self, attrs: Mapping[str, Any]) -> _Blob:
        if "value" in attrs:
            arr = attrs["value"]
        elif "value_float" in attrs or "value_int" in attrs:
            v = attrs.get("value_float", attrs.get("value_int"))
            arr = np.asarray(v, dtype=np.float32 if "value_float" in attrs else np.int64)
        elif "value_floats" in attrs or "value_ints" in attrs:
            v = attrs.get("value_floats", attrs.get("value_ints"))
            arr = np.asarray(list(v), dtype=np.float32 if "value_floats" in attrs else np.int64)
        else:
            # Sparse or string constants never hold weights; keep them opaque.
            arr = np.zeros((0,), dtype=np.float32)
        return _Blob(tuple(arr.shape), 0, array=arr)

    def _cross_check(self, mapping: GraphMapping) -> None:
        """Names the exporter kept must agree with the roles the graph gives those tensors."""
        bad: list[str] = []
        for hf, ref in mapping.tensors.items():
            named = _hf_name_of(self._consts, ref.const)
            if named is not None and named != hf:
                bad.append(f"{hf} is named {named}")
        if bad:
            mapping.warnings.append(
                f"{len(bad)} tensor(s) carry a name that disagrees with their role in the graph; "
                f"the graph was trusted (e.g. {bad[0]})"
            )

    def _make_config(self) -> dict[str, Any]:
        embed = self.shape("embeddings.word_embeddings.weight")
        hidden = int(embed[1])
        up = "encoder.layer.0.intermediate.dense.weight"
        heads = self._map.heads
        if heads is None:
            heads = max(1, hidden // 64)
            self._map.warnings.append(
                f"no attention head count in the graph: assuming head_dim=64 ({heads} heads)"
            )
        return {
            "model_type": "bert",
            "hidden_size": hidden,
            "num_hidden_layers": int(self._map.layers),
            "num_attention_heads": int(heads),
            "intermediate_size": int(self.shape(up)[0]) if up in self._tensors else None,
            "vocab_size": int(embed[0]),
        }

    # -- WeightSource ------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        ref = self._ref(name)
        s = self._guard(name, lambda: self._consts.shape(ref.const))
        return tuple(reversed(s)) if ref.transposed else tuple(s)

    def get(self, name: str) -> torch.Tensor:
        ref = self._ref(name)
        arr = self._guard(name, lambda: self._consts.value(ref.const))
        want = self.shape(name)
        if ref.transposed:
            arr = arr.T
        if tuple(arr.shape) != want:
            raise InputError(f"{self.root}: tensor '{name}' evaluates to shape {tuple(arr.shape)}, expected {want}")
        return _to_torch(arr)

    def _guard(self, name: str, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except _MALFORMED as exc:
            raise InputError(f"{self.root}: cannot evaluate '{name}' ({type(exc).__name__}: {exc})") from None

    def get_rows(self, name: str, rows: Sequence[int]) -> torch.Tensor:
        ref = self._ref(name)
        idx = np.asarray(list(rows), dtype=np.int64)
        shape = self.shape(name)
        if len(shape) != 2 or (idx.size and (idx.min() < 0 or idx.max() >= shape[0])):
            raise InputError(f"{self.root}: rows out of range for '{name}' {shape}")
        if ref.transposed:
            return _to_torch(self._guard(name, lambda: self._consts.value(ref.const)[:, idx].T))
        return _to_torch(self._guard(name, lambda: self._consts.value(ref.const, idx)))

    def files(self) -> list[Path]:
        return [self._path, *sorted(self._external)]

    def config(self) -> dict[str, Any] | None:
        return self._config

    def metadata(self) -> dict[str, Any]:
        dtypes: Counter[str] = Counter()
        for name, ref in self._tensors.items():
            if name.endswith(".weight") and len(self.shape(name)) == 2:
                # The biggest leaf is the stored weight; the others are its scales and zero points.
                blobs = [self._consts.blobs[x] for x in self._consts.leaves(ref.const) if x in self._consts.blobs]
                real = [b for b in blobs if b.data_type]
                if real:
                    big = max(real, key=lambda b: int(np.prod(b.dims, dtype=np.int64)))
                    dtypes[_dtype_name(self._onnx, big.data_type)] += 1
        return {
            "onnx.producer": self._producer_name,
            "onnx.opsets": dict(self._opsets),
            "onnx.mapping": self._map.how,
            "onnx.weight_storage": dict(dtypes),
            "onnx.tensors": {hf: self._describe(ref) for hf, ref in self._tensors.items()},
            "warnings": list(self._map.warnings),
        }

    def _describe(self, ref: TensorRef) -> str:
        """The graph tensor behind an HF name; weights rebuilt from an op's inputs are spelled out."""
        node = self._consts.producer.get(ref.const)
        text = f"{node.op}({', '.join(t for t in node.inputs if t)})" if node is not None and node.order < 0 else ref.const
        return text + (" (transposed)" if ref.transposed else "")

    def _ref(self, name: str) -> TensorRef:
        self.require(name)
        return self._tensors[name]

    def close(self) -> None:
        for blob in self._consts.blobs.values():
            blob._mapped = None


def _to_torch(arr: np.ndarray) -> torch.Tensor:
    arr = np.asarray(arr)
    if arr.dtype not in (np.float32, np.float16):
        arr = arr.astype(np.float32)
    if not (arr.flags.writeable and arr.flags.c_contiguous):
        # torch refuses read-only buffers, and views of the file bytes must not be written through.
        arr = np.array(arr, order="C", copy=True)
    return torch.from_numpy(arr)


def _dtype_name(onnx: Any, code: int) -> str:
    try:
        return str(onnx.TensorProto.DataType.Name(code)).lower()
    except ValueError:
        return str(code)


def _natural(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
