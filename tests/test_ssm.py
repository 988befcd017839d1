"""State-space and hybrid families (Mamba-2, Falcon-H1, Qwen3-Next) against the real `transformers` classes.

- The canonical view reproduces the model: a one-token forward pass with hooks
  records the mixer's input and output (and, for Falcon-H1, the attention
  projections and the MLP), and the canonical mixer (z, x, B, C, dt rows, conv
  taps, gated-norm gain, out_proj), with the model's own dt_bias, D and conv
  bias, must give the same mixer output.  One token with an empty state makes
  the scan y = (dt·B·C + D)·x per head, so every part and its layout is checked.
  Qwen3-Next's gated DeltaNet likewise (one token: o = β·(q̂·k̂/√d_k)·v per
  value head), and its gated attention's q/k/v/o, q/k norms and experts.
- Self-comparison is exactly 1 under both methods; a 5%-drift copy matches and
  another seed does not.
- The mixer's symmetries (docs/method.md) applied to the real module leave
  the logits unchanged, and then every invariant cell scores ≥ 0.999.
- A pure Mamba-2 model gets a verdict from the mixer-channel lineage test, in
  `compare` and in `verify` alike.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from helpers import ssm_transforms as st
from helpers.family_configs import CASES, MIXER_CASE_NAMES
from helpers.models import build_tiny_model, save_model

import attest
from attest.arch.detect import load_model
from attest.crypto.keys import generate_keypair
from attest.formats import MIXER_TERMS
from attest.invariants.methods import DEFAULT, HUREF_2024
from attest.scoring.decision import DEFAULT_POLICY, Verdict
from attest.workflows.compare import compare_models

ALPHA = DEFAULT_POLICY.lineage_alpha
METHOD = DEFAULT.with_options(n_tokens=256)
MIN_SCORE = 0.999
EXACT_TOL = 1e-4


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ssm")
    return {case: save_model(build_tiny_model(case, seed=0), root / case) for case in MIXER_CASE_NAMES}


def _close(a: torch.Tensor, b: torch.Tensor, what: str, tol: float = 1e-4) -> None:
    a, b = a.float().reshape(b.shape), b.float()
    err = float((a - b).abs().max()) / max(1e-6, float(b.abs().max()))
    assert err < tol, f"{what}: relative error {err:.2e}"


def _eps(norm: Any) -> float:
    return float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6)))


def _rms(x: torch.Tensor, gain: torch.Tensor | None, eps: float) -> torch.Tensor:
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * gain if gain is not None else y


def _group_rms(y: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    n, c = y.shape
    g = y.reshape(n, groups, c // groups)
    return (g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + eps)).reshape(n, c)


def single_token_mixer(mx: Any, x_in: torch.Tensor, module: Any, norm_mode: str) -> torch.Tensor:
    """The mixer output for one token and an empty state, from the canonical parts (+ the module's dt_bias, D, conv bias)."""
    gs = mx.n_groups * mx.d_state
    tx, tb, tc = mx.taps()
    bias = module.conv1d.bias.detach().float() if module.conv1d.bias is not None else torch.zeros(mx.conv.shape[0])
    bx, bb, bc = bias[: mx.channels], bias[mx.channels : mx.channels + gs], bias[mx.channels + gs :]
    z = x_in @ mx.z.float().T
    u = F.silu(tx * (x_in @ mx.x.float().T) + bx)
    b = F.silu(tb * (x_in @ mx.b.float().T) + bb).reshape(-1, mx.n_groups, mx.d_state)
    c = F.silu(tc * (x_in @ mx.c.float().T) + bc).reshape(-1, mx.n_groups, mx.d_state)
    dt = F.softplus(x_in @ mx.dt.float().T + module.dt_bias.detach().float())
    bc_head = (b * c).sum(-1).repeat_interleave(mx.n_heads // mx.n_groups, dim=1)  # head h reads group h // (H/G)
    d = module.D.detach().float()
    y = ((dt * bc_head + d)[:, :, None] * u.reshape(-1, mx.n_heads, mx.head_dim)).reshape(-1, mx.channels)
    eps = getattr(module.norm, "variance_epsilon", 1e-6)
    if norm_mode == "gate-then-norm":  # Mamba-2's MambaRMSNormGated
        y = _group_rms(y * F.silu(z), mx.n_groups, eps) * mx.norm
    elif norm_mode == "norm-then-gate":  # Falcon-H1's norm_before_gate
        y = _group_rms(y, mx.n_groups, eps) * mx.norm * F.silu(z)
    else:
        assert mx.norm is None
        y = y * F.silu(z)
    return y @ mx.out.float().T


def _record(model: Any, paths: list[str], ids: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    ios: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []
    for p in paths:

        def hook(_m: Any, args: Any, kwargs: Any, out: Any, p: str = p) -> None:
            inp = args[0] if args else kwargs["hidden_states"]
            res = out[0] if isinstance(out, tuple) else out
            ios[p] = (inp.detach().reshape(-1, inp.shape[-1]).float(), res.detach().reshape(-1, res.shape[-1]).float())

        handles.append(model.get_submodule(p).register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return ios


MAMBA_CASES = [c for c in MIXER_CASE_NAMES if CASES[c].family != "qwen3_next"]


@pytest.mark.parametrize("case", MAMBA_CASES)
def test_canonical_view_reproduces_the_model(case: str, saved: dict[str, Path]) -> None:
    model = build_tiny_model(case, seed=0)
    cm = load_model(saved[case])
    assert cm.family == CASES[case].family
    cfg = model.config
    ids = torch.arange(3, 3 + 16).reshape(16, 1)  # 16 one-token sequences
    hybrid = cm.family == "falcon_h1"
    for i in range(cm.n_layers):
        pre = f"model.layers.{i}." if hybrid else f"backbone.layers.{i}."
        norm, mixer = (pre + "input_layernorm", pre + "mamba") if hybrid else (pre + "norm", pre + "mixer")
        paths = [norm, mixer]
        if hybrid:
            paths += [pre + f"self_attn.{p}_proj" for p in "qkvo"] + [pre + "pre_ff_layernorm", pre + "feed_forward"]
        ios = _record(model, paths, ids)
        layer = cm.layer(i)
        eps = model.get_submodule(norm).variance_epsilon
        x_in = _rms(ios[norm][0], layer.attn_norm, eps)
        _close(x_in, ios[mixer][0], f"{case} layer {i} mixer input (pre-mixer gain)")
        module = model.get_submodule(mixer)
        mode = (
            "none" if not getattr(cfg, "mamba_rms_norm", True) else ("norm-then-gate" if hybrid else "gate-then-norm")
        )
        assert layer.mixer is not None
        ours = single_token_mixer(layer.mixer, x_in, module, mode)
        _close(ours, ios[mixer][1], f"{case} layer {i} mixer output")
        if not hybrid:
            assert layer.attn is None and layer.mlp is None
            continue
        a = layer.attn
        assert a is not None and layer.mlp is not None
        q_in = ios[pre + "self_attn.q_proj"][0]
        _close(x_in * cfg.attention_in_multiplier, q_in, f"{case} layer {i} attention input")
        for name, w in (("q", a.q), ("k", a.k), ("v", a.v)):
            _close(q_in @ w.float().T, ios[pre + f"self_attn.{name}_proj"][1], f"{case} layer {i} {name}")
        o_in, o_out = ios[pre + "self_attn.o_proj"]
        _close(o_in @ a.o.float().T, o_out, f"{case} layer {i} attention output")
        f_in = ios[pre + "feed_forward"][0]
        _close(_rms(ios[pre + "pre_ff_layernorm"][0], layer.ffn_norm, eps), f_in, f"{case} layer {i} FFN input")
        g_mult, d_mult = cfg.mlp_multipliers
        m = layer.mlp
        assert m.gate is not None
        hidden = F.silu(g_mult * (f_in @ m.gate.float().T)) * (f_in @ m.up.float().T)
        _close(d_mult * hidden @ m.down.float().T, ios[pre + "feed_forward"][1], f"{case} layer {i} FFN output")
    emb = model.get_input_embeddings().weight.detach()
    _close(cm.embedding_rows(list(range(3, 40))), emb[3:40], f"{case} embedding rows")
    _close(cm.head_rows(list(range(3, 40))), model.get_output_embeddings().weight.detach()[3:40], f"{case} head")
    assert cm.n_layers == cfg.num_hidden_layers and cm.dims.hidden == cfg.hidden_size


def _l2(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + 1e-6)


def single_token_deltanet(mx: Any, x_in: torch.Tensor, module: Any) -> torch.Tensor:
    """A gated DeltaNet's output for one token and an empty state, from the canonical parts."""
    n, hk, dk, hv, dv = x_in.shape[0], mx.n_groups, mx.d_state, mx.n_heads, mx.head_dim
    tv, tk, tq = mx.taps()
    v = F.silu(tv * (x_in @ mx.x.float().T)).reshape(n, hv, dv)
    k = _l2(F.silu(tk * (x_in @ mx.b.float().T)).reshape(n, hk, dk))
    q = _l2(F.silu(tq * (x_in @ mx.c.float().T)).reshape(n, hk, dk))
    beta = torch.sigmoid(x_in @ mx.dt[hv:].float().T)  # canonical dt rows are [a; b]
    qk = ((q * k).sum(-1) * dk**-0.5).repeat_interleave(hv // hk, dim=1)  # value head j reads key head j // g
    o = (beta * qk)[:, :, None] * v
    o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + _eps(module.norm))
    assert mx.norm is not None
    z = (x_in @ mx.z.float().T).reshape(n, hv, dv)
    o = o * mx.norm.reshape(hv, dv) * F.silu(z)
    return o.reshape(n, -1) @ mx.out.float().T


def test_qwen3_next_view_reproduces_the_model(saved: dict[str, Path]) -> None:
    case = "qwen3_next"
    model = build_tiny_model(case, seed=0)
    cm = load_model(saved[case])
    assert cm.family == "qwen3_next" and any("output gate" in w for w in cm.warnings)
    ids = torch.arange(3, 3 + 16).reshape(16, 1)
    kinds = model.config.layer_types
    for i in range(cm.n_layers):
        pre = f"model.layers.{i}."
        layer = cm.layer(i)
        linear = kinds[i] == "linear_attention"
        paths = [pre + "input_layernorm", pre + "post_attention_layernorm", pre + "mlp.shared_expert"]
        paths += [pre + "linear_attn"] if linear else [pre + f"self_attn.{p}_proj" for p in "qkvo"]
        ios = _record(model, paths, ids)
        norm = model.get_submodule(pre + "input_layernorm")
        x_in = _rms(ios[pre + "input_layernorm"][0], layer.attn_norm, _eps(norm))
        _close(x_in, ios[pre + "input_layernorm"][1], f"layer {i} input norm (1+γ gain)")
        if linear:
            assert layer.attn is None and layer.mixer is not None
            module = model.get_submodule(pre + "linear_attn")
            ours = single_token_deltanet(layer.mixer, x_in, module)
            _close(ours, ios[pre + "linear_attn"][1], f"layer {i} gated DeltaNet output")
        else:
            a = layer.attn
            assert a is not None and layer.mixer is None
            q_out = ios[pre + "self_attn.q_proj"][1].reshape(16, a.n_heads, 2, a.head_dim)[:, :, 0]
            _close(x_in @ a.q.float().T, q_out, f"layer {i} gated q (query half)")
            for name, w in (("k", a.k), ("v", a.v)):
                _close(x_in @ w.float().T, ios[pre + f"self_attn.{name}_proj"][1], f"layer {i} {name}")
            o_in, o_out = ios[pre + "self_attn.o_proj"]
            _close(o_in @ a.o.float().T, o_out, f"layer {i} attention output")
            for gain, mod in ((a.q_norm, "q_norm"), (a.k_norm, "k_norm")):
                assert gain is not None
                _close(gain, 1.0 + model.get_submodule(pre + f"self_attn.{mod}").weight.detach(), f"layer {i} {mod}")
        ffn = model.get_submodule(pre + "post_attention_layernorm")
        f_in = _rms(ios[pre + "post_attention_layernorm"][0], layer.ffn_norm, _eps(ffn))
        _close(f_in, ios[pre + "post_attention_layernorm"][1], f"layer {i} FFN norm")
        assert len(layer.experts) == 4 and len(layer.shared_experts) == 1 and layer.router is not None
        sh = layer.shared_experts[0]
        assert sh.gate is not None
        ours = (F.silu(f_in @ sh.gate.float().T) * (f_in @ sh.up.float().T)) @ sh.down.float().T
        _close(ours, ios[pre + "mlp.shared_expert"][1], f"layer {i} shared expert")
        experts = model.get_submodule(pre + "mlp.experts")
        with torch.no_grad():
            for e, mlp in enumerate(layer.experts):
                theirs = experts(f_in, torch.full((16, 1), e, dtype=torch.long), torch.ones(16, 1))
                ours = (F.silu(f_in @ mlp.gate.float().T) * (f_in @ mlp.up.float().T)) @ mlp.down.float().T
                _close(ours, theirs, f"layer {i} expert {e}")


@pytest.mark.parametrize("case", MIXER_CASE_NAMES)
def test_self_comparison_is_exact(case: str, saved: dict[str, Path]) -> None:
    cm = load_model(saved[case])
    for method in (DEFAULT, HUREF_2024):
        res = compare_models(cm, cm, method, precision="fp32")
        assert abs(res.score - 1.0) < 1e-5, (case, method.name, res.score)
        assert res.verdict == Verdict.MATCH, (case, method.name, res.reasons)
        for pair in res.pairs:
            mixer_layer = cm.layer(pair.a).mixer is not None
            assert set(MIXER_TERMS) <= set(pair.terms) or not mixer_layer, (case, pair.terms)
            assert all(abs(v - 1.0) < 1e-5 for v in pair.terms.values()), (case, method.name, pair)


def _drifted(model: Any, seed: int = 99) -> Any:
    derived = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in derived.parameters():
            if p.numel() > 1:
                p.add_(0.05 * p.std() * torch.randn(p.shape, generator=gen))
    return derived


@pytest.mark.parametrize("case", MIXER_CASE_NAMES)
def test_derived_copy_matches_and_other_seed_does_not(case: str, saved: dict[str, Path], tmp_path: Path) -> None:
    base = load_model(saved[case])
    derived = save_model(_drifted(build_tiny_model(case, seed=0)), tmp_path / "derived")
    other = save_model(build_tiny_model(case, seed=101), tmp_path / "other")
    near = compare_models(base, load_model(derived), DEFAULT, precision="fp32")
    far = compare_models(base, load_model(other), DEFAULT, precision="fp32")
    assert near.verdict == Verdict.MATCH, (case, near.score, near.reasons)
    assert far.verdict == Verdict.NO_MATCH, (case, far.score, far.reasons)
    assert near.score > far.score


# --------------------------------------------------------------------------- the mixer's symmetries
def _mixer_symmetries(model: Any, gen: torch.Generator) -> None:
    for mixer in st.mixers(model):
        st.permute_mixer(mixer, gen)
        st.rescale_mixer(mixer, gen)


def _rotation_and_mixer_symmetries(model: Any, gen: torch.Generator) -> None:
    st.rotate_mamba2(model, gen)
    _mixer_symmetries(model, gen)


def _deltanet_symmetries(model: Any, gen: torch.Generator) -> None:
    for m in st.deltanets(model):
        st.permute_deltanet(m, gen)
        st.rescale_deltanet(m, gen)


TRANSFORMS = {
    "mamba2-rotation": ("mamba2", st.rotate_mamba2),
    "mamba2-mixer-perm-scale": ("mamba2", _mixer_symmetries),
    "mamba2-all": ("mamba2", _rotation_and_mixer_symmetries),
    "falcon_h1-mixer-perm-scale": ("falcon_h1", _mixer_symmetries),
    "falcon_h1-nonorm-mixer-perm-scale": ("falcon_h1-nonorm", _mixer_symmetries),
    "qwen3_next-deltanet-perm-scale": ("qwen3_next", _deltanet_symmetries),
}


def _logits(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits.float()


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_mixer_transforms_preserve_function_and_every_cell(name: str, saved: dict[str, Path], tmp_path: Path) -> None:
    case, transform = TRANSFORMS[name]
    model = build_tiny_model(case, seed=0)
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    reference = _logits(model, ids)
    transform(model, torch.Generator().manual_seed(7))
    changed = _logits(model, ids)
    rel = float((changed - reference).abs().max() / reference.abs().max())
    assert rel < EXACT_TOL, f"{name}: the transform changed the function (relative logit error {rel:.1e})"
    res = compare_models(
        load_model(saved[case]), load_model(save_model(model, tmp_path / name)), METHOD, precision="fp32"
    )
    assert res.verdict == Verdict.MATCH, (name, res.reasons)
    assert res.score >= MIN_SCORE, (name, res.score)
    cells = [(p.a, t, v) for p in res.pairs for t, v in p.terms.items()]
    assert {t for _a, t, _v in cells} >= set(MIXER_TERMS)
    low = [c for c in cells if c[2] < MIN_SCORE] + [(-1, t, v) for t, v in res.global_terms.items() if v < MIN_SCORE]
    assert not low, (name, low)


def test_the_logit_check_has_teeth() -> None:
    """Permuting x channels alone (not z, conv or out_proj) is not a symmetry: the logits must move."""
    model = build_tiny_model("mamba2", seed=0)
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    reference = _logits(model, ids)
    mixer = model.backbone.layers[0].mixer
    c = mixer.intermediate_size
    with torch.no_grad():
        rows = mixer.in_proj.weight[c : 2 * c]
        rows.copy_(rows[torch.randperm(c, generator=torch.Generator().manual_seed(1))])
    rel = float((_logits(model, ids) - reference).abs().max() / reference.abs().max())
    assert rel > 1e-2, rel


# --------------------------------------------------------------------------- the verdict of a pure SSM
@pytest.fixture(scope="module")
def mamba_world(saved: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("mamba-lineage")
    folders = {
        "base": saved["mamba2"],
        "derived": save_model(_drifted(build_tiny_model("mamba2", seed=0)), tmp / "derived"),
        "other": save_model(build_tiny_model("mamba2", seed=5), tmp / "other"),
    }
    generate_keypair(tmp / "pub", None)
    bundle = tmp / "base.attest"
    attest.issue(folders["base"], tmp / "pub.key", bundle, name="mamba-base", issuer="pub")
    return {"folders": folders, "bundle": bundle, "pub": tmp / "pub.pub"}


@pytest.mark.parametrize("name,verdict", [("derived", "match"), ("other", "no_match")])
def test_pure_mamba2_verdict_rests_on_mixer_channel_lineage(
    mamba_world: dict[str, Any], name: str, verdict: str
) -> None:
    folders = mamba_world["folders"]
    v = attest.verify(folders[name], mamba_world["bundle"], trust=mamba_world["pub"]).to_json()
    c = attest.compare(folders["base"], folders[name]).to_json()
    for report in (v, c):
        assert report["verdict"] == verdict, (name, report["reasons"])
        lin = report["lineage"]
        if verdict == "match":
            assert lin["conclusion"] == "lineage" and lin["p_value"] <= ALPHA
        else:
            assert lin["conclusion"] == "no_lineage" and lin["p_value"] > ALPHA
            assert lin["power"]["p_at_reference"] <= ALPHA  # no_match claims power
    assert v["verdict"] == c["verdict"]


def test_mamba2_bundle_carries_mixer_channels(saved: dict[str, Path]) -> None:
    from attest.lineage import build_payload
    from attest.lineage.payload import parse_payload

    cm = load_model(saved["mamba2"])
    payload = build_payload(cm, list(range(1, 300)))
    _positions, layers, _n = parse_payload(payload)
    assert [ch for _i, ch, _k, _v in layers] == [("z", "x")] * cm.n_layers
    assert all(doc["width"] == 128 for doc in payload["layers"])  # d_inner channels, all of them tested
    # no standard attention: no head channel in the payload
    assert "head_tokens" not in payload and not any("heads" in doc for doc in payload["layers"])


# --------------------------------------------------------------------------- malformed mixers
def _rewrite(src: Path, dst: Path, edit_tensors: Any = None, edit_config: Any = None) -> Path:
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    if edit_tensors is not None:
        sd = load_file(str(dst / "model.safetensors"))
        edit_tensors(sd)
        save_file(sd, str(dst / "model.safetensors"), metadata={"format": "pt"})
    if edit_config is not None:
        cfg = json.loads((dst / "config.json").read_text())
        edit_config(cfg)
        (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize(
    "case,what,edit_tensors,edit_config,match",
    [
        (
            "mamba2",
            "in_proj missing a row",
            lambda sd: sd.update(
                {"backbone.layers.1.mixer.in_proj.weight": sd["backbone.layers.1.mixer.in_proj.weight"][:-1]}
            ),
            None,
            "layer 1 mixer",
        ),
        ("mamba2", "config head count", None, lambda c: c.update(num_heads=4), "layer 0 mixer in_proj has 8 dt rows"),
        ("falcon_h1", "multipliers", None, lambda c: c.update(ssm_multipliers=[1.0, 2.0]), "ssm multipliers"),
        ("qwen3_next", "layer_types length", None, lambda c: c.update(layer_types=["linear_attention"]), "layer_types"),
        (
            "qwen3_next",
            "conv channels",
            lambda sd: sd.update(
                {"model.layers.2.linear_attn.conv1d.weight": sd["model.layers.2.linear_attn.conv1d.weight"][:-2]}
            ),
            None,
            "layer 2 conv1d",
        ),
    ],
)
def test_malformed_mixers_are_clean_input_errors(
    case: str, what: str, edit_tensors: Any, edit_config: Any, match: str, saved: dict[str, Path], tmp_path: Path
) -> None:
    from attest.errors import InputError

    folder = _rewrite(saved[case], tmp_path / "bad", edit_tensors, edit_config)
    with pytest.raises(InputError, match=match):
        cm = load_model(folder)
        for i in range(cm.n_layers):
            cm.layer(i)


def test_mamba2_is_detected_without_a_config(saved: dict[str, Path], tmp_path: Path) -> None:
    """No config.json: the tensor names tell the family, and the mixer's shapes alone give the same terms."""
    import shutil

    folder = tmp_path / "noconfig"
    shutil.copytree(saved["mamba2"], folder)
    (folder / "config.json").unlink()
    cm = load_model(folder)
    assert cm.family == "mamba2" and cm.config is None
    res = compare_models(load_model(saved["mamba2"]), cm, DEFAULT, precision="fp32")
    assert res.verdict == Verdict.MATCH and abs(res.score - 1.0) < 1e-5, (res.score, res.reasons)
