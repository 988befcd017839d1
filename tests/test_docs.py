"""docs/cli.md names every command and every option the CLI has."""

from pathlib import Path

import typer.main

from attest.cli.app import build_app

ROOT = Path(__file__).resolve().parents[1]


def test_cli_doc_covers_every_command_and_option() -> None:
    app = build_app()
    doc = (ROOT / "docs" / "cli.md").read_text()
    group = typer.main.get_command(app)
    missing = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        if f"attest {name}" not in doc:
            missing.append(f"command {name}")
        for param in cmd.params:
            for opt in param.opts:
                if opt.startswith("--") and opt != "--help" and opt not in doc:
                    missing.append(f"{name} {opt}")
    assert not missing, missing
