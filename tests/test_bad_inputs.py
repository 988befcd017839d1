"""Hostile and broken inputs through the CLI: exit code 4, one clear line on stderr, never a traceback.

Most cases call `attest.cli.app.main` in-process with `sys.argv` patched; the
malicious pickle and a missing file also run as `python -m attest` in a fresh
process, the way a user would meet them.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable
from unittest.mock import patch

import pytest
import torch

INPUT_ERROR = 4


def run_cli(args: list[Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from attest.cli.app import main

    with patch.object(sys, "argv", ["attest", *map(str, args)]):
        with pytest.raises(SystemExit) as exc:
            main()
    _out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), err


def assert_input_error(code: int, err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    assert code == INPUT_ERROR, f"exit {code}, stderr: {err}"
    assert "error:" in err, err
    for needle in needles:
        assert needle.lower() in err.lower(), f"{needle!r} not in: {err}"


@pytest.fixture
def good(tiny_model: Callable[..., Path]) -> Path:
    return tiny_model("llama")


@pytest.fixture
def broken(good: Path, tmp_path: Path) -> Path:
    """A private copy of a good model folder, to damage."""
    folder = tmp_path / "broken"
    shutil.copytree(good, folder)
    return folder


def _read_safetensors(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write_safetensors(path: Path, header: dict[str, Any] | bytes, data: bytes) -> None:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)


# --------------------------------------------------------------------------- files
def test_missing_file(good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-model"
    code, err = run_cli(["compare", missing, good], capsys)
    assert_input_error(code, err, str(missing), "no such file")


def test_folder_without_weights(good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"model_type": "llama"}))
    code, err = run_cli(["compare", good, empty], capsys)
    assert_input_error(code, err, "no model weights found")


def test_truncated_safetensors(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = broken / "model.safetensors"
    raw = st.read_bytes()
    st.write_bytes(raw[: len(raw) * 2 // 3])
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, "model.safetensors", "truncated")


def test_truncated_inside_the_header(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = broken / "model.safetensors"
    st.write_bytes(st.read_bytes()[:100])
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, "model.safetensors", "truncated")


def test_garbage_header_json(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = broken / "model.safetensors"
    _header, data = _read_safetensors(st)
    _write_safetensors(st, b'{"model.embed_tokens.weight": {"dtype": "F32", "shape": [512, 6', data)
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, "model.safetensors", "corrupt safetensors header")


def test_header_not_utf8(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = broken / "model.safetensors"
    _header, data = _read_safetensors(st)
    _write_safetensors(st, b"\xff\xfe\x00garbage\x80\x81", data)
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, "corrupt safetensors header")


def test_offsets_beyond_the_file(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = broken / "model.safetensors"
    header, data = _read_safetensors(st)
    name = "model.layers.1.self_attn.q_proj.weight"
    size = header[name]["data_offsets"][1] - header[name]["data_offsets"][0]
    header[name]["data_offsets"] = [len(data), len(data) + size]
    _write_safetensors(st, header, data)
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, name, "past the end of the file")


def test_offsets_not_matching_shape(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = broken / "model.safetensors"
    header, data = _read_safetensors(st)
    name = "model.layers.0.mlp.up_proj.weight"
    header[name]["shape"] = [128, 65]
    _write_safetensors(st, header, data)
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, name, "do not match shape")


def test_unknown_dtype(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = broken / "model.safetensors"
    header, data = _read_safetensors(st)
    name = "model.norm.weight"
    header[name]["dtype"] = "Q4_K"
    _write_safetensors(st, header, data)
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, name, "unsupported dtype", "Q4_K")


def test_invalid_config_json(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (broken / "config.json").write_text('{"model_type": "llama", ')
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, "config.json", "not valid JSON")


# --------------------------------------------------------------------------- inconsistent models
def test_q_projection_of_the_wrong_width(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file, save_file

    st = broken / "model.safetensors"
    tensors = load_file(str(st))
    tensors["model.layers.0.self_attn.q_proj.weight"] = tensors["model.layers.0.self_attn.q_proj.weight"][:48].clone()
    save_file(tensors, str(st))
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, "layer 0 q has shape (48, 64), expected (64, 64)")


def test_config_hidden_size_mismatch(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = json.loads((broken / "config.json").read_text())
    cfg["hidden_size"] = 96
    (broken / "config.json").write_text(json.dumps(cfg))
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, "hidden size 96", "embedding width 64")


def test_config_layer_count_mismatch(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = json.loads((broken / "config.json").read_text())
    cfg["num_hidden_layers"] = 5
    (broken / "config.json").write_text(json.dumps(cfg))
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, "5 layers", "checkpoint has 2")


def test_unsupported_model_type(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = json.loads((broken / "config.json").read_text())
    cfg["model_type"] = "t5"
    (broken / "config.json").write_text(json.dumps(cfg))
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, "model_type 't5' is not supported", "supported families")
    for family in ("llama", "gpt_neox", "falcon", "mixtral", "qwen3_moe", "bert"):
        assert family in err


# --------------------------------------------------------------------------- pickles
class _Evil:
    """Pickles to a call of os.system: what a booby-trapped checkpoint does."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def _malicious_checkpoint(good: Path, folder: Path, marker: Path) -> Path:
    folder.mkdir()
    shutil.copy(good / "config.json", folder / "config.json")
    shutil.copy(good / "tokenizer.json", folder / "tokenizer.json")
    payload = {"model.embed_tokens.weight": torch.zeros(512, 64), "model.norm.weight": _Evil(f"touch {marker}")}
    torch.save(payload, folder / "pytorch_model.bin")  # torch's zip format, pickle inside
    assert not marker.exists()
    return folder


def test_malicious_pickle_is_never_run(good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    evil = _malicious_checkpoint(good, tmp_path / "evil", marker)
    code, err = run_cli(["compare", good, evil], capsys)
    assert not marker.exists(), "the pickle ran code"
    assert_input_error(code, err, "pytorch_model.bin", "safe loader", "posix.system")
    assert "weights_only" not in err and "safe_globals" not in err, err


def test_malicious_pickle_in_a_fresh_process(good: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _malicious_checkpoint(good, tmp_path / "evil", marker)
    proc = subprocess.run(
        [sys.executable, "-m", "attest", "compare", str(evil / "pytorch_model.bin"), str(good)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert not marker.exists(), "the pickle ran code"
    assert_input_error(proc.returncode, proc.stderr, "safe loader")
    assert "weights_only" not in proc.stderr, proc.stderr


def test_missing_file_in_a_fresh_process(good: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "attest", "compare", str(good), str(tmp_path / "gone.safetensors")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_input_error(proc.returncode, proc.stderr, "gone.safetensors", "no such file")


# --------------------------------------------------------------------------- options
def test_layers_out_of_range(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["compare", good, good, "--layers", "99"], capsys)
    assert_input_error(code, err, "--layers 99", "out of range", "2 layers")


def test_layers_unparseable(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["compare", good, good, "--layers", "top:3"], capsys)
    assert_input_error(code, err, "cannot parse --layers")


def test_unknown_method(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["compare", good, good, "--method", "huref-2023"], capsys)
    assert_input_error(code, err, "unknown method 'huref-2023'", "attest-v1", "huref-2024")
