"""Helpers shared by CLI commands: output, options, model opening."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from attest.errors import InputError

err_console = Console(stderr=True)
out_console = Console()


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, bytes):
        return o.hex()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def parse_terms(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    terms = tuple(t.strip() for t in value.split(",") if t.strip())
    if not terms:
        raise InputError("--terms needs at least one term")
    return terms


def show_progress(json_out: bool) -> bool:
    return not json_out


METHOD_HELP = "Method preset: attest-v1 (default; gain-folded, rotation-proof terms over all layers) or huref-2024 (the paper's exact terms on the last two layers)."
TOKENS_HELP = "Number of probe tokens n (the terms are n×n). Default: the method's (1024 for attest-v1, 4096 for huref-2024)."
LAYERS_HELP = "Layers to use: all, last:K, first:K, a-b or i,j,k. Default: the method's."
TERMS_HELP = "Comma-separated terms: qk, vo, up, gate, router, emb, head (huref-2024: qk, vo, ffn)."
PRECISION_HELP = "Matmul inputs: auto (bf16 where the CPU has native bf16, else fp32), bf16 or fp32."
