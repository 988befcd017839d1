"""`attest timestamp`, `attest register` and `attest proofs`: provable time and public registration.

Thin wrappers over attest.timestamp and attest.transparency (docs/transparency.md).
"""

# ruff: noqa: B008  (typer declares options as call defaults)
from __future__ import annotations

from pathlib import Path

import typer

from attest.bundle.container import MAX_EVIDENCE_BYTES, read_bounded
from attest.bundle.unsigned import write_file
from attest.cli.common import emit_json, err_console, out_console, safe
from attest.errors import BundleError, InputError
from attest.timestamp import load_tsa_roots, stamp_container_result, timestamp_report
from attest.transparency import load_ts_keys, receipt_report, register_container


def _target(file: Path, out: Path | None) -> Path:
    return out if out is not None else file


def timestamp_cmd(
    file: Path = typer.Argument(..., help="A .attest bundle or a signed evidence file."),
    tsa: str = typer.Option(..., "--tsa", help="RFC 3161 time-stamp authority URL (http:// or https://)."),
    tsa_ca: list[Path] = typer.Option(
        [], "--tsa-ca", help="Root CA (PEM) the token must chain to; checked before writing."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write here instead of replacing FILE."),
    force: bool = typer.Option(False, "--force", help="Overwrite FILE (or --out) if it exists."),
    tsa_optional: bool = typer.Option(
        False, "--tsa-optional", help="If the TSA fails, still write the file, unstamped."
    ),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for the TSA."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Add an RFC 3161 time-stamp token over the file's signature (RFC 9921, COSE then timestamp).

    The signed bytes never change.  Exit 4 when the TSA errs, refuses or times
    out (unless --tsa-optional), 3 when FILE is not a sound bundle or evidence file.
    """
    target = _target(file, out)
    if (target.exists() or target.is_symlink()) and not force:
        raise InputError(f"{target} exists; use --force to overwrite" + ("" if out else " FILE, or --out NEW"))
    data = read_bounded(file, MAX_EVIDENCE_BYTES, what="file")
    res = stamp_container_result(data, tsa, timeout=timeout, optional=tsa_optional, tsa_roots=load_tsa_roots(tsa_ca))
    write_file(target, res.data, force=force)
    if json_out:
        emit_json({"file": str(target), "stamped": res.stamped, "reason": res.reason})
        return
    if res.stamped:
        out_console.print(f"[bold]timestamped[/bold] {target}")
    else:
        err_console.print(f"warning: wrote {target} WITHOUT a timestamp: {safe(res.reason)}")


def register_cmd(
    file: Path = typer.Argument(..., help="A .attest bundle or a signed evidence file."),
    scitt: str = typer.Option(..., "--scitt", help="Transparency service base URL (SCRAPI: POST {URL}/entries)."),
    ts_key: list[Path] = typer.Option(
        [], "--ts-key", help="Transparency-service public key (PEM); the receipt must verify."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write here instead of replacing FILE."),
    force: bool = typer.Option(False, "--force", help="Overwrite FILE (or --out) if it exists."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per HTTP request."),
    max_wait: float = typer.Option(60.0, "--max-wait", help="Seconds to wait for an asynchronous registration."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Register the file's signed statement at a SCITT transparency service and store the receipt.

    Exit 4 when the service errs or its receipt does not verify under --ts-key.
    """
    target = _target(file, out)
    if (target.exists() or target.is_symlink()) and not force:
        raise InputError(f"{target} exists; use --force to overwrite" + ("" if out else " FILE, or --out NEW"))
    keys = load_ts_keys(ts_key)
    data = read_bounded(file, MAX_EVIDENCE_BYTES, what="file")
    registered = register_container(data, scitt, ts_keys=keys, timeout=timeout, max_wait=max_wait)
    write_file(target, registered, force=force)
    if json_out:
        emit_json({"file": str(target), "registered": True, "receipt_verified": bool(keys)})
        return
    out_console.print(f"[bold]registered[/bold] {target}" + ("" if keys else " (receipt not verified: no --ts-key)"))


def proofs_cmd(
    file: Path = typer.Argument(..., help="A .attest bundle or an evidence file."),
    tsa_ca: list[Path] = typer.Option([], "--tsa-ca", help="TSA root CA (PEM), repeatable."),
    ts_key: list[Path] = typer.Option([], "--ts-key", help="Transparency-service public key (PEM), repeatable."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Verify the time-stamp tokens and SCITT receipts in FILE, offline.

    Signatures are not checked here (use `attest inspect`).  Exit 0 when every
    token and receipt verifies (or there are none), 3 when any does not.
    """
    data = read_bounded(file, MAX_EVIDENCE_BYTES, what="file")
    stamps = timestamp_report(data, load_tsa_roots(tsa_ca))
    receipts = receipt_report(data, load_ts_keys(ts_key))
    if json_out:
        emit_json({"timestamps": [c.to_json() for c in stamps], "receipts": [c.to_json() for c in receipts]})
    else:
        if not stamps:
            out_console.print("timestamps: none")
        for c in stamps:
            if c.verified:
                out_console.print(
                    f"timestamp  [green]verified[/green]  {safe(c.to_json()['time'])}  {c.covers} signature  by {safe(c.tsa)}"
                )
            else:
                out_console.print(f"timestamp  [red]NOT verified[/red]  {c.covers} signature: {safe(c.reason)}")
        if not receipts:
            out_console.print("receipts: none")
        for r in receipts:
            if r.verified:
                out_console.print(
                    f"receipt    [green]verified[/green]  {r.covers} entry {r.leaf_index} of {r.tree_size}"
                    f"  issuer {safe(repr(r.issuer))}  key {safe(r.ts_key)}"
                )
            else:
                out_console.print(f"receipt    [red]NOT verified[/red]  {r.covers}: {safe(r.reason)}")
    if any(not c.verified for c in stamps) or any(not r.verified for r in receipts):
        raise typer.Exit(int(BundleError.exit_code))


def register(app: typer.Typer) -> None:
    app.command("timestamp")(timestamp_cmd)
    app.command("register")(register_cmd)
    app.command("proofs")(proofs_cmd)
