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
        heads         (optional) the layer's attention heads, the head channel
                      (docs/lineage.md, "Head channel"):
            count     H, query heads
            scale     float32 LE [2, H]: step per channel (qk, vo) and head
            data      int8 [2, m_h², H]: head h's qk and vo responses at the first
                      m_h token positions, entry i·m_h + j for the pair (i, j),
                      centred over the m_h² entries, / scale, rounded
    head_tokens       (optional; present iff some layer carries heads) m_h ≤ m

The head keys are optional, so the format stays `attest-lineage/1`: a payload
written before them parses and verifies as it always did.  `issue` writes
heads for every layer with standard attention (not MLA, not a mixer), at
m_h = BUNDLE_HEAD_TOKENS (chosen by measurement, bench/RESULTS-lineage-heads.md).

Size: layers · (2·m·k + 8·k + 2·k) bytes plus a few hundred bytes of keys,
and each layer with heads adds 2·m_h²·H + 8·H.  `default_layout` picks m, k
and the layers with heads so that any depth stays under DATA_CAP; the FFN
tokens m are what DATA_BUDGET leaves after the heads, at least BUNDLE_TOKENS:
at 7B shape (32 layers, 32 heads, k = 256) m = 216 and m_h = 12 give
3.62 MB + 0.30 MB = 3.93 MB, inside the 4 MB budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from attest.arch.canonical import CanonicalModel, Layer
from attest.arch.spec import AttentionKind
from attest.errors import BundleError, InputError
from attest.formats import LINEAGE_FORMAT
from attest.invariants.compute import release_free_memory
from attest.limits import MAX_HEADS, MAX_LINEAGE_BYTES
from attest.lineage.pair import NEURON_SEED, base_layer
from attest.lineage.responses import head_responses
from attest.lineage.result import DEFAULT_ALPHA, REFERENCE_AGREEMENT, LineageResult
from attest.lineage.suspect import BaseLayer, SuspectPass, probe_rows
from attest.progress import SILENT, Tracker

PAYLOAD_FORMAT = LINEAGE_FORMAT
BUNDLE_NEURONS = 256
# The fewest FFN tokens a default payload uses: at 7B shape (32 layers, 32 heads) 216 tokens of
# FFN responses and the head channel's m_h = 12 fit the 4 MB (3.93 MB, tests/test_lineage.py).
BUNDLE_TOKENS = 216
DATA_BUDGET = 3_750_000  # int8 response bytes, FFN and heads; more FFN tokens are stored when the model is shallow
MAX_LAYERS = 4096
MAX_PAYLOAD_VALUES = 64_000_000  # int8 values: refuse to allocate more from a hostile bundle
CHANNEL_SETS = (("gate", "up"), ("up", "down"), ("z", "x"))  # ("z", "x"): mixer channels (attention kind: ssm)
BUNDLE_HEAD_TOKENS = 12  # m_h: head tokens per payload (bench/RESULTS-lineage-heads.md, "m_h in bundles")
MIN_HEAD_TOKENS = 2
MAX_PAYLOAD_HEADS = MAX_HEADS  # query heads per layer


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


DATA_CAP = 6_000_000  # int8 bytes a default payload never passes (MAX_LINEAGE_BYTES bounds the reader)
HEAD_BUDGET = 512_000  # int8 bytes of heads a default payload stores at most (0.30 MB at 7B shape)
MIN_BUNDLE_NEURONS = 64  # fewest sampled neurons per layer a default payload keeps on deep models
MIN_BUNDLE_TOKENS = 64  # fewest FFN tokens a default payload keeps (the policy's minimum for a decision)


def head_bytes(n_layers: int, n_heads: int, head_tokens: int) -> int:
    """int8 bytes the head channel stores: two m_h×m_h responses per head and layer (0 without heads)."""
    return 2 * head_tokens * head_tokens * n_heads * n_layers if head_tokens else 0


def head_layers(n_layers: int, n_heads: int, head_tokens: int = BUNDLE_HEAD_TOKENS) -> list[int]:
    """The layers a default payload stores heads for: all of them, or as many as HEAD_BUDGET
    holds, evenly spaced (a 70B shape: 27 of 80; 405B: 13 of 126).  The channel combines
    whatever layers carry heads (Rüger over those), so a subset is a smaller test, not a
    different one."""
    per_layer = head_bytes(1, n_heads, head_tokens)
    if not per_layer or n_layers <= 0:
        return []
    fit = min(n_layers, HEAD_BUDGET // per_layer)
    if fit <= 0:
        return []
    return (
        sorted({round(i * (n_layers - 1) / max(1, fit - 1)) for i in range(fit)})
        if fit < n_layers
        else list(range(n_layers))
    )


def default_layout(
    n_layers: int, n_heads: int, neurons: int = BUNDLE_NEURONS, head_tokens: int = BUNDLE_HEAD_TOKENS
) -> tuple[int, int, list[int]]:
    """(FFN tokens m, sampled neurons k, layers with heads) of a default payload at this depth.

    Heads first (`head_layers`); then FFN responses at as many tokens as
    DATA_BUDGET leaves, at least BUNDLE_TOKENS.  A model deep enough that even
    BUNDLE_TOKENS would pass DATA_CAP keeps them and samples fewer neurons per
    layer (at least MIN_BUNDLE_NEURONS), then fewer tokens (at least
    MIN_BUNDLE_TOKENS), so a bundle of any real depth stays inside what a
    verifier reads (MAX_LINEAGE_BYTES).  7B shape (32 layers, 32 heads): 216
    tokens, 256 neurons, heads on every layer; 70B (80, 64): 216, 159, 27
    layers with heads; 405B (126, 128): 216, 101, 13.
    """
    layers = max(1, n_layers)
    chosen = head_layers(n_layers, n_heads, head_tokens)
    heads = head_bytes(len(chosen), n_heads, head_tokens)
    tokens = max(BUNDLE_TOKENS, (DATA_BUDGET - heads) // (2 * neurons * layers))
    if 2 * tokens * neurons * layers + heads <= DATA_CAP:
        return tokens, neurons, chosen
    left = DATA_CAP - heads
    k = min(neurons, max(MIN_BUNDLE_NEURONS, left // (2 * BUNDLE_TOKENS * layers)))
    tokens = max(MIN_BUNDLE_TOKENS, min(BUNDLE_TOKENS, left // (2 * k * layers)))
    return tokens, k, chosen


def layout_document(
    n_layers: int, ffn_width: int, n_heads: int, *, n_tokens: int = 1024, heads: bool = True
) -> dict[str, Any]:
    """An all-zero payload laid out as `issue` lays out a model of this shape (`default_layout`).

    For size accounting without a model: its CBOR size is the real payload's
    (`payload_size`), and the verifier's checks accept it exactly when they
    would accept the real one.  `heads=False`: the layout with no head channel.
    """
    m, k, with_heads = default_layout(n_layers, n_heads, BUNDLE_NEURONS, BUNDLE_HEAD_TOKENS if heads else 0)
    m = min(m, n_tokens)
    m_h = min(BUNDLE_HEAD_TOKENS, m) if heads else 0
    t_name, t_fmt = _index_dtype(n_tokens)
    n_name, n_fmt = _index_dtype(ffn_width)
    layers = []
    for i in range(n_layers):
        layer: dict[str, Any] = {
            "index": i,
            "channels": ["gate", "up"],
            "width": ffn_width,
            "neurons": np.arange(k, dtype=n_fmt).tobytes(),
            "neuron_dtype": n_name,
            "scale": bytes(8 * k),
            "data": bytes(2 * m * k),
        }
        if m_h and i in with_heads:
            layer["heads"] = {"count": n_heads, "scale": bytes(8 * n_heads), "data": bytes(2 * m_h * m_h * n_heads)}
        layers.append(layer)
    doc: dict[str, Any] = {
        "format": PAYLOAD_FORMAT,
        "seed": 2**31,
        "n_tokens": n_tokens,
        "token_positions": np.arange(m, dtype=t_fmt).tobytes(),
        "token_dtype": t_name,
        "layers": layers,
    }
    if m_h and with_heads:
        doc["head_tokens"] = m_h
    return doc


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
        head_tokens: int = BUNDLE_HEAD_TOKENS,
    ) -> None:
        """`head_tokens`: m_h of the head channel (0: no heads, a payload as before the head channel)."""
        with_heads: set[int] | None = None  # None: every layer with standard attention
        if tokens is None:
            # MLA heads share a latent projection and carry no head channel: budget none for them.
            n_heads = 0 if model.spec.attention is AttentionKind.MLA else model.dims.n_heads
            tokens, neurons, chosen = default_layout(model.n_layers, n_heads, neurons, head_tokens)
            with_heads = set(chosen)
        if neurons < 2 or tokens < 8:
            raise InputError("lineage payload needs at least 2 neurons and 8 tokens per layer")
        if head_tokens and head_tokens < MIN_HEAD_TOKENS:
            raise InputError(f"the head channel needs at least {MIN_HEAD_TOKENS} tokens (or 0 for none)")
        self.model, self.neurons, self.seed, self.n_tokens = model, neurons, seed, len(token_ids)
        self.positions = np.arange(min(tokens, len(token_ids)))
        self.head_tokens = min(head_tokens, len(self.positions))
        self.with_heads = with_heads
        self.x = probe_rows(model, [token_ids[int(p)] for p in self.positions])
        self.layers: dict[int, BaseLayer | InputError] = {}

    def feed(self, i: int, layer: Layer) -> None:
        if i in self.layers or not 0 <= i < self.model.n_layers:
            return
        try:
            bl = base_layer(layer, i, self.x, self.neurons, self.seed)
        except InputError as exc:  # raised by `finish`, in layer order
            self.layers[i] = exc
            return
        if self.head_tokens >= MIN_HEAD_TOKENS and (self.with_heads is None or i in self.with_heads):
            bl.heads = head_responses(layer, self.x[: self.head_tokens])  # None without standard attention
        self.layers[i] = bl

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
        out: dict[str, Any] = {
            "format": PAYLOAD_FORMAT,
            "seed": int(self.seed),
            "n_tokens": self.n_tokens,
            "token_positions": self.positions.astype(t_fmt).tobytes(),
            "token_dtype": t_name,
            "layers": out_layers,
        }
        if any("heads" in layer for layer in out_layers):
            out["head_tokens"] = self.head_tokens
        size = sum(len(x["data"]) + len(x["scale"]) + sum(len(v) for v in _head_bytes_of(x)) for x in out_layers)
        if size > MAX_LINEAGE_BYTES:  # refuse here rather than sign a bundle no verifier would read
            raise InputError(
                f"lineage payload of {size} bytes exceeds the {MAX_LINEAGE_BYTES} a verifier reads: "
                "use fewer neurons or tokens"
            )
        return out


def _head_bytes_of(layer: Mapping[str, Any]) -> list[bytes]:
    heads = layer.get("heads")
    return [heads["data"], heads["scale"]] if isinstance(heads, Mapping) else []


def _pack_layer(bl: BaseLayer) -> dict[str, Any]:
    f, idx = bl.width, bl.neurons
    assert idx is not None
    q1, s1 = _quantise(bl.first)
    q2, s2 = _quantise(bl.second)
    n_name, n_fmt = _index_dtype(f)
    out: dict[str, Any] = {
        "index": bl.index,
        "channels": list(bl.channels),
        "width": f,
        "neurons": idx.astype(n_fmt).tobytes(),
        "neuron_dtype": n_name,
        "scale": np.stack([s1, s2]).astype("<f4").tobytes(),
        "data": np.stack([q1, q2]).tobytes(),
    }
    if bl.heads is not None:
        # Quantised per head and channel like the neurons: each [m_h², H] column centred, int8.
        h1, t1 = _quantise(bl.heads[0])
        h2, t2 = _quantise(bl.heads[1])
        out["heads"] = {
            "count": int(h1.shape[1]),
            "scale": np.stack([t1, t2]).astype("<f4").tobytes(),
            "data": np.stack([h1, h2]).tobytes(),
        }
    return out


def build_payload(
    model: CanonicalModel,
    token_ids: Sequence[int],
    *,
    neurons: int = BUNDLE_NEURONS,
    tokens: int | None = None,
    seed: int = NEURON_SEED,
    tracker: Tracker = SILENT,
    head_tokens: int = BUNDLE_HEAD_TOKENS,
) -> dict[str, Any]:
    """The lineage payload for a statement whose token list has the ids `token_ids` in `model`.

    The first `tokens` entries of the list are used (default: as many as
    DATA_BUDGET allows for this depth, at least BUNDLE_TOKENS): the list is
    already in keyed-hash order, so they are a pseudo-random subset of it.
    The head channel uses the first `head_tokens` of those (0: no heads).
    """
    builder = PayloadBuilder(model, token_ids, neurons=neurons, tokens=tokens, seed=seed, head_tokens=head_tokens)
    return builder.finish(tracker)


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


@dataclass
class ParsedPayload:
    """A validated payload, dequantised."""

    positions: np.ndarray  # m token positions into the statement's list
    layers: list[tuple[int, tuple[str, str], int, np.ndarray]]  # (layer, channels, k, values [2, m, k])
    n_tokens: int
    head_tokens: int = 0  # m_h (0: the payload carries no heads)
    heads: dict[int, np.ndarray] = field(default_factory=dict)  # layer → values [2, m_h², H] float32


def _parse_heads(doc: Any, m_h: int) -> tuple[int, Any, Any]:
    """(H, scale bytes, data bytes) of a layer's `heads` map, sizes checked, nothing allocated."""
    if not isinstance(doc, Mapping):
        raise BundleError("lineage payload: a layer's heads must be a map")
    if m_h < MIN_HEAD_TOKENS:
        raise BundleError("lineage payload: a layer carries heads but the payload has no head_tokens")
    h = _int(doc.get("count"), "heads.count", 1, MAX_PAYLOAD_HEADS)
    scale = _bytes(doc.get("scale"), "heads.scale", 8 * h)
    data = _bytes(doc.get("data"), "heads.data", 2 * m_h * m_h * h)
    return h, scale, data


def _parse(payload: Any) -> ParsedPayload:
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
    m_h = 0
    if "head_tokens" in payload:
        m_h = _int(payload.get("head_tokens"), "head_tokens", MIN_HEAD_TOKENS, m)
    layers_doc = payload.get("layers")
    if not isinstance(layers_doc, (list, tuple)) or not 0 < len(layers_doc) <= MAX_LAYERS:
        raise BundleError("lineage payload: layers must be a non-empty array")
    out = []
    heads: dict[int, np.ndarray] = {}
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
        if "heads" in doc:
            # Counted against the same budget, and before the bytes are read, so a
            # hostile count cannot make the dequantisation allocate.
            count = doc["heads"].get("count") if isinstance(doc["heads"], Mapping) else None
            if isinstance(count, int) and not isinstance(count, bool) and 0 < count <= MAX_PAYLOAD_HEADS:
                budget -= 2 * m_h * m_h * count
                if budget < 0:
                    raise BundleError("lineage payload: larger than this attest accepts")
            h, h_scale, h_data = _parse_heads(doc["heads"], m_h)
            hs = np.frombuffer(h_scale, dtype="<f4").reshape(2, h)
            if not np.isfinite(hs).all() or (hs < 0).any():
                raise BundleError("lineage payload: head scales must be finite and non-negative")
            hd = np.frombuffer(h_data, dtype=np.int8).reshape(2, m_h * m_h, h)
            heads[index] = hd.astype(np.float32) * hs[:, None, :]
        out.append((index, channels, k, data.astype(np.float32) * scale[:, None, :]))
    if m_h and not heads:
        raise BundleError("lineage payload: head_tokens is set but no layer carries heads")
    out.sort(key=lambda t: t[0])
    return ParsedPayload(positions, out, n_tokens, m_h, heads)  # type: ignore[arg-type]


def parse_payload(payload: Any) -> tuple[np.ndarray, list[tuple[int, tuple[str, str], int, np.ndarray]], int]:
    """Validated (token positions, [(layer, channels, k, values [2, m, k] float32)], n_tokens).

    The optional heads are validated too (`ParsedPayload` carries them).
    """
    p = _parse(payload)
    return p.positions, p.layers, p.n_tokens


@dataclass
class _Prepared:
    base: list[BaseLayer]
    ids: list[int]  # the suspect's ids at the covered payload tokens, in payload order
    m: int
    head_tokens: int  # covered tokens among the first m_h (a prefix of ids); 0 without heads
    m_h: int


def _payload_task(payload: Any, suspect_ids: Sequence[int | None]) -> _Prepared:
    """The base layers at the payload tokens the suspect covers, the suspect's ids there, and the payload's m.

    Head responses are masked on rows and columns alike: entry (i, j) of the
    m_h × m_h matrices is kept only when both tokens are covered, so the
    suspect's responses at its covered head tokens line up entry by entry.
    """
    p = _parse(payload)
    positions = p.positions
    if len(suspect_ids) != p.n_tokens:
        raise BundleError(f"lineage payload indexes {p.n_tokens} tokens but the statement lists {len(suspect_ids)}")
    covered = np.array([suspect_ids[int(q)] is not None for q in positions], dtype=bool)
    ids = [int(suspect_ids[int(q)]) for q in positions[covered]]  # type: ignore[arg-type]
    keep = torch.as_tensor(covered)
    cov_h = covered[: p.head_tokens]
    pair_keep = torch.as_tensor(np.outer(cov_h, cov_h).reshape(-1))
    base = []
    for i, ch, _k, v in p.layers:
        bl = BaseLayer(i, torch.from_numpy(v[0])[keep], torch.from_numpy(v[1])[keep], ch)
        if i in p.heads:
            hv = p.heads[i]
            bl.heads = (torch.from_numpy(hv[0])[pair_keep], torch.from_numpy(hv[1])[pair_keep])
        base.append(bl)
    return _Prepared(base, ids, len(positions), int(cov_h.sum()) if p.heads else 0, p.head_tokens)


class PayloadTests:
    """`test_many_against_payloads` fed one suspect layer at a time (see `SuspectPass`).

    Memory: every payload's responses as float32 (4·2·m·k bytes per layer,
    about 15 MB per 7B-shape bundle, and 4·2·m_h²·H for its heads, 1.2 MB)
    while the suspect streams.
    """

    def __init__(
        self,
        items: Sequence[tuple[Any, Sequence[int | None]]],
        suspect: CanonicalModel,
        *,
        alpha: float = DEFAULT_ALPHA,
        reference_agreement: float = REFERENCE_AGREEMENT,
        dtype: torch.dtype = torch.float32,
        findings: bool = True,
    ) -> None:
        """`findings=False`: skip head channels that could not join the verdict (`SuspectPass`)."""
        self.prepared = [_payload_task(payload, ids) for payload, ids in items]
        self.alpha, self.reference_agreement = alpha, reference_agreement
        self.run = [n for n, t in enumerate(self.prepared) if len(t.ids) >= 8]
        self.suspect_pass = (
            SuspectPass(
                [self.prepared[n].base for n in self.run],
                suspect,
                [self.prepared[n].ids for n in self.run],
                "bundle",
                dtype=dtype,
                alpha=alpha,
                reference_agreement=reference_agreement,
                head_tokens=[self.prepared[n].head_tokens for n in self.run],
                findings=findings,
            )
            if self.run
            else None
        )

    def feed(self, j: int, layer: Layer) -> None:
        if self.suspect_pass is not None:
            self.suspect_pass.feed(j, layer)

    def finish(self, tracker: Tracker = SILENT) -> list[LineageResult]:
        results: list[LineageResult | None] = [None] * len(self.prepared)
        for n, t in enumerate(self.prepared):
            if len(t.ids) < 8:
                res = LineageResult([], "bundle", self.alpha, self.reference_agreement)
                res.notes.append(f"only {len(t.ids)} of the payload's {t.m} tokens exist in the suspect")
                results[n] = res
        done = self.suspect_pass.finish(tracker) if self.suspect_pass is not None else []
        for n, res in zip(self.run, done):
            t = self.prepared[n]
            res.notes.append(f"{len(t.ids)} of the payload's {t.m} tokens are covered by the suspect")
            if res.heads is not None:
                res.heads.notes.append(f"{t.head_tokens} of the payload's {t.m_h} head tokens are covered")
            elif t.m_h and t.head_tokens < 2:
                res.notes.append(
                    f"head channel not run: {t.head_tokens} of the payload's {t.m_h} head tokens are covered"
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
