"""Session fixtures shared by the tests; the helpers themselves live in tests/helpers/ (a package on
pytest's pythonpath, see pyproject.toml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from helpers.models import save_tiny_model


@pytest.fixture(autouse=True, scope="session")
def _attest_home(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Keep the local verifier key (and any attest config) out of the real home folder."""
    import os

    home = tmp_path_factory.mktemp("attest-home")
    before = os.environ.get("ATTEST_HOME")
    os.environ["ATTEST_HOME"] = str(home)
    yield home
    if before is None:
        os.environ.pop("ATTEST_HOME", None)
    else:
        os.environ["ATTEST_HOME"] = before


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory fixture: `tiny_model(case, seed=0)` -> saved folder, built once per session.

    Treat the folder as read-only; copy it before editing.
    """
    cache: dict[tuple[str, int], Path] = {}

    def make(case: str, seed: int = 0) -> Path:
        key = (case, seed)
        if key not in cache:
            cache[key] = save_tiny_model(case, tmp_path_factory.mktemp(f"{case}-s{seed}"), seed)
        return cache[key]

    return make
