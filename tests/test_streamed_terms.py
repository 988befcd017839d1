"""Block-streamed layer terms equal the whole-matrix terms, and mapped pages are dropped safely."""

from __future__ import annotations

import hashlib

import pytest
import torch
from helpers.models import save_tiny_model

from attest.arch.detect import load_model
from attest.arch.spec import NormKind
from attest.invariants import blocks
from attest.invariants import terms as T
from attest.invariants.compute import _stack_mlps, layer_terms, make_probe
from attest.invariants.methods import DEFAULT, HUREF_2024
from attest.sources import pages


def whole_matrix_terms(layer, probe, method, model, dtype) -> dict[str, torch.Tensor]:
    """The terms as one product per matrix (the implementation before block streaming)."""
    fold = method.fold_gains
    x = probe.x

    def p(gain):
        return (x * gain).to(dtype) if (fold and gain is not None) else x.to(dtype)

    x_attn, x_ffn, x_ao, x_fo = p(layer.attn_norm), p(layer.ffn_norm), p(layer.attn_out_norm), p(layer.ffn_out_norm)
    out = {"qk": T.qk(x_attn, layer.attn, dtype), "vo": T.vo(x_attn, x_ao, layer.attn, dtype)}
    ffn = _stack_mlps(layer.experts + layer.shared_experts if layer.experts else [layer.mlp])
    if method.huref_ffn:
        w_in = ffn.up.to(dtype) * ffn.gate.to(dtype) if ffn.gate is not None else ffn.up
        out["ffn"] = T.bilinear(x_ffn, w_in, ffn.down, x_fo, dtype)
        return out
    out["up"] = T.bilinear(x_ffn, ffn.up, ffn.down, x_fo, dtype)
    if ffn.gate is not None:
        center = method.center_layernorm and model.norm_kind == NormKind.LAYER
        c = T.neuron_coupling(
            ffn.up, ffn.down, layer.ffn_norm if fold else None, layer.ffn_out_norm if fold else None, center
        )
        out["gate"] = T.weighted_gram(x_ffn, ffn.gate, c, dtype)
    return out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


# GQA with 2 query heads per KV group (llama), per-head q/k norms (qwen3), experts plus a shared
# expert (qwen2_moe), transposed Conv1D weights and LayerNorm centring (gpt2).
@pytest.mark.parametrize("case", ["llama", "qwen3", "qwen2_moe", "gpt2"])
@pytest.mark.parametrize("method", [DEFAULT, HUREF_2024], ids=["attest-v1", "huref-2024"])
def test_tiny_blocks_give_the_whole_matrix_terms(tmp_path, case: str, method) -> None:
    model = load_model(save_tiny_model(case, tmp_path / case, seed=3))
    # More probe rows than hidden units for one case, fewer for the others, so both
    # associations of the FFN products (via neurons, via hidden) are exercised.
    n = 96 if case == "llama" else 40
    probe = make_probe(model, list(range(5, 5 + n)), method)
    layer = model.layer(1)
    reference = whole_matrix_terms(layer, probe, method, model, torch.float32)
    # 1 KiB: a handful of neurons per block and one KV group per block, experts split across blocks.
    with blocks.block_budget(1024):
        streamed = dict(layer_terms(layer, probe, method, model, torch.float32))
    with blocks.block_budget(1 << 30):
        one_block = dict(layer_terms(layer, probe, method, model, torch.float32))
    for name, ref in reference.items():
        assert _rel(streamed[name], ref) < 1e-5, name
        assert _rel(one_block[name], ref) < 1e-5, name
        # and not trivially: the term is a real n×n matrix with spread
        assert streamed[name].shape == (n, n) and float(ref.std()) > 0


def test_bf16_blocks_stay_within_the_precision_tolerance(tmp_path) -> None:
    model = load_model(save_tiny_model("qwen2_moe", tmp_path / "m", seed=4))
    probe = make_probe(model, list(range(5, 45)), DEFAULT)
    layer = model.layer(0)
    reference = whole_matrix_terms(layer, probe, DEFAULT, model, torch.float32)
    with blocks.block_budget(1024):
        streamed = dict(layer_terms(layer, probe, DEFAULT, model, torch.bfloat16))
    for name, ref in reference.items():
        za, zb = T.standardise(streamed[name]), T.standardise(ref)
        assert za is not None and zb is not None
        # docs/method.md "Precision": bf16 moves similarities by < 1e-3
        assert float((za.float() * zb.float()).mean()) > 1 - 1e-3, name


def test_released_pages_read_back_the_file_and_writes_never_reach_it(tmp_path) -> None:
    folder = save_tiny_model("llama", tmp_path / "m", seed=5)
    weights = folder / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    model = load_model(folder)
    name = "model.layers.0.mlp.up_proj.weight"
    view = model.source.get(name)
    assert pages.is_mapped(view)
    before = view.clone()
    view[0, 0] = 123.0  # copy-on-write: a private page, never the file
    assert float(view[0, 0]) == 123.0
    pages.release(view)
    assert torch.equal(view, before)  # the page is read again from the file
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == digest
    # A tensor that is not a view of a registered mapping is left alone.
    own = torch.randn(64, 64)
    kept = own.clone()
    pages.release(own)
    assert not pages.is_mapped(own) and torch.equal(own, kept)
    model.source.close()


def test_bad_block_budget_is_an_input_error(monkeypatch) -> None:
    from attest.errors import InputError

    monkeypatch.setenv(blocks.ENV, "12")
    with pytest.raises(InputError, match="at least"):
        blocks.budget()
    monkeypatch.setenv(blocks.ENV, "lots")
    with pytest.raises(InputError, match="whole number"):
        blocks.budget()
    monkeypatch.setenv(blocks.ENV, str(1 << 20))
    assert blocks.budget() == 1 << 20
