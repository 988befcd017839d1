"""The head channel in bundles (issue 11): carried by `issue`, tested by `verify` and `compare`,
joining the verdict only where it has power (docs/lineage.md, "Head channel").

Real `transformers` Llamas with many narrow heads (tests/helpers/many_heads.py):
a derivative whose FFNs were all re-initialised (attention kept, 5% drift),
which the FFN channel cannot see, and an independent twin.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import cbor2
import jsonschema
import numpy as np
import pytest
from helpers import many_heads as mh
from helpers.statement_docs import thaw as _thaw

import attest
from attest.arch.detect import load_model
from attest.bundle import issue_statement, write_attestation
from attest.bundle.container import inspect_attestation
from attest.bundle.core_schema import check_lineage
from attest.crypto.keys import generate_keypair, load_private_key
from attest.errors import BundleError
from attest.lineage.payload import BUNDLE_HEAD_TOKENS, build_payload, parse_payload, test_against_payload
from attest.lineage.result import CHANNELS, LINEAGE, LineageResult
from attest.scoring.decision import DEFAULT_POLICY
from attest.vocab.selection import locate, select

ALPHA = DEFAULT_POLICY.lineage_alpha
ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "report.schema.json").read_text())
LINEAGE_FIXTURES = ROOT / "tests" / "fixtures" / "lineage"


def _world(tmp: Path, heads: int) -> dict[str, Any]:
    model = mh.many_heads(heads, 0)
    folders = {
        "base": mh.save(model, tmp / "base"),
        "derived": mh.save(mh.ffn_replaced(model, heads), tmp / "ffn-replaced"),
        "twin": mh.save(mh.many_heads(heads, 31), tmp / "twin"),
    }
    generate_keypair(tmp / "pub", None)
    bundle = tmp / "base.attest"
    attest.issue(folders["base"], tmp / "pub.key", bundle, name="heads-base", issuer="pub")
    return {"tmp": tmp, "folders": folders, "bundle": bundle, "pub": tmp / "pub.pub"}


@pytest.fixture(scope="module")
def world64(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _world(tmp_path_factory.mktemp("heads64"), 64)


@pytest.fixture(scope="module")
def world32(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _world(tmp_path_factory.mktemp("heads32"), 32)


def test_issue_writes_heads_into_the_payload(world64) -> None:
    doc = inspect_attestation(world64["bundle"].read_bytes()).document
    lin = doc["lineage"]
    assert lin["head_tokens"] == BUNDLE_HEAD_TOKENS
    assert all(layer["heads"]["count"] == 64 for layer in lin["layers"])
    m_h = BUNDLE_HEAD_TOKENS
    assert all(len(layer["heads"]["data"]) == 2 * m_h * m_h * 64 for layer in lin["layers"])


def test_ffn_replaced_derivative_matches_through_the_joined_head_channel(world64, tmp_path) -> None:
    f = world64["folders"]
    html = tmp_path / "report.html"
    v = attest.verify(f["derived"], world64["bundle"], trust=world64["pub"], report=html).to_json()
    text = html.read_text()
    assert "Attention-head channel" in text and "in the verdict" in text
    assert "Its attention heads are the base model" in text  # not "its FFN neurons": those are new
    jsonschema.validate(v, SCHEMA)
    lin = v["lineage"]
    assert lin["p_ffn"] > ALPHA  # the FFN channel alone: no lineage (its FFNs are new)
    heads = lin["heads"]
    assert heads["joined"] is True and heads["p_full_agreement"] <= ALPHA / CHANNELS
    assert all(row["agreement"] >= 0.9 for row in heads["layers"])
    assert v["verdict"] == "match" and lin["conclusion"] == LINEAGE
    assert v["p_value"] == lin["p_value"] == pytest.approx(min(1.0, CHANNELS * min(lin["p_ffn"], heads["p_value"])))
    # compare runs the same bundle procedure: the same verdict and p on the same pair
    c = attest.compare(f["base"], f["derived"]).to_json()
    assert c["verdict"] == v["verdict"] == "match"
    assert c["lineage"]["heads"]["joined"] is True
    assert c["lineage"]["p_value"] == pytest.approx(lin["p_value"], rel=1e-9)


def test_independent_twin_is_not_a_match_with_the_heads_joined(world64) -> None:
    f = world64["folders"]
    v = attest.verify(f["twin"], world64["bundle"], trust=world64["pub"]).to_json()
    c = attest.compare(f["base"], f["twin"]).to_json()
    for report in (v, c):
        assert report["lineage"]["heads"]["joined"] is True
        assert report["lineage"]["heads"]["p_value"] > ALPHA
        assert report["verdict"] != "match" and report["p_value"] > ALPHA
    assert v["verdict"] == c["verdict"]


def _strip_heads(world: dict[str, Any], out: Path) -> Path:
    """The world's bundle re-signed with a payload as written before the head channel."""
    opened = inspect_attestation(world["bundle"].read_bytes())
    doc = _thaw(opened.document)
    doc["lineage"].pop("head_tokens")
    for layer in doc["lineage"]["layers"]:
        layer.pop("heads")
    key = load_private_key(world["tmp"] / "pub.key", None)
    write_attestation(out, issue_statement(doc, key, issuer="pub", subject="heads-base"), opened.png)
    return out


def test_an_old_style_payload_without_heads_still_verifies(world64, tmp_path) -> None:
    old = _strip_heads(world64, tmp_path / "old.attest")
    v = attest.verify(world64["folders"]["derived"], old, trust=world64["pub"])
    assert v.lineage is not None and v.lineage.heads is None
    j = v.to_json()
    jsonschema.validate(j, SCHEMA)
    assert "heads" not in j["lineage"]
    # Without the heads the verdict is the FFN channel's, as before the head channel.
    with_heads = attest.verify(world64["folders"]["derived"], world64["bundle"], trust=world64["pub"])
    assert v.lineage.p_value == with_heads.lineage.p_channel  # type: ignore[union-attr]
    assert v.verdict.value != "match"


def test_thirty_two_heads_do_not_join_at_the_default_alpha(world32) -> None:
    """At H = 32 full agreement gives at best 9.5e-7 over 4 layers (Chatterjee): above α/2 = 5e-7,
    so the heads stay a finding and the verdict is the FFN channel's; at a verifier's α = 1e-5 they join."""
    f = world32["folders"]
    v = attest.verify(f["derived"], world32["bundle"], trust=world32["pub"])
    lin = v.lineage
    assert lin is not None and lin.heads is not None
    assert all(x.agree == x.neurons == 32 for x in lin.heads.layers)  # the heads agree fully...
    assert not lin.heads_joined and lin.heads.p_power > ALPHA / CHANNELS  # ...but cannot join
    assert lin.p_value == lin.p_channel and v.verdict.value != "match"
    assert any("attention-head channel" in n and "a finding only" in n for n in v.notes)
    looser = dataclasses.replace(DEFAULT_POLICY, lineage_alpha=1e-5)
    w = attest.verify(f["derived"], world32["bundle"], trust=world32["pub"], policy=looser)
    assert w.lineage is not None and w.lineage.heads_joined and w.verdict.value == "match"
    c = attest.compare(f["base"], f["derived"], policy=looser)
    assert c.verdict.value == "match" and c.lineage is not None and c.lineage.heads_joined
    assert c.lineage.p_value == pytest.approx(w.lineage.p_value, rel=1e-9)
    assert c.lineage.heads is not None and c.lineage.heads.p_channel == pytest.approx(lin.heads.p_channel, rel=1e-9)
    c_default = attest.compare(f["base"], f["derived"])  # and at the default α, the same (FFN) verdict
    assert c_default.verdict == v.verdict and c_default.lineage is not None and not c_default.lineage.heads_joined


def test_different_depths_pair_heads_as_the_ffn_channel_pairs_layers(world64, tmp_path) -> None:
    """A derivative with layer 2 dropped: every cell tested with factor 4·3, the monotone alignment."""
    import torch

    base_model = mh.many_heads(64, 0)
    derived = mh.ffn_replaced(base_model, 64)
    short = mh.many_heads(64, 0, layers=3)
    sd = {k: v for k, v in derived.state_dict().items() if ".layers." not in k}
    for new, old_i in enumerate([0, 1, 3]):
        prefix = f"model.layers.{old_i}."
        for k, v in derived.state_dict().items():
            if k.startswith(prefix):
                sd[f"model.layers.{new}." + k[len(prefix) :]] = v
    short.load_state_dict(sd)
    with torch.no_grad():
        ids = torch.arange(10).reshape(1, -1)
        assert torch.isfinite(short(ids).logits).all()
    suspect = load_model(mh.save(short, tmp_path / "dropped"))
    base = load_model(world64["folders"]["base"])
    tokens = select(base.vocab, 256)
    payload = cbor2.loads(cbor2.dumps(build_payload(base, [i for i in locate(base.vocab, tokens) if i is not None])))
    r = test_against_payload(payload, suspect, locate(suspect.vocab, tokens))
    assert r.heads is not None
    assert [(x.a, x.b) for x in r.heads.layers] == [(0, 0), (1, 1), (3, 2)]
    assert all(x.factor == 4 * 3 for x in r.heads.layers)
    assert r.heads.power_units == [(64, 12)] * 3  # the best 3 layers, fixed before counting
    assert r.heads_joined and r.p_channel > ALPHA and r.conclusion == LINEAGE


def test_identify_finds_the_ffn_replaced_derivative_through_the_heads(world64, tmp_path) -> None:
    from attest.crypto.keys import TrustStore
    from attest.registry import add

    f = world64["folders"]
    twin_bundle = tmp_path / "twin.attest"
    attest.issue(f["twin"], world64["tmp"] / "pub.key", twin_bundle, name="heads-twin", issuer="pub")
    old = _strip_heads(world64, tmp_path / "old.attest")  # a registry may hold bundles without heads
    reg = tmp_path / "reg"
    add(reg, [world64["bundle"], twin_bundle], TrustStore.from_pubkey(world64["pub"]))
    found = attest.identify(f["derived"], reg, trust=world64["pub"])
    assert found.verdict.value == "match" and found.base is not None and found.base.entry.name == "heads-base"
    v = attest.verify(f["derived"], world64["bundle"], trust=world64["pub"])
    assert found.base.verification is not None and found.base.verification.lineage is not None
    assert found.base.verification.lineage.p_value == pytest.approx(v.lineage.p_value, rel=1e-9)  # type: ignore[union-attr]
    other = next(c for c in found.candidates if c.entry.name == "heads-twin")
    assert other.evidence.verdict.value != "match"
    reg_old = tmp_path / "reg-old"
    add(reg_old, [old, twin_bundle], TrustStore.from_pubkey(world64["pub"]))
    without = attest.identify(f["derived"], reg_old, trust=world64["pub"])
    assert without.verdict.value != "match"  # the FFN channel alone cannot see this derivative


def test_lineage_record_round_trips_the_head_channel(world64) -> None:
    """Evidence stores the head counts and power units; `inspect` rebuilds p and `joined` from them."""
    v = attest.verify(world64["folders"]["derived"], world64["bundle"], trust=world64["pub"])
    lin = v.lineage
    assert lin is not None and lin.heads is not None
    rec = cbor2.loads(cbor2.dumps(lin.record()))
    back = LineageResult.from_record(rec, lin.alpha, lin.reference_agreement)
    assert back.heads is not None and back.heads_joined
    assert back.p_value == lin.p_value and back.conclusion == lin.conclusion
    rec["heads"]["layers"] = [row[:3] + [0] + row[4:] for row in rec["heads"]["layers"]]  # no head agrees
    edited = LineageResult.from_record(rec, lin.alpha, lin.reference_agreement)
    assert edited.p_value > ALPHA and edited.conclusion != LINEAGE
    with pytest.raises(ValueError):
        LineageResult.from_record(dict(rec, heads={"layers": [], "power": [[64, 0]]}), 1e-6, 0.2)
    # power units claiming more heads than were tested (to make the heads join) are refused
    inflated = dict(rec, heads=dict(rec["heads"], power=[[k * 10, f] for k, f in rec["heads"]["power"]]))
    with pytest.raises(ValueError, match="heads.power"):
        LineageResult.from_record(inflated, 1e-6, 0.2)


def test_evidence_with_heads_passes_inspect(world64, tmp_path) -> None:
    generate_keypair(tmp_path / "auditor", None)
    ev = tmp_path / "ev.cbor"
    attest.verify(
        world64["folders"]["derived"],
        world64["bundle"],
        trust=world64["pub"],
        evidence=ev,
        verifier_key=tmp_path / "auditor.key",
    )
    (tmp_path / "verifiers").mkdir()
    (tmp_path / "verifiers" / "auditor.pub").write_bytes((tmp_path / "auditor.pub").read_bytes())
    checked = attest.inspect(ev, trust=world64["pub"], verifier_trust=tmp_path / "verifiers")
    assert checked.ok, checked.problems
    assert checked.check is not None and checked.check.recomputed["lineage"]["conclusion"] == LINEAGE


def test_four_heads_never_join_and_change_nothing() -> None:
    """The tiny trained fixtures (4 heads): verdict, p and reasons equal those of a payload without heads."""
    if not (LINEAGE_FIXTURES / "base" / "model.safetensors").exists():
        pytest.skip("lineage fixtures missing: run tests/fixtures/make_lineage_models.py")
    base = load_model(LINEAGE_FIXTURES / "base")
    tokens = select(base.vocab, 1024)
    ids = [i for i in locate(base.vocab, tokens) if i is not None]
    with_heads = cbor2.loads(cbor2.dumps(build_payload(base, ids)))
    without = cbor2.loads(cbor2.dumps(build_payload(base, ids, head_tokens=0)))
    assert "heads" in with_heads["layers"][0] and "heads" not in without["layers"][0]
    assert "head_tokens" not in without
    for name in ("finetune", "twin"):
        suspect = load_model(LINEAGE_FIXTURES / name)
        located = locate(suspect.vocab, tokens)
        a = test_against_payload(with_heads, suspect, located)
        b = test_against_payload(without, suspect, located)
        assert a.heads is not None and not a.heads_joined and b.heads is None
        assert a.heads.p_power > ALPHA / CHANNELS
        assert a.p_value == b.p_value and a.conclusion == b.conclusion and a.reasons() == b.reasons()
        assert [x.record() for x in a.layers] == [x.record() for x in b.layers]


def _hostile(payload: dict[str, Any]) -> list[tuple[str, Any]]:
    m_h = payload["head_tokens"]
    h = payload["layers"][0]["heads"]["count"]

    def heads(d: dict[str, Any]) -> dict[str, Any]:
        return d["layers"][0]["heads"]  # type: ignore[no-any-return]

    return [
        ("short data", lambda d: heads(d).update(data=heads(d)["data"][:-1])),
        ("long scale", lambda d: heads(d).update(scale=heads(d)["scale"] + b"\0\0\0\0")),
        ("NaN scale", lambda d: heads(d).update(scale=np.full(2 * h, np.nan, "<f4").tobytes())),
        ("negative scale", lambda d: heads(d).update(scale=np.full(2 * h, -1.0, "<f4").tobytes())),
        ("huge H", lambda d: heads(d).update(count=10**9)),
        ("H budget", lambda d: heads(d).update(count=60_000)),
        ("zero H", lambda d: heads(d).update(count=0)),
        ("bool H", lambda d: heads(d).update(count=True)),
        ("heads not a map", lambda d: d["layers"][0].update(heads=[1, 2])),
        ("m_h above m", lambda d: d.update(head_tokens=10**6)),
        ("m_h of 1", lambda d: d.update(head_tokens=1)),
        ("heads without m_h", lambda d: d.pop("head_tokens")),
        ("wrong m_h", lambda d: d.update(head_tokens=m_h - 1)),
    ]


def test_hostile_heads_are_refused_with_bundle_error(world64) -> None:
    payload = _thaw(inspect_attestation(world64["bundle"].read_bytes()).document["lineage"])
    n_tokens = payload["n_tokens"]
    for what, mutate in _hostile(payload):
        doc = _thaw(payload)
        mutate(doc)
        with pytest.raises(BundleError):
            parse_payload(doc)
        if what not in ("NaN scale", "negative scale"):  # values are checked on use, sizes at read
            with pytest.raises(BundleError):
                check_lineage(doc, n_tokens)
    orphan = _thaw(payload)
    for layer in orphan["layers"]:
        layer.pop("heads")
    with pytest.raises(BundleError, match="head_tokens"):  # head_tokens without any heads
        parse_payload(orphan)


def test_head_channel_size_at_7b_shape() -> None:
    """32 layers × 32 heads: the heads add layers·(2·m_h²·H + 8·H) bytes plus keys, a few hundred kB."""
    from attest.lineage.payload import layout_document, payload_size

    layers, h, m_h = 32, 32, BUNDLE_HEAD_TOKENS
    with_heads = layout_document(layers, 11008, h)
    without = dict(with_heads, layers=[{k: v for k, v in x.items() if k != "heads"} for x in with_heads["layers"]])
    del without["head_tokens"]
    added = payload_size(with_heads) - payload_size(without)
    formula = layers * (2 * m_h * m_h * h + 8 * h)
    print(f"head channel at 7B shape: {added} bytes (data {formula})")
    assert formula <= added <= formula + 64 * layers  # the keys: a few dozen bytes per layer
    assert added < 400_000


def test_four_heads_verify_exactly_as_without_heads(tmp_path) -> None:
    """Through `verify`: a tiny trained 4-head base's bundle, and the same bundle with its heads stripped."""
    if not (LINEAGE_FIXTURES / "base" / "model.safetensors").exists():
        pytest.skip("lineage fixtures missing: run tests/fixtures/make_lineage_models.py")
    generate_keypair(tmp_path / "pub", None)
    bundle = tmp_path / "base.attest"
    attest.issue(LINEAGE_FIXTURES / "base", tmp_path / "pub.key", bundle, name="heads-base", issuer="pub")
    world = {"bundle": bundle, "tmp": tmp_path}
    old = _strip_heads(world, tmp_path / "old.attest")
    for name in ("finetune", "twin"):
        a = attest.verify(LINEAGE_FIXTURES / name, bundle, trust=tmp_path / "pub.pub")
        b = attest.verify(LINEAGE_FIXTURES / name, old, trust=tmp_path / "pub.pub")
        assert a.lineage is not None and a.lineage.heads is not None and not a.lineage.heads_joined
        assert b.lineage is not None and b.lineage.heads is None
        assert a.verdict == b.verdict and a.p_value == b.p_value and a.reasons == b.reasons
        assert any("attention-head channel" in n for n in a.notes)  # reported, as a finding


def test_best_power_bounds_every_choice_of_cells() -> None:
    """`identify` skips a head channel when `best_power` says it cannot join: the bound must be below the
    power of every set of cells the verdict could end up with (some layers, at most `limit`)."""
    import itertools
    import random

    from attest.lineage.result import best_power, chatterjee_power

    rng = random.Random(7)
    for _ in range(300):
        units = [(rng.choice([1, 2, 4, 12, 32, 40, 64]), rng.choice([1, 1, 6, 40])) for _ in range(rng.randint(1, 6))]
        limit = rng.randint(1, len(units))
        bound = best_power(units, limit)
        for n in range(1, limit + 1):
            for chosen in itertools.combinations(units, n):
                assert chatterjee_power(list(chosen)) >= bound * (1 - 1e-12)
    # more layers are not always better for Rüger: a weak layer can raise the count required
    assert best_power([(64, 1), (2, 1), (2, 1)], 3) == pytest.approx(chatterjee_power([(64, 1)]))


def test_identify_leaves_out_head_channels_that_cannot_join(tmp_path) -> None:
    """4 heads per layer can never join (full agreement gives p ≈ 0.4 per layer): identify skips the
    channel and says so, verify reports it as a finding, and the two give the same verdict and p."""
    if not (LINEAGE_FIXTURES / "base" / "model.safetensors").exists():
        pytest.skip("lineage fixtures missing: run tests/fixtures/make_lineage_models.py")
    from attest.crypto.keys import TrustStore
    from attest.registry import add

    generate_keypair(tmp_path / "pub", None)
    bundle = tmp_path / "base.attest"
    attest.issue(LINEAGE_FIXTURES / "base", tmp_path / "pub.key", bundle, name="heads-base", issuer="pub")
    reg = tmp_path / "reg"
    add(reg, [bundle], TrustStore.from_pubkey(tmp_path / "pub.pub"))
    for name in ("finetune", "twin"):
        found = attest.identify(LINEAGE_FIXTURES / name, reg, trust=tmp_path / "pub.pub")
        v = attest.verify(LINEAGE_FIXTURES / name, bundle, trust=tmp_path / "pub.pub")
        cand = found.candidates[0].verification
        assert cand is not None and cand.lineage is not None and v.lineage is not None
        assert v.lineage.heads is not None and cand.lineage.heads is None
        assert any("head channel not run here" in n for n in cand.lineage.notes)
        assert cand.verdict == v.verdict and cand.lineage.p_value == v.lineage.p_value


def test_a_payload_with_heads_on_some_layers_tests_those(world64, monkeypatch) -> None:
    """Deep models store heads on evenly spaced layers only (payload.head_layers, HEAD_BUDGET); the
    channel then pairs and combines exactly those layers.  Here the budget holds 2 of the 4."""
    from attest.lineage import payload as P

    per_layer = P.head_bytes(1, 64, BUNDLE_HEAD_TOKENS)
    monkeypatch.setattr(P, "HEAD_BUDGET", 2 * per_layer)
    assert P.head_layers(4, 64) == [0, 3]
    base = load_model(world64["folders"]["base"])
    tokens = select(base.vocab, 256)
    payload = cbor2.loads(cbor2.dumps(build_payload(base, [i for i in locate(base.vocab, tokens) if i is not None])))
    assert [("heads" in x) for x in payload["layers"]] == [True, False, False, True]
    suspect = load_model(world64["folders"]["derived"])
    r = test_against_payload(payload, suspect, locate(suspect.vocab, tokens))
    assert r.heads is not None and [(x.a, x.b) for x in r.heads.layers] == [(0, 0), (3, 3)]
    assert r.heads.power_units == [(64, 1), (64, 1)] and all(x.agree == x.neurons for x in r.heads.layers)
    assert len(r.layers) == 4  # the FFN channel still tests every layer
