"""`--device`: an unavailable or unknown device is a clear input error; on CUDA, scores match the CPU's."""

from __future__ import annotations

import sys
from unittest.mock import patch

import pytest
import torch
from helpers.models import save_tiny_model

from attest.errors import InputError
from attest.invariants.device import current_device, resolve_device, use_device

INPUT_ERROR = 4
HAS_CUDA = torch.cuda.is_available()


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from attest.cli.app import main

    with patch.object(sys, "argv", ["attest", *args]):
        with pytest.raises(SystemExit) as exc:
            main()
    _out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), err


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is present here")
@pytest.mark.parametrize("command", ["fingerprint", "compare"])
def test_unavailable_cuda_is_an_input_error(tmp_path, capsys, command: str) -> None:
    model = save_tiny_model("llama", tmp_path / "m", seed=1)
    args = [command, str(model)] + (["--out", str(tmp_path / "fp")] if command == "fingerprint" else [str(model)])
    code, err = _cli([*args, "--device", "cuda"], capsys)
    assert code == INPUT_ERROR, err
    assert "Traceback" not in err
    assert "device 'cuda' is not available" in err
    assert not (tmp_path / "fp").exists()  # nothing written


def test_unknown_device_is_an_input_error(tmp_path, capsys) -> None:
    model = save_tiny_model("llama", tmp_path / "m", seed=1)
    code, err = _cli(["fingerprint", str(model), "--out", str(tmp_path / "fp"), "--device", "tpu"], capsys)
    assert code == INPUT_ERROR and "unknown device 'tpu'" in err and "Traceback" not in err


def test_auto_prefers_cuda_then_mps_then_cpu() -> None:
    mps = getattr(torch.backends, "mps", None)
    expected = "cuda" if HAS_CUDA else ("mps" if mps is not None and mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert current_device().type == "cpu"  # outside a use_device block
    with use_device("cpu") as dev:
        assert dev.type == "cpu" and current_device() == dev
    with pytest.raises(InputError):
        resolve_device("CUDA")  # names are exact


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_scores_agree_with_cpu(tmp_path) -> None:
    import attest

    a = save_tiny_model("qwen2_moe", tmp_path / "a", seed=1)
    b = save_tiny_model("qwen2_moe", tmp_path / "b", seed=2)
    for precision in ("fp32", "bf16"):
        cpu = attest.compare(a, b, precision=precision, device="cpu")
        gpu = attest.compare(a, b, precision=precision, device="cuda")
        # docs/method.md "Precision": bf16 moves scores by < 1e-3; fp32 kernels differ by rounding only
        assert abs(cpu.score - gpu.score) < 1e-3, (precision, cpu.score, gpu.score)
        assert abs(cpu.layer_matrix - gpu.layer_matrix).max() < 2e-3


def test_bf16_only_where_the_cpu_and_onednn_have_it() -> None:
    from attest.invariants.precision import bf16_matmul_is_native

    native = "fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni"
    assert bf16_matmul_is_native(native, {})
    assert bf16_matmul_is_native("avx2 amx_bf16 amx_tile", {})
    assert not bf16_matmul_is_native("fpu sse2 avx2 fma f16c avx_vnni", {})  # an AVX2-only CPU
    assert not bf16_matmul_is_native("avx512f avx512_bf16x", {})  # whole flags only
    # oneDNN capped below its bf16 kernels (the AVX2 emulation of bench/isa_paths.py)
    assert not bf16_matmul_is_native(native, {"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert not bf16_matmul_is_native(native, {"DNNL_MAX_CPU_ISA": "avx512_core"})
    assert bf16_matmul_is_native(native, {"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"})
