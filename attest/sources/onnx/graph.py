"""The graph model: ONNX nodes as small immutable records, in topological order.

The analysis never touches protobuf messages: `attr_values` copies a node's
attributes into plain Python and numpy values (dropping subgraphs, which
never hold an encoder's weights and would keep the parsed file alive), and
`topological` orders the nodes because not every exporter writes them sorted.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from attest.errors import InputError
from attest.sources.onnx.tensors import plain_array


@dataclass(frozen=True)
class GraphNode:
    op: str
    domain: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    order: int  # position in topological order; virtual nodes get -1


def attr_values(node: Any, onnx: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    A = onnx.AttributeProto
    for a in node.attribute:
        # Subgraphs (If/Loop bodies) never hold a BERT encoder's weights, and
        # keeping any sub-message alive would pin the whole parsed file in memory.
        if a.type in (A.GRAPH, A.GRAPHS, A.SPARSE_TENSOR, A.SPARSE_TENSORS, A.TYPE_PROTO, A.TYPE_PROTOS):
            continue
        if a.type == A.TENSOR:
            try:
                out[a.name] = plain_array(np.array(onnx.numpy_helper.to_array(a.t)))
            except Exception as exc:  # noqa: BLE001 - onnx raises many types on a hostile attribute
                raise InputError(f"ONNX node '{node.name}': attribute '{a.name}' is unreadable ({exc})") from None
            continue
        if a.type == A.TENSORS:
            continue
        out[a.name] = onnx.helper.get_attribute_value(a)
    return out


def topological(nodes: list[GraphNode], available: set[str]) -> list[GraphNode]:
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
    return [
        GraphNode(n.op, n.domain, n.name, n.inputs, n.outputs, n.attrs, k)
        for k, n in enumerate(nodes[i] for i in order)
    ]
