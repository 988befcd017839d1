"""Pattern matching of roles: find the linear layers, norms and lookups, then match BERT layers.

1. Events (`LINEAR_OPS`, `NORM_OPS`, decomposed LayerNorm): every linear
   layer, LayerNorm and embedding lookup, each knowing which earlier events its
   data input is computed from ("anchors", shape metadata excluded).
2. A declarative layer pattern (`BERT_LAYER`) is matched against the events in
   topological order, one layer after another; the last norm of a layer is the
   next layer's input. Attention tracing then tells q from k (the pair that
   meets in the score MatMul; q on its left) and from v.
3. `names_mapping` is the fallback for graphs that cannot be traced but whose
   initializers still carry Hugging Face names.

The result (`GraphMapping`) maps plain HF BERT tensor names to graph constants.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from attest.errors import InputError, UnsupportedModelError
from attest.sources.onnx.folding import Constants
from attest.sources.onnx.graph import GraphNode


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
    resolve: Callable[[GraphReader, GraphNode], tuple[str, bool, str] | None]
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
SHAPE_ARGS: dict[str, int] = {
    "Reshape": 1,
    "Expand": 1,
    "Tile": 1,
    "Slice": 1,
    "Pad": 1,
    "Resize": 1,
    "Unsqueeze": 1,
    "Squeeze": 1,
}


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


def _resolve_matmul(g: GraphReader, n: GraphNode) -> tuple[str, bool, str] | None:
    w = n.inputs[1] if len(n.inputs) > 1 else ""
    if not g.consts.is_const(w) or len(g.consts.shape(w)) != 2 or g.consts.is_const(n.inputs[0]):
        return None
    return w, True, n.outputs[0]


def _resolve_gemm(g: GraphReader, n: GraphNode) -> tuple[str, bool, str] | None:
    if int(n.attrs.get("transA", 0)) or len(n.inputs) < 2:
        return None
    w = n.inputs[1]
    if not g.consts.is_const(w) or len(g.consts.shape(w)) != 2:
        return None
    alpha = float(n.attrs.get("alpha", 1.0))
    if alpha != 1.0:
        w = g.consts.add_virtual("Mul", [w, g.consts.add_array(np.array(alpha, dtype=np.float32))])
    return w, not int(n.attrs.get("transB", 0)), n.outputs[0]


def _resolve_qlinear_matmul(g: GraphReader, n: GraphNode) -> tuple[str, bool, str] | None:
    # QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp)
    if len(n.inputs) < 6 or not all(g.consts.is_const(t) for t in n.inputs[3:6]):
        return None
    w = g.consts.add_virtual("DequantizeLinear", n.inputs[3:6], {"axis": 1})
    return w, True, n.outputs[0]


def _resolve_matmul_integer(g: GraphReader, n: GraphNode) -> tuple[str, bool, str] | None:
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


class GraphReader:
    """Finds the BERT encoder in a graph and names its weights."""

    def __init__(self, nodes: list[GraphNode], consts: Constants, graph_inputs: list[str]) -> None:
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
                bias = (
                    n.inputs[nrule.bias]
                    if nrule.bias is not None and len(n.inputs) > nrule.bias and n.inputs[nrule.bias]
                    else None
                )
                events.append(
                    Event(
                        "norm", n, n.outputs[0], tuple(n.inputs[i] for i in nrule.data), n.inputs[nrule.gain], bias=bias
                    )
                )
                continue
            if n.op == "Div":
                ev = self._decomposed_layernorm(n)
                if ev is not None:
                    events.append(ev)
                continue
            if (
                n.op == "Gather"
                and int(n.attrs.get("axis", 0)) == 0
                and self.consts.is_const(n.inputs[0])
                and len(self.consts.shape(n.inputs[0])) == 2
                and not self.consts.is_const(n.inputs[1])
            ):
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
            return (
                c
                if beta == 1.0
                else self.consts.add_virtual("Mul", [c, self.consts.add_array(np.array(beta, dtype=np.float32))])
            )
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
            raise self._unsupported(
                events, "no encoder layer (3 projections reading one LayerNorm, then output, FFN and norms)"
            )
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
                e
                for e in events
                if e.kind == slot.kind
                and e.id not in taken
                and e.anchors
                and e.anchors <= allowed
                and e.anchors & required
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
        for _mm, sides in by_matmul.items():
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
                    if (
                        user.op in ("Add", "Identity", "Cast", "Reshape")
                        and t in data_inputs(user)
                        and user.outputs[0] not in seen
                    ):
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


def names_mapping(
    consts: Constants, consumers: Mapping[str, list[GraphNode]], names: Iterable[str]
) -> GraphMapping | None:
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


def hf_name_of(consts: Constants, name: str) -> str | None:
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
