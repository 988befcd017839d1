"""The `attest` command: a typer app that each command module registers into.

Exit codes (docs/cli.md): 0 match, 1 no match, 2 inconclusive,
3 bad/tampered/untrusted bundle, 4 usage or input error.
"""

from __future__ import annotations

import sys

import typer

from attest.errors import AttestError, ExitCode

app = typer.Typer(
    name="attest",
    help=(
        "Verifiable fingerprints of large language models.\n\n"
        "Exit codes: 0 match, 1 no match, 2 inconclusive, "
        "3 bad or untrusted bundle, 4 usage or input error, 5 internal error."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Each module adds its commands to `app` on import; keep one line per module
    # so parallel work on different commands never touches the same line.
    from attest.cli import bundle_cmds, compare_cmd  # noqa: F401
    # --- command modules (one import per line) ---
    from attest.cli import demo_cmd  # noqa: F401
    from attest.cli import gallery_cmd  # noqa: F401
    from attest.cli import keygen_cmd  # noqa: F401
    from attest.cli import registry_cmd  # noqa: F401
    from attest.cli import identify_cmd  # noqa: F401


def main() -> None:
    _register()
    try:
        # Click's own usage errors exit 2, which we reserve for "inconclusive".
        rv = app(standalone_mode=False)
        if isinstance(rv, int):
            sys.exit(rv)
    except AttestError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(int(ExitCode.INPUT_ERROR))
    except Exception as exc:  # click.exceptions.UsageError and friends
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(int(ExitCode.INPUT_ERROR))
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        # A bug, not a verdict: never let it look like exit 1 ("no match").
        import traceback

        traceback.print_exc()
        typer.echo(f"internal error: {exc.__class__.__name__}: {exc} (please report this)", err=True)
        sys.exit(int(ExitCode.INTERNAL_ERROR))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
