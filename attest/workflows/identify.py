"""`attest identify`: which registered base, if any, a suspect derives from (1:N).

One read of the suspect serves every registered bundle (`attest.sketch.multi_sketch`);
each bundle is then scored exactly as `attest verify` would score it.
Candidates are ranked by their evidence p-value after a Holm–Bonferroni
correction over all N registered bases, and one answer is given: the base, or
none of the N (docs/registry.md, "identify").

Bases the suspect cannot be compared with (it lacks most of their probe
tokens, or their architecture kind) are counted and set aside when the answer
is decided, unless the tokens it does share already point towards the base
(`comparable`; docs/registry.md, "Not comparable").

The evidence is pluggable: `EvidenceFn` turns one `Verification` into a score,
a p-value and a verdict.  Today it is the sketch score and its z/p under the
bundle's policy (`sketch_evidence`); the lineage test can replace it without
touching the ranking.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attest import __version__
from attest.arch.canonical import CanonicalModel
from attest.arch.model_info import describe
from attest.crypto.keys import TrustStore
from attest.errors import AttestError, BundleError
from attest.invariants.methods import parse_layers
from attest.invariants.precision import compute_dtype
from attest.lineage.payload import PayloadTests
from attest.lineage.result import LineageResult
from attest.progress import SILENT, Tracker
from attest.registry.entry import Entry, decode_probe_tokens, entry_from_bundle, parse_view
from attest.registry.store import Registry
from attest.scoring.decision import Verdict
from attest.sketch.multi_sketch import Request, Sketches, sketch_many
from attest.sketch.sampling import remap_pairs
from attest.sketch.statement import StatementView
from attest.vocab.selection import locate
from attest.workflows.verify import (
    MIN_SKETCH_PAIRS,
    MIN_SKETCH_TOKENS,
    Verification,
    plain,
    signature_record,
    suspect_vocabulary,
    verify_suspect,
)

DEFAULT_ALPHA = 0.01
DEFAULT_TOP = 5


@dataclass(frozen=True)
class CandidateEvidence:
    """What the ranking needs from one comparison."""

    score: float
    p_value: float  # one-sided, for "derived from this base"; NaN when not assessable
    verdict: Verdict
    reasons: list[str]


EvidenceFn = Callable[[Verification], CandidateEvidence]


def sketch_evidence(v: Verification) -> CandidateEvidence:
    """The current evidence: sketch score, its p-value under the policy's null, verify's verdict."""
    return CandidateEvidence(v.score, v.p_value, v.verdict, list(v.reasons))


SKETCH_EVIDENCE = "sketch-score-z/1"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down; controls the family-wise error rate).

    Sorted ascending, p_(k) becomes max over j <= k of min(1, (N - j + 1) p_(j)).
    A NaN (not assessable) counts as 1: it still counts as one of the N tests.
    """
    p = [1.0 if not math.isfinite(x) else min(1.0, max(0.0, x)) for x in p_values]
    n = len(p)
    order = sorted(range(n), key=lambda k: p[k])
    adjusted = [1.0] * n
    running = 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (n - rank) * p[k]))
        adjusted[k] = running
    return adjusted


@dataclass
class Candidate:
    entry: Entry
    verification: Verification | None  # None when the bundle could not be compared at all
    evidence: CandidateEvidence
    p_holm: float = 1.0
    rank: int = 0
    subject_match: bool = False  # the suspect's files are byte-identical to the attested ones
    comparable: bool = True  # False: set aside by the answer (see `comparable`)
    screened: bool = False  # set aside from the index alone: the suspect holds too few of its probe tokens

    def to_json(self) -> dict[str, Any]:
        e, ev, v = self.entry, self.evidence, self.verification
        out: dict[str, Any] = {
            "rank": self.rank,
            "name": e.name,
            "model_name": e.model_name,
            "issuer": e.issuer,
            "kid": e.kid,
            "subject_root": e.subject_root,
            "bundle_sha256": e.bundle_sha256,
            "family": e.family,
            "layers": e.layers,
            "method": e.method,
            "verdict": ev.verdict.value,
            "score": _finite(ev.score),
            "p_value": _finite(ev.p_value),
            "p_holm": self.p_holm,
            "subject_match": self.subject_match,
            "comparable": self.comparable,
            "screened": self.screened,
            "reasons": ev.reasons,
        }
        if v is not None:
            out.update(
                {
                    "ci": [_finite(v.ci[0]), _finite(v.ci[1])],
                    "z": _finite(v.z),
                    "coverage": v.coverage,
                    "tokens_covered": v.tokens_covered,
                    "pairs_used": v.pairs_used,
                    "notes": v.notes,
                    "latent_cosine": _finite(float(_cos(v.base_latent, v.suspect_latent))),
                    # who signed the bundle as the trust store names the key (`issuer` above is the claim)
                    "signed_by": v.signature.get("trusted_identity"),
                    "lineage_p_value": _finite(v.lineage.p_value) if v.lineage is not None else None,
                    "agreement": _finite(v.lineage.agreement) if v.lineage is not None else None,
                }
            )
        return out


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b) / (na * nb) if na > 0 and nb > 0 else float("nan")


@dataclass
class Identification:
    verdict: Verdict
    base: Candidate | None
    candidates: list[Candidate]  # all N, ranked
    n_bases: int
    alpha: float
    evidence_name: str
    suspect_model: dict[str, Any]
    suspect_subject: Any = None
    reasons: list[str] = field(default_factory=list)
    layers_read: int = 0
    seconds: float = 0.0
    artefacts: dict[str, str] = field(default_factory=dict)  # files written (evidence, report)

    @property
    def also(self) -> list[Candidate]:
        """Every other base that is significant on its own terms (a merge of two bases names both)."""
        if self.base is None:
            return []
        return [c for c in significant(self.candidates, self.alpha) if c is not self.base]

    def to_json(self, top: int = DEFAULT_TOP) -> dict[str, Any]:
        counts = {v.value: sum(c.evidence.verdict is v for c in self.candidates) for v in Verdict}
        apart = sum(not c.comparable for c in self.candidates)
        screened = sum(c.screened for c in self.candidates)
        return {
            "verdict": self.verdict.value,
            "base": self.base.to_json() if self.base is not None else None,
            "also": [c.to_json() for c in self.also],
            "candidates": [c.to_json() for c in self.candidates[: max(0, top)]],
            "registry": {
                "bases": self.n_bases,
                "verdicts": counts,
                "comparable": self.n_bases - apart,
                "not_comparable": apart,
                "screened": screened,
            },
            "multiple_testing": {"method": "holm-bonferroni", "alpha": self.alpha, "tests": self.n_bases},
            "evidence": self.evidence_name,
            "suspect": {"model": self.suspect_model, "subject": plain(self.suspect_subject)},
            "reasons": self.reasons,
            "layers_read": self.layers_read,
            "tool_version": __version__,
            "seconds": round(self.seconds, 3),
            **self.artefacts,
        }


def significant(ranked: Sequence[Candidate], alpha: float) -> list[Candidate]:
    """The candidates that match on their own and whose Holm-adjusted p-value is at most `alpha`, in rank order."""
    return [c for c in ranked if c.evidence.verdict is Verdict.MATCH and c.p_holm <= alpha]


@dataclass
class _Planned:
    """One registered bundle, verified and parsed once, with what the one pass must compute for it."""

    entry: Entry  # as re-derived from the verified bundle
    view: StatementView | None  # dropped once the bundle is scored
    signature: dict[str, Any]  # `signature_record` of the verified bundle
    request: Request | None
    lineage: tuple[Any, list[int | None]] | None = None  # (payload, located) when verify will run the test
    aside: CandidateEvidence | None = None  # screened: set aside from the index, never opened


def _plan(view: StatementView, located: list[int | None], suspect: CanonicalModel, key: int) -> Request | None:
    """The suspect ids, layers and positions `verify_suspect` will ask for (None if it stops early)."""
    present = [i is not None for i in located]
    covered = tuple(i for i in located if i is not None)
    if len(covered) < MIN_SKETCH_TOKENS:
        return None
    _valid, remapped = remap_pairs(view.pairs, present)
    if remapped.shape[0] < MIN_SKETCH_PAIRS:
        return None
    layers = tuple(parse_layers(view.method.layers, suspect.n_layers))
    return Request(key=key, method=view.method, ids=covered, layers=layers, pairs=remapped)


def _lineage_replay(planned: tuple[Any, list[int | None]], result: LineageResult) -> Callable[..., LineageResult]:
    def runner(payload: Any, located: list[int | None]) -> LineageResult:
        if (payload is not planned[0] and payload != planned[0]) or located != planned[1]:
            raise AssertionError("identify: the one-pass lineage plan disagrees with verify's request")
        return result

    return runner


def _replay(sketches: Sketches, request: Request) -> Callable[..., tuple[list[tuple[int, str]], np.ndarray]]:
    """A `sketch_model` stand-in that returns what the one pass computed for this bundle."""

    def sketcher(
        _model: Any,
        ids: Sequence[int],
        _method: Any,
        layers: Sequence[int],
        pairs: np.ndarray,
        _dtype: Any,
        _tracker: Any,
        _label: str,
        skipped: list[tuple[int, str]] | None = None,
    ) -> tuple[list[tuple[int, str]], np.ndarray]:
        # verify and the plan must agree on every input, or the values would be someone else's.
        if tuple(ids) != request.ids or tuple(layers) != request.layers or not np.array_equal(pairs, request.pairs):
            raise AssertionError("identify: the one-pass plan disagrees with verify's request")
        if skipped is not None:
            skipped.extend((i, why) for i, why in sketches.skipped if i in request.layers)
        return sketches.cells[request.key], sketches.values(request.key, request.pairs.shape[0])

    return sketcher


def _never_reread(*_args: Any, **_kwargs: Any) -> tuple[list[tuple[int, str]], np.ndarray]:
    # The plan said verify stops before sketching; if it did not, fail loudly
    # rather than silently read the suspect a second time.
    raise AssertionError("identify: verify asked for a sketch the one-pass plan did not foresee")


def _never_rerun(*_args: Any, **_kwargs: Any) -> LineageResult:
    raise AssertionError("identify: verify asked for a lineage test the one-pass plan did not foresee")


def _too_few_tokens(
    entry: Entry, suspect: CanonicalModel, seen: dict[tuple[bytes, str], int | None]
) -> CandidateEvidence | None:
    """The evidence `verify` would give, when the index alone shows the suspect holds too few probe tokens.

    Exactly verify's first check (`verify_suspect`: fewer than MIN_SKETCH_TOKENS of
    the bundle's tokens in the suspect's vocabulary gives an inconclusive verdict
    with nothing measured), run on the probe tokens the index holds.  Such a base
    is not comparable (`comparable`) whether or not its bundle is opened, so
    opening it would change no answer.  None: open the bundle (enough tokens,
    or the row holds none, as in registries from before schema version 3).
    """
    if entry.probe_tokens is None:
        return None
    key = (entry.probe_tokens, entry.token_mode)
    if key not in seen:  # bundles of one tokenizer often share their probe tokens
        tokens = decode_probe_tokens(entry.probe_tokens, entry.n_tokens)
        if tokens is None:
            seen[key] = None
        else:
            seen[key] = sum(i is not None for i in locate(suspect_vocabulary(entry.token_mode, suspect), tokens))
    covered = seen[key]
    if covered is None or covered >= MIN_SKETCH_TOKENS:
        return None
    return CandidateEvidence(
        float("nan"),
        float("nan"),
        Verdict.INCONCLUSIVE,
        [
            f"only {covered} of the {entry.n_tokens} bundle tokens exist in the suspect's vocabulary "
            "(from the registry index; the bundle was not opened)"
        ],
    )


def _open_checked(registry: Registry, entry: Entry, trust: TrustStore) -> tuple[Entry, StatementView, dict[str, Any]]:
    """A registered bundle, re-verified and parsed, and its entry re-derived from it (never trusted from the index)."""
    opened = registry.read_bundle(entry, trust)  # digest against the index, then the signature
    view = parse_view(opened, entry.bundle_file)
    fresh = entry_from_bundle(opened, entry.bundle_file, view, digest=entry.bundle_sha256)
    if entry.disagreements(fresh):
        raise BundleError(
            f"registry entry {entry.name!r}: the index row disagrees with its bundle (run `attest registry verify`)"
        )
    return fresh, view, signature_record(opened)


def _slim(v: Verification) -> Verification:
    # A registry may hold thousands of bases: keep each candidate's numbers and
    # both latents (enough for the dogs), not its full aligned sketch.
    v.suspect_values = np.zeros((0, 0), dtype=np.float32)
    return v


def identify(
    suspect: CanonicalModel,
    registry: Registry,
    trust: TrustStore,
    *,
    alpha: float = DEFAULT_ALPHA,
    precision: str = "auto",
    suspect_subject: Any = None,
    tracker: Tracker = SILENT,
    evidence: EvidenceFn = sketch_evidence,
    evidence_name: str = SKETCH_EVIDENCE,
    bases: frozenset[str] | None = None,
    detail: int = 0,
    screen: bool = True,
) -> Identification:
    """Rank every registered base against `suspect` after one read of its weights.

    `bases`, when given, restricts the candidates to the entries with these
    subject roots (`attest scan` fixes them when it starts, so a model's answer
    does not depend on which other models of the same run were recorded first).
    `detail` > 0 keeps the aligned suspect sketch of the first `detail` ranked
    candidates and of every significant one (what identify evidence archives,
    attest.workflows.identify_outputs); the others are slimmed as usual.  Until
    the ranking is known every sketch is kept, so this costs memory in
    proportion to N: it is asked for only when evidence is written.
    `screen` (the default) sets aside, without opening their bundles, the bases
    whose indexed probe tokens the suspect holds fewer than MIN_SKETCH_TOKENS of
    (`_too_few_tokens`; docs/registry.md, "Screening"): the answer is the same,
    those bundles' signatures are then re-checked by `attest registry verify`
    rather than by this call.
    """
    keep_all = detail > 0
    t0 = time.perf_counter()
    # Phase 1: each bundle is read, verified and parsed once, and what it needs
    # from the suspect is planned.  Only its parsed statement is kept (not its
    # bytes or image): memory grows by about one sketch per bundle.
    entries = [e for e in registry.entries() if bases is None or e.subject_root in bases]
    plans: list[_Planned] = []
    interned: dict[bytes, np.ndarray] = {}  # bundles of one token count share their positions
    seen: dict[tuple[bytes, str], int | None] = {}
    for k, entry in enumerate(entries):
        aside = _too_few_tokens(entry, suspect, seen) if screen else None
        if aside is not None:
            plans.append(_Planned(entry, None, {}, None, aside=aside))
            continue
        fresh, view, signature = _open_checked(registry, entry, trust)
        req: Request | None = None
        located: list[int | None] = []
        try:
            located = locate(suspect_vocabulary(view.token_mode, suspect), view.tokens)
            req = _plan(view, located, suspect, k)
        except AttestError:
            req = None  # verify_suspect below reports the same problem as this candidate's reason
        if req is not None:
            pairs = interned.setdefault(hashlib.sha256(req.pairs.tobytes()).digest(), req.pairs)
            req = Request(req.key, req.method, req.ids, req.layers, pairs)
        lineage = (view.lineage, located) if req is not None and view.lineage is not None else None
        plans.append(_Planned(fresh, view, signature, req, lineage))
    # Phase 2: the one read of the suspect.
    dtype = compute_dtype(precision)
    # The lineage tests of every bundle see each layer the sketch loads (each suspect layer read once for all).
    with_lineage = [n for n, p in enumerate(plans) if p.lineage is not None]
    # Head channels that cannot join any verdict are left out (a finding only; `verify` reports them).
    lineage_tests = PayloadTests([plans[n].lineage for n in with_lineage], suspect, findings=False)  # type: ignore[misc]
    requests = [p.request for p in plans if p.request is not None]
    sketches = sketch_many(suspect, requests, dtype, tracker, on_read=lineage_tests.feed)
    lineage_results = dict(zip(with_lineage, lineage_tests.finish(tracker)))
    subject = plain(suspect_subject)
    root = subject.get("root") if isinstance(subject, dict) else None
    # Phase 3: score each bundle as verify would, from the values of the pass
    # and the statement parsed in phase 1 (the bundle is not read again).
    candidates: list[Candidate] = []
    for n, p in enumerate(plans):
        if p.aside is not None:
            candidates.append(Candidate(p.entry, None, p.aside, comparable=False, screened=True))
            continue
        sketcher = _replay(sketches, p.request) if p.request is not None else _never_reread
        runner = _lineage_replay(p.lineage, lineage_results[n]) if p.lineage is not None else _never_rerun
        try:
            verified = verify_suspect(
                None,
                suspect,
                precision=precision,
                suspect_subject=suspect_subject,
                view=p.view,
                signature=p.signature,
                sketcher=sketcher,
                lineage_runner=runner,
            )
            v: Verification | None = verified if keep_all else _slim(verified)
        except AttestError as exc:
            v = None
            ev = CandidateEvidence(float("nan"), float("nan"), Verdict.INCONCLUSIVE, [f"could not be scored: {exc}"])
        if v is not None:
            ev = evidence(v)
        candidates.append(
            Candidate(
                p.entry,
                v,
                ev,
                subject_match=bool(root) and root == p.entry.subject_root,
                comparable=comparable(v, ev),
            )
        )
        p.view = None  # scored: its statement is no longer needed
    for c, adj in zip(candidates, holm([c.evidence.p_value for c in candidates])):
        c.p_holm = adj
    candidates.sort(
        key=lambda c: (
            c.p_holm,
            -(c.evidence.score if math.isfinite(c.evidence.score) else -math.inf),
            c.entry.name,
            c.entry.subject_root,
        )
    )
    for r, c in enumerate(candidates, 1):
        c.rank = r
    verdict, base, reasons = decide_answer(candidates, alpha)
    if keep_all:
        kept = {id(c) for c in candidates[:detail]} | {id(c) for c in significant(candidates, alpha)}
        for c in candidates:
            if c.verification is not None and id(c) not in kept:
                _slim(c.verification)
    return Identification(
        verdict=verdict,
        base=base,
        candidates=candidates,
        n_bases=len(candidates),
        alpha=alpha,
        evidence_name=evidence_name,
        suspect_model=describe(suspect),
        suspect_subject=suspect_subject,
        reasons=reasons,
        layers_read=sketches.layers_read,
        seconds=time.perf_counter() - t0,
    )


def comparable(v: Verification | None, ev: CandidateEvidence) -> bool:
    """Whether the answer must weigh this base, or may set it aside as one the suspect cannot be compared with.

    A base is *not comparable* when its own verdict is inconclusive only because
    there is nothing to compare: the suspect holds too few of its probe tokens
    (below the policy's coverage or token minimum, or too few to sketch at all),
    or has none of its invariant terms (another architecture kind).  Such a
    base can be neither confirmed nor ruled out by `verify` either, and in a
    registry of mixed tokenizers most bases are of that kind for any suspect.

    It stays comparable (and keeps the answer inconclusive) when the tokens the
    suspect does share already point towards it: a score at or above the
    no-match bound, or an interval reaching the match threshold.  A derivative
    whose vocabulary was pruned or replaced in part therefore still blocks a
    "none of the N" answer.  A base that could not be scored for another
    reason (an error) is always comparable: nothing is known about it.
    """
    if v is None or ev.verdict is not Verdict.INCONCLUSIVE:
        return True
    pol = v.policy
    too_few = v.coverage < pol.min_coverage or v.tokens_covered < pol.min_tokens
    if not math.isfinite(v.score):
        # no sketch at all: too few tokens or pairs, or no shared invariant term
        return not (too_few or v.pairs_used == 0)
    if not too_few:
        return True
    hi = v.ci[1]
    return v.score >= pol.no_match_below or not math.isfinite(hi) or hi >= pol.threshold


def decide_answer(ranked: list[Candidate], alpha: float) -> tuple[Verdict, Candidate | None, list[str]]:
    """One answer from the ranked candidates.

    match: the top candidate's own verdict is a match and its Holm-adjusted
    p-value is at most `alpha`; no_match: every comparable candidate is a
    no-match, and at least one base was comparable; otherwise inconclusive
    (some comparable base could neither be confirmed nor ruled out, or none
    could be compared).  Bases set aside as not comparable are counted in the reasons.
    """
    n = len(ranked)
    if n == 0:
        return Verdict.NO_MATCH, None, ["the registry is empty"]
    top = ranked[0]
    if top.evidence.verdict is Verdict.MATCH and top.p_holm <= alpha:
        others = [c.entry.name for c in significant(ranked[1:], alpha)]
        reasons = [f"also matches {', '.join(others)} (related bases?)"] if others else []
        return Verdict.MATCH, top, reasons
    matched = [c for c in ranked if c.evidence.verdict is Verdict.MATCH]
    if matched:
        return (
            Verdict.INCONCLUSIVE,
            None,
            [
                (
                    f"{matched[0].entry.name} matches on its own, but its Holm-adjusted p-value {matched[0].p_holm:.2g} "
                    f"over {n} bases exceeds alpha {alpha}"
                )
            ],
        )
    apart = [c for c in ranked if not c.comparable]
    aside = (
        [
            f"{len(apart)} of the {n} bases are not comparable with the suspect (it lacks most of their probe "
            f"tokens or their architecture kind) and were set aside (first: {apart[0].entry.name}: "
            f"{'; '.join(apart[0].evidence.reasons[:1]) or 'no sketch'})"
        ]
        if apart
        else []
    )
    open_ = [c for c in ranked if c.comparable and c.evidence.verdict is Verdict.INCONCLUSIVE]
    if open_:
        return (
            Verdict.INCONCLUSIVE,
            None,
            [
                (
                    f"none of the {n} registered bases matches, but {len(open_)} could not be ruled out "
                    f"(first: {open_[0].entry.name}: {'; '.join(open_[0].evidence.reasons[:1])})"
                ),
                *aside,
            ],
        )
    if len(apart) == n:
        return (
            Verdict.INCONCLUSIVE,
            None,
            [f"none of the {n} registered bases could be compared with the suspect", *aside],
        )
    return Verdict.NO_MATCH, None, [f"none of the {n - len(apart)} comparable registered bases matches", *aside]
