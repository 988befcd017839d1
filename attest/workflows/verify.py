"""`attest verify`: recompute a suspect at a bundle's tokens, layers and pairs, and decide."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from attest import __version__
from attest.arch.canonical import CanonicalModel, Layer
from attest.arch.model_info import describe
from attest.bundle.container import OpenedAttestation
from attest.invariants.methods import parse_layers
from attest.invariants.precision import compute_dtype
from attest.invariants.skipped import summary as cells_summary
from attest.lineage.payload import PayloadTests, test_against_payload
from attest.lineage.result import LineageResult
from attest.progress import SILENT, Tracker
from attest.scoring.decision import DEFAULT_POLICY, Policy, Verdict, z_and_p
from attest.scoring.lineage_verdict import lineage_for, z_of_p
from attest.scoring.pairing import embedding_note, pair_layers
from attest.scoring.sketch_verdict import sketch_verdict
from attest.sketch.latent import cosine, project
from attest.sketch.model_sketch import sketch_model
from attest.sketch.sampling import cell_estimates, remap_pairs
from attest.sketch.statement import GLOBAL, StatementView
from attest.vocab.selection import locate
from attest.vocab.vocabulary import Vocabulary


@dataclass
class Verification:
    verdict: Verdict
    reasons: list[str]
    score: float
    ci: tuple[float, float]
    z: float
    p_value: float
    coverage: float
    tokens_covered: int
    pairs_used: int
    policy: Policy
    method: str
    layers: list[dict[str, Any]]
    global_terms: dict[str, float]
    signature: dict[str, Any]
    base_subject: Any
    suspect_subject: Any
    base_model: Any
    suspect_model: dict[str, Any]
    base_latent: np.ndarray
    suspect_latent: np.ndarray
    suspect_values: np.ndarray  # float32, aligned to the base's cells, 0 where missing
    bundle_policy: Policy = DEFAULT_POLICY  # what the bundle records: shown, never applied
    covered: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # per bundle token
    matched_cells: list[int] = field(default_factory=list)  # base cell rows the aggregate used
    incomplete_layers: int = 0
    suspect_layers: int = 0
    forced_inconclusive: list[str] = field(default_factory=list)  # reasons that make any score inconclusive
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    artefacts: dict[str, str] = field(default_factory=dict)  # files written (evidence, report, sheet)
    lineage: LineageResult | None = None  # the lineage test (None: bundle without payload, or not reached)
    score_z: float = float("nan")  # the invariant score against its null: a finding, not the verdict's
    score_p: float = float("nan")
    dogs_note: str | None = None  # set when both dogs were redrawn from the covered sketch positions

    @property
    def policy_differences(self) -> list[str]:
        return self.policy.differences(self.bundle_policy)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "score": _finite(self.score),
            "ci": [_finite(self.ci[0]), _finite(self.ci[1])],
            "z": _finite(self.z),
            "p_value": _finite(self.p_value),
            "lineage": self.lineage.to_json() if self.lineage is not None else None,
            "score_z": _finite(self.score_z),
            "score_p_value": _finite(self.score_p),
            "dogs": self.dogs_note,
            "threshold": self.policy.threshold,
            "policy": self.policy.to_dict(),
            "bundle_policy": self.bundle_policy.to_dict(),
            "policy_differences": self.policy_differences,
            "coverage": self.coverage,
            "tokens_covered": self.tokens_covered,
            "pairs_used": self.pairs_used,
            "method": self.method,
            "signature": self.signature,
            "subject": {"base": plain(self.base_subject), "suspect": plain(self.suspect_subject)},
            "models": {"base": plain(self.base_model), "suspect": self.suspect_model},
            "layers": self.layers,
            "global": self.global_terms,
            "latent_cosine": cosine(self.base_latent, self.suspect_latent),
            "reasons": self.reasons,
            "notes": self.notes,
            "tool_version": __version__,
            "seconds": round(self.seconds, 3),
            **self.artefacts,
        }


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def plain(obj: Any) -> Any:
    """CBOR-decoded values (bytes, frozendicts, tuples) as JSON-friendly values."""
    if isinstance(obj, bytes):
        return obj.hex()
    if hasattr(obj, "items"):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def signature_record(opened: OpenedAttestation) -> dict[str, Any]:
    """Who signed: the trust store's identity for the key, beside what the bundle claims."""
    v = opened.verified
    return {
        "valid": True,
        "kid": v.kid.hex(),
        "trusted_identity": v.signer,
        "issuer": v.issuer,
        "issuer_matches_identity": v.issuer == v.signer,
        "subject": v.subject,
        "iat": v.iat,
    }


def trust_notes(signature: dict[str, Any], bundle_policy: Policy, policy: Policy) -> list[str]:
    """Flags every output must carry: a claimed issuer the trust store does not vouch
    for, and a bundle policy other than the one applied."""
    notes: list[str] = []
    if not signature["issuer_matches_identity"]:
        notes.append(
            f"the bundle claims issuer {signature['issuer']!r}, but the key that signed it is trusted as "
            f"{signature['trusted_identity']!r}: only the trusted identity is verified"
        )
    diff = policy.differences(bundle_policy)
    if diff:
        shown = ", ".join(f"{f} {getattr(bundle_policy, f)!r}" for f in diff)
        notes.append(f"the bundle records another policy ({shown}); the verifier's own policy was applied")
    return notes


class _SharedLineage:
    """`test_against_payload` run alongside the sketch (fed its layers), its errors raised where it would raise."""

    def __init__(self, payload: Any, suspect: CanonicalModel, located: list[int | None]) -> None:
        self.tests: PayloadTests | None = None
        self.error: Exception | None = None
        if payload is not None:
            try:
                self.tests = PayloadTests([(payload, located)], suspect)
            except Exception as exc:  # a malformed payload fails only if verify gets to the lineage test
                self.error = exc

    def feed(self, i: int, layer: Layer) -> None:
        if self.tests is not None:
            self.tests.feed(i, layer)

    def finish(self, tracker: Tracker) -> LineageResult:
        if self.error is not None:
            raise self.error
        assert self.tests is not None
        return self.tests.finish(tracker)[0]


# Below these, verify stops before sketching: the verdict is inconclusive with nothing
# measured.  identify plans (and screens) with the same bounds.
MIN_SKETCH_TOKENS = 8  # bundle tokens the suspect's vocabulary must hold
MIN_SKETCH_PAIRS = 32  # sketch pairs those tokens must cover


def suspect_vocabulary(token_mode: str, suspect: CanonicalModel) -> Vocabulary:
    """The vocabulary a bundle's tokens are looked up in: by id when it was issued without a tokenizer."""
    if token_mode == "ids" and not suspect.vocab.by_ids:
        return Vocabulary.ids_only(suspect.dims.vocab)
    return suspect.vocab


def verify_suspect(
    opened: OpenedAttestation | None,
    suspect: CanonicalModel,
    *,
    policy: Policy = DEFAULT_POLICY,
    precision: str = "auto",
    suspect_subject: Any = None,
    tracker: Tracker = SILENT,
    view: StatementView | None = None,
    sketcher: Callable[..., tuple[list[tuple[int, str]], np.ndarray]] | None = None,
    lineage_runner: Callable[[Any, list[int | None]], LineageResult] | None = None,
    signature: dict[str, Any] | None = None,
) -> Verification:
    """Recompute `suspect` at the bundle's tokens, layers and pairs, and decide under `policy`.

    `policy` is the verifier's (the shipped calibration unless the caller gives
    another); the policy the bundle records is reported beside it and never
    applied, so a publisher cannot lower the bar its own bundle is judged by.
    `sketcher` (same signature as `sketch_model`) lets `attest identify` hand
    in values it computed for many bundles in one pass over the suspect;
    `lineage_runner(payload, located)` likewise hands in its lineage result.
    `opened` may be None when `view` and `signature` (`signature_record`) are
    both given: identify keeps those of each verified bundle, not its bytes.
    """
    t0 = time.perf_counter()
    if opened is None and (view is None or signature is None):
        raise TypeError("verify_suspect needs the opened bundle, or both its view and its signature record")
    if view is None:
        assert opened is not None
        view = StatementView.parse(opened.document, checked=True)
    method = view.method
    notes = list(suspect.warnings)
    vocab = suspect_vocabulary(view.token_mode, suspect)
    if vocab is not suspect.vocab:
        notes.append("the bundle was issued without a tokenizer: tokens are matched by id")
    located = locate(vocab, view.tokens)
    present = [i is not None for i in located]
    covered_ids = [i for i in located if i is not None]
    coverage = len(covered_ids) / len(view.tokens)
    if signature is None:
        assert opened is not None
        signature = signature_record(opened)
    notes = trust_notes(signature, view.policy, policy) + notes
    base_cells = view.cells
    covered = np.asarray(present, dtype=bool)

    def result(
        verdict: Verdict,
        reasons: list[str],
        score: float = float("nan"),
        ci: tuple[float, float] = (float("nan"), float("nan")),
        layers: list[dict[str, Any]] | None = None,
        glob: dict[str, float] | None = None,
        aligned: np.ndarray | None = None,
        pairs_used: int = 0,
        matched: list[int] | None = None,
        incomplete: int = 0,
        n_layers: int = 0,
        forced: list[str] | None = None,
        lineage: LineageResult | None = None,
        valid: np.ndarray | None = None,
    ) -> Verification:
        aligned = aligned if aligned is not None else np.zeros_like(view.values)
        score_z, score_p = z_and_p(score, policy)
        # Readers see the lineage test's z and p; the score's stay beside them as a finding.
        p = lineage.p_value if lineage is not None else score_p
        z = z_of_p(p) if lineage is not None else score_z
        base_latent, dogs_note = view.latent, None
        if valid is not None and not valid.all():
            # Partial coverage: the issued dog is drawn from every sketch position, the
            # suspect's only from covered ones; redraw the base from the same positions.
            base_latent = project(np.where(valid[None, :], view.values, 0.0).astype(np.float32), view.latent_seed)
            dogs_note = (
                f"coverage is partial: both dogs are drawn from the {int(valid.sum())} of {len(valid)} sketch "
                f"positions the suspect covers (the issued dog uses all of them)"
            )
        return Verification(
            verdict=verdict,
            reasons=reasons,
            score=score,
            ci=ci,
            z=z,
            p_value=p,
            lineage=lineage,
            score_z=score_z,
            score_p=score_p,
            dogs_note=dogs_note,
            coverage=coverage,
            tokens_covered=len(covered_ids),
            pairs_used=pairs_used,
            policy=policy,
            method=method.name,
            layers=layers or [],
            global_terms=glob or {},
            signature=signature,
            base_subject=view.subject,
            suspect_subject=suspect_subject,
            base_model=view.model,
            suspect_model=describe(suspect),
            base_latent=base_latent,
            suspect_latent=project(aligned, view.latent_seed),
            suspect_values=aligned,
            bundle_policy=view.policy,
            covered=covered,
            matched_cells=matched or [],
            incomplete_layers=incomplete,
            suspect_layers=n_layers,
            forced_inconclusive=forced or [],
            notes=notes,
            seconds=time.perf_counter() - t0,
        )

    if len(covered_ids) < MIN_SKETCH_TOKENS:
        return result(
            Verdict.INCONCLUSIVE,
            [f"only {len(covered_ids)} of the {len(view.tokens)} bundle tokens exist in the suspect's vocabulary"],
        )
    valid, remapped = remap_pairs(view.pairs, present)
    if remapped.shape[0] < MIN_SKETCH_PAIRS:
        return result(
            Verdict.INCONCLUSIVE, [f"only {remapped.shape[0]} sketch pairs are covered by the suspect's tokens"]
        )
    dtype = compute_dtype(precision)
    layers_s = parse_layers(method.layers, suspect.n_layers)
    skipped: list[tuple[int, str]] = []
    shared = _SharedLineage(view.lineage, suspect, located) if sketcher is None and lineage_runner is None else None
    if shared is not None:
        # One read of the suspect: the lineage test sees each layer the sketch loads.
        label = "computing suspect invariants"
        cells_s, vals_s = sketch_model(
            suspect, covered_ids, method, layers_s, remapped, dtype, tracker, label, skipped, shared.feed
        )
    else:
        cells_s, vals_s = (sketcher or sketch_model)(
            suspect, covered_ids, method, layers_s, remapped, dtype, tracker, "computing suspect invariants", skipped
        )
    for i, why in skipped[:5]:
        notes.append(f"suspect layer {i} could not be read: {why}")
    lost_cells = list(suspect.skipped_cells)  # NaN/inf or constant matrices (attest.invariants.skipped)
    notes.extend(f"suspect {c.describe()}" for c in lost_cells)
    where_s = {c: k for k, c in enumerate(cells_s)}
    base_vals = view.values[:, valid]

    base_layers = view.layers
    where_b = {c: k for k, c in enumerate(base_cells)}
    terms = [t for t in method.terms if any((bl, t) in where_b for bl in base_layers)]
    k = base_vals.shape[1]
    matrix = np.zeros((len(base_layers), len(layers_s)))
    counts = np.zeros_like(matrix)
    for t in terms:
        rows_b = [(a, where_b[(bl, t)]) for a, bl in enumerate(base_layers) if (bl, t) in where_b]
        rows_s = [(b, where_s[(sl, t)]) for b, sl in enumerate(layers_s) if (sl, t) in where_s]
        if not rows_b or not rows_s:
            continue
        B = base_vals[[r for _, r in rows_b]].astype(np.float64)
        S = vals_s[[r for _, r in rows_s]].astype(np.float64)
        norms = np.sqrt((B * B).sum(1))[:, None] * np.sqrt((S * S).sum(1))[None, :]
        est = np.divide(B @ S.T, norms, out=np.zeros((B.shape[0], S.shape[0])), where=norms > 0)
        for (a, _), est_row in zip(rows_b, est):
            for (b, _), v in zip(rows_s, est_row):
                matrix[a, b] += v
                counts[a, b] += 1
    if not counts.any():
        return result(
            Verdict.INCONCLUSIVE,
            ["the suspect has none of the bundle's invariant terms (different architecture kind?)"],
        )
    with np.errstate(invalid="ignore"):
        matrix = np.where(counts > 0, matrix / np.maximum(counts, 1), 0.0)
    index_pairs, pairing_notes = pair_layers(matrix, method.depth_alignment)
    notes.extend(pairing_notes)

    aligned = np.zeros_like(view.values)
    matched_b: list[int] = []
    layer_rows: list[dict[str, Any]] = []
    for a, b in index_pairs:
        bl, sl = base_layers[a], layers_s[b]
        row: dict[str, float] = {}
        for t in method.terms:
            if (bl, t) in where_b and (sl, t) in where_s:
                ib, is_ = where_b[(bl, t)], where_s[(sl, t)]
                matched_b.append(ib)
                row[t] = float(cell_estimates(base_vals[ib : ib + 1], vals_s[is_ : is_ + 1])[0])
                aligned[ib, valid] = vals_s[is_]
        if row:
            layer_rows.append({"a": bl, "b": sl, "terms": row, "mean": float(np.mean(list(row.values())))})
    glob: dict[str, float] = {}
    for t in method.global_terms:
        if (GLOBAL, t) in where_b and (GLOBAL, t) in where_s:
            ib, is_ = where_b[(GLOBAL, t)], where_s[(GLOBAL, t)]
            glob[t] = float(cell_estimates(base_vals[ib : ib + 1], vals_s[is_ : is_ + 1])[0])
            aligned[ib, valid] = vals_s[is_]
    forced = ["suspect: " + cells_summary(lost_cells)] if lost_cells else []
    lineage: LineageResult | None = None
    if view.lineage is not None:
        # float32 whatever --precision says: compare runs the same procedure in float32,
        # so the two commands reach the same lineage counts on the same pair.
        if shared is not None:
            lineage = lineage_for(policy, shared.finish(tracker))
        else:
            run = lineage_runner or (lambda payload, ids: test_against_payload(payload, suspect, ids, tracker=tracker))
            lineage = lineage_for(policy, run(view.lineage, located))
    decided = sketch_verdict(
        view.values,
        aligned,
        valid,
        matched_b,
        coverage=coverage,
        tokens_covered=len(covered_ids),
        policy=policy,
        incomplete_layers=len(skipped),
        suspect_layers=len(layers_s),
        forced_inconclusive=forced,
        lineage=lineage,
    )
    notes.extend(decided.findings)
    est = decided.estimate
    emb_note = embedding_note(glob, est.score, policy)
    if emb_note:
        notes.append(emb_note)
    return result(
        decided.verdict,
        decided.reasons,
        est.score,
        est.ci,
        layer_rows,
        glob,
        aligned,
        k,
        matched_b,
        len(skipped),
        len(layers_s),
        forced,
        lineage,
        valid,
    )
