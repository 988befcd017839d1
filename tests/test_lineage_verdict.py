"""The verdict rests on lineage (issue 11): every fixture case through `verify` and `compare`.

A bundle is issued from the committed base (tests/fixtures/lineage/base);
each case is verified against it and compared with the base.  Each asserts
its verdict in both commands, that the two agree, and that the lineage
p-value is on the right side of α.  Also: power instead of a coverage ratio
(a vocabulary-pruned derivative matches, an unrelated model sharing hundreds
of probe strings does not), evidence whose lineage p-value was edited fails
`inspect`, and the dogs under partial coverage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import torch
from helpers.statement_docs import thaw as _thaw
from test_lineage import FIXTURES, _dropped, _pruned, _rotated, _save, _sd

import attest
from attest.bundle.container import read_evidence, write_evidence
from attest.crypto.keys import TrustStore, generate_keypair, load_private_key
from attest.errors import BundleError
from attest.scoring.decision import DEFAULT_POLICY
from attest.vocab.selection import select

ALPHA = DEFAULT_POLICY.lineage_alpha
ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "report.schema.json").read_text())
DERIVED = ("finetune", "continued", "pruned", "dropped", "rotated", "vocab_pruned")
UNRELATED = ("twin", "transplant", "wide", "twin_vocab_pruned")


def _vocab_pruned(src: Path, out: Path, keep: float, seed: int) -> Path:
    """`src` with all but a fraction `keep` of the base's probe strings removed from its vocabulary.

    Embedding and head rows are gathered and re-indexed as a real vocabulary
    pruning does (the layers are untouched), so the bundle's token ids no
    longer line up: only strings can.
    """
    from attest.arch.detect import load_model

    base_vocab = load_model(FIXTURES / "base").vocab
    index = base_vocab.index()  # canonical probe string -> id (the raw keys are byte-level BPE text)
    rng = np.random.default_rng(seed)
    drop = {index[t] for t in select(base_vocab, 1024) if rng.random() >= keep}
    sd, cfg = _sd(src), json.loads((src / "config.json").read_text())
    tok = json.loads((src / "tokenizer.json").read_text())
    vocab: dict[str, int] = tok["model"]["vocab"]
    kept = sorted((i, t) for t, i in vocab.items() if i not in drop)
    new_id = {i: n for n, (i, _t) in enumerate(kept)}
    tok["model"]["vocab"] = {t: new_id[i] for i, t in kept}
    tok["model"]["merges"] = [
        m for m in tok["model"]["merges"] if all(x in tok["model"]["vocab"] for x in (m[0], m[1], m[0] + m[1]))
    ]
    for added in tok.get("added_tokens", []):
        added["id"] = new_id[added["id"]]
    rows = torch.tensor([i for i, _t in kept])
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        sd[name] = sd[name][rows]
    folder = _save(sd, {**cfg, "vocab_size": len(kept)}, out)
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not (FIXTURES / "base" / "model.safetensors").exists():
        pytest.skip("lineage fixtures missing: run tests/fixtures/make_lineage_models.py")
    tmp = tmp_path_factory.mktemp("lineage-verdict")
    folders: dict[str, Path] = {
        n: FIXTURES / n for n in ("base", "finetune", "continued", "twin", "transplant", "wide")
    }
    folders["pruned"] = _pruned(tmp / "pruned")
    folders["dropped"] = _dropped(tmp / "dropped")
    folders["rotated"] = _rotated(tmp / "rotated")
    # ~25% of the bundle's probe strings remain, as in the issue's pruned multilingual derivative
    folders["vocab_pruned"] = _vocab_pruned(FIXTURES / "finetune", tmp / "vocab-pruned", 0.25, seed=7)
    # an unrelated model that still shares hundreds of probe strings (about 40% of 624)
    folders["twin_vocab_pruned"] = _vocab_pruned(FIXTURES / "twin", tmp / "twin-vocab-pruned", 0.4, seed=8)
    generate_keypair(tmp / "pub", None)
    generate_keypair(tmp / "auditor", None)
    bundle = tmp / "base.attest"
    attest.issue(folders["base"], tmp / "pub.key", bundle, name="lineage-base", issuer="pub")
    return {"tmp": tmp, "folders": folders, "bundle": bundle, "pub": tmp / "pub.pub", "auditor": tmp / "auditor"}


@pytest.fixture(scope="module")
def verdicts(world: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """(verify --json, compare --json) for every case."""
    out = {}
    for name in DERIVED + UNRELATED:
        v = attest.verify(world["folders"][name], world["bundle"], trust=world["pub"]).to_json()
        c = attest.compare(world["folders"]["base"], world["folders"][name]).to_json()
        out[name] = (v, c)
    return out


@pytest.mark.parametrize("name", DERIVED)
def test_derived_cases_match_in_verify_and_compare(verdicts, name: str) -> None:
    v, c = verdicts[name]
    jsonschema.validate(v, SCHEMA)
    for report in (v, c):
        assert report["verdict"] == "match", (name, report["reasons"])
        assert report["lineage"]["conclusion"] == "lineage"
        assert report["p_value"] == report["lineage"]["p_value"] <= ALPHA  # readers see the lineage p
    assert v["lineage"]["p_value"] == pytest.approx(c["lineage"]["p_value"], rel=1e-9)


@pytest.mark.parametrize("name", UNRELATED)
def test_unrelated_cases_do_not_match_in_verify_and_compare(verdicts, name: str) -> None:
    v, c = verdicts[name]
    jsonschema.validate(v, SCHEMA)
    for report in (v, c):
        assert report["verdict"] == "no_match", (name, report["reasons"])
        assert report["lineage"]["conclusion"] == "no_lineage"
        assert report["p_value"] == report["lineage"]["p_value"] > ALPHA
        # "no_match" claims power: 20% agreement would have reached α with these counts
        assert report["lineage"]["power"]["p_at_reference"] <= ALPHA
    assert v["verdict"] == c["verdict"]


def test_power_not_coverage_decides(verdicts) -> None:
    """Under the old coverage rule (50%) both of these were inconclusive."""
    v, _c = verdicts["vocab_pruned"]
    assert v["coverage"] < DEFAULT_POLICY.min_coverage and v["verdict"] == "match"
    assert 0.15 < v["coverage"] < 0.35
    v, _c = verdicts["twin_vocab_pruned"]
    assert v["tokens_covered"] >= 200 and v["coverage"] < DEFAULT_POLICY.min_coverage and v["verdict"] == "no_match"


def test_likeness_is_a_finding_never_a_match(verdicts) -> None:
    """The transplant reuses the base's embeddings and head: reported, but the verdict is no_match."""
    v, c = verdicts["transplant"]
    assert v["verdict"] == c["verdict"] == "no_match"
    assert v["score_z"] is not None and v["score_p_value"] is not None  # the score's null stays a finding
    for report in (v, c):
        assert any("token embeddings are related" in n for n in report["notes"]), report["notes"]


def test_partial_coverage_draws_both_dogs_from_the_covered_positions(world, verdicts, tmp_path) -> None:
    v = attest.verify(world["folders"]["vocab_pruned"], world["bundle"], trust=world["pub"], report=tmp_path / "r.html")
    assert v.dogs_note and "covers" in v.dogs_note
    from attest.sketch.latent import cosine
    from attest.sketch.statement import StatementView

    view = StatementView.parse(attest.open_bundle(world["bundle"], world["pub"]).document)
    same = cosine(v.base_latent, v.suspect_latent)
    issued = cosine(view.latent, v.suspect_latent)
    assert same > issued and same > 0.9, (same, issued)  # the same dog once drawn from the same coordinates
    assert "Partial coverage" in (tmp_path / "r.html").read_text()
    full = attest.verify(world["folders"]["finetune"], world["bundle"], trust=world["pub"])
    assert full.dogs_note is None and np.array_equal(full.base_latent, view.latent)  # full coverage: the issued dog


def _evidence(world: dict[str, Any], name: str, path: Path) -> Path:
    attest.verify(
        world["folders"][name],
        world["bundle"],
        trust=world["pub"],
        evidence=path,
        verifier_key=world["auditor"].with_suffix(".key"),
    )
    return path


def _resign(world: dict[str, Any], src: Path, dst: Path, edit: Any) -> Path:
    verifiers = world["tmp"] / "verifiers"
    verifiers.mkdir(exist_ok=True)
    (verifiers / "auditor.pub").write_bytes(world["auditor"].with_suffix(".pub").read_bytes())
    opened = read_evidence(
        src.read_bytes(), TrustStore.from_dir(world["pub"].parent), verifier_trust=TrustStore.from_dir(verifiers)
    )
    body = {k: opened.body[k] for k in ("attestation", "suspect", "results", "tool", "time")}
    body = _thaw(body)
    edit(body)
    write_evidence(
        dst,
        body,
        base_png=opened.images["base"],
        suspect_png=opened.images["suspect"],
        sheet_png=opened.images.get("sheet"),
        key=load_private_key(world["auditor"].with_suffix(".key"), None),
        issuer="auditor",
    )
    return dst


def _inspect(world: dict[str, Any], path: Path) -> Any:
    return attest.inspect(path, trust=world["pub"], verifier_trust=world["tmp"] / "verifiers")


def test_evidence_rechecks_the_lineage_and_an_edited_p_value_fails(world, tmp_path) -> None:
    ev = _evidence(world, "twin", tmp_path / "twin.cbor")
    same = _resign(world, ev, tmp_path / "same.cbor", lambda body: None)
    good = _inspect(world, same)
    assert good.ok, good.problems
    assert good.check is not None and good.check.recomputed["lineage"]["conclusion"] == "no_lineage"

    def edit_p(body: dict[str, Any]) -> None:  # "the lineage test found the base's neurons"
        body["results"]["lineage"]["p_value"] = 1e-30
        body["results"]["p_value"] = 1e-30
        body["results"]["verdict"] = "match"

    bad = _inspect(world, _resign(world, ev, tmp_path / "p.cbor", edit_p))
    assert not bad.ok
    assert any("lineage.p_value" in p for p in bad.problems), bad.problems
    assert any("verdict" in p for p in bad.problems), bad.problems

    def edit_counts(body: dict[str, Any]) -> None:  # the counts themselves: every tested neuron "agrees"
        for row in body["suspect"]["lineage"]["layers"]:
            row[3] = row[2]

    bad = _inspect(world, _resign(world, ev, tmp_path / "k.cbor", edit_counts))
    assert not bad.ok and any("verdict" in p for p in bad.problems), bad.problems


def test_a_statement_1_bundle_verifies_on_the_score_alone(world, tmp_path) -> None:
    """Bundles issued before lineage payloads still verify, and say what the verdict rests on."""
    from attest.bundle import issue_statement, write_attestation
    from attest.bundle.container import inspect_attestation
    from attest.formats import STATEMENT_FORMAT_V1

    opened = inspect_attestation(world["bundle"].read_bytes())
    doc = {k: v for k, v in _thaw(opened.document).items() if k != "lineage"}
    doc["format"] = STATEMENT_FORMAT_V1
    key = load_private_key(world["tmp"] / "pub.key", None)
    old = tmp_path / "old.attest"
    write_attestation(old, issue_statement(doc, key, issuer="pub", subject="lineage-base"), opened.png)
    v = attest.verify(world["folders"]["finetune"], old, trust=world["pub"])
    assert v.lineage is None and v.verdict.value == "match"
    assert any("issued before lineage payloads" in n for n in v.notes)
    assert v.to_json()["lineage"] is None
    with_lineage = dict(doc, lineage=_thaw(opened.document)["lineage"])
    with pytest.raises(BundleError):  # /1 may not carry a payload
        issue_statement(with_lineage, key, issuer="pub", subject="x")


def test_z_of_p_inverts_the_normal_tail() -> None:
    import math

    from attest.scoring.lineage_verdict import z_of_p

    for z in (-2.0, 0.0, 1.0, 5.0, 20.0):
        assert z_of_p(0.5 * math.erfc(z / math.sqrt(2))) == pytest.approx(z, abs=1e-6)
    assert 36 < z_of_p(1e-300) < 38 and z_of_p(0.0) == math.inf and math.isnan(z_of_p(float("nan")))


def test_a_malformed_lineage_payload_is_refused_before_signing_and_on_read(world) -> None:
    from attest.bundle import issue_statement
    from attest.bundle.container import inspect_attestation

    doc = _thaw(inspect_attestation(world["bundle"].read_bytes()).document)
    key = load_private_key(world["tmp"] / "pub.key", None)
    for edit in (
        lambda lin: lin["layers"][0].update(data=b"\x00"),  # wrong size for 2 x m x k
        lambda lin: lin.update(n_tokens=lin["n_tokens"] + 1),  # not the statement's token count
        lambda lin: lin["layers"][0].update(channels=["gate", "telepathy"]),
        lambda lin: lin.update(layers=[]),
    ):
        bad = _thaw(doc)
        edit(bad["lineage"])
        with pytest.raises(BundleError, match="lineage"):
            issue_statement(bad, key, issuer="pub", subject="x")
