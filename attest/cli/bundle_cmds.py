"""`attest issue`, `verify`, `inspect` and `render`: the signed-bundle workflow."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import numpy as np
import typer
from rich.table import Table

from attest.arch.detect import load_model
from attest.bundle.container import (
    MAX_ATTESTATION_BYTES, MAX_EVIDENCE_BYTES, inspect_attestation, read_attestation, read_bounded,
    read_evidence,
)
from attest.cli.app import app
from attest.cli.common import PRECISION_HELP, TOKENS_HELP, LAYERS_HELP, emit_json, err_console, out_console, show_progress
from attest.crypto.keys import TrustStore, load_private_key
from attest.decision import Policy
from attest.errors import InputError
from attest.invariants.methods import get_method
from attest.progress import progress
from attest.verify_outputs import write_outputs
from attest.render.base import get_renderer
from attest.render.sheet import png_bytes

DEFAULT_TRUST_DIR = Path("keys")
_STYLE = {"match": "bold green", "no_match": "bold red", "inconclusive": "bold yellow"}
_PLAIN = {
    "match": "MATCH: the suspect appears to derive from the attested base model",
    "no_match": "NO MATCH: the suspect does not appear to derive from the attested base model",
    "inconclusive": "INCONCLUSIVE: the evidence does not support either conclusion",
}


def _passphrase(env_var: str | None, path: Path) -> bytes | None:
    if env_var:
        value = os.environ.get(env_var)
        if value is None:
            raise InputError(f"--passphrase-env: environment variable {env_var} is not set")
        return value.encode("utf-8")
    if b"ENCRYPTED" in path.read_bytes()[:64] and sys.stdin.isatty():
        return typer.prompt(f"Passphrase for {path}", hide_input=True).encode("utf-8")
    return None


def _load_key(path: Path, env_var: str | None) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: no such key file")
    return load_private_key(path, _passphrase(env_var, path))


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


def _trust(pubkey: Path | None, trust_dir: Path | None) -> TrustStore:
    if pubkey is not None and trust_dir is not None:
        raise InputError("use either --pubkey or --trust, not both")
    if pubkey is not None:
        return TrustStore.from_pubkey(pubkey)
    folder = trust_dir or DEFAULT_TRUST_DIR
    if not folder.is_dir():
        raise InputError(f"trust store {folder} not found (give --pubkey NAME.pub or --trust DIR)")
    return TrustStore.from_dir(folder)


@app.command()
def issue(
    model: Path = typer.Argument(..., help="The base model to attest (HF folder, .safetensors, .gguf, .onnx, .bin)."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Tokenizer file when none sits beside the weights."),
    key: Path = typer.Option(..., "--key", help="Publisher's private key (NAME.key from `attest keygen`)."),
    out: Path = typer.Option(..., "--out", help="Bundle to write (FILE.attest); the dog goes to FILE.png."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name recorded as the statement subject (default: folder name)."),
    issuer: str = typer.Option("unknown publisher", "--issuer", help="Who attests (recorded as the CWT issuer)."),
    meta: List[str] = typer.Option([], "--meta", help="Publisher metadata key=value (repeatable), e.g. licence=apache-2.0."),
    method: str = typer.Option("attest-v1", "--method", help="Method preset."),
    tokens: Optional[int] = typer.Option(None, "--tokens", help=TOKENS_HELP),
    layers: Optional[str] = typer.Option(None, "--layers", help=LAYERS_HELP),
    passphrase_env: Optional[str] = typer.Option(None, "--passphrase-env", metavar="VAR", help="Environment variable holding the key's passphrase."),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing bundle."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Fingerprint MODEL and sign the result as a COSE_Sign1 attestation bundle.

    Writes FILE.attest (signed statement + dog PNG) and FILE.png next to it.
    """
    from attest.issue import issue_bundle

    if out.exists() and not force:
        raise InputError(f"{out} exists; use --force to overwrite")
    priv = _load_key(key, passphrase_env)
    m = get_method(method).with_options(n_tokens=tokens, layers=layers)
    cm = load_model(model, tokenizer)
    with progress(show_progress(json_out)) as tracker:
        res = issue_bundle(cm, priv, out, method=m, name=name or model.resolve().name, issuer=issuer,
                           meta=_parse_meta(meta), precision=precision, tracker=tracker)
    summary = {
        "bundle": str(res.bundle_path), "image": str(res.png_path), "bundle_bytes": res.bundle_bytes,
        "statement_bytes": res.document_bytes, "sketch_shape": list(res.sketch_shape), "kid": res.kid_hex,
        "subject_root": res.subject_root_hex, "seconds": {k: round(v, 3) for k, v in res.seconds.items()},
    }
    if json_out:
        emit_json(summary)
        return
    out_console.print(f"[bold]issued[/bold] {res.bundle_path} ({res.bundle_bytes:,} bytes), dog at {res.png_path}")
    out_console.print(f"  kid {res.kid_hex}  sketch {res.sketch_shape[0]} cells × {res.sketch_shape[1]} pairs")


def _subject_of_suspect(cm: Any, tracker: Any) -> Any:
    from attest.issue import subject_of

    return subject_of(cm, tracker)


def _print_verification(v: Any) -> None:
    data = v.to_json()
    sig = data["signature"]
    out_console.print(f"signature  [green]valid[/green]  kid {sig['kid'][:16]}…  issuer {sig['issuer']!r}  subject {sig['subject']!r}")
    terms = list(dict.fromkeys(t for row in data["layers"] for t in row["terms"]))
    table = Table(title=f"Estimated similarity per layer ({data['method']}, {data['pairs_used']} pairs)")
    table.add_column("base layer", justify="right")
    table.add_column("suspect layer", justify="right")
    for t in terms:
        table.add_column(t, justify="right")
    table.add_column("mean", justify="right", style="bold")
    for row in data["layers"]:
        table.add_row(str(row["a"]), str(row["b"]), *[f"{row['terms'][t]:+.3f}" if t in row["terms"] else "-" for t in terms], f"{row['mean']:+.3f}")
    out_console.print(table)
    if data["global"]:
        out_console.print("global terms: " + ", ".join(f"{k} {val:+.3f}" for k, val in data["global"].items()))
    score = data["score"]
    ci = data["ci"]
    if score is not None:
        out_console.print(
            f"score {score:+.4f}  95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}]  z {data['z']:.1f}  p {data['p_value']:.2g}  "
            f"threshold {data['threshold']}  coverage {data['coverage']:.0%}"
        )
    style = _STYLE[data["verdict"]]
    out_console.print(f"[{style}]{_PLAIN[data['verdict']]}[/{style}]")
    for line in data["reasons"] + data["notes"]:
        out_console.print(f"  note: {line}")


@app.command()
def verify(
    suspect: Path = typer.Argument(..., help="The suspect model (HF folder, .safetensors, .gguf, .onnx, .bin)."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Tokenizer file when none sits beside the suspect's weights."),
    bundle: Path = typer.Option(..., "--bundle", help="The publisher's FILE.attest."),
    pubkey: Optional[Path] = typer.Option(None, "--pubkey", help="Trust exactly this public key (NAME.pub)."),
    trust: Optional[Path] = typer.Option(None, "--trust", help="Trust-store folder of .pub files (default: ./keys)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Override the bundle's match threshold."),
    evidence: Optional[Path] = typer.Option(None, "--evidence", help="Write an evidence bundle (CBOR) for archiving."),
    key: Optional[Path] = typer.Option(None, "--key", help="Sign the evidence with this verifier key."),
    passphrase_env: Optional[str] = typer.Option(None, "--passphrase-env", metavar="VAR", help="Passphrase variable for --key."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a self-contained HTML report."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="Write a PNG with both dogs side by side."),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object (schemas/report.schema.json)."),
) -> None:
    """Check a bundle's signature, recompute the suspect and decide whether it derives from the base.

    Exit codes: 0 valid signature and match, 1 valid signature and no match,
    2 inconclusive, 3 bad, tampered or untrusted bundle (nothing is recomputed),
    4 usage or input error.
    """
    from attest.verify import verify_suspect

    store = _trust(pubkey, trust)
    data = read_bounded(bundle, MAX_ATTESTATION_BYTES, what="bundle")
    opened = read_attestation(data, store)  # BundleError -> exit 3 before any model is read
    signer = _load_key(key, passphrase_env) if key is not None else None
    cm = load_model(suspect, tokenizer)
    with progress(show_progress(json_out)) as tracker:
        suspect_subject = _subject_of_suspect(cm, tracker)
        policy = None
        if threshold is not None:
            from attest.statement import StatementView

            base_policy = StatementView.parse(opened.document).policy
            policy = Policy(**{**base_policy.__dict__, "threshold": threshold,
                               "no_match_below": min(base_policy.no_match_below, threshold)})
        v = verify_suspect(opened, cm, policy=policy, precision=precision, suspect_subject=suspect_subject, tracker=tracker)
    result = write_outputs(data, opened.png, v, suspect.name, suspect_subject,
                           evidence=evidence, report=report, sheet=sheet, signer=signer)
    if json_out:
        emit_json(result)
    else:
        _print_verification(v)
        for label, path in (("sheet", sheet), ("evidence", evidence), ("report", report)):
            if path is not None:
                out_console.print(f"  wrote {label}: {path}")
    raise typer.Exit(int(v.verdict.exit_code))


def _looks_like_evidence(raw: bytes) -> bool:
    # A signed evidence file is a bare COSE_Sign1 (tag 18 = 0xd2); an unsigned
    # one is a map whose format names it.  Bundles are maps with another format.
    return raw[:1] == b"\xd2" or b"attest-evidence/1" in raw[:512]


@app.command()
def inspect(
    file: Path = typer.Argument(..., help="A .attest bundle or an evidence file."),
    pubkey: Optional[Path] = typer.Option(None, "--pubkey", help="Trust exactly this public key."),
    trust: Optional[Path] = typer.Option(None, "--trust", help="Trust-store folder (default: ./keys)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show a bundle or evidence file and re-verify every signature inside it, offline.

    Exit 0 when every signature is valid and trusted, 3 otherwise.
    """
    from attest.verify import _plain

    raw = read_bounded(file, MAX_EVIDENCE_BYTES, what="file")
    store = _trust(pubkey, trust)
    info: dict[str, Any] = {"file": str(file), "bytes": len(raw)}
    if _looks_like_evidence(raw):
        ev = read_evidence(raw, store)
        info["kind"] = "evidence"
        att, evidence_signed = ev.attestation, ev.signed
        info["evidence"] = {
            "time": ev.body["time"], "tool": _plain(ev.body["tool"]), "results": _plain(ev.body["results"]),
            "suspect": {k: _plain(v) for k, v in ev.body["suspect"].items() if k != "sketch"},
            "signed": evidence_signed is not None,
            "verifier_kid": evidence_signed.kid.hex() if evidence_signed else None,
            "verifier_issuer": evidence_signed.issuer if evidence_signed else None,
        }
    else:
        att = read_attestation(raw, store)
        info["kind"] = "attestation"
    doc = att.document
    ver = att.verified
    info["signature"] = {"valid": True, "kid": ver.kid.hex(), "issuer": ver.issuer, "subject": ver.subject, "iat": ver.iat}
    info["model"] = _plain(doc["model"])
    info["subject"] = _plain(doc["subject"])
    info["method"] = {k: _plain(v) for k, v in doc["method"].items() if k not in ("tokens", "pairs")}
    info["method"]["tokens"] = len(doc["method"]["tokens"])
    info["sketch_shape"] = list(doc["sketch"]["shape"])
    info["policy"] = _plain(doc["policy"])
    info["meta"] = _plain(doc.get("meta", {}))
    info["image"] = {"sha256": hashlib.sha256(att.png).hexdigest(), "bytes": len(att.png), **_plain(doc["image"])}
    if json_out:
        emit_json(info)
        return
    out_console.print(f"[bold]{info['kind']}[/bold] {file} ({len(raw):,} bytes) — all signatures [green]valid[/green]")
    out_console.print(f"  publisher kid {info['signature']['kid']}  issuer {ver.issuer!r}  subject {ver.subject!r}  iat {ver.iat}")
    out_console.print(f"  model {info['model'].get('family')} · {info['model'].get('layers')} layers · {info['model'].get('parameters', 0):,} parameters")
    out_console.print(f"  method {info['method'].get('name')} · {info['method']['tokens']} tokens · sketch {info['sketch_shape']}")
    out_console.print(f"  subject root {info['subject'].get('root', '')}")
    if info["kind"] == "evidence":
        e = info["evidence"]
        res = e["results"]
        out_console.print(f"  evidence {e['time']}  verdict {res.get('verdict')}  score {res.get('score')}  signed {e['signed']}")


@app.command()
def render(
    file: Path = typer.Argument(..., help="A .attest bundle (or evidence file) whose latent to draw."),
    out: Path = typer.Option(..., "--out", help="PNG to write."),
) -> None:
    """Re-draw the dog from a bundle's latent (no signature check: drawing is harmless)."""
    raw = read_bounded(file, MAX_EVIDENCE_BYTES, what="file")
    if _looks_like_evidence(raw):
        raise InputError(f"{file} is an evidence file; render takes the publisher's .attest bundle")
    doc = inspect_attestation(raw).document
    latent = np.frombuffer(doc["latent"], dtype="<f4")
    name = str(doc["image"].get("renderer", {}).get("name", "dog-v1"))
    img = get_renderer(name).render(latent)
    out.write_bytes(png_bytes(img))
    err_console.print(f"wrote {out}")
