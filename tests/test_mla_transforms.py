"""Invariance of the MLA fingerprint (DeepSeek-V2/V3) under function-preserving disguises.

For each (family, disguise) the tiny real `transformers` model of
`family_configs` (MLA, one dense layer, MoE layers with shared experts) is
disguised on its state dict by `helpers.mla_transforms`, then:

1. the disguised model's logits on a fixed batch must equal the original's
   (relative error < 1e-4; the expert choices must not change): checked FIRST,
   so a transform that is not function preserving cannot make a score test pass;
2. both are saved (`save_pretrained`, which writes per-expert tensors) and read
   by attest; the default method must give score ≥ 0.999, a match, every
   (layer, term) cell ≥ 0.999 and the terms qk, vo, up, gate (+ router on MoE layers).

The steps that need unit gains (residual and latent rotations) run after
`fold-gains`.  A broken disguise (queries rotated, keys not) must move the logits.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import mla_transforms as mt
from helpers.models import build_tiny_model, save_model

from attest.invariants.methods import DEFAULT
from attest.scoring.decision import Verdict
from attest.workflows.compare import compare_models

METHOD = DEFAULT.with_options(n_tokens=256)
MIN_SCORE = 0.999
TOL = 1e-4
FAMILIES = ("deepseek_v2", "deepseek_v3")
DISGUISES: dict[str, tuple[str, ...]] = {
    "fold-gains": ("fold-gains",),
    "rotation": ("fold-gains", "rotation"),
    "latent-rotation": ("fold-gains", "latent-rotation"),
    "head-perm": ("head-perm",),
    "qk-vo-maps": ("qk-vo-maps",),
    "ffn-perm-scale": ("ffn-perm-scale",),
    "expert-perm": ("expert-perm",),
    "combined": (
        "fold-gains",
        "rotation",
        "latent-rotation",
        "head-perm",
        "qk-vo-maps",
        "ffn-perm-scale",
        "expert-perm",
    ),
}
IDS = torch.randint(1, 512, (2, 12), generator=torch.Generator().manual_seed(3))
_ORIGINALS: dict[str, tuple[Any, Any, Any]] = {}


def _forward(model: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits on IDS and every MoE layer's chosen experts (a changed choice is a discrete change)."""
    routes: list[torch.Tensor] = []
    hooks = [
        mod.register_forward_hook(lambda _m, _a, out: routes.append(out[2]))
        for name, mod in model.named_modules()
        if name.endswith("mlp.gate")
    ]
    try:
        with torch.no_grad():
            logits = model(input_ids=IDS, use_cache=False).logits.float()
    finally:
        for h in hooks:
            h.remove()
    return logits, routes


def _original(family: str, root: Path) -> tuple[Any, Any, Any]:
    from attest.arch.detect import load_model

    if family not in _ORIGINALS:
        model = build_tiny_model(family, seed=zlib.crc32(family.encode()) % 1000)
        _ORIGINALS[family] = (model, _forward(model), load_model(save_model(model, root / family)))
    return _ORIGINALS[family]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mla-transforms")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("disguise", list(DISGUISES))
@pytest.mark.parametrize("family", FAMILIES)
def test_mla_disguise_preserves_logits_then_fingerprint(family: str, disguise: str, root: Path, tmp_path: Path) -> None:
    from attest.arch.detect import load_model

    model, (logits, routes), base = _original(family, root)
    steps = DISGUISES[disguise]
    disguised, expert_maps = mt.apply(model, steps, seed=zlib.crc32(f"{family}/{disguise}".encode()))
    changed = [k for k, v in disguised.state_dict().items() if not torch.equal(v, model.state_dict()[k])]
    assert changed, "the disguise left every weight unchanged"
    # 1. function preserving (chosen experts compared as original expert indices)
    new_logits, new_routes = _forward(disguised)
    moe_prefixes = [f"model.layers.{i}." for i in range(model.config.first_k_dense_replace, len(model.model.layers))]
    assert len(new_routes) == len(moe_prefixes)
    for prefix, old, new in zip(moe_prefixes, routes, new_routes, strict=True):
        if prefix in expert_maps:
            new = expert_maps[prefix][new]
        assert torch.equal(old.sort(-1).values, new.sort(-1).values), f"{prefix}: expert routing changed"
    rel = _rel(new_logits, logits)
    assert rel < TOL, f"not function preserving: relative logit error {rel:.2e}"
    # 2. the fingerprint is intact
    suspect = load_model(save_model(disguised, tmp_path / "disguised"))
    res = compare_models(base, suspect, METHOD, precision="fp32")
    cells = {f"L{p.a}/{t}": v for p in res.pairs for t, v in p.terms.items()}
    if os.environ.get("ATTEST_MLA_REPORT"):
        print(
            f"\n{family} {disguise}: logit rel err {rel:.1e}, score {res.score:.6f}, min cell {min(cells.values()):.6f}"
        )
    assert res.verdict == Verdict.MATCH, res.reasons
    assert res.score >= MIN_SCORE, res.score
    assert not {k: v for k, v in cells.items() if v < MIN_SCORE}, cells
    # The lineage test (pooled expert neurons) finds every neuron again, in every layer.
    assert res.lineage is not None
    assert all(x.agree == x.neurons and x.p_value < 1e-6 for x in res.lineage.layers), res.lineage.layers
    for p in res.pairs:
        expected = {"qk", "vo", "up", "gate"} | ({"router"} if p.a >= 1 else set())  # layer 0 is dense
        assert set(p.terms) == expected, (p.a, sorted(p.terms))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_broken_mla_disguise_moves_logits_and_score(family: str, root: Path, tmp_path: Path) -> None:
    """Rotating the nope part of the queries but not the keys is not function preserving, and the qk cells fall."""
    from attest.arch.detect import load_model

    model, (logits, _), base = _original(family, root)
    broken, _ = mt.apply(model, (), seed=0)
    cfg, gen = model.config, torch.Generator().manual_seed(5)
    h, dn, dr = cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim
    with torch.no_grad():
        for layer in broken.model.layers:
            lin = layer.self_attn.q_proj if layer.self_attn.q_proj is not None else layer.self_attn.q_b_proj
            w = lin.weight.reshape(h, dn + dr, -1).double()
            for j in range(h):
                w[j, :dn] = mt._orthogonal(dn, gen) @ w[j, :dn]
            lin.weight.copy_(w.reshape(lin.weight.shape).float())
    assert _rel(_forward(broken)[0], logits) > 0.01
    res = compare_models(base, load_model(save_model(broken, tmp_path / "broken")), METHOD, precision="fp32")
    assert min(p.terms["qk"] for p in res.pairs) < 0.9
