"""`OnnxSource`: a BERT-family encoder in an .onnx file, exposed under Hugging Face BERT names."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attest.errors import InputError, UnsupportedModelError
from attest.sources.base import WeightSource
from attest.sources.onnx.folding import Constants
from attest.sources.onnx.graph import GraphNode, topological
from attest.sources.onnx.loader import load_graph
from attest.sources.onnx.patterns import GraphMapping, GraphReader, TensorRef, hf_name_of, names_mapping
from attest.sources.onnx.tensors import Blob

# What numpy and our own indexing raise on inconsistent shapes, dtypes or
# references in a malformed file: a user error (exit 4), never a traceback.
_MALFORMED = (ValueError, IndexError, KeyError, TypeError, OverflowError, RecursionError)


class OnnxSource(WeightSource):
    """A BERT-family encoder in one .onnx file (plus external data files in its folder)."""

    format = "onnx"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        loaded = load_graph(path)
        self._onnx = loaded.onnx
        self._path = path
        self._producer_name = loaded.producer
        self._opsets = loaded.opsets
        self._external = loaded.external_files
        try:
            self._analyse(loaded.nodes, loaded.blobs, loaded.graph_inputs)
        except _MALFORMED as exc:
            raise InputError(f"{path}: malformed ONNX graph ({type(exc).__name__}: {exc})") from None

    def _analyse(self, nodes: list[GraphNode], blobs: dict[str, Blob], graph_inputs: list[str]) -> None:
        path = self._path
        nodes = topological(nodes, set(blobs) | set(graph_inputs))
        producer = {o: n for n in nodes for o in n.outputs if o}
        self._consts = Constants(self._onnx, blobs, producer)
        reader = GraphReader(nodes, self._consts, graph_inputs)
        try:
            mapping = reader.match()
            self._cross_check(mapping)
        except UnsupportedModelError as exc:
            names = list(blobs) + list(producer)
            fallback = names_mapping(self._consts, reader.consumers, names)
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
    def from_path(cls, path: Path) -> OnnxSource:
        return cls(Path(path))

    # -- loading -----------------------------------------------------------------

    def _cross_check(self, mapping: GraphMapping) -> None:
        """Names the exporter kept must agree with the roles the graph gives those tensors."""
        bad: list[str] = []
        for hf, ref in mapping.tensors.items():
            named = hf_name_of(self._consts, ref.const)
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
            self._map.warnings.append(f"no attention head count in the graph: assuming head_dim=64 ({heads} heads)")
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
        return to_torch(arr)

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
            return to_torch(self._guard(name, lambda: self._consts.value(ref.const)[:, idx].T))
        return to_torch(self._guard(name, lambda: self._consts.value(ref.const, idx)))

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
                    dtypes[dtype_name(self._onnx, big.data_type)] += 1
        return {
            "onnx.producer": self._producer_name,
            "onnx.opsets": dict(self._opsets),
            "onnx.mapping": self._map.how,
            "onnx.weight_storage": dict(dtypes),
            "onnx.tensors": {hf: self._describe(ref) for hf, ref in self._tensors.items()},
            "warnings": list(self._map.warnings),
        }

    def warnings(self) -> list[str]:
        return list(self._map.warnings)

    def _describe(self, ref: TensorRef) -> str:
        """The graph tensor behind an HF name; weights rebuilt from an op's inputs are spelled out."""
        node = self._consts.producer.get(ref.const)
        text = (
            f"{node.op}({', '.join(t for t in node.inputs if t)})" if node is not None and node.order < 0 else ref.const
        )
        return text + (" (transposed)" if ref.transposed else "")

    def _ref(self, name: str) -> TensorRef:
        self.require(name)
        return self._tensors[name]

    def close(self) -> None:
        for blob in self._consts.blobs.values():
            blob._mapped = None


def to_torch(arr: np.ndarray) -> torch.Tensor:
    arr = np.asarray(arr)
    if arr.dtype not in (np.float32, np.float16):
        arr = arr.astype(np.float32)
    if not (arr.flags.writeable and arr.flags.c_contiguous):
        # torch refuses read-only buffers, and views of the file bytes must not be written through.
        arr = np.array(arr, order="C", copy=True)
    return torch.from_numpy(arr)


def dtype_name(onnx: Any, code: int) -> str:
    try:
        return str(onnx.TensorProto.DataType.Name(code)).lower()
    except ValueError:
        return str(code)


def _natural(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
