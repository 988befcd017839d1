"""Named methods: which tokens, layers and terms, and how weights are prepared."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from attest.errors import InputError
from attest.formats import GLOBAL_TERMS, HUREF_TERMS, LAYER_TERMS, MIXER_TERMS
from attest.limits import MAX_PROBE_TOKENS, MIN_PROBE_TOKENS


@dataclass(frozen=True)
class Method:
    name: str
    n_tokens: int
    layers: str  # "all", "last:K", "first:K", "a-b", "i,j,k"
    terms: tuple[str, ...]
    global_terms: tuple[str, ...]
    fold_gains: bool  # fold norm gains into the weights that read them
    center_layernorm: bool  # centre embedding rows for LayerNorm families
    huref_ffn: bool  # the paper's x(Wg ⊙ Wu)Wd x term instead of up/gate
    depth_alignment: bool  # match layers by similarity when depths differ
    drop_diagonal: bool  # correlate off-diagonal entries only (squared norms are common-mode)

    def with_options(
        self, *, n_tokens: int | None = None, layers: str | None = None, terms: tuple[str, ...] | None = None
    ) -> "Method":
        m = self
        if n_tokens is not None:
            if not MIN_PROBE_TOKENS <= n_tokens <= MAX_PROBE_TOKENS:
                raise InputError(f"--tokens must be between {MIN_PROBE_TOKENS} and {MAX_PROBE_TOKENS}")
            m = replace(m, n_tokens=n_tokens)
        if layers is not None:
            parse_layers(layers, 10**6)  # syntax check only
            m = replace(m, layers=layers)
        if terms is not None:
            allowed = set(HUREF_TERMS if m.huref_ffn else LAYER_TERMS) | set(GLOBAL_TERMS) | set(MIXER_TERMS)
            bad = [t for t in terms if t not in allowed]
            if bad:
                raise InputError(
                    f"unknown term(s) {', '.join(bad)} for method {m.name}; choose from {', '.join(sorted(allowed))}"
                )
            m = replace(
                m,
                terms=tuple(t for t in terms if t not in GLOBAL_TERMS),
                global_terms=tuple(t for t in terms if t in GLOBAL_TERMS),
            )
        return m

    def for_models(self, *models: Any) -> "Method":
        """attention kind: ssm -- the method's full term set plus the mixer terms when a model has a mixer.

        Only a method that keeps its named terms gains them (a --terms choice is
        kept as given), and only for models with state-space mixers, so every
        other model's sketch and its size budget stay exactly as before.
        """
        if not any(getattr(getattr(m, "spec", None), "mixer", None) is not None for m in models):
            return self
        if self.terms not in (LAYER_TERMS, HUREF_TERMS):
            return self
        return replace(self, terms=self.terms + MIXER_TERMS)


DEFAULT = Method(
    name="attest-v1",
    n_tokens=1024,
    layers="all",
    terms=LAYER_TERMS,
    global_terms=GLOBAL_TERMS,
    fold_gains=True,
    center_layernorm=True,
    huref_ffn=False,
    depth_alignment=True,
    drop_diagonal=True,
)

HUREF_2024 = Method(
    name="huref-2024",
    n_tokens=4096,
    layers="last:2",
    terms=HUREF_TERMS,
    global_terms=(),
    fold_gains=False,
    center_layernorm=False,
    huref_ffn=True,
    depth_alignment=False,
    drop_diagonal=False,
)

METHODS = {m.name: m for m in (DEFAULT, HUREF_2024)}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise InputError(f"unknown method '{name}'; choose from {', '.join(METHODS)}") from None


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """Layer indices named by a --layers value, validated against the model depth."""
    s = spec.strip().lower()
    try:
        if s == "all":
            out = list(range(n_layers))
        elif s.startswith("last:"):
            k = int(s[5:])
            out = list(range(max(0, n_layers - k), n_layers))
        elif s.startswith("first:"):
            out = list(range(min(n_layers, int(s[6:]))))
        else:
            out = []
            for part in s.split(","):
                if "-" in part:
                    a, b = part.split("-", 1)
                    out.extend(range(int(a), int(b) + 1))
                else:
                    out.append(int(part))
    except ValueError:
        raise InputError(f"cannot parse --layers '{spec}' (use all, last:K, first:K, a-b or i,j,k)") from None
    bad = [i for i in out if not 0 <= i < n_layers]
    if bad and n_layers < 10**6:
        raise InputError(f"--layers {spec}: layer {bad[0]} out of range (model has {n_layers} layers)")
    if not out:
        raise InputError(f"--layers {spec} selects no layers")
    return sorted(set(out))
