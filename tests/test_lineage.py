"""The lineage test on tiny trained llama models (tests/fixtures/lineage, made by
tests/fixtures/make_lineage_models.py) and on synthetic independent pairs.

Every case asserts the side of α its lineage p-value falls on, through both the
exact path (both models held) and the bundle path (a quantised payload).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import numpy as np
import pytest
import torch
from helpers.lineage_synthetic import synthetic_embedding, synthetic_llama

from attest.arch.canonical import CanonicalModel
from attest.arch.detect import load_model
from attest.errors import BundleError
from attest.lineage import (
    DEFAULT_ALPHA,
    build_payload,
    payload_size,
    test_against_payload,
    test_pair,
)
from attest.lineage.payload import parse_payload
from attest.lineage.result import LINEAGE, NO_LINEAGE, UNDERPOWERED
from attest.lineage.stats import permutation_tail, ruger
from attest.vocab.selection import align_pair, locate, select

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lineage"
ALPHA = DEFAULT_ALPHA
DERIVED = ("finetune", "continued", "pruned", "dropped", "rotated")
UNRELATED = ("twin", "transplant", "wide")


def _sd(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}


def _save(sd: dict[str, torch.Tensor], cfg: dict[str, Any], out: Path) -> Path:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous().to(torch.float16) for k, v in sd.items()},
        str(out / "model.safetensors"),
        metadata={"format": "pt"},
    )
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "tokenizer.json").write_bytes((FIXTURES / "base" / "tokenizer.json").read_bytes())
    return out


def _pruned(out: Path, frac: float = 0.25) -> Path:
    """Drop the quarter of FFN neurons with the smallest |up_i|·|down_i| in every layer."""
    sd, cfg = _sd(FIXTURES / "base"), json.loads((FIXTURES / "base" / "config.json").read_text())
    f = cfg["intermediate_size"]
    keep_n = f - round(frac * f)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}.mlp."
        score = sd[p + "up_proj.weight"].norm(dim=1) * sd[p + "down_proj.weight"].norm(dim=0)
        keep = torch.sort(torch.topk(score, keep_n).indices).values
        sd[p + "up_proj.weight"], sd[p + "gate_proj.weight"] = (
            sd[p + "up_proj.weight"][keep],
            sd[p + "gate_proj.weight"][keep],
        )
        sd[p + "down_proj.weight"] = sd[p + "down_proj.weight"][:, keep]
    return _save(sd, {**cfg, "intermediate_size": keep_n}, out)


def _dropped(out: Path, drop: int = 2) -> Path:
    sd, cfg = _sd(FIXTURES / "base"), json.loads((FIXTURES / "base" / "config.json").read_text())
    order = [i for i in range(cfg["num_hidden_layers"]) if i != drop]
    new = {k: v for k, v in sd.items() if not k.startswith("model.layers.")}
    for i, j in enumerate(order):
        for k, v in sd.items():
            if k.startswith(f"model.layers.{j}."):
                new[f"model.layers.{i}." + k[len(f"model.layers.{j}.") :]] = v
    return _save(new, {**cfg, "num_hidden_layers": len(order)}, out)


def _rotated(out: Path) -> Path:
    """Residual rotation + hidden/head/FFN permutations and rescaling (tests/transforms.py), logits checked."""
    from helpers import transforms
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(FIXTURES / "base", dtype=torch.float32).eval()
    tok = json.loads((FIXTURES / "base" / "tokenizer.json").read_text())
    subj = transforms.Subject.of(model, "llama", tok)
    ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    reference = transforms.logits(model, ids)
    transforms.apply(subj, ["rotation", "hidden-perm", "gain-scale", "head-perm", "ffn-perm-scale"], seed=3)
    rel, _ = transforms.logit_errors(reference, subj, ids)
    assert rel < 1e-4, f"the disguise changed the function (relative logit error {rel:.1e})"
    subj.model.to(torch.float32)
    return transforms.save(subj, out)


@pytest.fixture(scope="session")
def lineage_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CanonicalModel]:
    if not (FIXTURES / "base" / "model.safetensors").exists():
        pytest.skip("lineage fixtures missing: run tests/fixtures/make_lineage_models.py")
    tmp = tmp_path_factory.mktemp("lineage")
    folders = {name: FIXTURES / name for name in ("base", "finetune", "continued", "twin", "transplant", "wide")}
    folders["pruned"] = _pruned(tmp / "pruned")
    folders["dropped"] = _dropped(tmp / "dropped")
    folders["rotated"] = _rotated(tmp / "rotated")
    return {name: load_model(path) for name, path in folders.items()}


@pytest.fixture(scope="session")
def base_payload(lineage_models: dict[str, CanonicalModel]) -> tuple[list[str], dict[str, Any]]:
    base = lineage_models["base"]
    tokens = select(base.vocab, 1024)
    ids = [i for i in locate(base.vocab, tokens) if i is not None]
    assert len(ids) == len(tokens)
    return tokens, build_payload(base, ids)


def _exact(models: dict[str, CanonicalModel], name: str) -> Any:
    a, b = models["base"], models[name]
    al = align_pair(a.vocab, b.vocab, 1024)
    return test_pair(a, b, al.ids_a, al.ids_b)


def _bundle(models: dict[str, CanonicalModel], payload: tuple[list[str], dict[str, Any]], name: str) -> Any:
    tokens, doc = payload
    doc = cbor2.loads(cbor2.dumps(doc))  # what a verifier reads back
    suspect = models[name]
    return test_against_payload(doc, suspect, locate(suspect.vocab, tokens))


@pytest.mark.parametrize("name", DERIVED)
def test_derived_models_show_lineage_exact(lineage_models: dict[str, CanonicalModel], name: str) -> None:
    r = _exact(lineage_models, name)
    assert r.p_value <= ALPHA, r.to_json()
    assert r.conclusion == LINEAGE


@pytest.mark.parametrize("name", DERIVED)
def test_derived_models_show_lineage_bundle(
    lineage_models: dict[str, CanonicalModel], base_payload: tuple[list[str], dict[str, Any]], name: str
) -> None:
    r = _bundle(lineage_models, base_payload, name)
    assert r.p_value <= ALPHA, r.to_json()
    assert r.conclusion == LINEAGE


@pytest.mark.parametrize("name", UNRELATED)
def test_unrelated_models_show_no_lineage_exact(lineage_models: dict[str, CanonicalModel], name: str) -> None:
    r = _exact(lineage_models, name)
    assert r.p_value > ALPHA, r.to_json()
    assert r.conclusion == NO_LINEAGE, r.reasons()


@pytest.mark.parametrize("name", UNRELATED)
def test_unrelated_models_show_no_lineage_bundle(
    lineage_models: dict[str, CanonicalModel], base_payload: tuple[list[str], dict[str, Any]], name: str
) -> None:
    r = _bundle(lineage_models, base_payload, name)
    assert r.p_value > ALPHA, r.to_json()
    assert r.conclusion == NO_LINEAGE, r.reasons()


def test_dropped_layer_is_aligned_and_penalised(lineage_models: dict[str, CanonicalModel]) -> None:
    r = _exact(lineage_models, "dropped")
    assert [(x.a, x.b) for x in r.layers] == [(0, 0), (1, 1), (3, 2)]
    assert all(x.factor == 4 * 3 for x in r.layers)


def test_json_shape(lineage_models: dict[str, CanonicalModel]) -> None:
    j = _exact(lineage_models, "finetune").to_json()
    assert set(j) >= {"p_value", "agreement", "layers", "method"}
    assert j["agreement"] > 0.9 and len(j["layers"]) == 4
    json.dumps(j)


def test_too_few_covered_tokens_is_underpowered_not_no_match(
    lineage_models: dict[str, CanonicalModel], base_payload: tuple[list[str], dict[str, Any]]
) -> None:
    tokens, doc = base_payload
    twin = lineage_models["twin"]
    located = locate(twin.vocab, tokens)
    sparse = [i if k < 30 else None for k, i in enumerate(located)]
    r = test_against_payload(doc, twin, sparse)
    assert r.conclusion == UNDERPOWERED
    assert "underpowered" in r.reasons()[0]


def test_payload_size_at_7b_shape() -> None:
    """32 layers, f = 11008, 32 heads: the default payload, heads included, stays within the 4 MB budget."""
    from attest.lineage.payload import BUNDLE_HEAD_TOKENS, default_layout, layout_document

    doc = layout_document(32, 11008, 32)
    m = default_layout(32, 32)[0]
    size = payload_size(doc)
    print(f"lineage payload at 7B shape: {size} bytes ({m} FFN tokens, m_h = {BUNDLE_HEAD_TOKENS})")
    assert all("heads" in x for x in doc["layers"]) and doc["head_tokens"] == BUNDLE_HEAD_TOKENS
    assert m >= 200  # the FFN test keeps its tokens: the heads did not squeeze it out
    assert size <= 4_000_000


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format="x"),
        lambda d: d.update(n_tokens=-1),
        lambda d: d.update(token_positions=b"\xff\xff" * 3),
        lambda d: d["layers"][0].update(data=b"\x00"),
        lambda d: d["layers"][0].update(neurons=b"\xff\xff" * 300),
        lambda d: d["layers"][0].update(scale=np.full(2 * 256, np.nan, "<f4").tobytes()),
        lambda d: d["layers"][0].update(channels=["gate", "gate"]),
        lambda d: d["layers"].append(dict(d["layers"][0])),
        lambda d: d.update(layers=[]),
    ],
)
def test_hostile_payloads_raise_bundle_error(base_payload: tuple[list[str], dict[str, Any]], mutate: Any) -> None:
    doc = cbor2.loads(cbor2.dumps(base_payload[1]))
    doc["layers"] = [dict(x) for x in doc["layers"]]
    mutate(doc)
    with pytest.raises(BundleError):
        parse_payload(doc)


def _synthetic_pair(seed: int, **kw: Any) -> tuple[CanonicalModel, CanonicalModel]:
    tok = FIXTURES / "base" / "tokenizer.json"
    emb = synthetic_embedding(1024, 64, 900 + seed, kw.get("anisotropy", 0.0)) if kw.pop("shared", False) else None
    return synthetic_llama(2 * seed, tok, embedding=emb, **kw), synthetic_llama(2 * seed + 1, tok, embedding=emb, **kw)


@pytest.mark.parametrize("seed", range(5))
def test_null_is_calibrated_on_random_init_pairs(seed: int) -> None:
    """Independent random models: no per-layer p-value below 1e-3 (each is a valid p-value)."""
    if not (FIXTURES / "base" / "tokenizer.json").exists():
        pytest.skip("lineage fixtures missing")
    a, b = _synthetic_pair(seed)
    al = align_pair(a.vocab, b.vocab, 1024)
    r = test_pair(a, b, al.ids_a, al.ids_b)
    assert min(x.p_value for x in r.layers) > 1e-3, r.to_json()
    assert r.conclusion == NO_LINEAGE


def test_decorrelation_keeps_correlated_channels_from_faking_lineage() -> None:
    """Within-neuron gate/up correlation ρ = 0.9 and a shared anisotropic embedding (hubs): without the
    decorrelation even the shuffle null reports lineage; with it, p stays large."""
    if not (FIXTURES / "base" / "tokenizer.json").exists():
        pytest.skip("lineage fixtures missing")
    a, b = _synthetic_pair(0, gate_up_corr=0.9, anisotropy=10.0, shared=True)
    al = align_pair(a.vocab, b.vocab, 1024)
    raw = test_pair(a, b, al.ids_a, al.ids_b, decorrelated=False)
    assert raw.p_value <= ALPHA  # the failure the decorrelation exists for
    fixed = test_pair(a, b, al.ids_a, al.ids_b)
    assert fixed.p_value > 1e-3, fixed.to_json()


def test_permutation_tail_bounds_the_exact_shuffle_distribution() -> None:
    """Chatterjee's bound is at least the Monte-Carlo tail of the shuffled agreement count, hubs included."""
    rng = np.random.default_rng(0)
    k, f = 200, 50
    hub = rng.dirichlet(np.full(f, 0.3))  # strongly hubbed partner distributions
    g, u = rng.choice(f, k, p=hub), rng.choice(f, k, p=hub)
    mean = float((np.bincount(g, minlength=f) * np.bincount(u, minlength=f)).sum()) / k
    sims = np.array([(g == u[rng.permutation(k)]).sum() for _ in range(20000)])
    for observed in range(int(mean) + 1, int(mean) + 25, 3):
        assert permutation_tail(observed, mean) >= (sims >= observed).mean()
        assert permutation_tail(observed, mean, k) >= (sims >= observed).mean()  # with the factorial-moment bound


def test_factorial_moment_bound_holds_in_the_sparse_regime() -> None:
    """Few edges (independent models: mean ≈ 1): the bound is tighter than Chatterjee's and still above the shuffle."""
    rng = np.random.default_rng(1)
    k, f = 128, 128
    g, u = rng.integers(0, f, k), rng.integers(0, f, k)
    mean = float((np.bincount(g, minlength=f) * np.bincount(u, minlength=f)).sum()) / k
    sims = np.array([(g == u[rng.permutation(k)]).sum() for _ in range(20000)])
    for observed in range(1, 8):
        tail = (sims >= observed).mean()
        assert permutation_tail(observed, mean, k) >= tail, observed
    assert permutation_tail(26, mean, k) < 1e-12 < permutation_tail(26, mean)  # 20% of 128: far tighter


def test_ruger_needs_half_the_layers() -> None:
    assert ruger([1e-30, 1.0, 1.0, 1.0], 2) == 1.0  # one layer of "universal" neurons cannot make a match
    assert ruger([1e-30, 1e-20, 1.0, 1.0], 2) == pytest.approx(2e-20)


def test_batched_layer_tests_give_each_items_own_test() -> None:
    # identify tests many bundles against one suspect side in shared matmuls
    # (matching.layer_tests); each cell must be what layer_test gives alone,
    # including the early exits (too few live neurons) in the middle of a batch.
    from attest.lineage.matching import layer_test, layer_tests, prepare

    g = torch.Generator().manual_seed(5)
    tokens, f = 24, 96
    s_first, s_second = torch.randn(tokens, f, generator=g), torch.randn(tokens, f, generator=g)
    suspect = prepare(s_first, s_second)
    items = []
    for n, k in enumerate((40, 1, 64, 17)):
        first, second = torch.randn(tokens, k, generator=g), torch.randn(tokens, k, generator=g)
        if n == 2:  # a derived layer: its neurons are suspect neurons, in both channels
            first = s_first[:, :k] + 0.01 * first
            second = s_second[:, :k] + 0.01 * second
        items.append((n, n + 1, prepare(first, second), 1 + n))
    batched = layer_tests(items, suspect)
    alone = [layer_test(a, b, base, suspect, factor) for a, b, base, factor in items]
    # (as JSON text, so that the early exit's NaN chance compares equal to itself)
    assert [json.dumps(c.to_json()) for c in batched] == [json.dumps(c.to_json()) for c in alone]
    assert batched[2].agree == batched[2].neurons  # the derived layer agrees everywhere
    assert batched[1].neurons == 1 and batched[1].p_value == 1.0  # the early exit kept its place


def test_partners_are_the_first_argmax_of_absolute_correlation() -> None:
    # matching.partners takes each row's max and min instead of |c|'s argmax
    # (identify's hot loop); it must pick exactly what |c|.argmax picks,
    # including rows won by a negative correlation, exact ties between a
    # positive and a negative entry, and rows spanning several blocks.
    from attest.lineage import matching

    g = torch.Generator().manual_seed(11)
    tokens, k, f = 16, matching.BLOCK + 37, 50
    base = matching.unit_columns(torch.randn(tokens, k, generator=g))
    suspect = matching.unit_columns(torch.randn(tokens, f, generator=g))
    suspect[:, 9] = -base[:, 5]  # base neuron 5's best partner is anti-correlated (-1)
    suspect[:, 2] = suspect[:, 9]  # ... and tied with an earlier column holding the same value
    suspect[:, 1], suspect[:, 4] = -base[:, 6], base[:, 6]  # row 6: |c| ties, the negative comes first
    suspect[:, 0], suspect[:, 8] = base[:, 8], -base[:, 8]  # row 8: |c| ties, the positive comes first
    want = (base.t() @ suspect).abs().argmax(1)
    got = matching.partners(base, suspect)
    assert torch.equal(got, want)
    assert [int(got[5]), int(got[6]), int(got[8])] == [2, 1, 0]
    assert (base.t() @ suspect)[5, 2] < 0  # that row was won by the minimum
    assert matching.partners(base[:, :0], suspect).shape == (0,)


@pytest.mark.parametrize(
    ("shape", "layers", "heads", "width"),
    [("7B", 32, 32, 11008), ("13B", 40, 40, 13824), ("70B", 80, 64, 28672), ("405B", 126, 128, 53248)],
)
def test_default_payload_of_any_real_depth_is_one_a_verifier_reads(
    shape: str, layers: int, heads: int, width: int
) -> None:
    # Deep models used to get m = 216 tokens × 256 neurons on every layer plus heads on every
    # layer: 9.3 MB at 80 layers, more than the reader's MAX_LINEAGE_BYTES, so `issue` would
    # have signed a bundle `verify` refuses.  The default layout now fits any real depth.
    from attest.bundle.core_schema import check_lineage
    from attest.lineage.payload import BUNDLE_TOKENS, MIN_BUNDLE_NEURONS, default_layout, layout_document

    m, k, with_heads = default_layout(layers, heads)
    check_lineage(layout_document(layers, width, heads), 1024)  # the verifier's own size check accepts it
    assert m >= BUNDLE_TOKENS and k >= MIN_BUNDLE_NEURONS and len(with_heads) >= 8
    assert with_heads == sorted(set(with_heads)) and with_heads[0] == 0 and with_heads[-1] == layers - 1
    if shape == "7B":  # the budget, unchanged: 256 neurons, heads on every layer
        assert (m, k, with_heads) == (BUNDLE_TOKENS, 256, list(range(32)))


def test_mla_models_budget_no_head_channel(tmp_path: Path) -> None:
    # DeepSeek's MLA heads carry no head channel, so their FFN responses keep the whole budget.
    from helpers.models import build_tiny_model, save_model

    from attest.lineage.payload import PayloadBuilder, default_layout

    model = load_model(save_model(build_tiny_model("deepseek_v3"), tmp_path / "dsv3"))
    assert model.dims.n_heads > 0
    builder = PayloadBuilder(model, list(range(min(256, model.dims.vocab))))
    assert builder.with_heads == set()  # no layer is budgeted for heads (it would be all of them otherwise)
    assert default_layout(model.n_layers, model.dims.n_heads)[2]  # ... as a standard-attention model's are
    payload = builder.finish()
    assert "head_tokens" not in payload and not any("heads" in x for x in payload["layers"])
