"""`attest scan`: fingerprint every model under ROOT... into a registry and flag derivatives of its bases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from attest.cli.common import DEVICE_HELP, emit_json, out_console, prompt_passphrase_if_needed, trust_from_options


def scan(
    roots: Annotated[list[Path], typer.Argument(help="Folders (or model files) to scan.")],
    registry: Annotated[Path, typer.Option("--registry", help="Registry folder: its bases, and where records go.")],
    engine: Annotated[
        str, typer.Option("--engine", help="local (this machine) or ray (one task per model).")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="A running Ray cluster (default: start one for this run).")
    ] = None,
    key: Annotated[
        Path | None, typer.Option("--key", help="Sign each fingerprint with this key and add it to the registry.")
    ] = None,
    passphrase_env: Annotated[
        str | None, typer.Option("--passphrase-env", metavar="VAR", help="Passphrase variable for --key.")
    ] = None,
    issuer: Annotated[str, typer.Option("--issuer", help="CWT issuer of the scanner's bundles.")] = "attest scan",
    pubkey: Annotated[
        Path | None, typer.Option("--pubkey", help="Trust exactly this publisher key for the bases.")
    ] = None,
    trust: Annotated[
        Path | None, typer.Option("--trust", help="Trust-store folder for the bases (default ./keys).")
    ] = None,
    tokens: Annotated[
        int | None, typer.Option("--tokens", help="Probe tokens of each model's own fingerprint (default 1024).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    max_retries: Annotated[int, typer.Option("--max-retries", min=0, max=10, help="Ray retries of a dead worker.")] = 2,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON summary.")] = False,
) -> None:
    """Fingerprint every model under ROOT..., record it in REG and identify it against REG's bases.

    A model already recorded (same subject digest) is skipped, so a rerun does
    only what is left.  A model that fails is recorded with its error and exit
    class and the scan goes on.  Exit 0 when every model was recorded, 2 when
    some failed, 3 when a registered base is untrusted or tampered, 4 input error.
    """
    from attest import api

    store = trust_from_options(pubkey, trust)
    summary = api.scan(
        list(roots),
        registry,
        trust=store,
        engine=engine,
        ray_address=ray_address,
        key=key,
        passphrase=prompt_passphrase_if_needed(key, passphrase_env),
        issuer=issuer,
        tokens=tokens,
        max_retries=max_retries,
        device=device,
        show_progress=not json_out,
    )
    data = summary.to_json()
    code = 2 if summary.failed else 0
    if json_out:
        emit_json(data)
        raise typer.Exit(code)
    out_console.print(
        f"{data['found']} models found: {data['scanned']} scanned, {data['skipped']} skipped, "
        f"{data['failed']} failed, {len(data['flagged'])} flagged ({data['engine']}, {data['seconds']:.1f} s)"
    )
    for f in data["flagged"]:
        out_console.print(f"  FLAGGED {f['model']}: derives from {f['base']!r} (p = {f['p_value']:.2g})")
    for f in data["failures"]:
        out_console.print(f"  failed  {f['path']}: {f['error']} (exit class {f['exit_class']})")
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command()(scan)
