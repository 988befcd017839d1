"""Exact pairwise similarity of two models held locally (`attest compare`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from attest.arch.canonical import CanonicalModel, Layer
from attest.arch.model_info import describe
from attest.errors import InputError
from attest.formats import PAIR_SEED
from attest.invariants.compute import global_matrices, iter_layers, make_probe
from attest.invariants.methods import Method, parse_layers
from attest.invariants.precision import compute_dtype
from attest.invariants.skipped import summary as cells_summary
from attest.lineage.payload import PayloadBuilder, PayloadTests, build_payload, test_against_payload
from attest.lineage.result import LineageResult
from attest.progress import SILENT, Tracker
from attest.scoring.decision import DEFAULT_POLICY, Policy, Verdict, z_and_p
from attest.scoring.lineage_verdict import decide_verdict, lineage_for, z_of_p
from attest.scoring.pairing import embedding_note, pair_layers
from attest.sketch.latent import project
from attest.sketch.sampling import choose_pairs, pairs_for_budget, sample
from attest.vocab.selection import DEFAULT_SELECTION_KEY, align_pair, eligible_strings, locate, select
from attest.vocab.vocabulary import Vocabulary


@dataclass
class LayerPair:
    a: int
    b: int
    terms: dict[str, float]

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.terms.values()))) if self.terms else float("nan")


@dataclass
class Comparison:
    method: Method
    policy: Policy
    score: float
    verdict: Verdict
    reasons: list[str]
    coverage: float
    n_tokens: int
    pairs: list[LayerPair]
    global_terms: dict[str, float]
    layer_matrix: np.ndarray  # [layers of A, layers of B] mean similarity over terms
    layers_a: list[int]
    layers_b: list[int]
    model_a: dict[str, Any]
    model_b: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    precision: str = "fp32"
    token_mode: str = "strings"
    vocabulary_overlap: float = 1.0  # share of A's ranked strings that B also has
    latent_a: np.ndarray | None = None  # dog latents: A's sketch, and B's aligned to A's cells
    latent_b: np.ndarray | None = None
    lineage: LineageResult | None = None

    @property
    def z_p(self) -> tuple[float, float]:
        """The z and p shown to readers: the lineage test's (the score's when no test ran)."""
        if self.lineage is None:
            return z_and_p(self.score, self.policy)
        return z_of_p(self.lineage.p_value), self.lineage.p_value

    def to_json(self) -> dict[str, Any]:
        z, p = self.z_p
        score_z, score_p = z_and_p(self.score, self.policy)
        return {
            "verdict": self.verdict.value,
            "score": self.score,
            "z": z if np.isfinite(z) else None,
            "p_value": p if np.isfinite(p) else None,
            "lineage": self.lineage.to_json() if self.lineage is not None else None,
            "score_z": score_z if np.isfinite(score_z) else None,
            "score_p_value": score_p if np.isfinite(score_p) else None,
            "threshold": self.policy.threshold,
            "policy": self.policy.to_dict(),
            "coverage": self.coverage,
            "vocabulary_overlap": self.vocabulary_overlap,
            "tokens": self.n_tokens,
            "token_mode": self.token_mode,
            "method": self.method.name,
            "precision": self.precision,
            "layers": [{"a": p.a, "b": p.b, "terms": p.terms, "mean": p.mean} for p in self.pairs],
            "global": self.global_terms,
            "layers_a": self.layers_a,
            "layers_b": self.layers_b,
            "models": {"a": self.model_a, "b": self.model_b},
            "reasons": self.reasons,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }


def probe_coverage(a: CanonicalModel, b: CanonicalModel) -> float:
    """Order-free coverage for `compare`: |E_A ∩ E_B| / min(|E_A|, |E_B|) over eligible strings.

    The walk coverage of `align_pair` depends on which model is A (a large
    vocabulary against a small one covers little of its own ranking), which
    could flip a verdict when the arguments are swapped.
    """
    ea, eb = set(eligible_strings(a.vocab)), set(eligible_strings(b.vocab))
    smaller = min(len(ea), len(eb))
    return len(ea & eb) / smaller if smaller else 0.0


def lineage_as_bundle(
    a: CanonicalModel, b: CanonicalModel, n_tokens: int, selection_key: str, policy: Policy, tracker: Tracker = SILENT
) -> LineageResult:
    """The lineage test of B against A exactly as `verify` runs it against a bundle issued from A.

    Same token list (A's first `n_tokens` in keyed-hash order), the same payload
    (256 seeded neurons per layer, the same token subset, int8), the same
    suspect-side procedure: compare and verify reach the same counts, hence the
    same verdict, on the same pair.
    """
    try:
        tokens = select(a.vocab, n_tokens, selection_key)
        index = a.vocab.index()
        payload = build_payload(a, [index[t] for t in tokens], tracker=tracker)
        vocab_b = b.vocab
        if a.vocab.by_ids and not vocab_b.by_ids:
            vocab_b = Vocabulary.ids_only(b.dims.vocab)
        result = test_against_payload(payload, b, locate(vocab_b, tokens), tracker=tracker)
    except InputError as exc:
        result = LineageResult([], "bundle", notes=[f"the lineage test could not run: {exc}"])
    return lineage_for(policy, result)


class _BundleLineage:
    """`lineage_as_bundle` run alongside compare's two fingerprinting passes, so each model is read once.

    A's pass feeds the payload builder; `start_suspect` lays the payload out
    and prepares B's side, which B's pass feeds; `result` reads any layer
    nobody fed and combines.  Any InputError ends the test with the note
    `lineage_as_bundle` writes, raised at the same step it would raise.
    """

    def __init__(self, a: CanonicalModel, b: CanonicalModel, n_tokens: int, selection_key: str) -> None:
        self.a, self.b = a, b
        self.error: InputError | None = None
        self.builder: PayloadBuilder | None = None
        self.tests: PayloadTests | None = None
        try:
            self.tokens = select(a.vocab, n_tokens, selection_key)
            index = a.vocab.index()
            self.builder = PayloadBuilder(a, [index[t] for t in self.tokens])
        except InputError as exc:
            self.error = exc

    def feed_base(self, i: int, layer: Layer) -> None:
        if self.builder is not None:
            self.builder.feed(i, layer)

    def start_suspect(self, tracker: Tracker) -> None:
        if self.error is not None or self.builder is None:
            return
        try:
            payload = self.builder.finish(tracker)
            vocab_b = self.b.vocab
            if self.a.vocab.by_ids and not vocab_b.by_ids:
                vocab_b = Vocabulary.ids_only(self.b.dims.vocab)
            self.tests = PayloadTests([(payload, locate(vocab_b, self.tokens))], self.b)
        except InputError as exc:
            self.error = exc
        self.builder = None  # the base responses are in the payload now

    def feed_suspect(self, j: int, layer: Layer) -> None:
        if self.tests is not None:
            self.tests.feed(j, layer)

    def result(self, policy: Policy, tracker: Tracker) -> LineageResult:
        self.start_suspect(tracker)  # no-op when B's pass already started it
        result: LineageResult | None = None
        if self.error is None and self.tests is not None:
            try:
                result = self.tests.finish(tracker)[0]
            except InputError as exc:
                self.error = exc
        if result is None:
            result = LineageResult([], "bundle", notes=[f"the lineage test could not run: {self.error}"])
        return lineage_for(policy, result)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    x, y = a.reshape(-1).double(), b.reshape(-1).double()
    denom = float(x.norm() * y.norm())
    return float(x @ y) / denom if denom > 0 else float("nan")


def _similarities(
    stored: dict[int, dict[str, torch.Tensor]], z: dict[str, torch.Tensor], order: list[int]
) -> dict[str, np.ndarray]:
    """Pearson similarity of one layer of B against every stored layer of A, per term.

    Both sides are float16 (see `standardised`), so a model compared with
    itself scores exactly 1.
    """
    out: dict[str, np.ndarray] = {}
    for term, zb in z.items():
        sims = np.full(len(order), np.nan)
        for k, i in enumerate(order):
            za = stored[i].get(term)
            if za is not None:
                sims[k] = _cosine(za, zb)
        out[term] = sims
    return out


def compare_models(
    a: CanonicalModel,
    b: CanonicalModel,
    method: Method,
    *,
    policy: Policy = DEFAULT_POLICY,
    precision: str = "auto",
    selection_key: str = DEFAULT_SELECTION_KEY,
    tracker: Tracker = SILENT,
) -> Comparison:
    t0 = time.perf_counter()
    method = method.for_models(a, b)  # attention kind: ssm
    dtype = compute_dtype(precision)
    notes = list(dict.fromkeys(a.warnings + b.warnings))
    align = align_pair(a.vocab, b.vocab, method.n_tokens, selection_key)
    coverage = probe_coverage(a, b)
    layers_a = parse_layers(method.layers, a.n_layers)
    layers_b = parse_layers(method.layers, b.n_layers)
    info_a, info_b = describe(a), describe(b)
    if a.family != b.family:
        notes.append(f"different families: {a.family} vs {b.family}")

    def empty(reason: str) -> Comparison:
        verdict, reasons = Verdict.INCONCLUSIVE, [reason]
        return Comparison(
            method,
            policy,
            float("nan"),
            verdict,
            reasons,
            coverage,
            len(align.strings),
            [],
            {},
            np.zeros((0, 0)),
            layers_a,
            layers_b,
            info_a,
            info_b,
            notes,
            time.perf_counter() - t0,
            str(dtype).replace("torch.", ""),
            align.mode,
        )

    if len(align.strings) < 8:
        return empty(f"only {len(align.strings)} probe tokens are shared by both vocabularies")
    if a.dims.hidden != b.dims.hidden:
        notes.append(
            f"hidden sizes differ ({a.dims.hidden} vs {b.dims.hidden}): the terms are still n×n and comparable"
        )

    probe_a = make_probe(a, align.ids_a, method)
    probe_b = make_probe(b, align.ids_b, method)
    n = len(align.strings)
    positions = choose_pairs(n, pairs_for_budget(n, len(layers_a) * len(method.terms)), PAIR_SEED)
    task = tracker.task("fingerprinting A", len(layers_a))
    stored: dict[int, dict[str, torch.Tensor]] = {}
    sample_a: dict[tuple[int, str], np.ndarray] = {}
    sample_b: dict[tuple[int, str], np.ndarray] = {}
    # The lineage test runs alongside the two passes (one read of each model).
    shared = _BundleLineage(a, b, method.n_tokens, selection_key)
    for res in iter_layers(
        a, probe_a, method, layers_a, dtype, lambda _i: tracker.advance(task), on_read=shared.feed_base
    ):
        stored[res.index] = res.terms
        sample_a.update({(res.index, t): sample(m, positions) for t, m in res.terms.items()})
    sims: dict[str, np.ndarray] = {}
    task = tracker.task("fingerprinting B", len(layers_b))
    shared.start_suspect(tracker)
    passes_b = iter_layers(
        b, probe_b, method, layers_b, dtype, lambda _i: tracker.advance(task), on_read=shared.feed_suspect
    )
    for k, res in enumerate(passes_b):
        for term, col in _similarities(stored, res.terms, layers_a).items():
            sims.setdefault(term, np.full((len(layers_a), len(layers_b)), np.nan))[:, k] = col
        sample_b.update({(res.index, t): sample(m, positions) for t, m in res.terms.items()})
    del stored

    shared_terms = [t for t in method.terms if t in sims]
    if not shared_terms:
        return empty("the two models share no invariant term")
    stack = np.stack([sims[t] for t in shared_terms])
    with np.errstate(all="ignore"):
        layer_matrix = np.nanmean(stack, axis=0)
    layer_matrix = np.nan_to_num(layer_matrix, nan=0.0)
    index_pairs, pairing_notes = pair_layers(layer_matrix, method.depth_alignment)
    notes.extend(pairing_notes)
    pairs: list[LayerPair] = []
    cells: list[float] = []
    for ka, kb in index_pairs:
        terms = {t: float(sims[t][ka, kb]) for t in shared_terms if not np.isnan(sims[t][ka, kb])}
        pairs.append(LayerPair(layers_a[ka], layers_b[kb], terms))
        cells.extend(terms.values())
    score = float(np.mean(cells)) if cells else float("nan")
    cell_keys = list(sample_a)
    matched = {(layers_a[ka], t): (layers_b[kb], t) for ka, kb in index_pairs for t in shared_terms}
    latent_a = project(np.stack([sample_a[c] for c in cell_keys]))
    latent_b = project(
        np.stack([sample_b.get(matched.get(c, (-1, "")), np.zeros(len(positions), np.float32)) for c in cell_keys])
    )

    glob: dict[str, float] = {}
    if method.global_terms:
        ga = global_matrices(a, probe_a, method, dtype)
        gb = global_matrices(b, probe_b, method, dtype)
        for t in ga:
            if t in gb:
                glob[t] = _cosine(ga[t], gb[t])
    emb_note = embedding_note(glob, score, policy)
    if emb_note:
        notes.append(emb_note)
    lineage = shared.result(policy, tracker)
    forced: list[str] = []
    for label, model in (("A", a), ("B", b)):
        # Cells left out because their matrix was NaN/inf or constant (attest.invariants.skipped).
        if model.skipped_cells:
            notes.extend(f"model {label}: {c.describe()}" for c in model.skipped_cells)
            forced.append(f"model {label}: " + cells_summary(model.skipped_cells))
    decided = decide_verdict(lineage, score, coverage, len(align.strings), policy, None, forced)
    verdict, reasons = decided.verdict, decided.reasons
    notes.extend(decided.findings)
    return Comparison(
        method=method,
        policy=policy,
        score=score,
        verdict=verdict,
        reasons=reasons,
        coverage=coverage,
        n_tokens=len(align.strings),
        pairs=pairs,
        global_terms=glob,
        layer_matrix=layer_matrix,
        layers_a=layers_a,
        layers_b=layers_b,
        model_a=info_a,
        model_b=info_b,
        notes=notes,
        seconds=time.perf_counter() - t0,
        precision=str(dtype).replace("torch.", ""),
        token_mode=align.mode,
        latent_a=latent_a,
        latent_b=latent_b,
        vocabulary_overlap=align.coverage,
        lineage=lineage,
    )
