"""GGUF files of the state-space and hybrid families (Mamba-2, Falcon-H1, Qwen3-Next).

Each tiny real `transformers` model is saved as safetensors and converted to
GGUF the way llama.cpp's converter does (`tests/helpers/gguf_ssm.py`, which
follows conversion/mamba.py Mamba2Model, falcon_h1.py FalconH1Model and
qwen.py Qwen3NextModel, with gguf-py's own name map).  Read back:

- the canonical model from the GGUF equals the one from safetensors, tensor
  by tensor, mixer parts and sizes included; for Falcon-H1 each part equals
  the safetensors one times the muP multiplier the converter folded into it
  (read from the config, as the converter does);
- `attest compare` scores the GGUF against its original ~1 (a match) and
  against another seed's original a no-match; a bundle issued from the
  safetensors original verifies the GGUF (and refuses another seed's);
- what the converter changed is really in the file (ssm_a = -exp(A_log), the
  gated norm as [G, C/G], the regrouped attn_qkv), so reading it back is not
  a no-op.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from helpers.gguf_fixtures import byte_level_tokens, write_tokenizer_json
from helpers.gguf_ssm import SSM_ARCHS, convert_ssm_model
from helpers.models import build_tiny_model, save_model

import attest
from attest.arch.canonical import CanonicalModel
from attest.arch.detect import load_model
from attest.errors import InputError
from attest.scoring.decision import Verdict
from attest.sources.gguf_source import GGUFSource

VOCAB = 512
CASES = ["mamba2", "falcon_h1", "falcon_h1-nonorm", "qwen3_next", "qwen3_next-legacy"]
# Max abs error of a dequantized weight against the original (weights ~ N(0, 0.1)).
ATOL = {Q.F32: 1e-6, Q.F16: 2e-4}


def _family_case(case: str) -> str:
    return case.removesuffix("-legacy")


@pytest.fixture(scope="module")
def tokens() -> list[str]:
    return byte_level_tokens(VOCAB)


def _convert(case: str, seed: int, folder: Path, tokens: list[str], qtype: Q = Q.F32) -> tuple[Any, Path, Path]:
    model = build_tiny_model(_family_case(case), seed=seed)
    assert model.config.vocab_size == VOCAB, "helpers/family_configs.py changed its vocabulary size"
    hf = save_model(model, folder / "hf", tokenizer=False)
    write_tokenizer_json(hf, tokens)
    path = convert_ssm_model(
        model, folder / f"model-{qtype.name}.gguf", tokens, qtype, legacy_qkvz=case.endswith("-legacy")
    )
    return model, hf, path


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, tokens: list[str]) -> dict[str, tuple[Any, Path, Path]]:
    return {c: _convert(c, 0, tmp_path_factory.mktemp(c), tokens) for c in CASES}


def _falcon_h1_factors(cfg: Any) -> dict[str, float]:
    """FalconH1Model's folded multipliers, per canonical part (1 for every part not listed)."""
    att_in = cfg.attention_in_multiplier
    return {
        "embedding": cfg.embedding_multiplier,
        "head": cfg.lm_head_multiplier,
        "q": att_in,
        "k": att_in * cfg.key_multiplier,
        "v": att_in,
        "o": cfg.attention_out_multiplier,
        "gate": cfg.mlp_multipliers[0],
        "down": cfg.mlp_multipliers[1],
        "mixer out": cfg.ssm_out_multiplier,
    }


def _assert_same_canonical(g: CanonicalModel, h: CanonicalModel, factors: dict[str, float], atol: float) -> None:
    """Every canonical tensor of the GGUF `g` equals the safetensors `h`'s, times the converter's factor."""

    def close(x: torch.Tensor | None, y: torch.Tensor | None, what: str, part: str | None = None) -> None:
        assert (x is None) == (y is None), what
        if x is not None and y is not None:
            want = y.float() * factors.get(part or what, 1.0)
            torch.testing.assert_close(x.float(), want, rtol=0, atol=atol, msg=lambda m: f"{what}: {m}")

    ids = list(range(0, g.dims.vocab, 37))
    close(g.embedding_rows(ids), h.embedding_rows(ids), "embedding")
    close(g.head_rows(ids), h.head_rows(ids), "head")
    close(g.final_norm_gain(), h.final_norm_gain(), "final norm")
    for i in range(h.n_layers):
        la, lb = g.layer(i), h.layer(i)
        assert (la.attn is None) == (lb.attn is None), f"layer {i} attention"
        if lb.attn is not None:
            for f in ("q", "k", "v", "o", "q_norm", "k_norm"):
                close(getattr(la.attn, f), getattr(lb.attn, f), f"layer {i} {f}", f)
        for f in ("attn_norm", "ffn_norm", "router"):
            close(getattr(la, f), getattr(lb, f), f"layer {i} {f}", f)
        ffns_a = ([la.mlp] if la.mlp else []) + la.experts + la.shared_experts
        ffns_b = ([lb.mlp] if lb.mlp else []) + lb.experts + lb.shared_experts
        assert len(ffns_a) == len(ffns_b), f"layer {i} FFN count"
        for j, (ma, mb) in enumerate(zip(ffns_a, ffns_b)):
            for f in ("up", "gate", "down"):
                close(getattr(ma, f), getattr(mb, f), f"layer {i} FFN {j} {f}", f)
        assert (la.mixer is None) == (lb.mixer is None), f"layer {i} mixer"
        if lb.mixer is not None:
            xa, xb = la.mixer, lb.mixer
            sizes = ("n_heads", "head_dim", "n_groups", "d_state")
            assert [getattr(xa, s) for s in sizes] == [getattr(xb, s) for s in sizes], f"layer {i} mixer sizes"
            for f in ("z", "x", "b", "c", "dt", "conv", "out", "norm"):
                close(getattr(xa, f), getattr(xb, f), f"layer {i} mixer {f}", f"mixer {f}")


@pytest.mark.parametrize("case", CASES)
def test_gguf_reads_as_the_safetensors_original(case: str, converted: dict[str, tuple[Any, Path, Path]]) -> None:
    model, hf, path = converted[case]
    g, h = load_model(path), load_model(hf)
    assert g.family == h.family == model.config.model_type
    assert g.spec.source_format == "gguf" and h.spec.source_format != "gguf"
    assert (g.dims.hidden, g.n_layers, g.dims.vocab) == (h.dims.hidden, h.n_layers, h.dims.vocab)
    if h.spec.has_attention:  # a pure Mamba-2 has no attention heads to agree on
        assert g.dims == h.dims
    assert not [w for w in g.warnings if "ignored" in w], g.warnings  # every tensor claimed
    factors = _falcon_h1_factors(model.config) if model.config.model_type == "falcon_h1" else {}
    _assert_same_canonical(g, h, factors, ATOL[Q.F32])
    assert sum(g.layer(i).mixer is not None for i in range(g.n_layers)) >= 2


@pytest.mark.parametrize("case", ["mamba2", "falcon_h1", "qwen3_next"])
def test_attest_compare_gguf_with_its_original_and_another_seed(
    case: str, converted: dict[str, tuple[Any, Path, Path]], tokens: list[str], tmp_path: Path
) -> None:
    _, hf, path = converted[case]
    same = attest.compare(path, hf, precision="fp32")
    assert same.verdict == Verdict.MATCH, (case, same.reasons)
    assert abs(same.score - 1.0) < 1e-5, (case, same.score)
    assert same.coverage == 1.0 and same.token_mode == "strings"
    assert all(abs(v - 1.0) < 1e-5 for p in same.pairs for v in p.terms.values()), (case, same.pairs)
    # an F16 file of the same model still matches, within its rounding
    _, _, f16 = _convert(case, 0, tmp_path / "f16", tokens, Q.F16)
    assert attest.compare(f16, hf, precision="fp32").score > 0.999
    # the GGUF of seed 0 against seed 101's original, and against seed 101's GGUF
    _, other_hf, other_gguf = _convert(case, 101, tmp_path / "other", tokens)
    for other in (other_hf, other_gguf):
        far = attest.compare(path, other, precision="fp32")
        assert far.verdict == Verdict.NO_MATCH, (case, far.score, far.reasons)
        assert far.score < same.score - 0.05


def _raw(path: Path, name: str) -> np.ndarray:
    t = next(t for t in gguf.GGUFReader(path).tensors if t.name == name)
    shape = tuple(int(d) for d in reversed(t.shape.tolist()))
    return np.asarray(t.data, dtype=np.float32).reshape(shape)


@pytest.mark.parametrize("case", ["mamba2", "falcon_h1"])
def test_mamba2_converter_storage_is_undone(case: str, converted: dict[str, tuple[Any, Path, Path]]) -> None:
    """The file holds Mamba2Model's layouts; the reader gives back the checkpoint's vectors."""
    model, _, path = converted[case]
    mixer = model.backbone.layers[0].mixer if case == "mamba2" else model.model.layers[0].mamba
    groups, channels, heads = mixer.n_groups, mixer.intermediate_size, mixer.num_heads
    norm = mixer.norm.weight.detach().numpy()
    stored = _raw(path, "blk.0.ssm_norm.weight")
    assert stored.shape == (groups, channels // groups)
    np.testing.assert_array_equal(stored.reshape(-1), norm)
    a = _raw(path, "blk.0.ssm_a")
    assert a.shape == (heads, 1)
    np.testing.assert_allclose(a[:, 0], -np.exp(mixer.A_log.detach().numpy()), rtol=1e-6)
    assert _raw(path, "blk.0.ssm_conv1d.weight").shape == (channels + 2 * groups * mixer.ssm_state_size, 4)
    with GGUFSource.from_path(path) as src:
        assert src.shape("blk.0.ssm_norm.weight") == (channels,) and src.shape("blk.0.ssm_d") == (heads,)
        torch.testing.assert_close(src.get("blk.0.ssm_norm.weight"), torch.from_numpy(norm), rtol=0, atol=0)
        arch = SSM_ARCHS[model.config.model_type]
        meta = src.metadata()
        assert meta[f"{arch}.ssm.group_count"] == groups and meta[f"{arch}.ssm.time_step_rank"] == heads
        if case == "mamba2":
            assert meta["mamba2.attention.head_count"] == 0  # "unused, but seemingly required when loading"
        else:  # gguf-py maps pre_ff_layernorm.weight whole: no `.weight` suffix
            assert "blk.0.ffn_norm" in src.names() and "blk.0.ffn_norm.weight" not in src.names()


def test_qwen3_next_qkvz_is_regrouped_in_the_file(converted: dict[str, tuple[Any, Path, Path]]) -> None:
    """attn_qkv holds [all q heads; all k heads; all v heads], not the checkpoint's per-key-head [q, k, v, z]."""
    model, _, path = converted["qwen3_next"]
    cfg = model.config
    w = model.model.layers[0].linear_attn.in_proj_qkvz.weight.detach().numpy()
    dk, dv, hk, hv = (
        cfg.linear_key_head_dim,
        cfg.linear_value_head_dim,
        cfg.linear_num_key_heads,
        cfg.linear_num_value_heads,
    )
    qkv, z = _raw(path, "blk.0.attn_qkv.weight"), _raw(path, "blk.0.attn_gate.weight")
    assert qkv.shape == (2 * hk * dk + hv * dv, cfg.hidden_size) and z.shape == (hv * dv, cfg.hidden_size)
    per = 2 * dk + 2 * (hv // hk) * dv
    np.testing.assert_array_equal(qkv[dk : 2 * dk], w[per : per + dk])  # q of key head 1 follows q of key head 0
    assert not np.array_equal(qkv, w[: qkv.shape[0]])
    names = set(GGUFSource.from_path(path).names())
    assert "blk.1.attn_q.weight" in names and "blk.1.attn_qkv.weight" not in names  # layer 1 is full attention
    legacy = converted["qwen3_next-legacy"][2]
    np.testing.assert_array_equal(_raw(legacy, "blk.0.ssm_in.weight"), w)


def test_a_header_that_disagrees_with_the_mixer_is_a_clean_input_error(
    converted: dict[str, tuple[Any, Path, Path]], tokens: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mixer's sizes come from the header: a group count the conv channels cannot split into is refused."""
    from helpers import gguf_ssm

    real = gguf_ssm._metadata
    monkeypatch.setattr(gguf_ssm, "_metadata", lambda *a: {**real(*a), "mamba2.ssm.group_count": 3})
    path = convert_ssm_model(converted["mamba2"][0], tmp_path / "bad.gguf", tokens, Q.F32)
    with pytest.raises(InputError, match="layer 0 mixer conv1d has 192 channels"):
        load_model(path).layer(0)


@pytest.mark.parametrize("case", ["mamba2", "falcon_h1", "qwen3_next"])
def test_gguf_verifies_against_a_bundle_issued_from_safetensors(
    case: str, converted: dict[str, tuple[Any, Path, Path]], tokens: list[str], tmp_path: Path
) -> None:
    """The publisher issues from safetensors; a GGUF of the same weights verifies, another seed's does not.
    For the pure Mamba-2 the verdict rests on the mixer-channel lineage test."""
    from attest.crypto.keys import generate_keypair

    _, hf, path = converted[case]
    generate_keypair(tmp_path / "pub", None)
    bundle = tmp_path / "base.attest"
    attest.issue(hf, tmp_path / "pub.key", bundle, name=f"{case}-base", issuer="pub")
    other = _convert(case, 101, tmp_path / "other", tokens)[2]
    for suspect, verdict in ((path, "match"), (other, "no_match")):
        report = attest.verify(suspect, bundle, trust=tmp_path / "pub.pub").to_json()
        assert report["verdict"] == verdict, (case, verdict, report["reasons"])
        if case == "mamba2":
            assert report["lineage"]["conclusion"] == ("lineage" if verdict == "match" else "no_lineage")
