"""`attest compare` and `attest fingerprint`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from attest import api
from attest.cli.common import (
    DEVICE_HELP,
    LAYERS_HELP,
    METHOD_HELP,
    PRECISION_HELP,
    TERMS_HELP,
    THREADS_HELP,
    TOKENS_HELP,
    VERDICT_STYLE,
    emit_json,
    err_console,
    fmt_number,
    out_console,
    parse_terms,
    safe,
    threads_option,
)
from attest.output.paths import check_output
from attest.progress import progress


def render_comparison(c: api.Comparison) -> None:
    terms = list(dict.fromkeys(t for p in c.pairs for t in p.terms))
    table = Table(title=f"Similarity per layer ({c.method.name}, {c.n_tokens} tokens)", show_lines=False)
    table.add_column("layer A", justify="right")
    table.add_column("layer B", justify="right")
    for t in terms:
        table.add_column(t, justify="right")
    table.add_column("mean", justify="right", style="bold")
    for pair in c.pairs:
        table.add_row(
            str(pair.a),
            str(pair.b),
            *[f"{pair.terms[t]:+.3f}" if t in pair.terms else "-" for t in terms],
            f"{pair.mean:+.3f}",
        )
    out_console.print(table)
    if c.global_terms:
        out_console.print("Global terms: " + ", ".join(f"{safe(k)} {v:+.3f}" for k, v in c.global_terms.items()))
    style = VERDICT_STYLE[c.verdict.value]
    z, p = c.z_p
    if c.lineage is not None:
        per_layer = " ".join(f"{x.agreement:.2f}" for x in c.lineage.layers) or "-"
        out_console.print(
            f"Lineage test: neuron agreement per layer {per_layer}  "
            f"(α = {c.lineage.alpha:.0e}, {c.lineage.required} of {len(c.lineage.layers)} layers needed)"
        )
        if c.lineage.heads is not None:
            per_head = " ".join(f"{x.agreement:.2f}" for x in c.lineage.heads.layers) or "-"
            role = "joined the verdict" if c.lineage.heads_joined else "a finding only"
            out_console.print(
                f"Head channel: head agreement per layer {per_head}  p {c.lineage.heads.p_channel:.2g}  ({role})"
            )
    what = "lineage" if c.lineage is not None else "score"
    out_console.print(
        f"Score [bold]{c.score:+.4f}[/bold]  {what} z {fmt_number(z, '.1f')}  p {fmt_number(p, '.2g')}  threshold {c.policy.threshold}  "
        f"coverage {c.coverage:.0%}  verdict [{style}]{c.verdict.value.replace('_', ' ')}[/{style}]"
    )
    for line in c.reasons + c.notes:
        out_console.print(f"  note: {safe(line)}")


def compare(
    model_a: Path = typer.Argument(..., help="First model: HF folder, .safetensors, .gguf, .onnx or .bin."),
    model_b: Path = typer.Argument(..., help="Second model."),
    tokenizer_a: Optional[Path] = typer.Option(
        None, "--tokenizer-a", help="Tokenizer file for A when none sits beside it."
    ),
    tokenizer_b: Optional[Path] = typer.Option(
        None, "--tokenizer-b", help="Tokenizer file for B when none sits beside it."
    ),
    method: str = typer.Option("attest-v1", "--method", help=METHOD_HELP),
    tokens: Optional[int] = typer.Option(None, "--tokens", help=TOKENS_HELP),
    layers: Optional[str] = typer.Option(None, "--layers", help=LAYERS_HELP),
    terms: Optional[str] = typer.Option(None, "--terms", help=TERMS_HELP),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    policy: Optional[Path] = typer.Option(
        None, "--policy", help="Decide under this policy JSON instead of the shipped calibration."
    ),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Override the match threshold (0..1)."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="Write a PNG with both models' dogs side by side."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --sheet file."),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Exact similarity of two local models, layer by layer, with a verdict.

    Exit code 0 match, 1 no match, 2 inconclusive, 4 input error.
    """
    if sheet is not None:
        check_output(sheet, what="--sheet", suffixes=(".png",), force=force)
    with progress(not json_out) as tracker:
        result = api.compare(
            model_a,
            model_b,
            method=method,
            tokens=tokens,
            layers=layers,
            terms=parse_terms(terms),
            precision=precision,
            device=device,
            policy=policy,
            threshold=threshold,
            tokenizer_a=tokenizer_a,
            tokenizer_b=tokenizer_b,
            threads=threads_option(threads),
            progress=tracker,
        )
    if sheet is not None and result.latent_a is not None and result.latent_b is not None:
        from attest.output.paths import atomic_write
        from attest.render.sheet import comparison_sheet, png_bytes

        img = comparison_sheet(
            result.latent_a,
            result.latent_b,
            verdict=result.verdict.value,
            score=result.score,
            ci=None,
            per_layer=[(f"{p.a}", p.mean) for p in result.pairs],
            title=f"{model_a.name} vs {model_b.name}",
        )
        atomic_write(sheet, png_bytes(img))
    if json_out:
        emit_json(result.to_json())
    else:
        render_comparison(result)
        if sheet is not None:
            err_console.print(f"wrote {safe(sheet)}")
    raise typer.Exit(int(result.verdict.exit_code))


def fingerprint(
    model: Path = typer.Argument(..., help="Model to fingerprint (HF folder, .safetensors, .gguf, .onnx or .bin)."),
    tokenizer: Optional[Path] = typer.Option(
        None, "--tokenizer", help="Tokenizer file when none sits beside the weights."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (created; must be empty or new)."),
    method: str = typer.Option("attest-v1", "--method", help=METHOD_HELP),
    tokens: Optional[int] = typer.Option(None, "--tokens", help=TOKENS_HELP),
    layers: Optional[str] = typer.Option(None, "--layers", help=LAYERS_HELP),
    terms: Optional[str] = typer.Option(None, "--terms", help=TERMS_HELP),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Write the standardised invariant matrices and a summary, for research use."""
    with progress(not json_out) as tracker:
        summary = api.fingerprint(
            model,
            out,
            method=method,
            tokens=tokens,
            layers=layers,
            terms=parse_terms(terms),
            precision=precision,
            device=device,
            tokenizer=tokenizer,
            threads=threads_option(threads),
            progress=tracker,
        )
    if json_out:
        emit_json(summary)
    else:
        err_console.print(f"wrote {safe(summary['files']['matrices'])} and summary.json to {safe(out)}")


def register(app: typer.Typer) -> None:
    app.command()(compare)
    app.command()(fingerprint)
