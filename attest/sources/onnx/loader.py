"""Reading an .onnx file: the optional `onnx` import, the file's size limits, initializers out of the protobuf.

`load_graph` parses the file once, moves every initializer's bytes (or the
location of its external data) into a `Blob`, turns `Constant` nodes into
blobs too, and keeps the remaining nodes as plain `GraphNode`s. After it
returns nothing holds the protobuf, so a large model's message is freed
before the graph is analysed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attest.errors import InputError
from attest.sources.onnx.graph import GraphNode, attr_values
from attest.sources.onnx.tensors import Blob, external_location, plain_array

ONNX_EXTRA_HINT = "reading .onnx needs the optional extra: pip install 'attest-fingerprint[onnx]'"

# Protobuf cannot serialise a message above 2 GiB, so a bigger .onnx is not a
# model but an attack on the parser; real large models use external data.
MAX_ONNX_BYTES = 2 * 1024**3
MAX_EXTERNAL_BYTES = 1024**4
MAX_NODES = 1_000_000

_ONNX: Any = None


def import_onnx() -> Any:
    """The `onnx` module, imported on first use because it is an optional extra."""
    global _ONNX
    if _ONNX is None:
        try:
            import onnx
            import onnx.numpy_helper
        except ImportError:
            raise InputError(ONNX_EXTRA_HINT) from None
        _ONNX = onnx
    return _ONNX


@dataclass
class LoadedGraph:
    """What the analysis needs from one .onnx file, with the protobuf already released."""

    onnx: Any  # the imported `onnx` module
    nodes: list[GraphNode]  # in file order; Constant nodes are in `blobs` instead
    blobs: dict[str, Blob]
    graph_inputs: list[str]
    producer: str  # "producer_name producer_version"
    opsets: dict[str, int]
    external_files: set[Path]


def load_graph(path: Path) -> LoadedGraph:
    """Parse `path` (external data stays on disk, referenced by its location)."""
    onnx = import_onnx()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    if size > MAX_ONNX_BYTES:
        raise InputError(
            f"{path}: {size} bytes is more than an .onnx file can hold; weights above 2 GiB must be external data"
        )
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, onnx its own types
        raise InputError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {exc})") from None
    producer = f"{model.producer_name} {model.producer_version}".strip()
    opsets = {o.domain or "ai.onnx": int(o.version) for o in model.opset_import}
    graph = model.graph
    if len(graph.node) > MAX_NODES:
        raise InputError(f"{path}: {len(graph.node)} nodes is implausibly many")
    external: set[Path] = set()
    blobs = _initializers(onnx, graph, path, external)
    nodes: list[GraphNode] = []
    for i, n in enumerate(graph.node):
        attrs = attr_values(n, onnx)
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            blobs[n.output[0]] = _constant_blob(attrs)
            continue
        nodes.append(GraphNode(n.op_type, n.domain, n.name, tuple(n.input), tuple(n.output), attrs, i))
    graph_inputs = [i.name for i in graph.input]
    return LoadedGraph(onnx, nodes, blobs, graph_inputs, producer, opsets, external)


def _initializers(onnx: Any, graph: Any, path: Path, external: set[Path]) -> dict[str, Blob]:
    """Every initializer as a Blob; external data files are added to `external`."""
    folder = path.parent
    blobs: dict[str, Blob] = {}
    external_total = 0
    if len(graph.sparse_initializer):
        raise InputError(f"{path}: sparse initializers are not supported")
    for t in graph.initializer:
        if t.name in blobs:
            raise InputError(f"{path}: initializer '{t.name}' appears twice")
        dims = tuple(int(d) for d in t.dims)
        if any(d < 0 for d in dims):
            raise InputError(f"{path}: initializer '{t.name}' has a negative dimension")
        if t.data_location == onnx.TensorProto.EXTERNAL:
            where = external_location(t, folder)
            external_total += where[2]
            if external_total > MAX_EXTERNAL_BYTES:
                raise InputError(f"{path}: external data is implausibly large")
            external.add(where[0])
            blobs[t.name] = Blob(dims, int(t.data_type), external=where)
        elif t.HasField("raw_data"):
            blobs[t.name] = Blob(dims, int(t.data_type), raw=t.raw_data)
        else:
            try:
                arr = onnx.numpy_helper.to_array(t)
            except Exception as exc:  # noqa: BLE001 - onnx raises many types on a hostile tensor
                raise InputError(f"{path}: initializer '{t.name}' is unreadable ({exc})") from None
            blobs[t.name] = Blob(dims, int(t.data_type), array=plain_array(np.asarray(arr)))
    return blobs


def _constant_blob(attrs: Mapping[str, Any]) -> Blob:
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
    return Blob(tuple(arr.shape), 0, array=arr)
