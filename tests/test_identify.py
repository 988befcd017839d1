"""`attest identify`: 1:N against a registry, one read of the suspect, Holm–Bonferroni."""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers.registry_world import World, build_world, save_derivative

from attest.arch.detect import load_model
from attest.bundle.container import read_attestation
from attest.crypto.keys import TrustStore
from attest.errors import BundleError
from attest.registry import Registry, add
from attest.scoring.decision import DEFAULT_POLICY, Verdict
from attest.workflows.identify import holm, identify
from attest.workflows.verify import verify_suspect


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("identify-world"))


@pytest.fixture(scope="module")
def registry(world: World) -> Path:
    reg = world.root / "reg"
    add(reg, list(world.bundles.values()), TrustStore.from_pubkey(world.pub))
    return reg


@pytest.fixture(scope="module")
def suspects(world: World) -> dict[str, Path]:
    return {
        "derived-llama": save_derivative("llama", 21, world.root / "derived-llama"),
        "derived-qwen2": save_derivative("qwen2", 22, world.root / "derived-qwen2"),
        "unrelated-llama": save_derivative("llama", 77, world.root / "unrelated-llama", noise=0.0),
    }


class CountingSource:
    """Wraps a weight source and counts every tensor read, by name."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.reads: Counter[str] = Counter()

    def get(self, name: str):  # type: ignore[no-untyped-def]
        self.reads[name] += 1
        return self._inner.get(name)  # type: ignore[attr-defined]

    def get_rows(self, name: str, rows):  # type: ignore[no-untyped-def]
        self.reads[name] += 1
        return self._inner.get_rows(name, rows)  # type: ignore[attr-defined]

    def __getattr__(self, attr: str):  # type: ignore[no-untyped-def]
        return getattr(self._inner, attr)


def counted(path: Path):  # type: ignore[no-untyped-def]
    cm = load_model(path)
    cm.source = CountingSource(cm.source)  # type: ignore[assignment]
    return cm


def test_holm_bonferroni_matches_the_step_down_definition() -> None:
    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    # sorted: 0.005 x5 = 0.025, 0.01 x4 = 0.04, 0.03 x3 = 0.09, 0.04 x2 = 0.08 -> 0.09 (the running
    # maximum keeps adjusted p-values in the order of the raw ones), nan counts as 1
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.025, 1.0])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []
    for raw, adj in zip(p[:4], holm(p)[:4]):
        assert raw <= adj <= 1.0


def test_a_derivative_is_identified_as_its_base_with_verify_scores(world, registry, suspects) -> None:
    trust = TrustStore.from_pubkey(world.pub)
    suspect = counted(suspects["derived-llama"])
    with Registry.open(registry) as reg:
        result = identify(suspect, reg, trust)
    assert result.verdict is Verdict.MATCH and result.base is not None
    assert result.base.entry.name == "base-llama" and result.base.rank == 1
    assert result.n_bases == 4 and [c.rank for c in result.candidates] == [1, 2, 3, 4]
    assert all(c.evidence.verdict is Verdict.NO_MATCH for c in result.candidates[1:])
    assert result.base.p_holm <= 0.01 and all(c.p_holm >= c.evidence.p_value for c in result.candidates)
    # The one-pass values give exactly what a separate `verify` of each bundle gives,
    # although the bundles probe different token sets (96, 128 and 160 tokens).
    by_name = {c.entry.name: c for c in result.candidates}
    for name, bundle in world.bundles.items():
        alone = verify_suspect(read_attestation(bundle.read_bytes(), trust), load_model(suspects["derived-llama"]))
        v = by_name[name].verification
        assert v is not None and alone.verdict is v.verdict
        # tight: standardising the union matrix instead of each bundle's own tokens moves scores by ~1e-4
        assert v.score == pytest.approx(alone.score, abs=2e-5) and v.pairs_used == alone.pairs_used
    data = result.to_json(top=2)
    assert data["verdict"] == "match" and data["base"]["name"] == "base-llama"
    assert data["base"]["subject_root"] == world.subject_roots["base-llama"]
    assert len(data["candidates"]) == 2 and data["registry"]["bases"] == 4
    json.dumps(data)  # plain JSON all the way down


def test_the_suspect_is_read_once_whatever_the_number_of_bases(world, registry, suspects) -> None:
    trust = TrustStore.from_pubkey(world.pub)
    many = counted(suspects["derived-qwen2"])
    with Registry.open(registry) as reg:
        result = identify(many, reg, trust)
    assert result.base is not None and result.base.entry.name == "base-qwen2"
    one = counted(suspects["derived-qwen2"])
    verify_suspect(read_attestation(world.bundles["base-qwen2"].read_bytes(), trust), one)
    # identify against 4 bundles reads exactly what one verify against one bundle reads
    assert many.source.reads == one.source.reads and sum(one.source.reads.values()) > 0
    assert max(many.source.reads.values()) <= 2  # (a tied head would read the embedding twice; none is read more)
    assert result.layers_read == load_model(suspects["derived-qwen2"]).n_layers


def test_an_unrelated_model_gets_no_base(world, registry, suspects, capsys, monkeypatch) -> None:
    from attest.cli.app import main

    monkeypatch.setattr(
        sys,
        "argv",
        [
            "attest",
            "identify",
            str(suspects["unrelated-llama"]),
            "--registry",
            str(registry),
            "--pubkey",
            str(world.pub),
            "--json",
            "--top",
            "10",
        ],
    )
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert exc.value.code == 1, err
    assert data["verdict"] == "no_match" and data["base"] is None
    assert data["registry"] == {
        "bases": 4,
        "verdicts": {"match": 0, "no_match": 4, "inconclusive": 0},
        "comparable": 4,
        "not_comparable": 0,
        "screened": 0,
    }
    assert len(data["candidates"]) == 4 and all(c["verdict"] == "no_match" for c in data["candidates"])
    assert data["multiple_testing"] == {"method": "holm-bonferroni", "alpha": 0.01, "tests": 4}
    assert all(c["p_holm"] is not None and not math.isnan(c["p_holm"]) for c in data["candidates"])


def test_identify_refuses_a_tampered_registry(world, suspects, tmp_path) -> None:
    import sqlite3

    trust = TrustStore.from_pubkey(world.pub)
    reg = tmp_path / "reg"
    add(reg, [world.bundles["base-gpt2"], world.bundles["base-llama"]], trust)
    with sqlite3.connect(reg / "registry.sqlite") as conn:
        conn.execute("UPDATE bases SET name = 'base-mistral' WHERE name = 'base-gpt2'")
    with Registry.open(reg) as r, pytest.raises(BundleError, match="index row disagrees"):
        identify(load_model(suspects["unrelated-llama"]), r, trust)


def test_bundles_of_two_methods_share_one_read_of_each_layer(world, suspects, tmp_path) -> None:
    from attest.invariants.methods import HUREF_2024
    from attest.workflows.issue import issue_bundle

    trust = TrustStore.from_pubkey(world.pub)
    huref = tmp_path / "llama-huref.attest"
    issue_bundle(
        load_model(world.models["base-llama"]),
        world.key,
        huref,
        method=HUREF_2024.with_options(n_tokens=128),
        name="base-llama-huref",
        issuer="Registry Test Lab",
        meta={},
    )
    reg = tmp_path / "reg"
    add(reg, [huref, world.bundles["base-qwen2"], world.bundles["base-mistral"]], trust)
    suspect = counted(suspects["derived-llama"])
    with Registry.open(reg) as r:
        result = identify(suspect, r, trust)
    assert result.base is not None and result.base.entry.name == "base-llama-huref"
    assert result.base.entry.method == "huref-2024"
    alone = verify_suspect(read_attestation(huref.read_bytes(), trust), load_model(suspects["derived-llama"]))
    assert result.base.verification is not None
    assert result.base.verification.score == pytest.approx(alone.score, abs=2e-5)
    # Every layer tensor is read once although two methods use the layers; only the
    # probe rows of the embedding are read once per method, and once more for the
    # lineage tests of all bundles together (issue 11: the verdict rests on them;
    # they run in one pass over the suspect, attest.lineage.payload.test_many_against_payloads).
    cm = load_model(suspects["derived-llama"])
    embed = {cm.embed_name}
    layer_reads = {k: n for k, n in suspect.source.reads.items() if k not in embed}
    assert layer_reads and max(layer_reads.values()) == 1
    assert suspect.source.reads[cm.embed_name] == 3
    # And a bundle file modified on disk stops identify (exit 3) instead of being skipped.
    with Registry.open(reg) as r:
        entry = next(e for e in r.entries() if e.name == "base-qwen2")
        path = r.bundle_path(entry)
        path.write_bytes(path.read_bytes()[:-1] + b"\x00")
        with pytest.raises(BundleError, match="does not match its digest"):
            identify(load_model(suspects["derived-llama"]), r, trust)


def test_an_exact_copy_is_named_with_its_subject_match(world, registry, capsys, monkeypatch) -> None:
    from attest.cli.app import main

    monkeypatch.setattr(
        sys,
        "argv",
        [
            "attest",
            "identify",
            str(world.models["base-gpt2"]),
            "--registry",
            str(registry),
            "--pubkey",
            str(world.pub),
            "--top",
            "4",
        ],
    )
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    assert "BASE: 'base-gpt2'" in out and "byte-identical" in out
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "attest",
            "identify",
            str(world.models["base-gpt2"]),
            "--registry",
            str(registry),
            "--pubkey",
            str(world.pub),
            "--json",
        ],
    )
    with pytest.raises(SystemExit):
        main()
    data = json.loads(capsys.readouterr()[0])
    assert data["base"]["subject_match"] is True
    assert [c["subject_match"] for c in data["candidates"]] == [True, False, False, False]


# -- bases the suspect cannot be compared with ---------------------------------------------


def test_a_base_is_set_aside_only_when_nothing_points_towards_it(world, suspects) -> None:
    from dataclasses import replace

    from attest.workflows.identify import CandidateEvidence, comparable, sketch_evidence

    trust = TrustStore.from_pubkey(world.pub)
    bundle = read_attestation(world.bundles["base-llama"].read_bytes(), trust)
    v = verify_suspect(bundle, load_model(suspects["unrelated-llama"]))
    assert v.verdict is Verdict.NO_MATCH and comparable(v, sketch_evidence(v))

    def judged(**changes: object) -> bool:
        w = replace(v, verdict=Verdict.INCONCLUSIVE, **changes)  # type: ignore[arg-type]
        return comparable(w, sketch_evidence(w))

    nan = float("nan")
    # too few shared probe tokens and what they show is a no-match: set aside
    assert not judged(coverage=0.2, tokens_covered=25, score=0.02, ci=(-0.05, 0.1))
    # the same coverage, but the shared tokens point towards the base: it must still be weighed
    assert judged(coverage=0.2, tokens_covered=25, score=0.2, ci=(0.1, 0.3))
    top = DEFAULT_POLICY.threshold
    assert judged(coverage=0.2, tokens_covered=25, score=0.05, ci=(-0.2, top))  # interval reaches the threshold
    assert not judged(coverage=0.2, tokens_covered=25, score=0.05, ci=(-0.2, top - 0.01))  # ... or stays below
    # nothing could be sketched (too few tokens, or no shared invariant term): set aside
    assert not judged(coverage=0.02, tokens_covered=3, score=nan, ci=(nan, nan), pairs_used=0)
    assert not judged(score=nan, ci=(nan, nan), pairs_used=0)
    # full coverage and a score between the bounds: an open question, never set aside
    assert judged(score=0.25, ci=(0.2, 0.3))
    # a base that could not be scored at all (an error) is unknown, not incomparable
    assert comparable(None, CandidateEvidence(nan, nan, Verdict.INCONCLUSIVE, ["could not be scored: boom"]))


@pytest.fixture(scope="module")
def foreign_bundle(world: World) -> Path:
    """A base with a tokenizer of its own: the world's byte alphabet, other words."""
    from helpers.models import build_tiny_model, save_model, write_tokenizer

    from attest.invariants.methods import DEFAULT
    from attest.workflows.issue import issue_bundle

    folder = save_model(build_tiny_model("llama", seed=31), world.root / "foreign-llama", tokenizer=False)
    write_tokenizer(folder, seed=999)
    out = world.root / "foreign-llama.attest"
    issue_bundle(
        load_model(folder),
        world.key,
        out,
        method=DEFAULT.with_options(n_tokens=128),
        name="foreign-llama",
        issuer="Registry Test Lab",
        meta={},
    )
    return out


def test_bases_of_another_tokenizer_do_not_make_an_unrelated_model_inconclusive(
    world, suspects, foreign_bundle, tmp_path
) -> None:
    trust = TrustStore.from_pubkey(world.pub)
    reg = tmp_path / "reg"
    add(reg, [*world.bundles.values(), foreign_bundle], trust)
    with Registry.open(reg) as r:
        result = identify(load_model(suspects["unrelated-llama"]), r, trust)
        derived = identify(load_model(suspects["derived-llama"]), r, trust)
        opened = identify(load_model(suspects["unrelated-llama"]), r, trust, screen=False)
    foreign = next(c for c in result.candidates if c.entry.name == "foreign-llama")
    assert foreign.evidence.verdict is Verdict.INCONCLUSIVE and not foreign.comparable
    # The index shows the suspect holds too few of its probe tokens: set aside unopened ...
    assert foreign.screened and foreign.verification is None
    assert "the bundle was not opened" in foreign.evidence.reasons[0]
    # ... exactly as verify would have found after opening it.
    read = next(c for c in opened.candidates if c.entry.name == "foreign-llama")
    assert not read.screened and read.verification is not None and read.verification.tokens_covered < 8
    assert not read.comparable and read.evidence.verdict is Verdict.INCONCLUSIVE
    assert read.evidence.reasons[0].split(" (from")[0] == foreign.evidence.reasons[0].split(" (from")[0]
    assert opened.verdict is result.verdict and opened.reasons[0] == result.reasons[0]
    assert result.to_json()["registry"]["screened"] == 1 and opened.to_json()["registry"]["screened"] == 0
    assert result.verdict is Verdict.NO_MATCH and result.base is None
    data = result.to_json(top=5)
    assert data["registry"]["comparable"] == 4 and data["registry"]["not_comparable"] == 1
    assert data["reasons"][0] == "none of the 4 comparable registered bases matches"
    assert "1 of the 5 bases are not comparable" in data["reasons"][1]
    assert [c["comparable"] for c in data["candidates"]].count(False) == 1
    # Setting a base aside changes nothing for a derivative of another one.
    assert derived.verdict is Verdict.MATCH and derived.base is not None and derived.base.entry.name == "base-llama"
    # A registry holding only bases the suspect cannot be compared with gives no answer.
    only = tmp_path / "only"
    add(only, [foreign_bundle], trust)
    with Registry.open(only) as r:
        alone = identify(load_model(suspects["unrelated-llama"]), r, trust)
    assert alone.verdict is Verdict.INCONCLUSIVE
    assert alone.reasons[0] == "none of the 1 registered bases could be compared with the suspect"


def test_a_derivative_with_most_of_its_vocabulary_renamed_is_not_set_aside(world, suspects, tmp_path) -> None:
    """Low coverage alone never dismisses a base: the shared tokens still show the lineage."""
    import shutil

    folder = tmp_path / "renamed"
    shutil.copytree(suspects["derived-llama"], folder)
    tok = json.loads((folder / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    renamed = {}
    for k, (piece, i) in enumerate(sorted(vocab.items(), key=lambda kv: kv[1])):
        renamed[f"\u0120qxq{k}" if i > 256 and k % 10 < 7 else piece] = i
    tok["model"]["vocab"], tok["model"]["merges"] = renamed, []
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    trust = TrustStore.from_pubkey(world.pub)
    reg = tmp_path / "reg"
    add(reg, list(world.bundles.values()), trust)
    with Registry.open(reg) as r:
        result = identify(load_model(folder), r, trust)
    base = next(c for c in result.candidates if c.entry.name == "base-llama")
    assert base.verification is not None and base.verification.coverage < 0.5
    # The verdict rests on the lineage test, which has power on the 30% of shared tokens:
    # the base is named (under the old coverage rule this was inconclusive, never dismissed).
    assert base.comparable and base.evidence.verdict is Verdict.MATCH and base.evidence.p_value < 1e-6
    assert result.verdict is Verdict.MATCH and result.candidates[0].entry.name == "base-llama"
