"""The combined lineage result over matched layers, its power, and what it concludes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from attest.lineage.matching import LayerLineage, from_counts
from attest.lineage.stats import required_layers, ruger

DEFAULT_ALPHA = 1e-6  # a match needs the combined p-value at or below this
REFERENCE_AGREEMENT = 0.2  # "enough power" = this much agreement would have reached alpha
METHOD = "attest-lineage-v1"


def min_tokens(suspect_neurons: int) -> int:
    """Shared tokens needed before "no lineage" may be claimed.

    Among f unrelated responses over m tokens the largest |correlation| is about
    √(2·ln(2f)/(m−1)); m ≥ 8·ln(2f)+1 keeps it under 0.5, so a descendant whose
    responses still correlate clearly with its ancestor's can be told apart.
    """
    return math.ceil(8 * math.log(2 * max(1, suspect_neurons))) + 1


LINEAGE = "lineage"
NO_LINEAGE = "no_lineage"
UNDERPOWERED = "insufficient_power"


@dataclass
class LineageResult:
    """Per-layer tests and their combination (Rüger: at least half the layers must be significant)."""

    layers: list[LayerLineage]
    mode: str  # "exact" (both models held) or "bundle"
    alpha: float = DEFAULT_ALPHA
    reference_agreement: float = REFERENCE_AGREEMENT
    notes: list[str] = field(default_factory=list)
    # Every layer pair had FFNs of different kinds (gated vs plain): no suspect neuron can
    # descend from a base neuron, since deriving weights keeps what each neuron computes.
    kinds_differ: bool = False

    @property
    def required(self) -> int:
        return required_layers(len(self.layers))

    def _combine(self, ps: list[float]) -> float:
        return ruger(ps, self.required) if ps else 1.0

    @property
    def p_value(self) -> float:
        return self._combine([x.p_value for x in self.layers])

    @property
    def p_full(self) -> float:
        """The combined p-value if every tested neuron agreed: the best this test can do."""
        return self._combine([x.p_full for x in self.layers])

    @property
    def p_reference(self) -> float:
        """The combined p-value at the reference agreement, with the observed chance rates."""
        return self._combine([x.p_at(self.reference_agreement) for x in self.layers])

    @property
    def agreement(self) -> float:
        """Agreeing neurons over tested neurons, pooled over matched layers."""
        n = sum(x.neurons for x in self.layers)
        return sum(x.agree for x in self.layers) / n if n else float("nan")

    @property
    def enough_tokens(self) -> bool:
        return all(x.tokens >= min_tokens(x.suspect_neurons) for x in self.layers)

    @property
    def conclusion(self) -> str:
        if not self.layers and self.kinds_differ:
            return NO_LINEAGE
        if self.layers and self.p_value <= self.alpha:
            return LINEAGE
        if self.layers and self.p_reference <= self.alpha and self.enough_tokens:
            return NO_LINEAGE
        return UNDERPOWERED

    def reasons(self) -> list[str]:
        """Plain-language statement of what was found, or what was missing."""
        c = self.conclusion
        if c == LINEAGE:
            return [
                (
                    f"lineage: {self.agreement:.0%} of tested FFN neurons are found by both channels "
                    f"(combined p = {self.p_value:.1e} ≤ α = {self.alpha:.0e})"
                )
            ]
        if c == NO_LINEAGE and not self.layers:
            return [
                "no lineage: the two models' FFNs are of different kinds in every layer (gated vs plain), "
                "so none of the suspect's neurons can descend from the base's"
            ]
        if c == NO_LINEAGE:
            return [
                (
                    f"no lineage: neuron agreement {self.agreement:.1%} (p = {self.p_value:.2g}); "
                    f"{self.reference_agreement:.0%} agreement would have reached α = {self.alpha:.0e}"
                )
            ]
        if not self.layers:
            why = "; ".join(self.notes) if self.notes else "no layer pair has FFN neurons to match"
            return [f"lineage test underpowered: {why}"]
        tokens = min(x.tokens for x in self.layers)
        neurons = min(x.neurons for x in self.layers)
        if not self.enough_tokens:
            need = max(min_tokens(x.suspect_neurons) for x in self.layers)
            return [
                (
                    f"lineage test underpowered: only {tokens} shared tokens, {need} are needed to tell a "
                    f"descendant neuron from chance among {max(x.suspect_neurons for x in self.layers)}"
                )
            ]
        return [
            (
                f"lineage test underpowered: with {neurons} tested neurons per layer over {tokens} shared tokens "
                f"and {len(self.layers)} matched layers, even {self.reference_agreement:.0%} agreement would give "
                f"p = {self.p_reference:.1e} > α = {self.alpha:.0e} (full agreement: {self.p_full:.1e})"
            )
        ]

    def record(self) -> dict[str, Any]:
        """What an evidence file stores so `inspect` can recompute p, conclusion and verdict."""
        return {
            "mode": self.mode,
            "layers": [x.record() for x in self.layers],
            "notes": list(self.notes),
            "kinds_differ": self.kinds_differ,
        }

    @classmethod
    def from_record(cls, rec: Any, alpha: float, reference_agreement: float) -> "LineageResult":
        """Rebuild from `record()`; ValueError on anything but small non-negative integer counts."""
        if not isinstance(rec, dict) and not hasattr(rec, "items"):
            raise ValueError("lineage record must be a map")
        mode, rows, notes = rec.get("mode"), rec.get("layers"), rec.get("notes", [])
        if mode not in ("exact", "bundle") or not isinstance(rows, (list, tuple)) or len(rows) > 4096:
            raise ValueError("lineage record: mode must be exact or bundle and layers a short array")
        if not isinstance(notes, (list, tuple)) or len(notes) > 64 or not all(isinstance(n, str) for n in notes):
            raise ValueError("lineage record: notes must be a short list of texts")
        layers = []
        for row in rows:
            ok = isinstance(row, (list, tuple)) and len(row) == 8
            if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 40 for v in row):
                raise ValueError("lineage record: each layer is 8 non-negative integers")
            a, b, k, agree, cross, tokens, f, factor = row
            if agree > k or factor < 1:
                raise ValueError("lineage record: more agreeing neurons than tested, or a zero factor")
            layers.append(from_counts(a, b, k, agree, cross, tokens, f, factor))
        kinds = rec.get("kinds_differ", False)
        if not isinstance(kinds, bool):
            raise ValueError("lineage record: kinds_differ must be true or false")
        return cls(layers, str(mode), alpha, reference_agreement, [str(n) for n in notes], kinds)

    def to_json(self) -> dict[str, Any]:
        def fin(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {
            "p_value": self.p_value,
            "agreement": fin(self.agreement),
            "layers": [x.to_json() for x in self.layers],
            "method": f"{METHOD} ({self.mode}): gate/up partner agreement per layer against up "
            f"partners shuffled over base neurons (Chatterjee tail bound), Rüger combination "
            f"requiring {self.required} of {len(self.layers)} layers",
            "alpha": self.alpha,
            "conclusion": self.conclusion,
            "required_layers": self.required,
            "power": {
                "p_full_agreement": self.p_full,
                "reference_agreement": self.reference_agreement,
                "p_at_reference": self.p_reference,
                "enough_tokens": self.enough_tokens,
            },
            "reasons": self.reasons(),
            "notes": list(self.notes),
        }
