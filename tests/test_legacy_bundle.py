"""A bundle issued by the code before the layout change (tests/fixtures/legacy) still verifies."""

from __future__ import annotations

from pathlib import Path

from helpers.models import save_tiny_model

import attest

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"
# The root digest the old code recorded for the model's files; the model is rebuilt bit for bit.
ROOT_AT_ISSUE = "285a44414638a7fa911778628c468d81f7765570410690c38c6ea12a89950780"


def test_bundle_from_before_the_change_still_verifies(tmp_path: Path) -> None:
    model = save_tiny_model("llama", tmp_path / "model", seed=5)
    v = attest.verify(model, LEGACY / "legacy.attest", trust=LEGACY / "legacy-publisher.pub")
    assert v.signature["valid"] and v.signature["trusted_identity"] == "legacy-publisher"
    assert v.verdict is attest.Verdict.MATCH and v.score > 0.999
    assert v.to_json()["subject"]["base"]["root"] == ROOT_AT_ISSUE
    assert v.to_json()["subject"]["suspect"]["root"] == ROOT_AT_ISSUE
    found = attest.inspect(LEGACY / "legacy.attest", trust=LEGACY / "legacy-publisher.pub")
    assert found.ok and found.kind == "attestation"
