"""The public API: docs/api.md's example runs as written, and the API's promises hold."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from helpers.models import save_tiny_model

import attest
from attest.crypto.keys import generate_keypair

ROOT = Path(__file__).resolve().parents[1]


def _example() -> str:
    text = (ROOT / "docs" / "api.md").read_text()
    return re.search(r"## Example.*?```python\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("api")
    save_tiny_model("llama", root / "base", seed=41)
    shutil.copytree(root / "base", root / "suspect")
    trust = root / "trust"
    trust.mkdir()
    generate_keypair(root / "acme", None)
    shutil.copy(root / "acme.pub", trust / "acme.pub")
    generate_keypair(root / "auditor", None)
    return {"root": root, "base": root / "base", "suspect": root / "suspect", "trust": trust}


def test_docs_example_runs(models: dict[str, Path], tmp_path: Path) -> None:
    scope = {
        "base_dir": models["base"],
        "suspect_dir": models["suspect"],
        "key_path": models["root"] / "acme.key",
        "trust_dir": models["trust"],
        "out_dir": tmp_path,
        "auditor_key": models["root"] / "auditor.key",
        "auditor_pub": models["root"] / "auditor.pub",
    }
    exec(compile(_example(), "docs/api.md", "exec"), scope)  # noqa: S102 - our own documentation
    assert (tmp_path / "evidence.cbor").is_file()


def test_api_leaves_torch_threads_alone_unless_asked(models: dict[str, Path]) -> None:
    before = torch.get_num_threads()
    attest.compare(models["base"], models["suspect"], tokens=64)
    assert torch.get_num_threads() == before
    attest.compare(models["base"], models["suspect"], tokens=64, threads=1)
    assert torch.get_num_threads() == before


def test_results_have_json_and_errors_are_typed(models: dict[str, Path], tmp_path: Path) -> None:
    c = attest.compare(models["base"], models["suspect"], tokens=64)
    assert c.to_json()["verdict"] == "match"
    with pytest.raises(attest.InputError):
        attest.compare(models["base"], tmp_path / "missing", tokens=64)
    with pytest.raises(attest.InputError):
        attest.verify(models["suspect"], tmp_path / "missing.attest", trust=models["trust"])
    with pytest.raises(attest.BundleError):
        bad = tmp_path / "bad.attest"
        bad.write_bytes(b"\xa0")
        attest.verify(models["suspect"], bad, trust=models["trust"])
    assert issubclass(attest.BundleError, attest.AttestError) and attest.BundleError.exit_code == 3


def test_import_attest_is_cheap() -> None:
    import subprocess
    import sys

    code = "import sys, attest; print('torch' in sys.modules, attest.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False"
