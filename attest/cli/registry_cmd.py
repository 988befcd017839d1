"""`attest registry add | list | remove | verify`: a folder of signed bases, indexed in SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from attest.cli.common import emit_json, out_console
from attest.crypto.keys import TrustStore
from attest.errors import ExitCode, InputError

registry_app = typer.Typer(
    name="registry",
    help="A registry of attested base models: signed bundles in a folder, indexed in SQLite (docs/registry.md).",
    no_args_is_help=True,
)

# Annotated parameters (module-level, shared by the commands).
RegArg = Annotated[Path, typer.Argument(help="The registry folder (created by the first `add`).")]
PubkeyOpt = Annotated[Path | None, typer.Option("--pubkey", help="Trust exactly this public key (NAME.pub).")]
TrustOpt = Annotated[Path | None, typer.Option("--trust", help="Trust-store folder of .pub files.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _trust(pubkey: Path | None, trust_dir: Path | None) -> TrustStore:
    # No default trust folder here: a registry must say whose signatures it admits.
    if (pubkey is None) == (trust_dir is None):
        raise InputError("give exactly one of --pubkey K or --trust DIR")
    return TrustStore.from_pubkey(pubkey) if pubkey is not None else TrustStore.from_dir(trust_dir)  # type: ignore[arg-type]


def _short(hex_digest: str) -> str:
    return hex_digest[:16] + "…"


@registry_app.command("add")
def add_cmd(
    reg: RegArg,
    bundles: Annotated[list[Path], typer.Argument(help="One or more FILE.attest bundles.")],
    pubkey: PubkeyOpt = None,
    trust: TrustOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify each bundle's signature and register it under its subject root digest.

    All bundles are checked first; an untrusted or malformed one stops the
    command (exit 3) with nothing added.  A base already present is skipped.
    """
    from attest.registry import add

    report = add(reg, bundles, _trust(pubkey, trust))
    if json_out:
        emit_json(report.to_json())
        return
    for e in report.added:
        out_console.print(
            f"[green]added[/green]   {e.name!r} ({e.family}, {e.layers} layers)  subject {_short(e.subject_root)}"
        )
    for given, e in report.skipped:
        out_console.print(
            f"[yellow]skipped[/yellow] {given}: subject {_short(e.subject_root)} is already registered as {e.name!r}"
        )


@registry_app.command("list")
def list_cmd(
    reg: RegArg,
    json_out: JsonOpt = False,
) -> None:
    """List the registered bases (from the index; run `registry verify` to re-check them)."""
    from attest.registry import list_entries

    entries = list_entries(reg)
    if json_out:
        emit_json({"registry": str(reg), "bases": len(entries), "entries": [e.to_json() for e in entries]})
        return
    table = Table(title=f"{reg}: {len(entries)} registered bases")
    table.add_column("name", no_wrap=True)
    for col in ("issuer", "family", "layers", "hidden", "method", "tokens", "subject root", "kid"):
        table.add_column(col, justify="right" if col in ("layers", "hidden", "tokens") else "left")
    for e in entries:
        table.add_row(
            e.name,
            e.issuer,
            e.family,
            str(e.layers),
            str(e.hidden),
            e.method,
            str(e.n_tokens),
            e.subject_root[:12] + "…",
            e.kid[:8] + "…",
        )
    out_console.print(table)


@registry_app.command("remove")
def remove_cmd(
    reg: RegArg,
    ref: Annotated[
        str, typer.Argument(help="The entry's name, or its subject root or bundle digest (at least 8 hex digits).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Remove one entry and its stored bundle."""
    from attest.registry import remove

    entry = remove(reg, ref)
    if json_out:
        emit_json({"removed": entry.to_json()})
        return
    out_console.print(f"removed {entry.name!r}  subject {_short(entry.subject_root)}")


@registry_app.command("verify")
def verify_cmd(
    reg: RegArg,
    pubkey: PubkeyOpt = None,
    trust: TrustOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-check every stored signature, file digest and index row.

    Exit 0 when all is intact (stray unindexed files are reported but allowed),
    3 when anything was tampered with.
    """
    from attest.registry import verify

    report = verify(reg, _trust(pubkey, trust))
    if json_out:
        emit_json(report.to_json())
    else:
        if report.problems:
            table = Table(title=f"{reg}: problems")
            for col in ("kind", "name", "subject root", "detail"):
                table.add_column(col)
            for p in report.problems:
                style = "yellow" if p.kind == "stray" else "red"
                table.add_row(
                    f"[{style}]{p.kind}[/{style}]", p.name, _short(p.subject_root) if p.subject_root else "", p.detail
                )
            out_console.print(table)
        verdict = "[bold red]TAMPERED[/bold red]" if report.tampered else "[bold green]intact[/bold green]"
        out_console.print(f"{verdict}: {report.ok} of {report.checked} entries verified")
    raise typer.Exit(int(ExitCode.BAD_BUNDLE) if report.tampered else 0)


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
