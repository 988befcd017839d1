"""The combined lineage result over matched layers, its power, and what it concludes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from attest.lineage.matching import LayerLineage, from_counts
from attest.lineage.stats import permutation_tail, required_layers, ruger

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
CHANNELS = 2  # FFN neurons and attention heads: the Bonferroni factor when the head channel joins


def chatterjee_power(units: list[tuple[int, int]]) -> float:
    """The combined p-value full agreement would give, Chatterjee's bound alone, Rüger over the layers.

    `units`: (tested units k, Bonferroni factor) per layer.  At K = k the mean is
    at least 1 (each agreement is a coincidence), and the bound grows with the
    mean, so min(1, factor·tail(k, 1)) is the best any layer can report.  Only
    counts fixed before any agreement is counted enter, so a decision taken on
    it cannot bias the p-value it gates.
    """
    ps = [min(1.0, f * permutation_tail(k, 1.0)) if k >= 2 else 1.0 for k, f in units]
    return ruger(ps, required_layers(len(ps))) if ps else 1.0


def best_power(units: list[tuple[int, int]], limit: int) -> float:
    """A lower bound on `chatterjee_power(chosen)` for every choice of at most `limit` of the `units`.

    Rüger's value for n layers is (n / r(n)) times the r(n)-th smallest
    per-layer value, so over choices of n layers it is least for the n
    smallest, and the bound is the least of those over n.  (More layers do
    not always help: a weak layer can raise r(n).)  `identify` skips a head
    channel this bound keeps from joining (`suspect.could_join`).
    """
    ps = sorted(min(1.0, f * permutation_tail(k, 1.0)) if k >= 2 else 1.0 for k, f in units)[: max(0, limit)]
    return min((ruger(ps[:n], required_layers(n)) for n in range(1, len(ps) + 1)), default=1.0)


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
    # The attention-head channel (docs/lineage.md, "Head channel"), tested beside the FFN neurons
    # on the bundle path; it joins p and conclusion only when `heads_joined`.
    heads: "LineageResult | None" = None
    # For a head-channel result: (units, factor) of the layers its power is computed from
    # (`chatterjee_power`), fixed before any agreement was counted.
    power_units: list[tuple[int, int]] = field(default_factory=list)

    @property
    def required(self) -> int:
        return required_layers(len(self.layers))

    def _combine(self, ps: list[float]) -> float:
        return ruger(ps, self.required) if ps else 1.0

    @property
    def p_channel(self) -> float:
        """This channel's own combined p-value (the FFN neurons', or a head result's)."""
        return self._combine([x.p_value for x in self.layers])

    @property
    def p_power(self) -> float:
        """For a head result: the combined p at full agreement, Chatterjee's bound (what joining needs)."""
        return chatterjee_power(self.power_units)

    @property
    def heads_joined(self) -> bool:
        """The head channel enters the verdict: its best attainable p reaches α/CHANNELS.

        Decided from the number of heads, the factors and the layer count only,
        never from agreement counts, so that choosing between p_ffn and the
        two-channel Bonferroni p cannot be steered by the data.
        """
        return self.heads is not None and self.heads.p_power <= self.alpha / CHANNELS

    @property
    def p_value(self) -> float:
        """The lineage p-value: the FFN channel's, or min(1, 2·min(p_ffn, p_heads)) when the heads join."""
        p = self.p_channel
        if self.heads_joined:
            assert self.heads is not None
            return min(1.0, CHANNELS * min(p, self.heads.p_channel))
        return p

    @property
    def heads_significant(self) -> bool:
        """The joined head channel alone reaches α: it forbids a no-lineage conclusion."""
        return self.heads_joined and self.heads is not None and self.heads.p_channel <= self.alpha

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
        if (self.layers or self.heads_joined) and self.p_value <= self.alpha:
            return LINEAGE
        if self.heads_significant:  # the FFN channel's power cannot overrule significant heads
            return UNDERPOWERED
        if not self.layers and self.kinds_differ:
            return NO_LINEAGE
        if self.layers and self.p_reference <= self.alpha and self.enough_tokens:
            return NO_LINEAGE
        return UNDERPOWERED

    def _own_reasons(self) -> list[str] | None:
        """The reasons a joined head channel changes (None: the FFN channel's reasons stand)."""
        if not self.heads_joined or self.heads is None:
            return None
        h = self.heads
        if self.conclusion == LINEAGE and h.p_channel <= self.p_channel:
            return [
                (
                    f"lineage: {h.agreement:.0%} of the tested attention heads are found by both channels "
                    f"(head channel p = {h.p_channel:.1e}; over the two channels, Bonferroni, "
                    f"p = {self.p_value:.1e} ≤ α = {self.alpha:.0e})"
                )
            ]
        if self.conclusion == UNDERPOWERED and self.heads_significant:
            return [
                (
                    f"lineage test inconclusive: the attention heads agree ({h.agreement:.0%}, head channel "
                    f"p = {h.p_channel:.1e} ≤ α) but over the two channels p = {self.p_value:.1e} > α = "
                    f"{self.alpha:.0e}, so no-lineage cannot be claimed either"
                )
            ]
        return None

    def heads_finding(self) -> str | None:
        """One line on the head channel: what it found and whether it entered the verdict."""
        h = self.heads
        if h is None:
            return None
        per = " ".join(f"{x.agreement:.2f}" for x in h.layers) or "-"
        if self.heads_joined:
            how = f"joined the verdict (at full agreement p = {h.p_power:.1e} ≤ α/{CHANNELS})"
        else:
            how = (
                f"a finding only: with {max((k for k, _ in h.power_units), default=0)} heads per layer "
                f"even full agreement gives p = {h.p_power:.1e} > α/{CHANNELS} = {self.alpha / CHANNELS:.0e}"
            )
        return f"attention-head channel: agreement per layer {per}, p = {h.p_channel:.2g}; {how}"

    def reasons(self) -> list[str]:
        """Plain-language statement of what was found, or what was missing."""
        own = self._own_reasons()
        if own is not None:
            return own
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
        out: dict[str, Any] = {
            "mode": self.mode,
            "layers": [x.record() for x in self.layers],
            "notes": list(self.notes),
            "kinds_differ": self.kinds_differ,
        }
        if self.heads is not None:
            # The head channel's counts, and the (heads, factor) its power was fixed from:
            # `inspect` recomputes both its p and whether it joined.
            out["heads"] = {
                "layers": [x.record() for x in self.heads.layers],
                "power": [[k, f] for k, f in self.heads.power_units],
                "notes": list(self.heads.notes),
            }
        return out

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
        layers = _layers_from_record(rows)
        kinds = rec.get("kinds_differ", False)
        if not isinstance(kinds, bool):
            raise ValueError("lineage record: kinds_differ must be true or false")
        heads: LineageResult | None = None
        hrec = rec.get("heads")
        if hrec is not None:
            if not hasattr(hrec, "get"):
                raise ValueError("lineage record: heads must be a map")
            hrows, power, hnotes = hrec.get("layers"), hrec.get("power"), hrec.get("notes", [])
            if not isinstance(hrows, (list, tuple)) or len(hrows) > 4096:
                raise ValueError("lineage record: heads.layers must be a short array")
            if not isinstance(power, (list, tuple)) or len(power) > 4096:
                raise ValueError("lineage record: heads.power must be a short array")
            units: list[tuple[int, int]] = []
            for u in power:
                ok = isinstance(u, (list, tuple)) and len(u) == 2
                if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 40 for v in u):
                    raise ValueError("lineage record: each heads.power entry is [heads, factor]")
                if u[1] < 1:
                    raise ValueError("lineage record: a zero factor in heads.power")
                units.append((int(u[0]), int(u[1])))
            if not isinstance(hnotes, (list, tuple)) or len(hnotes) > 64 or not all(isinstance(n, str) for n in hnotes):
                raise ValueError("lineage record: heads.notes must be a short list of texts")
            heads = cls(_layers_from_record(hrows), str(mode), alpha, reference_agreement, [str(n) for n in hnotes])
            # The power units decide whether the heads join, so they must be what the tested
            # cells imply: at equal depths (every factor 1) exactly the cells' (heads, 1); when
            # depths differ, every unit carries the cells' one Bonferroni factor.
            factors = {x.factor for x in heads.layers}
            if factors == {1} and units != [(x.neurons, 1) for x in heads.layers]:
                raise ValueError("lineage record: heads.power does not match the tested head layers")
            if factors - {1} and (len(factors) != 1 or any(f not in factors for _k, f in units)):
                raise ValueError("lineage record: heads.power carries another factor than its layers")
            heads.power_units = units
        return cls(layers, str(mode), alpha, reference_agreement, [str(n) for n in notes], kinds, heads)

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
            **({"p_ffn": self.p_channel, "heads": self._heads_json()} if self.heads is not None else {}),
        }

    def _heads_json(self) -> dict[str, Any]:
        h = self.heads
        assert h is not None

        def fin(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {
            "joined": self.heads_joined,
            "p_value": h.p_channel,
            "p_full_agreement": h.p_power,
            "join_threshold": self.alpha / CHANNELS,
            "agreement": fin(h.agreement),
            "conclusion": h.conclusion,
            "required_layers": h.required,
            "layers": [x.to_json() for x in h.layers],
            "finding": self.heads_finding(),
            "notes": list(h.notes),
        }


def _layers_from_record(rows: Any) -> list[LayerLineage]:
    layers = []
    for row in rows:
        ok = isinstance(row, (list, tuple)) and len(row) == 8
        if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 40 for v in row):
            raise ValueError("lineage record: each layer is 8 non-negative integers")
        a, b, k, agree, cross, tokens, f, factor = row
        if agree > k or factor < 1:
            raise ValueError("lineage record: more agreeing neurons than tested, or a zero factor")
        layers.append(from_counts(a, b, k, agree, cross, tokens, f, factor))
    return layers
