"""`attest identify`: name the registered base a suspect derives from, in one pass over it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from attest.cli.common import (
    DEVICE_HELP,
    PRECISION_HELP,
    emit_json,
    out_console,
    prompt_passphrase_if_needed,
    safe,
    threads_option,
    trust_from_options,
)

_STYLE = {"match": "bold green", "no_match": "bold red", "inconclusive": "bold yellow"}


def identify(
    suspect: Annotated[Path, typer.Argument(help="The suspect model (HF folder, .safetensors, .gguf, .onnx, .bin).")],
    registry: Annotated[Path, typer.Option("--registry", help="Registry folder (`attest registry add`).")],
    pubkey: Annotated[Path | None, typer.Option("--pubkey", help="Trust exactly this public key (NAME.pub).")] = None,
    trust: Annotated[
        Path | None, typer.Option("--trust", help="Trust-store folder of .pub files (default: ./keys).")
    ] = None,
    tokenizer: Annotated[
        Path | None, typer.Option("--tokenizer", help="Tokenizer file when none sits beside the suspect.")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=0, help="Candidates to show.")] = 5,
    alpha: Annotated[
        float,
        typer.Option(
            "--alpha", min=1e-300, max=0.5, help="Family-wise error rate for Holm–Bonferroni over the N bases."
        ),
    ] = 0.01,
    precision: Annotated[str, typer.Option("--precision", help=PRECISION_HELP)] = "auto",
    evidence: Annotated[
        Path | None,
        typer.Option("--evidence", help="Write a signed identify evidence file (.cbor): ranking, answer, top bundles."),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report", help="Write a self-contained HTML report (.html) with the dogs of the top candidates."
        ),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="Sign the evidence with this verifier key (default: the local verifier key)."),
    ] = None,
    passphrase_env: Annotated[
        str | None, typer.Option("--passphrase-env", metavar="VAR", help="Passphrase variable for --key.")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse a verifier key file that others can read.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing --evidence/--report files.")] = False,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    no_screen: Annotated[
        bool,
        typer.Option(
            "--no-screen",
            help="Open and re-verify every registered bundle, also those the index shows the suspect "
            "shares fewer than 8 probe tokens with (same answer, slower).",
        ),
    ] = False,
) -> None:
    """Rank every registered base against SUSPECT and name the one it derives from, if any.

    The suspect is read once whatever the number of bases.  Exit codes as for
    verify: 0 a base is named, 1 none of the bases matches, 2 inconclusive,
    3 a registered bundle is tampered or untrusted, 4 input error.
    --evidence and --report are written as for verify (never over an existing
    file without --force); `attest inspect` re-checks the evidence.
    """
    from attest import api
    from attest.progress import progress

    store = trust_from_options(pubkey, trust)  # verify's rule: --pubkey, --trust, or ./keys
    passphrase = prompt_passphrase_if_needed(key, passphrase_env)
    with progress(not json_out) as tracker:
        result = api.identify(
            suspect,
            registry,
            trust=store,
            alpha=alpha,
            tokenizer=tokenizer,
            precision=precision,
            evidence=evidence,
            report=report,
            top=top,
            verifier_key=key,
            passphrase=passphrase,
            strict=strict,
            force=force,
            device=device,
            threads=threads_option(None),
            progress=tracker,
            screen=not no_screen,
        )
    data = result.to_json(top)
    if json_out:
        emit_json(data)
        raise typer.Exit(int(result.verdict.exit_code))
    table = Table(title=f"{suspect.name} against {data['registry']['bases']} registered bases ({data['evidence']})")
    for col in ("#", "base", "family", "verdict", "score", "z", "p (Holm)"):
        table.add_column(
            col, justify="right" if col in ("#", "score", "z", "p (Holm)") else "left", no_wrap=col == "base"
        )
    for c in data["candidates"]:
        score = f"{c['score']:+.3f}" if c["score"] is not None else "-"
        z = f"{c['z']:.1f}" if c.get("z") is not None else "-"
        style = _STYLE[c["verdict"]]
        shown = c["verdict"] if c.get("comparable", True) else f"{c['verdict']} (not comparable)"
        table.add_row(
            str(c["rank"]), c["name"], c["family"], f"[{style}]{shown}[/{style}]", score, z, f"{c['p_holm']:.2g}"
        )
    out_console.print(table)
    style = _STYLE[data["verdict"]]
    if data["base"] is not None:
        b = data["base"]
        out_console.print(
            f"[{style}]BASE: {b['name']!r}[/{style}] (issuer {b['issuer']!r}, subject {b['subject_root'][:16]}…)"
        )
        if b["subject_match"]:
            out_console.print("  the suspect's weight files are byte-identical to the attested ones")
    else:
        out_console.print(
            f"[{style}]{'NO BASE' if data['verdict'] == 'no_match' else 'INCONCLUSIVE'}[/{style}]: "
            f"none of the {data['registry']['bases']} registered bases is named"
        )
    for other in data["also"]:
        out_console.print(f"  also significant: {safe(repr(other['name']))} (Holm p {other['p_holm']:.2g})")
    for line in data["reasons"]:
        out_console.print(f"  note: {line}")
    for label in ("signer_note", "key_warning"):
        if label in data:
            out_console.print(f"  note: {safe(data[label])}")
    for label in ("evidence", "report"):
        if label in data:
            out_console.print(f"  wrote {label}: {safe(data[label])}")
    raise typer.Exit(int(result.verdict.exit_code))


def register(app: typer.Typer) -> None:
    app.command()(identify)
