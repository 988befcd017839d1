"""Open a model path as a `CanonicalModel`: pick the reader, the family and the vocabulary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from attest.arch.canonical import CanonicalModel
from attest.arch.families import HF_FAMILIES
from attest.arch.gguf_families import resolve_gguf
from attest.arch.spec import ArchSpec
from attest.errors import UnsupportedModelError
from attest.sources import open_weights
from attest.sources.base import EmbeddedArchitecture, WeightSource
from attest.vocab import Vocabulary, load_vocabulary
from attest.vocab.readers import load_vocabulary_file

BY_MODEL_TYPE: dict[str, ArchSpec] = {t: spec for spec in HF_FAMILIES for t in spec.hf_model_types}


def supported_families() -> list[str]:
    return [spec.family for spec in HF_FAMILIES]


def _unsupported(what: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"{what}; supported families: {', '.join(supported_families())}")


def spec_from_tensor_names(names: set[str]) -> ArchSpec | None:
    """The most specific family whose identifying tensors are all present."""
    best: ArchSpec | None = None
    for spec in HF_FAMILIES:
        if not spec.detect:
            continue
        for prefix in spec.layer_prefix:
            layer0 = prefix.format(i=0)
            if all(layer0 + n in names for n in spec.detect) and any(e in names for e in spec.embed):
                if best is None or len(spec.detect) > len(best.detect):
                    best = spec
    return best


def spec_for(source: WeightSource, config: dict[str, Any] | None) -> ArchSpec:
    if config is not None and config.get("model_type"):
        mtype = str(config["model_type"])
        spec = BY_MODEL_TYPE.get(mtype)
        if spec is None:
            raise _unsupported(f"{source.root}: model_type '{mtype}' is not supported")
        return spec
    spec = spec_from_tensor_names(set(source.names()))
    if spec is None:
        raise _unsupported(f"{source.root}: cannot tell the architecture from its tensor names")
    return spec


def load_model(path: str | Path, tokenizer: str | Path | None = None) -> CanonicalModel:
    """Open a model; `tokenizer` names a tokenizer file to use instead of the one beside it
    (for weights that ship without one, such as most ONNX exports)."""
    p = Path(path)
    source = open_weights(p)
    vocab = load_vocabulary_file(Path(tokenizer)) if tokenizer is not None else None
    embedded = source.embedded_architecture()
    if embedded is not None:
        spec, dims = _embedded_spec(source, embedded)
        # A file that names its own architecture keeps its tokenizer in its metadata too.
        model = CanonicalModel(source, spec, vocab or load_vocabulary(p, source.metadata()), None, gguf_dims=dims)
    else:
        config = source.config()
        spec = spec_for(source, config)
        model = CanonicalModel(source, spec, vocab or load_vocabulary(p), config)
    model.warnings.extend(source.warnings())
    return model


# Naming scheme of an embedded architecture -> how to find its table and header dimensions.
EMBEDDED_TABLES: dict[str, Callable[[WeightSource, str], tuple[ArchSpec, dict[str, int]]]] = {
    "gguf": resolve_gguf,
}


def _embedded_spec(source: WeightSource, embedded: EmbeddedArchitecture) -> tuple[ArchSpec, dict[str, int]]:
    resolve = EMBEDDED_TABLES.get(embedded.scheme)
    if resolve is None:
        raise _unsupported(f"{source.root}: no tables for {embedded.scheme} architecture '{embedded.name}'")
    return resolve(source, embedded.name)


def model_from_tensors(
    tensors: "dict[str, object]",
    config: dict[str, Any],
    vocab: "Vocabulary | None" = None,
    spec: ArchSpec | None = None,
) -> CanonicalModel:
    """A canonical model over in-memory tensors (tests, transformed models).

    `spec` overrides the family table, e.g. a LayerNorm family after its
    norms were converted to RMSNorm.
    """
    from attest.sources.memory import DictSource

    source = DictSource(tensors, config)  # type: ignore[arg-type]
    return CanonicalModel(source, spec or spec_for(source, config), vocab, config)
