"""The bundle path: what a publisher stores so a verifier can run the lineage test without the base.

Payload (a CBOR-ready dict, `attest-lineage/1`):

    format            "attest-lineage/1"
    seed              neuron-sampling seed (per layer: PCG64([seed, layer]))
    n_tokens          length of the statement's token list the positions index
    token_positions   m positions into that list (uint16 LE, or uint32 when it is ≥ 65536 long)
    token_dtype       "uint16" | "uint32"
    layers            one map per base layer:
        index         layer index
        channels      ["gate", "up"], ["up", "down"] or ["z", "x"] (a Mamba-2 mixer's channels)
        width         FFN width f (pooled over experts)
        neurons       k sampled neuron indices (uint16/uint32 LE, see neuron_dtype)
        neuron_dtype  "uint16" | "uint32"
        scale         float32 LE [2, k]: dequantisation step per channel and neuron
        data          int8 [2, m, k]: responses centred over the m tokens, / scale, rounded

Size: layers · (2·m·k + 8·k + 2·k) bytes plus a few hundred bytes of keys;
at 7B shape (32 layers) with the defaults k = 256, m = 224 that is 3.75 MB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from attest.arch.canonical import CanonicalModel, Layer
from attest.errors import BundleError, InputError
from attest.formats import LINEAGE_FORMAT
from attest.invariants.compute import release_free_memory
from attest.lineage.pair import NEURON_SEED, base_layer
from attest.lineage.result import DEFAULT_ALPHA, REFERENCE_AGREEMENT, LineageResult
from attest.lineage.suspect import BaseLayer, SuspectPass, probe_rows
from attest.progress import SILENT, Tracker

PAYLOAD_FORMAT = LINEAGE_FORMAT
BUNDLE_NEURONS = 256
BUNDLE_TOKENS = 224  # the fewest tokens a default payload uses (what fits at 7B shape)
DATA_BUDGET = 3_750_000  # int8 response bytes; more tokens are stored when the model is shallow
MAX_LAYERS = 4096
MAX_PAYLOAD_VALUES = 64_000_000  # int8 values: refuse to allocate more from a hostile bundle
CHANNEL_SETS = (("gate", "up"), ("up", "down"), ("z", "x"))  # ("z", "x"): mixer channels (attention kind: ssm)


def _index_dtype(limit: int) -> tuple[str, str]:
    return ("uint16", "<u2") if limit < 65536 else ("uint32", "<u4")


def _quantise(r: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """[m, k] float → (int8 [m, k], float32 scale [k]) after centring each column over the m tokens."""
    a = r.double().numpy()
    a = a - a.mean(0, keepdims=True)
    peak = np.abs(a).max(0)
    scale = np.where(peak > 0, peak / 127.0, 1.0)
    q = np.clip(np.rint(a / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


class PayloadBuilder:
    """`build_payload` fed one base layer at a time by a caller that streams the base anyway.

    `feed` computes a loaded layer's sampled responses; `finish` reads the
    layers nobody fed and lays the payload out.  An error is raised where
    `build_payload` would raise it: at the first failing layer in index order.
    """

    def __init__(
        self,
        model: CanonicalModel,
        token_ids: Sequence[int],
        *,
        neurons: int = BUNDLE_NEURONS,
        tokens: int | None = None,
        seed: int = NEURON_SEED,
    ) -> None:
        if tokens is None:
            tokens = max(BUNDLE_TOKENS, DATA_BUDGET // max(1, 2 * neurons * model.n_layers))
        if neurons < 2 or tokens < 8:
            raise InputError("lineage payload needs at least 2 neurons and 8 tokens per layer")
        self.model, self.neurons, self.seed, self.n_tokens = model, neurons, seed, len(token_ids)
        self.positions = np.arange(min(tokens, len(token_ids)))
        self.x = probe_rows(model, [token_ids[int(p)] for p in self.positions])
        self.layers: dict[int, BaseLayer | InputError] = {}

    def feed(self, i: int, layer: Layer) -> None:
        if i in self.layers or not 0 <= i < self.model.n_layers:
            return
        try:
            self.layers[i] = base_layer(layer, i, self.x, self.neurons, self.seed)
        except InputError as exc:  # raised by `finish`, in layer order
            self.layers[i] = exc

    def finish(self, tracker: Tracker = SILENT) -> dict[str, Any]:
        todo = [i for i in range(self.model.n_layers) if i not in self.layers]
        task = tracker.task("lineage: base neurons", len(todo)) if todo else 0
        out_layers = []
        for i in range(self.model.n_layers):
            if i not in self.layers:
                layer = self.model.layer(i)
                self.feed(i, layer)
                del layer
                release_free_memory()
                tracker.advance(task)
            bl = self.layers[i]
            if isinstance(bl, InputError):
                raise bl
            out_layers.append(_pack_layer(bl))
        t_name, t_fmt = _index_dtype(self.n_tokens)
        return {
            "format": PAYLOAD_FORMAT,
            "seed": int(self.seed),
            "n_tokens": self.n_tokens,
            "token_positions": self.positions.astype(t_fmt).tobytes(),
            "token_dtype": t_name,
            "layers": out_layers,
        }


def _pack_layer(bl: BaseLayer) -> dict[str, Any]:
    f, idx = bl.width, bl.neurons
    assert idx is not None
    q1, s1 = _quantise(bl.first)
    q2, s2 = _quantise(bl.second)
    n_name, n_fmt = _index_dtype(f)
    return {
        "index": bl.index,
        "channels": list(bl.channels),
        "width": f,
        "neurons": idx.astype(n_fmt).tobytes(),
        "neuron_dtype": n_name,
        "scale": np.stack([s1, s2]).astype("<f4").tobytes(),
        "data": np.stack([q1, q2]).tobytes(),
    }


def build_payload(
    model: CanonicalModel,
    token_ids: Sequence[int],
    *,
    neurons: int = BUNDLE_NEURONS,
    tokens: int | None = None,
    seed: int = NEURON_SEED,
    tracker: Tracker = SILENT,
) -> dict[str, Any]:
    """The lineage payload for a statement whose token list has the ids `token_ids` in `model`.

    The first `tokens` entries of the list are used (default: as many as
    DATA_BUDGET allows for this depth, at least BUNDLE_TOKENS): the list is
    already in keyed-hash order, so they are a pseudo-random subset of it.
    """
    return PayloadBuilder(model, token_ids, neurons=neurons, tokens=tokens, seed=seed).finish(tracker)


def payload_size(payload: Mapping[str, Any]) -> int:
    """Encoded CBOR size in bytes."""
    import cbor2

    return len(cbor2.dumps(dict(payload)))


def _int(v: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BundleError(f"lineage payload: {what} must be an integer in [{lo}, {hi}]")
    return v


def _bytes(v: Any, what: str, size: int) -> bytes:
    if not isinstance(v, bytes) or len(v) != size:
        raise BundleError(f"lineage payload: {what} must be {size} bytes")
    return v


def parse_payload(payload: Any) -> tuple[np.ndarray, list[tuple[int, tuple[str, str], int, np.ndarray]], int]:
    """Validated (token positions, [(layer, channels, k, values [2, m, k] float32)], n_tokens)."""
    if not isinstance(payload, Mapping) or payload.get("format") != PAYLOAD_FORMAT:
        raise BundleError(f"lineage payload: not an {PAYLOAD_FORMAT} map")
    n_tokens = _int(payload.get("n_tokens"), "n_tokens", 1, 1 << 24)
    t_fmt = {"uint16": "<u2", "uint32": "<u4"}.get(payload.get("token_dtype"))  # type: ignore[arg-type]
    raw = payload.get("token_positions")
    if t_fmt is None or not isinstance(raw, bytes) or len(raw) % np.dtype(t_fmt).itemsize:
        raise BundleError("lineage payload: malformed token positions")
    positions = np.frombuffer(raw, dtype=t_fmt).astype(np.int64)
    m = len(positions)
    if m == 0 or positions.max() >= n_tokens or len(np.unique(positions)) != m:
        raise BundleError("lineage payload: token positions out of range or repeated")
    layers_doc = payload.get("layers")
    if not isinstance(layers_doc, (list, tuple)) or not 0 < len(layers_doc) <= MAX_LAYERS:
        raise BundleError("lineage payload: layers must be a non-empty array")
    out = []
    budget = MAX_PAYLOAD_VALUES
    seen: set[int] = set()
    for doc in layers_doc:
        if not isinstance(doc, Mapping):
            raise BundleError("lineage payload: malformed layer entry")
        index = _int(doc.get("index"), "layer index", 0, 1 << 20)
        if index in seen:
            raise BundleError("lineage payload: a layer appears twice")
        seen.add(index)
        ch = doc.get("channels")
        channels = tuple(ch) if isinstance(ch, (list, tuple)) else ()
        if channels not in CHANNEL_SETS:
            raise BundleError("lineage payload: unknown channels")
        width = _int(doc.get("width"), "width", 1, 1 << 24)
        n_fmt = {"uint16": "<u2", "uint32": "<u4"}.get(doc.get("neuron_dtype"))  # type: ignore[arg-type]
        raw_n = doc.get("neurons")
        if n_fmt is None or not isinstance(raw_n, bytes) or len(raw_n) % np.dtype(n_fmt).itemsize:
            raise BundleError("lineage payload: malformed neuron indices")
        neurons = np.frombuffer(raw_n, dtype=n_fmt)
        k = len(neurons)
        if k < 2 or int(neurons.max()) >= width:
            raise BundleError("lineage payload: neuron indices out of range")
        budget -= 2 * m * k
        if budget < 0:
            raise BundleError("lineage payload: larger than this attest accepts")
        scale = np.frombuffer(_bytes(doc.get("scale"), "scale", 8 * k), dtype="<f4").reshape(2, k)
        if not np.isfinite(scale).all() or (scale < 0).any():
            raise BundleError("lineage payload: scales must be finite and non-negative")
        data = np.frombuffer(_bytes(doc.get("data"), "data", 2 * m * k), dtype=np.int8).reshape(2, m, k)
        out.append((index, channels, k, data.astype(np.float32) * scale[:, None, :]))  # type: ignore[arg-type]
    out.sort(key=lambda t: t[0])
    return positions, out, n_tokens  # type: ignore[return-value]


def _payload_task(payload: Any, suspect_ids: Sequence[int | None]) -> tuple[list[BaseLayer], list[int], int]:
    """The base layers at the payload tokens the suspect covers, the suspect's ids there, and the payload's m."""
    positions, layers, n_tokens = parse_payload(payload)
    if len(suspect_ids) != n_tokens:
        raise BundleError(f"lineage payload indexes {n_tokens} tokens but the statement lists {len(suspect_ids)}")
    covered = np.array([suspect_ids[int(p)] is not None for p in positions], dtype=bool)
    ids = [int(suspect_ids[int(p)]) for p in positions[covered]]  # type: ignore[arg-type]
    keep = torch.as_tensor(covered)
    base = [BaseLayer(i, torch.from_numpy(v[0])[keep], torch.from_numpy(v[1])[keep], ch) for i, ch, _k, v in layers]
    return base, ids, len(positions)


class PayloadTests:
    """`test_many_against_payloads` fed one suspect layer at a time (see `SuspectPass`).

    Memory: every payload's responses as float32 (4·2·m·k bytes per layer,
    about 15 MB per 7B-shape bundle) while the suspect streams.
    """

    def __init__(
        self,
        items: Sequence[tuple[Any, Sequence[int | None]]],
        suspect: CanonicalModel,
        *,
        alpha: float = DEFAULT_ALPHA,
        reference_agreement: float = REFERENCE_AGREEMENT,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.prepared = [_payload_task(payload, ids) for payload, ids in items]
        self.alpha, self.reference_agreement = alpha, reference_agreement
        self.run = [n for n, (_b, ids, _m) in enumerate(self.prepared) if len(ids) >= 8]
        self.suspect_pass = (
            SuspectPass(
                [self.prepared[n][0] for n in self.run],
                suspect,
                [self.prepared[n][1] for n in self.run],
                "bundle",
                dtype=dtype,
                alpha=alpha,
                reference_agreement=reference_agreement,
            )
            if self.run
            else None
        )

    def feed(self, j: int, layer: Layer) -> None:
        if self.suspect_pass is not None:
            self.suspect_pass.feed(j, layer)

    def finish(self, tracker: Tracker = SILENT) -> list[LineageResult]:
        results: list[LineageResult | None] = [None] * len(self.prepared)
        for n, (_b, ids, m) in enumerate(self.prepared):
            if len(ids) < 8:
                res = LineageResult([], "bundle", self.alpha, self.reference_agreement)
                res.notes.append(f"only {len(ids)} of the payload's {m} tokens exist in the suspect")
                results[n] = res
        done = self.suspect_pass.finish(tracker) if self.suspect_pass is not None else []
        for n, res in zip(self.run, done):
            res.notes.append(
                f"{len(self.prepared[n][1])} of the payload's {self.prepared[n][2]} tokens are covered by the suspect"
            )
            results[n] = res
        return [r for r in results if r is not None]


def test_many_against_payloads(
    items: Sequence[tuple[Any, Sequence[int | None]]],
    suspect: CanonicalModel,
    *,
    alpha: float = DEFAULT_ALPHA,
    reference_agreement: float = REFERENCE_AGREEMENT,
    dtype: torch.dtype = torch.float32,
    tracker: Tracker = SILENT,
) -> list[LineageResult]:
    """`test_against_payload` for (payload, suspect ids) of several bundles, reading the suspect once."""
    tests = PayloadTests(items, suspect, alpha=alpha, reference_agreement=reference_agreement, dtype=dtype)
    return tests.finish(tracker)


def test_against_payload(
    payload: Any,
    suspect: CanonicalModel,
    suspect_ids: Sequence[int | None],
    *,
    alpha: float = DEFAULT_ALPHA,
    reference_agreement: float = REFERENCE_AGREEMENT,
    dtype: torch.dtype = torch.float32,
    tracker: Tracker = SILENT,
) -> LineageResult:
    """Run the lineage test of `suspect` against a base's payload.

    `suspect_ids` has one entry per token of the statement's token list: the
    suspect's id for that string, or None where its vocabulary lacks it (the
    covered-token mask).  Only payload tokens the suspect has are used.
    """
    return test_many_against_payloads(
        [(payload, suspect_ids)],
        suspect,
        alpha=alpha,
        reference_agreement=reference_agreement,
        dtype=dtype,
        tracker=tracker,
    )[0]


test_against_payload.__test__ = False  # type: ignore[attr-defined]
test_many_against_payloads.__test__ = False  # type: ignore[attr-defined]
