"""`attest issue`, `verify`, `inspect` and `render`: the signed-bundle workflow."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from attest import api
from attest.cli.common import (
    DEVICE_HELP,
    LAYERS_HELP,
    PRECISION_HELP,
    THREADS_HELP,
    TOKENS_HELP,
    VERDICT_STYLE,
    emit_json,
    err_console,
    out_console,
    prompt_passphrase_if_needed,
    safe,
    threads_option,
    trust_from_options,
)
from attest.crypto.keys import TrustStore
from attest.errors import ExitCode, InputError
from attest.output.paths import atomic_write, check_output
from attest.progress import progress

_PLAIN = {
    "match": "MATCH: the suspect appears to derive from the attested base model",
    "no_match": "NO MATCH: the suspect does not appear to derive from the attested base model",
    "inconclusive": "INCONCLUSIVE: the evidence does not support either conclusion",
}


def _tsa(url: str | None, optional: bool, roots: list[Path]) -> api.TsaOptions | None:
    if url is None:
        if optional or roots:
            raise InputError("--tsa-optional and --tsa-ca go with --tsa URL")
        return None
    return api.TsaOptions(url=url, optional=optional, roots=tuple(roots))


def _parse_meta(items: list[str]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--meta {item!r}: expected key=value")
        k, v = item.split("=", 1)
        if not k:
            raise InputError(f"--meta {item!r}: empty key")
        meta[k] = v
    return meta


def issue(
    model: Path = typer.Argument(..., help="The base model to attest (HF folder, .safetensors, .gguf, .onnx, .bin)."),
    tokenizer: Optional[Path] = typer.Option(
        None, "--tokenizer", help="Tokenizer file when none sits beside the weights."
    ),
    key: Path = typer.Option(..., "--key", help="Publisher's private key (NAME.key from `attest keygen`)."),
    out: Path = typer.Option(..., "--out", help="Bundle to write (FILE.attest); the dog goes to FILE.png."),
    name: Optional[str] = typer.Option(
        None, "--name", help="Model name recorded as the statement subject (default: folder name)."
    ),
    issuer: str = typer.Option(
        "unknown publisher",
        "--issuer",
        help="Who attests (recorded as the CWT issuer; verifiers see it beside their own name for your key).",
    ),
    meta: List[str] = typer.Option(
        [], "--meta", help="Publisher metadata key=value (repeatable), e.g. licence=apache-2.0."
    ),
    method: str = typer.Option("attest-v1", "--method", help="Method preset."),
    tokens: Optional[int] = typer.Option(None, "--tokens", help=TOKENS_HELP),
    layers: Optional[str] = typer.Option(None, "--layers", help=LAYERS_HELP),
    passphrase_env: Optional[str] = typer.Option(
        None, "--passphrase-env", metavar="VAR", help="Environment variable holding the key's passphrase."
    ),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    strict: bool = typer.Option(False, "--strict", help="Refuse a private key file that others can read."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing FILE.attest / FILE.png."),
    tsa: Optional[str] = typer.Option(
        None,
        "--tsa",
        metavar="URL",
        help="Have this RFC 3161 time-stamp authority stamp the signature (docs/transparency.md).",
    ),
    tsa_optional: bool = typer.Option(
        False, "--tsa-optional", help="If the TSA fails, keep the file unstamped with a warning instead of failing."
    ),
    tsa_ca: List[Path] = typer.Option([], "--tsa-ca", help="Root CA (PEM) a new token must chain to (repeatable)."),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Fingerprint MODEL and sign the result as a COSE_Sign1 attestation bundle.

    Writes FILE.attest (signed statement + dog PNG) and FILE.png next to it.
    Both are checked before any work: an existing file needs --force.
    """
    passphrase = prompt_passphrase_if_needed(key, passphrase_env)
    with progress(not json_out) as tracker:
        res = api.issue(
            model,
            key,
            out,
            name=name,
            issuer=issuer,
            meta=_parse_meta(meta),
            method=method,
            tokens=tokens,
            layers=layers,
            precision=precision,
            device=device,
            tokenizer=tokenizer,
            passphrase=passphrase,
            strict=strict,
            force=force,
            tsa=_tsa(tsa, tsa_optional, tsa_ca),
            threads=threads_option(threads),
            progress=tracker,
        )
    if json_out:
        emit_json(res.to_json())
        return
    for w in res.warnings:
        err_console.print(f"warning: {safe(w)}")
    out_console.print(
        f"[bold]issued[/bold] {safe(res.bundle_path)} ({res.bundle_bytes:,} bytes), dog at {safe(res.png_path)}"
    )
    out_console.print(f"  kid {res.kid_hex}  sketch {res.sketch_shape[0]} cells × {res.sketch_shape[1]} pairs")


def _print_verification(v: api.Verification) -> None:
    data = v.to_json()
    sig = data["signature"]
    mark = "" if sig["issuer_matches_identity"] else "  [bold red](claimed issuer differs from the trusted identity)[/]"
    out_console.print(
        f"signature  [green]valid[/green]  kid {sig['kid'][:16]}…  signed by {safe(repr(sig['trusted_identity']))} "
        f"(trust store)  claimed issuer {safe(repr(sig['issuer']))}  subject {safe(repr(sig['subject']))}{mark}"
    )
    terms = list(dict.fromkeys(t for row in data["layers"] for t in row["terms"]))
    table = Table(title=f"Estimated similarity per layer ({safe(data['method'])}, {data['pairs_used']} pairs)")
    table.add_column("base layer", justify="right")
    table.add_column("suspect layer", justify="right")
    for t in terms:
        table.add_column(safe(t), justify="right")
    table.add_column("mean", justify="right", style="bold")
    for row in data["layers"]:
        table.add_row(
            str(row["a"]),
            str(row["b"]),
            *[f"{row['terms'][t]:+.3f}" if t in row["terms"] else "-" for t in terms],
            f"{row['mean']:+.3f}",
        )
    out_console.print(table)
    if data["global"]:
        out_console.print("global terms: " + ", ".join(f"{safe(k)} {val:+.3f}" for k, val in data["global"].items()))
    score, ci = data["score"], data["ci"]
    lineage = data.get("lineage")
    if lineage:
        per_layer = " ".join(f"{row['agreement']:.2f}" for row in lineage["layers"]) or "-"
        out_console.print(
            f"lineage test  neuron agreement per layer {per_layer}  p {lineage.get('p_ffn', lineage['p_value']):.2g}  "
            f"(α = {lineage['alpha']:.0e}, {lineage['required_layers']} of {len(lineage['layers'])} layers needed)"
        )
        heads = lineage.get("heads")
        if heads:
            per_head = " ".join(f"{row['agreement']:.2f}" for row in heads["layers"]) or "-"
            role = "joined the verdict" if heads["joined"] else "a finding only"
            out_console.print(
                f"head channel  head agreement per layer {per_head}  p {heads['p_value']:.2g}  ({role}; "
                f"lineage p {lineage['p_value']:.2g})"
            )
    if score is not None:
        z = "-" if data["z"] is None else f"{data['z']:.1f}"
        p = "-" if data["p_value"] is None else f"{data['p_value']:.2g}"
        what = "lineage" if lineage else "score"
        out_console.print(
            f"score {score:+.4f}  95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}]  {what} z {z}  p {p}  "
            f"threshold {data['threshold']} (verifier's policy {safe(data['policy']['calibration'])})  "
            f"coverage {data['coverage']:.0%}"
        )
    style = VERDICT_STYLE[data["verdict"]]
    out_console.print(f"[{style}]{_PLAIN[data['verdict']]}[/{style}]")
    for line in data["reasons"] + data["notes"]:
        out_console.print(f"  note: {safe(line)}")


def verify(
    suspect: Path = typer.Argument(..., help="The suspect model (HF folder, .safetensors, .gguf, .onnx, .bin)."),
    tokenizer: Optional[Path] = typer.Option(
        None, "--tokenizer", help="Tokenizer file when none sits beside the suspect's weights."
    ),
    bundle: Path = typer.Option(..., "--bundle", help="The publisher's FILE.attest."),
    pubkey: Optional[Path] = typer.Option(None, "--pubkey", help="Trust exactly this publisher public key (NAME.pub)."),
    trust: Optional[Path] = typer.Option(
        None, "--trust", help="Publisher trust-store folder of .pub files (default: ./keys)."
    ),
    expect_issuer: Optional[str] = typer.Option(
        None, "--expect-issuer", help="Refuse (exit 3) unless the signing key's trust-store identity is NAME."
    ),
    expect_subject: Optional[str] = typer.Option(
        None, "--expect-subject", help="Refuse (exit 3) unless the bundle attests the model NAME."
    ),
    policy: Optional[Path] = typer.Option(
        None,
        "--policy",
        help="Decide under this policy JSON instead of the shipped calibration (the bundle's own policy is never applied).",
    ),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", help="Override the verifier policy's match threshold (0..1)."
    ),
    evidence: Optional[Path] = typer.Option(
        None, "--evidence", help="Write a signed evidence file (.cbor) for archiving."
    ),
    key: Optional[Path] = typer.Option(
        None, "--key", help="Sign the evidence with this verifier key (default: the local verifier key)."
    ),
    passphrase_env: Optional[str] = typer.Option(
        None, "--passphrase-env", metavar="VAR", help="Passphrase variable for --key."
    ),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a self-contained HTML report (.html)."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="Write a PNG with both dogs side by side."),
    strict: bool = typer.Option(False, "--strict", help="Refuse a verifier key file that others can read."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing --evidence/--report/--sheet files."),
    tsa: Optional[str] = typer.Option(
        None,
        "--tsa",
        metavar="URL",
        help="Have this RFC 3161 time-stamp authority stamp the evidence file's signature (docs/transparency.md).",
    ),
    tsa_optional: bool = typer.Option(
        False, "--tsa-optional", help="If the TSA fails, keep the file unstamped with a warning instead of failing."
    ),
    tsa_ca: List[Path] = typer.Option([], "--tsa-ca", help="Root CA (PEM) a new token must chain to (repeatable)."),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object (schemas/report.schema.json)."),
) -> None:
    """Check a bundle's signature, recompute the suspect and decide whether it derives from the base.

    The verdict follows the verifier's policy (the calibration shipped with attest,
    or --policy / --threshold); a policy recorded in the bundle is shown, never applied.

    Exit codes: 0 valid signature and match, 1 valid signature and no match,
    2 inconclusive, 3 bad, tampered or untrusted bundle (nothing is recomputed),
    4 usage or input error.
    """
    store = trust_from_options(pubkey, trust)
    passphrase = prompt_passphrase_if_needed(key, passphrase_env)
    with progress(not json_out) as tracker:
        v = api.verify(
            suspect,
            bundle,
            trust=store,
            policy=policy,
            threshold=threshold,
            expect_issuer=expect_issuer,
            expect_subject=expect_subject,
            tokenizer=tokenizer,
            precision=precision,
            device=device,
            evidence=evidence,
            report=report,
            sheet=sheet,
            verifier_key=key,
            passphrase=passphrase,
            strict=strict,
            force=force,
            tsa=_tsa(tsa, tsa_optional, tsa_ca),
            threads=threads_option(threads),
            progress=tracker,
        )
    if json_out:
        emit_json(v.to_json())
    else:
        _print_verification(v)
        for label in ("sheet", "evidence", "report"):
            if label in v.artefacts:
                out_console.print(f"  wrote {label}: {safe(v.artefacts[label])}")
    raise typer.Exit(int(v.verdict.exit_code))


def _verifier_trust(pubkey: Path | None, trust_dir: Path | None) -> TrustStore | None:
    if pubkey is None and trust_dir is None:
        return None
    return trust_from_options(pubkey, trust_dir, what="verifier")


def inspect(
    file: Path = typer.Argument(..., help="A .attest bundle or an evidence file."),
    pubkey: Optional[Path] = typer.Option(None, "--pubkey", help="Trust exactly this publisher public key."),
    trust: Optional[Path] = typer.Option(None, "--trust", help="Publisher trust-store folder (default: ./keys)."),
    verifier_pubkey: Optional[Path] = typer.Option(
        None, "--verifier-pubkey", help="Trust exactly this verifier public key for evidence."
    ),
    verifier_trust: Optional[Path] = typer.Option(
        None,
        "--verifier-trust",
        help="Verifier trust-store folder (default: the local verifier's, under $ATTEST_HOME or ~/.config/attest/verifiers).",
    ),
    suspect: Optional[Path] = typer.Option(
        None, "--suspect", help="Check that evidence is about this model's files (their digests)."
    ),
    tsa_ca: List[Path] = typer.Option(
        [], "--tsa-ca", help="TSA root CA (PEM) to verify time-stamp tokens against (repeatable)."
    ),
    ts_key: List[Path] = typer.Option(
        [], "--ts-key", help="Transparency-service public key (PEM) to verify SCITT receipts (repeatable)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show a bundle or evidence file and re-verify it offline.

    For evidence this checks the publisher's and the verifier's signatures,
    recomputes the verdict and score from the sketches and the recorded policy,
    and with --suspect checks the suspect's file digests.

    Exit 0 when every check passes, 3 otherwise (bad, unsigned, untrusted or edited).
    """
    store = trust_from_options(pubkey, trust)
    found = api.inspect(
        file,
        trust=store,
        verifier_trust=_verifier_trust(verifier_pubkey, verifier_trust),
        suspect=suspect,
        tsa_roots=tuple(tsa_ca),
        ts_keys=tuple(ts_key),
    )
    info = found.to_json()
    if json_out:
        emit_json(info)
    else:
        _print_inspection(found)
    if not found.ok:
        raise typer.Exit(int(ExitCode.BAD_BUNDLE))


def _print_identify_inspection(found: api.Inspection) -> None:
    info, e = found.info, found.info["identify"]
    state = "[green]signatures valid[/green]" if found.ok else "[bold red]checks FAILED[/bold red]"
    out_console.print(f"[bold]identify evidence[/bold] {safe(info['file'])} ({info['bytes']:,} bytes) — {state}")
    ans, base = e["answer"], e["answer"].get("base")
    out_console.print(
        f"  {safe(e['time'])}  answer {safe(ans.get('verdict'))}  base {safe(repr(base['name'])) if base else '-'}"
        f"  over {safe(e['registry'].get('bases'))} bases ({safe(e['multiple_testing'].get('method'))}, "
        f"alpha {safe(e['multiple_testing'].get('alpha'))})"
    )
    for other in ans.get("also", []):
        out_console.print(f"  also significant: {safe(repr(other.get('name')))}")
    out_console.print(
        f"  verifier {safe(repr(e['verifier_identity']))} (kid {safe(e['verifier_kid'])}); "
        f"{len(e['details'])} top bundles re-verified: "
        + ", ".join(f"{safe(d['name'])} by {safe(repr(d['signature']['trusted_identity']))}" for d in e["details"])
    )
    if found.check is not None and found.check.ok:
        out_console.print("  recomputed: the top candidates' verdicts, the Holm p-values and the answer agree")
    for problem in found.problems:
        out_console.print(f"  [bold red]problem:[/] {safe(problem)}")


def _print_inspection(found: api.Inspection) -> None:
    if found.kind == "identify-evidence":
        _print_identify_inspection(found)
        return
    info = found.info
    sig = info["signature"]
    state = "[green]signatures valid[/green]" if found.ok else "[bold red]checks FAILED[/bold red]"
    out_console.print(f"[bold]{found.kind}[/bold] {safe(info['file'])} ({info['bytes']:,} bytes) — {state}")
    out_console.print(
        f"  publisher kid {sig['kid']}  signed by {safe(repr(sig['trusted_identity']))} (trust store)  "
        f"claimed issuer {safe(repr(sig['issuer']))}  subject {safe(repr(sig['subject']))}  iat {sig['iat']}"
    )
    model = info["model"]
    out_console.print(
        f"  model {safe(model.get('family'))} · {safe(model.get('layers'))} layers · "
        f"{safe(model.get('parameters', 0))} parameters"
    )
    out_console.print(
        f"  method {safe(info['method'].get('name'))} · {info['method']['tokens']} tokens · sketch {info['sketch_shape']}"
    )
    out_console.print(f"  subject root {safe(info['subject'].get('root', ''))}")
    if found.kind == "evidence":
        e = info["evidence"]
        res = e["results"]
        out_console.print(
            f"  evidence {safe(e['time'])}  verdict {safe(res.get('verdict'))}  score {safe(res.get('score'))}  "
            f"verifier {safe(repr(e['verifier_identity']))} (kid {safe(e['verifier_kid'])})"
        )
        if found.check is not None and found.check.ok:
            out_console.print("  recomputed from the sketches: verdict and score agree")
    for stamp in info.get("timestamps", []):
        if stamp["verified"]:
            out_console.print(f"  timestamp [green]verified[/green]: {safe(stamp['time'])} by {safe(stamp['tsa'])}")
        else:
            out_console.print(f"  timestamp [yellow]not verified[/yellow]: {safe(stamp['reason'])}")
    for receipt in info.get("receipts", []):
        state = "[green]verified[/green]" if receipt.get("verified") else "[yellow]not verified[/yellow]"
        out_console.print(
            f"  SCITT receipt {state}" + ("" if receipt.get("verified") else f": {safe(receipt.get('reason'))}")
        )
    for problem in found.problems:
        out_console.print(f"  [bold red]problem:[/] {safe(problem)}")


def render(
    file: Path = typer.Argument(..., help="A .attest bundle whose latent to draw."),
    out: Path = typer.Option(..., "--out", help="PNG to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing PNG."),
) -> None:
    """Re-draw the dog from a bundle's latent (no signature check: drawing is harmless)."""
    from attest.render.base import get_renderer
    from attest.render.sheet import png_bytes

    check_output(out, what="--out", suffixes=(".png",), force=force)
    latent, name = api.bundle_latent(file)
    renderer = get_renderer(name)
    atomic_write(out, png_bytes(renderer.render(latent)))
    err_console.print(f"wrote {safe(out)}")


def register(app: typer.Typer) -> None:
    app.command()(issue)
    app.command()(verify)
    app.command()(inspect)
    app.command()(render)
