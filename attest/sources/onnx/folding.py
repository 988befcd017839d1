"""Constant folding: which graph tensors are weights, their shapes, and their values, on demand.

Any tensor computed only from initializers through a short chain of
whitelisted ops (`FOLDABLE_OPS`: Cast, Mul, Sub, DequantizeLinear,
Transpose, ...) is a constant. `Constants.value` can evaluate only some rows
of one, slicing before the full decode wherever rows commute with the op.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from attest.errors import InputError
from attest.sources.onnx.graph import GraphNode
from attest.sources.onnx.tensors import Blob, plain_array, simple_dtypes

# Weight subgraphs are a few ops deep; a long chain is not a weight and deep
# recursion on a hostile graph must not reach Python's stack limit.
MAX_FOLD_DEPTH = 24
MAX_SMALL_CONST = 64  # elements: shape vectors evaluated while analysing the graph

_ELEMENTWISE = {"Mul": np.multiply, "Sub": np.subtract, "Add": np.add, "Div": np.divide}
# Ops through which a constant stays a constant.  Anything else (Shape, Gather
# of a graph input, ...) makes the result depend on the input.
FOLDABLE_OPS = frozenset(
    {"Identity", "Cast", "DequantizeLinear", "Transpose", "Reshape", "Squeeze", "Unsqueeze", *_ELEMENTWISE}
)


class Constants:
    """Initializers, Constant nodes and the pure functions of them, evaluated on demand."""

    def __init__(self, onnx: Any, blobs: dict[str, Blob], producer: dict[str, GraphNode]) -> None:
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
        self.blobs[out] = Blob(tuple(arr.shape), 0, array=arr)
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
    simple = simple_dtypes(onnx).get(to)
    if simple is not None:
        return arr.astype(simple.newbyteorder("="))
    try:
        target = onnx.helper.tensor_dtype_to_np_dtype(to)
        return plain_array(arr.astype(target))
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
    positions = sorted(a + rank if a < 0 else a for a in axes)
    out = list(src)
    for a in positions:
        if not 0 <= a <= len(out):
            raise InputError(f"ONNX node '{where}': bad Unsqueeze axes {axes}")
        out.insert(a, 1)
    return tuple(out)
