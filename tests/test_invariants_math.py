"""The invariant math against direct, independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from attest.arch.detect import load_model
from attest.invariants.methods import DEFAULT, HUREF_2024
from attest.invariants.terms import standardise
from attest.sketch.sampling import aggregate, choose_pairs, remap_pairs
from attest.vocab.selection import align_pair
from attest.workflows.compare import compare_models


def _tiny_llama(tmp_path, seed: int, tokenizer_json: str):
    torch.manual_seed(seed)
    cfg = AutoConfig.for_model(
        "llama",
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=600,
    )
    model = AutoModelForCausalLM.from_config(cfg).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    out = tmp_path / f"llama{seed}"
    model.save_pretrained(out)
    (out / "tokenizer.json").write_text(tokenizer_json)
    return model, out


@pytest.fixture(scope="module")
def tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    rng = np.random.default_rng(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < 599:
        w = "".join(rng.choice(list(letters), size=rng.integers(2, 8)))
        words.add(("Ġ" if rng.random() < 0.5 else "") + w)
    vocab = {"<unk>": 0, **{w: i + 1 for i, w in enumerate(sorted(words))}}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel()
    tk.decoder = decoders.ByteLevel()
    return tk.to_str()


@torch.no_grad()
def huref_direct(model, ids: list[int], layers: list[int]) -> list[torch.Tensor]:
    """The paper's formulas, written out: x·Wq·Wkᵀ·xᵀ, x·Wv·Wo·xᵀ, x·(Wg⊙Wu)·Wd·xᵀ."""
    x = model.model.embed_tokens.weight[ids].double()
    cfg = model.config
    g = cfg.num_attention_heads // cfg.num_key_value_heads
    dh = cfg.hidden_size // cfg.num_attention_heads
    mats = []
    for i in layers:
        a, m = model.model.layers[i].self_attn, model.model.layers[i].mlp
        k = (
            a.k_proj.weight.double()
            .reshape(-1, dh, cfg.hidden_size)
            .repeat_interleave(g, 0)
            .reshape(-1, cfg.hidden_size)
        )
        v = (
            a.v_proj.weight.double()
            .reshape(-1, dh, cfg.hidden_size)
            .repeat_interleave(g, 0)
            .reshape(-1, cfg.hidden_size)
        )
        mats.append(x @ a.q_proj.weight.double().T @ k @ x.T)
        mats.append(x @ v.T @ a.o_proj.weight.double().T @ x.T)
        mats.append(
            x @ (m.gate_proj.weight.double().T * m.up_proj.weight.double().T) @ m.down_proj.weight.double().T @ x.T
        )
    return [(s - s.mean()) / s.std(unbiased=False) for s in mats]


def test_huref_preset_equals_direct_implementation(tmp_path, tokenizer_json) -> None:
    model_a, path_a = _tiny_llama(tmp_path, 1, tokenizer_json)
    model_b, path_b = _tiny_llama(tmp_path, 2, tokenizer_json)
    # Make B a noisy copy of A so the expected score is neither 0 nor 1.
    with torch.no_grad():
        for pa, pb in zip(model_a.parameters(), model_b.parameters()):
            pb.copy_(pa + 0.6 * pa.std() * torch.randn_like(pa))
    model_b.save_pretrained(path_b)
    method = HUREF_2024.with_options(n_tokens=256)
    a, b = load_model(path_a), load_model(path_b)
    align = align_pair(a.vocab, b.vocab, method.n_tokens)
    got = compare_models(a, b, method, precision="fp32")
    za = huref_direct(model_a, align.ids_a, [1, 2])
    zb = huref_direct(model_b, align.ids_b, [1, 2])
    expected = float(torch.cat([z.reshape(-1) for z in za]) @ torch.cat([z.reshape(-1) for z in zb])) / sum(
        z.numel() for z in za
    )
    assert 0.2 < expected < 0.98
    assert got.score == pytest.approx(expected, abs=1e-5)
    per_cell = [float((x * y).mean()) for x, y in zip(za, zb)]
    got_cells = [got.pairs[0].terms[t] for t in ("qk", "vo", "ffn")] + [
        got.pairs[1].terms[t] for t in ("qk", "vo", "ffn")
    ]
    np.testing.assert_allclose(got_cells, per_cell, atol=1e-5)


def test_self_comparison_is_one_and_independent_is_near_zero(tmp_path, tokenizer_json) -> None:
    _, p1 = _tiny_llama(tmp_path, 3, tokenizer_json)
    _, p2 = _tiny_llama(tmp_path, 4, tokenizer_json)
    m = DEFAULT.with_options(n_tokens=256)
    same = compare_models(load_model(p1), load_model(p1), m, precision="fp32")
    other = compare_models(load_model(p1), load_model(p2), m, precision="fp32")
    assert same.score == pytest.approx(1.0, abs=1e-6) and same.verdict.value == "match"
    assert abs(other.score) < 0.05 and other.verdict.value == "no_match"


def test_bf16_changes_scores_by_less_than_1e3(tmp_path, tokenizer_json) -> None:
    model_a, pa = _tiny_llama(tmp_path, 5, tokenizer_json)
    model_b, pb = _tiny_llama(tmp_path, 6, tokenizer_json)
    with torch.no_grad():
        for x, y in zip(model_a.parameters(), model_b.parameters()):
            y.copy_(x + 0.5 * x.std() * torch.randn_like(x))
    model_b.save_pretrained(pb)
    m = DEFAULT.with_options(n_tokens=256)
    fp32 = compare_models(load_model(pa), load_model(pb), m, precision="fp32")
    bf16 = compare_models(load_model(pa), load_model(pb), m, precision="bf16")
    assert abs(fp32.score - bf16.score) < 1e-3
    for p32, p16 in zip(fp32.pairs, bf16.pairs):
        for t in p32.terms:
            assert abs(p32.terms[t] - p16.terms[t]) < 1e-3


def test_off_diagonal_standardisation_gives_pearson() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 200, generator=g)
    b = a + 0.7 * torch.randn(200, 200, generator=g) + 5 * torch.eye(200)
    off = ~torch.eye(200, dtype=torch.bool)
    za, zb = standardise(a, True, torch.float32), standardise(b, True, torch.float32)
    expected = float(torch.corrcoef(torch.stack([a[off], b[off]]))[0, 1])
    assert float((za * zb).mean()) == pytest.approx(expected, abs=1e-5)
    full = float((standardise(a, out_dtype=torch.float32) * standardise(b, out_dtype=torch.float32)).mean())
    assert abs(full - expected) > 0.01  # the diagonal matters for the full version


def test_sketch_estimate_brackets_exact_similarity() -> None:
    rng = np.random.default_rng(1)
    n, m = 200, 4000
    pairs = choose_pairs(n, m, seed=3)
    assert len({(int(i), int(j)) for i, j in pairs}) == m and (pairs[:, 0] != pairs[:, 1]).all()
    hits = 0
    for trial in range(40):
        rho = rng.uniform(-0.2, 1.0)
        base = [torch.from_numpy(rng.standard_normal((n, n))).float() for _ in range(4)]
        susp = [rho * x + np.sqrt(1 - rho**2) * torch.from_numpy(rng.standard_normal((n, n))).float() for x in base]
        zb = [standardise(x, True, torch.float32) for x in base]
        zs = [standardise(x, True, torch.float32) for x in susp]
        exact = float(np.mean([(x * y).mean() for x, y in zip(zb, zs)]))
        valid, rem = remap_pairs(pairs, [True] * n)
        B = np.stack([x[rem[:, 0], rem[:, 1]].numpy() for x in zb])
        S = np.stack([x[rem[:, 0], rem[:, 1]].numpy() for x in zs])
        est = aggregate(B, S)
        hits += est.ci[0] <= exact <= est.ci[1]
        assert abs(est.score - exact) < 0.05
    assert hits >= 34  # a 95% interval covers the truth in most of 40 trials
