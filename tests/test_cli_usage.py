"""Usage mistakes through the installed `attest` console script: exit 4, one clean message, no traceback.

These run the real entry point in a subprocess, as a user would, so that a
change in how typer or click raise usage errors (typer 0.29 vendors its own
click) cannot turn a typo into "internal error" again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = shutil.which("attest", path=str(Path(sys.executable).parent)) or shutil.which("attest")

COMMANDS = ("compare", "fingerprint", "issue", "verify", "inspect", "render", "keygen", "demo", "gallery")


def attest(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert SCRIPT, "the attest console script is not installed in this environment"
    env = dict(os.environ, COLUMNS="120")
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


def assert_usage_error(res: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert res.returncode == 4, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    assert fragment.lower() in res.stderr.lower(), res.stderr
    assert "--help" in res.stderr, res.stderr


def test_unknown_command_exits_4() -> None:
    assert_usage_error(attest("bogus"), "No such command")


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option_exits_4(command: str) -> None:
    assert_usage_error(attest(command, "--bogus", "x"), "No such option")


@pytest.mark.parametrize("command", ["compare", "fingerprint", "issue", "verify", "inspect", "render"])
def test_missing_argument_exits_4(command: str) -> None:
    assert_usage_error(attest(command), "Missing")


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "a", "b", "--tokens", "many"],
        ["fingerprint", "m", "--out", "o", "--threads", "two"],
        ["gallery", "--out", "g", "--n", "x"],
        ["verify", "s", "--bundle", "b", "--threshold", "high"],
    ],
)
def test_bad_value_exits_4(argv: list[str]) -> None:
    assert_usage_error(attest(*argv), "Invalid value")


def test_bad_layers_exits_4_with_message(tmp_path: Path) -> None:
    from helpers.models import save_tiny_model

    save_tiny_model("llama", tmp_path / "m", seed=1)
    res = attest("compare", str(tmp_path / "m"), str(tmp_path / "m"), "--layers", "7-2")
    assert res.returncode == 4 and "Traceback" not in res.stderr and "layers" in res.stderr.lower(), res.stderr


def test_nan_threshold_is_refused(tmp_path: Path) -> None:
    res = attest("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--threshold", "nan")
    assert res.returncode == 4 and "Traceback" not in res.stderr and "threshold" in res.stderr, res.stderr


def test_no_arguments_shows_help_and_exits_4() -> None:
    res = attest()
    assert res.returncode == 4 and "Traceback" not in res.stderr
    assert "Commands" in res.stdout + res.stderr


def test_help_exits_0_and_teaches_exit_codes() -> None:
    res = attest("--help")
    assert res.returncode == 0 and "Exit codes" in res.stdout
    for command in COMMANDS:
        sub = attest(command, "--help")
        assert sub.returncode == 0 and "Usage" in sub.stdout, (command, sub.stderr)
