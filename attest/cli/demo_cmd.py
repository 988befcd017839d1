"""`attest demo`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from attest.cli.common import fmt_number, out_console, threads_option
from attest.progress import progress

_PLAIN = {
    "match": "[bold green]match[/]",
    "no_match": "[bold red]no match[/]",
    "inconclusive": "[bold yellow]inconclusive[/]",
}


def demo(
    out: Path = typer.Option(
        Path("attest-demo"), "--out", help="Folder for the bundle, dogs, sheets, reports and evidence."
    ),
    precision: str = typer.Option("auto", "--precision", help="Matmul inputs: auto, bf16 or fp32."),
) -> None:
    """Run the whole story on real embedded models: issue a signed bundle for
    all-MiniLM-L6-v2, then verify a disguised copy, a third-party int8 ONNX export,
    a sibling model and an unrelated model against it.  Needs the `demo` extra; no network."""
    from attest.demo.story import run_demo

    with progress(True) as tracker:
        cases = run_demo(out, say=out_console.print, tracker=tracker, precision=precision, threads=threads_option(None))
    table = Table()
    for col in ("suspect", "verdict", "score", "95% CI", "z", "emb"):
        table.add_column(col, no_wrap=True)
    for c in cases:
        table.add_row(
            c.name,
            _PLAIN[c.verdict],
            f"{c.score:+.3f}",
            f"{c.ci[0]:+.3f}..{c.ci[1]:+.3f}",
            fmt_number(c.z, ".0f"),
            "-" if c.emb is None else f"{c.emb:+.2f}",
        )
    out_console.print(table)
    for c in cases:
        for note in c.notes:
            out_console.print(f"   {c.name}: {note}")
    out_console.print(f"Open {out / 'verify' / cases[0].name / 'report.html'} for a report a non-specialist can read;")
    out_console.print(
        f"the evidence bundles re-verify offline with: attest inspect {cases[0].evidence} --pubkey {out / 'keys' / 'demo-publisher.pub'} --verifier-pubkey {out / 'keys' / 'demo-verifier.pub'}"
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
