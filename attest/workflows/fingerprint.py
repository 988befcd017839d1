"""Write a model's invariant matrices to disk (`attest fingerprint`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from attest import __version__
from attest.arch.canonical import CanonicalModel
from attest.arch.model_info import describe
from attest.errors import InputError
from attest.invariants.compute import global_matrices, iter_layers, make_probe
from attest.invariants.methods import Method, parse_layers
from attest.invariants.precision import compute_dtype
from attest.invariants.terms import FLOPS
from attest.progress import SILENT, Tracker
from attest.sources.safetensors_file import SafetensorsWriter
from attest.vocab.selection import DEFAULT_SELECTION_KEY, select


def write_fingerprint(
    model: CanonicalModel, method: Method, out: Path, *, precision: str = "auto", tracker: Tracker = SILENT
) -> dict[str, Any]:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty folder; refusing to overwrite")
    threads = torch.get_num_threads()
    method = method.for_models(model)  # attention kind: ssm
    dtype = compute_dtype(precision)
    FLOPS.reset()
    t0 = time.perf_counter()
    strings = select(model.vocab, method.n_tokens, DEFAULT_SELECTION_KEY)
    ids = [model.vocab.index()[s] for s in strings]
    layers = parse_layers(method.layers, model.n_layers)
    probe = make_probe(model, ids, method)
    out.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    task = tracker.task("fingerprinting", len(layers))
    with SafetensorsWriter(out / "invariants.safetensors", {"method": method.name, "tool": __version__}) as writer:
        for res in iter_layers(model, probe, method, layers, dtype, lambda _i: tracker.advance(task)):
            for term, z in res.terms.items():
                names.append(f"layer.{res.index}.{term}")
                writer.add(names[-1], z)
        for term, z in global_matrices(model, probe, method, dtype).items():
            names.append(f"global.{term}")
            writer.add(names[-1], z)
        compute_seconds = time.perf_counter() - t0
        flops = FLOPS.reset()
    summary = {
        "tool": f"attest {__version__}",
        "model": describe(model),
        "method": method.name,
        "precision": str(dtype).replace("torch.", ""),
        "selection_key": DEFAULT_SELECTION_KEY,
        "tokens": strings,
        "layers": layers,
        "terms": sorted({k.split(".")[-1] for k in names}),
        "warnings": model.warnings,
        "files": {"matrices": "invariants.safetensors"},
        "compute": {"seconds": round(compute_seconds, 3), "flops": flops, "threads": threads},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary
