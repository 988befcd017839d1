"""The `attest` command: one typer app; each command module registers onto it.

Exit codes (docs/cli.md): 0 match, 1 no match, 2 inconclusive,
3 bad/tampered/untrusted bundle, 4 usage or input error, 5 internal error.
Command modules never import this one (they expose `register(app)`), so
imports point one way: app -> commands -> attest.api.
"""

from __future__ import annotations

import sys
from types import ModuleType

import typer

from attest.cli import (
    bundle_cmds,
    compare_cmd,
    demo_cmd,
    gallery_cmd,
    identify_cmd,
    keygen_cmd,
    registry_cmd,
    scan_cmd,
    transparency_cmds,
)
from attest.errors import AttestError, ExitCode

HELP = (
    "Verifiable fingerprints of large language models.\n\n"
    "A publisher signs a fingerprint of its base model (issue); anyone holding the signed bundle "
    "checks a suspect model against it (verify) and archives signed evidence (inspect re-checks it). "
    "compare scores two models you hold yourself.\n\n"
    "Exit codes: 0 match, 1 no match, 2 inconclusive, "
    "3 bad or untrusted bundle or evidence, 4 usage or input error, 5 internal error."
)

COMMAND_MODULES = (
    compare_cmd,
    bundle_cmds,
    identify_cmd,
    registry_cmd,
    scan_cmd,
    transparency_cmds,
    keygen_cmd,
    demo_cmd,
    gallery_cmd,
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="attest",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    for module in COMMAND_MODULES:
        module.register(app)
    return app


def _click_modules() -> list[ModuleType]:
    """The exception modules of every click that typer may raise from.

    typer >= 0.29 vendors its own click (`typer._click`) whose classes are not
    click's; older typer raises plain click's.  Matching both keeps a usage
    mistake a usage error (exit 4) whatever was installed.
    """
    found: list[ModuleType] = []
    try:
        from typer._click import exceptions as vendored  # type: ignore[import-not-found,unused-ignore]

        found.append(vendored)
    except ImportError:
        pass
    try:
        import click.exceptions as plain

        found.append(plain)
    except ImportError:
        pass
    return found


def _classes(name: str) -> tuple[type[BaseException], ...]:
    return tuple(getattr(m, name) for m in _click_modules() if isinstance(getattr(m, name, None), type))


def main(argv: list[str] | None = None) -> None:
    usage_errors = _classes("ClickException")
    exits: tuple[type[BaseException], ...] = (typer.Exit, *_classes("Exit"))
    aborts: tuple[type[BaseException], ...] = (typer.Abort, *_classes("Abort"))
    try:
        # Click's own usage errors would exit 2, which here means "inconclusive".
        rv = build_app()(args=argv, standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except AttestError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if isinstance(exc, exits):
            sys.exit(int(getattr(exc, "exit_code", 0)))
        if isinstance(exc, aborts):
            typer.echo("aborted", err=True)
            sys.exit(int(ExitCode.INPUT_ERROR))
        if isinstance(exc, usage_errors):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(int(ExitCode.INPUT_ERROR))
        # A bug, not a verdict: never let it look like exit 1 ("no match").
        import traceback

        traceback.print_exc()
        typer.echo(f"internal error: {exc.__class__.__name__}: {exc} (please report this)", err=True)
        sys.exit(int(ExitCode.INTERNAL_ERROR))
