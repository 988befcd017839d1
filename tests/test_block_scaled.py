"""FP8 e4m3 weights with 128×128-style block scales (DeepSeek-V3 / Kimi-K2 releases), read as their values.

A tiny real DeepseekV3 model is quantised the way those checkpoints are
(per block: scale_inv = amax / 448, fp8 = W / scale_inv; embeddings, norms,
the router and the head stay unquantised), with 16×16 blocks so that blocks
and ragged edges occur at this size.  The reference is the same weights
dequantised by the test's own code and saved as an ordinary bf16 checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.models import build_tiny_model, save_model

from attest.arch.detect import load_model
from attest.errors import InputError
from attest.invariants.methods import DEFAULT
from attest.scoring.decision import Verdict
from attest.workflows.compare import compare_models

BLOCK = 16
E4M3_MAX = 448.0
QUANT = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [BLOCK, BLOCK]}


def _quantised(name: str, w: torch.Tensor) -> bool:
    """What DeepSeek-V3 quantises: the linear projections, not embeddings, norms, router or head."""
    return w.dim() == 2 and name.endswith("_proj.weight")


def _expand(scale: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return scale.repeat_interleave(BLOCK, 0)[: shape[0]].repeat_interleave(BLOCK, 1)[:, : shape[1]]


def _quantise(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = -(-w.shape[0] // BLOCK), -(-w.shape[1] // BLOCK)
    padded = torch.zeros(rows * BLOCK, cols * BLOCK)
    padded[: w.shape[0], : w.shape[1]] = w
    amax = padded.reshape(rows, BLOCK, cols, BLOCK).abs().amax((1, 3)).clamp_min(1e-12)
    scale = amax / E4M3_MAX
    return (w / _expand(scale, w.shape)).to(torch.float8_e4m3fn), scale.float()


def _write(folder: Path, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from safetensors.torch import load_file

    root = tmp_path_factory.mktemp("fp8")
    model = build_tiny_model("deepseek_v3", seed=3)
    original = save_model(model, root / "original")  # per-expert tensors, as on the hub
    state = load_file(str(original / "model.safetensors"))
    config = json.loads((original / "config.json").read_text())
    fp8: dict[str, torch.Tensor] = {}
    ref: dict[str, torch.Tensor] = {}
    for name, w in state.items():
        if _quantised(name, w):
            q, scale = _quantise(w)
            fp8[name], fp8[name + "_scale_inv"] = q, scale
            ref[name] = (q.float() * _expand(scale, w.shape)).to(torch.bfloat16)
        else:
            fp8[name] = ref[name] = w
    out = {"original": original}
    for key, tensors, cfg in (("fp8", fp8, {**config, "quantization_config": QUANT}), ("ref", ref, config)):
        folder = root / key
        shutil.copytree(original, folder)
        out[key] = _write(folder, tensors, cfg)
    return out


def test_fp8_blocks_read_as_their_dequantised_values(checkpoints: dict[str, Path]) -> None:
    import dataclasses

    a, b = load_model(checkpoints["fp8"]), load_model(checkpoints["ref"])
    assert not [w for w in a.warnings if "ignored" in w], a.warnings  # scale tensors are part of the format
    assert not any(n.endswith("_scale_inv") for n in a.source.names())
    for i in range(a.n_layers):
        la, lb = a.layer(i), b.layer(i)
        for f in dataclasses.fields(la.attn):
            x, y = getattr(la.attn, f.name), getattr(lb.attn, f.name)
            assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y, f"layer {i} {f.name}"
        for ma, mb in zip(
            la.experts + la.shared_experts + [la.mlp] * bool(la.mlp),
            lb.experts + lb.shared_experts + [lb.mlp] * bool(lb.mlp),
            strict=True,
        ):
            assert ma is not None and mb is not None
            assert torch.equal(ma.up, mb.up) and torch.equal(ma.gate, mb.gate) and torch.equal(ma.down, mb.down)
    same = compare_models(a, b, DEFAULT.with_options(n_tokens=128), precision="fp32")
    assert same.score > 0.99999 and same.verdict == Verdict.MATCH
    # Against the unquantised original: the fp8 release is a derivative (quantisation noise only).
    base = compare_models(load_model(checkpoints["original"]), a, DEFAULT.with_options(n_tokens=128), precision="fp32")
    assert base.verdict == Verdict.MATCH, (base.score, base.reasons)


def test_row_reads_match_full_reads(checkpoints: dict[str, Path]) -> None:
    src = load_model(checkpoints["fp8"]).source
    name = "model.layers.1.self_attn.q_b_proj.weight"
    rows = [0, 5, 17, 33, 47]
    assert torch.equal(src.get_rows(name, rows), src.get(name)[rows])


def _corrupt(checkpoints: dict[str, Path], tmp_path: Path, edit: Any, config_edit: Any = None) -> Path:
    from safetensors.torch import load_file

    folder = tmp_path / "bad"
    shutil.copytree(checkpoints["fp8"], folder)
    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    config = json.loads((folder / "config.json").read_text())
    return _write(folder, tensors, config_edit(config) if config_edit else config)


def test_hostile_block_scales_are_clean_input_errors(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    name = "model.layers.1.self_attn.kv_b_proj.weight"

    def wrong_shape(t: dict[str, torch.Tensor]) -> None:
        t[name + "_scale_inv"] = torch.ones(1, 1)

    with pytest.raises(InputError, match="scale_inv' has shape"):
        load_model(_corrupt(checkpoints, tmp_path / "a", wrong_shape))

    def no_scale(t: dict[str, torch.Tensor]) -> None:
        del t[name + "_scale_inv"]

    with pytest.raises(InputError, match="no .*block scale"):
        load_model(_corrupt(checkpoints, tmp_path / "b", no_scale)).layer(1)
    for size in ([0, 128], [128], "128", [True, 128]):
        bad = _corrupt(checkpoints, tmp_path / f"c{size!s:.3}", lambda t: None,
                       lambda c, s=size: {**c, "quantization_config": {**QUANT, "weight_block_size": s}})  # fmt: skip
        with pytest.raises(InputError, match="weight_block_size"):
            load_model(bad)
