"""`attest keygen`: create a publisher's Ed25519 key pair."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from attest.crypto.keys import generate_keypair, private_key_path, public_key_path
from attest.errors import InputError


def _passphrase(env_var: str | None, prompt: bool | None, out: Path) -> bytes | None:
    if env_var:
        value = os.environ.get(env_var)
        if value is None:
            raise InputError(f"--passphrase-env: environment variable {env_var} is not set")
        if not value:
            raise InputError(f"--passphrase-env: environment variable {env_var} is empty")
        return value.encode("utf-8")
    # Ask by default only when a person is at the keyboard; scripts and CI
    # (no TTY) get an unencrypted key unless they pass --passphrase-env.
    if prompt is None:
        prompt = sys.stdin.isatty()
    if not prompt:
        return None
    value = typer.prompt(
        f"Passphrase for {private_key_path(out)} (empty for none)",
        default="",
        show_default=False,
        hide_input=True,
        confirmation_prompt=True,
    )
    return value.encode("utf-8") if value else None


def keygen(
    out: Path = typer.Option(
        ...,
        "--out",
        metavar="DIR/NAME",
        help="Writes DIR/NAME.key (private, mode 0600) and DIR/NAME.pub (public). Never overwrites.",
    ),
    passphrase_env: str | None = typer.Option(
        None,
        "--passphrase-env",
        metavar="VAR",
        help="Encrypt the private key with the passphrase in environment variable VAR.",
    ),
    prompt: bool | None = typer.Option(
        None,
        "--prompt/--no-prompt",
        help="Ask for a passphrase (default: ask when run from a terminal).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON object instead of text."),
) -> None:
    """Create an Ed25519 signing key pair and print its key id (kid).

    Publish NAME.pub so verifiers can add it to their trust store; keep
    NAME.key secret and out of version control.
    """
    if passphrase_env and prompt:
        raise InputError("use either --passphrase-env or --prompt, not both")
    # Fail on existing files before asking for a passphrase nobody will use.
    for p in (private_key_path(out), public_key_path(out)):
        if p.exists() or p.is_symlink():
            raise InputError(f"keygen: {p} already exists; refusing to overwrite a key")
    passphrase = _passphrase(passphrase_env, prompt, out)
    info = generate_keypair(out, passphrase)
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "kid": info.kid_hex,
                    "private_key": str(info.private_path),
                    "public_key": str(info.public_path),
                    "encrypted": info.encrypted,
                },
                indent=2,
            )
        )
        return
    typer.echo(f"kid          {info.kid_hex}")
    typer.echo(f"private key  {info.private_path}  (keep secret{'; encrypted' if info.encrypted else ''})")
    typer.echo(f"public key   {info.public_path}  (publish; verifiers add it to their trust store)")
    if not info.encrypted:
        typer.echo("warning: the private key is not encrypted (use --passphrase-env VAR or --prompt)", err=True)


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen)
