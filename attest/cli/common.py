"""Helpers shared by CLI commands: consoles, JSON output, safe terminal text, shared options."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from attest.crypto.keys import TrustStore
from attest.errors import InputError

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)

DEFAULT_TRUST_DIR = Path("keys")
VERDICT_STYLE = {"match": "bold green", "no_match": "bold red", "inconclusive": "bold yellow"}

# C0 controls but tab and newline, DEL, C1 controls: a signed text field must
# not reach the terminal as an escape sequence.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(value: object) -> str:
    """Untrusted text (anything a bundle, evidence or model file says) for rich output:
    control characters made visible and rich markup escaped."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))
    return escape(text)


def fmt_number(value: float | None, spec: str) -> str:
    """A number for a table; "-" for a missing or non-finite one (a z of p = 1 is -inf)."""
    import math

    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def emit_json(obj: Any) -> None:
    # allow_nan=False: NaN is not JSON; every float we emit must be finite or null.
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n")


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


def passphrase_from_env(env_var: str | None) -> bytes | None:
    if not env_var:
        return None
    value = os.environ.get(env_var)
    if value is None:
        raise InputError(f"--passphrase-env: environment variable {env_var} is not set")
    return value.encode("utf-8")


def prompt_passphrase_if_needed(key: Path | None, env_var: str | None) -> bytes | None:
    """The passphrase from VAR, else a prompt when the key is encrypted and a person is at the terminal."""
    if env_var:
        return passphrase_from_env(env_var)
    if key is None:
        return None
    from attest.crypto.keys import key_file_is_encrypted

    if key_file_is_encrypted(key) and sys.stdin.isatty():
        import typer

        return typer.prompt(f"Passphrase for {key}", hide_input=True).encode("utf-8")
    return None


def trust_from_options(pubkey: Path | None, trust_dir: Path | None, *, what: str = "publisher") -> TrustStore:
    if pubkey is not None and trust_dir is not None:
        raise InputError("use either --pubkey or --trust, not both")
    if pubkey is not None:
        return TrustStore.from_pubkey(pubkey)
    folder = trust_dir or DEFAULT_TRUST_DIR
    if not folder.is_dir():
        raise InputError(f"{what} trust store {folder} not found (give --pubkey NAME.pub or --trust DIR)")
    return TrustStore.from_dir(folder)


def threads_option(value: int | None) -> int:
    """The CLI uses every available core unless told otherwise (the API leaves torch alone)."""
    from attest.invariants.precision import available_cores

    if value is None:
        return available_cores()
    if value < 1:
        raise InputError(f"--threads must be at least 1, got {value}")
    return value


METHOD_HELP = "Method preset: attest-v1 (default; gain-folded, rotation-proof terms over all layers) or huref-2024 (the paper's exact terms on the last two layers)."
TOKENS_HELP = (
    "Number of probe tokens n (the terms are n×n). Default: the method's (1024 for attest-v1, 4096 for huref-2024)."
)
LAYERS_HELP = "Layers to use: all, last:K, first:K, a-b or i,j,k. Default: the method's."
TERMS_HELP = "Comma-separated terms: qk, vo, up, gate, router, emb, head (huref-2024: qk, vo, ffn)."
PRECISION_HELP = "Matmul inputs: auto (bf16 where the CPU has native bf16, else fp32), bf16 or fp32."
DEVICE_HELP = (
    "Where the products run: auto (cuda, then mps, else cpu), cpu, cuda or mps. Weights stream to the device "
    "one block at a time; host memory stays bounded."
)
THREADS_HELP = "CPU threads for the matmuls (default: every core this process may use)."
