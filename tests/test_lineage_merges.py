"""Merges and the lineage verdict (issue 11): a merge is derived from every base it was made from.

The merge recipes (tests/helpers/merging.py) are checked against their
definitions on hand-made tensors; then two merges of committed fixtures, written
as real checkpoints, go through `compare`:

- task arithmetic of the two committed fine-tunes of the base (``finetune``,
  licence prose, and ``finetune_code``, unseen Python; both from
  tests/fixtures/make_lineage_models.py) must match the base with lineage p ≤ α;
- the 50/50 interpolation of the base and its independent twin must show lineage
  to both.  Nothing guarantees this: every neuron is half of each parent, and the
  probe rows are the averaged embedding, so each parent's responses are diluted by
  the other's.  bench/lineage_merges.py measures more recipes and strengths.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import merging as G

import attest
from attest.scoring.decision import DEFAULT_POLICY, Verdict

FIX = Path(__file__).resolve().parent / "fixtures" / "lineage"
ALPHA = DEFAULT_POLICY.lineage_alpha


def test_task_arithmetic_adds_the_scaled_task_vectors() -> None:
    base = {"w": torch.tensor([1.0, 2.0, 3.0])}
    a, b = {"w": torch.tensor([2.0, 2.0, 0.0])}, {"w": torch.tensor([1.0, 4.0, 5.0])}
    # deltas (1, 0, -3) and (0, 2, 2): sum (1, 2, -1)
    assert torch.allclose(G.task_arithmetic(base, [a, b], 0.5)["w"], torch.tensor([1.5, 3.0, 2.5]))


def test_ties_trims_elects_the_sign_and_averages_the_agreeing_entries() -> None:
    base = {"w": torch.zeros(5)}
    a = {"w": torch.tensor([4.0, -1.0, 3.0, 0.1, -2.0])}
    b = {"w": torch.tensor([2.0, 3.0, -1.0, 0.2, -0.1])}
    # keep 60% (3 of 5) by magnitude: a -> (4, 0, 3, 0, -2), b -> (2, 3, -1, 0, 0)
    # elected signs of the sums (6, 3, 2, 0, -2): + + + (none) -
    # disjoint means: (4+2)/2, 3, 3 (b's -1 disagrees), 0 (both trimmed), -2
    merged = G.ties(base, [a, b], keep=0.6, lam=1.0)["w"]
    assert torch.allclose(merged, torch.tensor([3.0, 3.0, 3.0, 0.0, -2.0]))
    assert torch.allclose(G.ties(base, [a, b], keep=0.6, lam=0.5)["w"], 0.5 * merged)


def test_slerp_follows_the_arc_and_falls_back_to_lerp_when_parallel() -> None:
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    out, fell = G.slerp_tensor(a, b, 0.5)
    # Ω = 90°: weights sin(45°)/sin(90°) on both
    assert not fell and torch.allclose(out, torch.tensor([[math.sqrt(0.5), 2 * math.sqrt(0.5)]]))
    out, fell = G.slerp_tensor(a, b, 0.25)
    assert torch.allclose(out, torch.tensor([[math.sin(3 * math.pi / 8), 2 * math.sin(math.pi / 8)]]))
    near = torch.tensor([[1.0, 1e-3]])
    out, fell = G.slerp_tensor(a, near, 0.5)
    assert fell and torch.allclose(out, 0.5 * (a + near))
    out, fell = G.slerp_tensor(torch.zeros(3), torch.ones(3), 0.5)
    assert fell and torch.allclose(out, torch.full((3,), 0.5))
    with pytest.raises(ValueError):
        G.lerp({"w": torch.zeros(2)}, {"w": torch.zeros(3)}, 0.5)


@pytest.fixture(scope="module")
def merges(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("merges")
    base, twin = G.load_state(FIX / "base"), G.load_state(FIX / "twin")
    tuned = [G.load_state(FIX / "finetune"), G.load_state(FIX / "finetune_code")]
    return {
        "task_arithmetic": G.save_merge(G.task_arithmetic(base, tuned, 1.0), FIX / "base", root / "ta"),
        "base_twin": G.save_merge(G.lerp(base, twin, 0.5), FIX / "base", root / "bt"),
    }


def test_task_arithmetic_merge_of_two_finetunes_matches_the_base(merges: dict[str, Path]) -> None:
    from transformers import LlamaForCausalLM

    merged = LlamaForCausalLM.from_pretrained(merges["task_arithmetic"], dtype=torch.float32).eval()
    x = torch.arange(32).view(1, -1)
    with torch.no_grad():
        logits = merged(input_ids=x).logits
    assert torch.isfinite(logits).all()  # a working checkpoint, not just a file of tensors
    c = attest.compare(FIX / "base", merges["task_arithmetic"])
    assert c.lineage is not None and c.lineage.p_value <= ALPHA
    assert c.verdict is Verdict.MATCH


def test_half_and_half_merge_of_two_bases_derives_from_both(merges: dict[str, Path]) -> None:
    for parent in ("base", "twin"):
        c = attest.compare(FIX / parent, merges["base_twin"])
        assert c.lineage is not None and c.lineage.p_value <= ALPHA, parent
        assert c.verdict is Verdict.MATCH, parent
