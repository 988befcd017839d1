"""The last step of `verify`, kept apart so that `inspect` can redo it from an
evidence file alone: the aggregate estimate over the matched sketch cells and
the verdict under a policy.

Everything it reads is in the evidence: the publisher's sketch (inside the
signed attestation), the suspect's values aligned to the publisher's cells,
which probe tokens the suspect covered, which cells were matched, and the
policy.  Because `verify` itself decides through this function, a recomputed
verdict can only differ from the recorded one if the record was edited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from attest.lineage.result import LineageResult
from attest.scoring.decision import Policy, Verdict
from attest.scoring.lineage_verdict import decide_verdict
from attest.sketch.sampling import Estimate, aggregate


@dataclass(frozen=True)
class SketchVerdict:
    estimate: Estimate
    verdict: Verdict
    reasons: list[str]
    findings: list[str]


def sketch_verdict(
    base_values: np.ndarray,
    suspect_aligned: np.ndarray,
    valid_pairs: np.ndarray,
    matched_cells: Sequence[int],
    *,
    coverage: float,
    tokens_covered: int,
    policy: Policy,
    incomplete_layers: int = 0,
    suspect_layers: int = 0,
    forced_inconclusive: Sequence[str] = (),
    lineage: LineageResult | None = None,
) -> SketchVerdict:
    """Estimate and verdict from [cells, m] sketches, the valid-pair mask and the matched cell rows.

    `lineage` is the lineage test against the bundle's payload (None for a
    bundle issued before payloads); the verdict rests on it when present
    (`attest.scoring.lineage_verdict.decide_verdict`).
    """
    rows = list(matched_cells)
    est = aggregate(base_values[rows][:, valid_pairs], suspect_aligned[rows][:, valid_pairs])
    forced: list[str] = []
    if incomplete_layers:
        share = 1 - incomplete_layers / max(1, suspect_layers)
        forced.append(
            f"{incomplete_layers} of the suspect's {suspect_layers} layers are incomplete; layer coverage {share:.0%}"
        )
    forced.extend(forced_inconclusive)  # e.g. cells lost to non-finite weights: nothing may decide
    d = decide_verdict(lineage, est.score, coverage, tokens_covered, policy, est.ci, forced)
    return SketchVerdict(est, d.verdict, d.reasons, d.findings)
