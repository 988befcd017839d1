"""The attention-head channel of the lineage test (attest.lineage.heads), on real `transformers` models.

Many narrow heads (64 of width 2), so that the channel has the power it can
only have with dozens of heads: a layer in full agreement then gives p ~ 1e-14.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import many_heads as mh
from helpers import tiny_models as tm
from helpers import transforms as tf

from attest.arch.detect import load_model
from attest.lineage.heads import head_responses, test_heads
from attest.lineage.pair import test_pair
from attest.lineage.result import DEFAULT_ALPHA, LINEAGE
from attest.lineage.suspect import probe_rows

HEADS = 64  # 16 KV heads of 4 query heads each
IDS = list(range(300, 332))  # 32 word tokens of the shared tiny vocabulary (the head channel's m)
FFN_IDS = list(range(300, 364))  # 64 for the FFN channel, enough tokens for it to claim power


def _many_heads(seed: int) -> Any:
    return mh.many_heads(HEADS, seed)


def _save(model: Any, folder: Path) -> Path:
    return mh.save(model, folder)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    model = _many_heads(0)
    return model, _save(model, tmp_path_factory.mktemp("heads") / "base")


def test_head_responses_are_unchanged_by_the_function_preserving_disguises(base, tmp_path) -> None:
    model, folder = base
    ids = tm.token_batch()
    reference = tf.logits(model, ids)
    subj = tf.apply(tf.Subject.of(model, "llama", tm.tokenizer_dict()).copy(), ["head-perm", "qk-rope-maps"], seed=3)
    subj = tf.apply(subj, ["rotation", "hidden-perm", "gain-scale", "qk-vo-maps"], seed=4)
    rel, rel_max = tf.logit_errors(reference, subj, ids)
    assert max(rel, rel_max) < 1e-4  # the disguise is function-preserving
    disguised = load_model(tf.save(subj, tmp_path / "disguised"))
    original = load_model(folder)
    # Each head's two responses survive the disguise, up to the head permutation.
    layer_a, layer_b = original.layer(1), disguised.layer(1)
    qk_a, vo_a = head_responses(layer_a, probe_rows(original, IDS))  # type: ignore[misc]
    qk_b, vo_b = head_responses(layer_b, probe_rows(disguised, IDS))  # type: ignore[misc]

    def unit(r: torch.Tensor) -> torch.Tensor:
        r = r - r.mean(0)
        return r / r.norm(dim=0)

    corr_qk = (unit(qk_a).t() @ unit(qk_b)).abs()
    corr_vo = (unit(vo_a).t() @ unit(vo_b)).abs()
    assert corr_qk.max(1).values.min() > 0.999 and corr_vo.max(1).values.min() > 0.999
    assert torch.equal(corr_qk.argmax(1), corr_vo.argmax(1))  # the same partner in both channels
    result = test_heads(original, disguised, IDS, IDS)
    assert all(c.agree == c.neurons == HEADS for c in result.layers)
    assert result.conclusion == LINEAGE and result.p_value <= DEFAULT_ALPHA


def test_heads_find_the_lineage_of_a_model_whose_ffns_were_replaced(base, tmp_path) -> None:
    """Attention kept (with 5% drift), every FFN re-initialised: where the FFN channel is blind."""
    model, folder = base
    derived = mh.ffn_replaced(model, HEADS)
    a, b = load_model(folder), load_model(_save(derived, tmp_path / "ffn-replaced"))
    ffn = test_pair(a, b, FFN_IDS, FFN_IDS)
    heads = test_heads(a, b, IDS, IDS)
    assert ffn.conclusion != LINEAGE and ffn.p_value > DEFAULT_ALPHA
    assert heads.conclusion == LINEAGE and heads.p_value <= DEFAULT_ALPHA
    assert min(c.agreement for c in heads.layers) >= 0.9


def test_an_independent_model_gets_no_head_lineage(base, tmp_path) -> None:
    _model, folder = base
    a, b = load_model(folder), load_model(_save(_many_heads(31), tmp_path / "twin"))
    heads = test_heads(a, b, IDS, IDS)
    assert heads.p_value > DEFAULT_ALPHA and heads.conclusion != LINEAGE
    assert heads.agreement < 0.2


def test_few_heads_cannot_reach_alpha_even_in_full_agreement(tmp_path) -> None:
    # The tiny models of the other tests have 4 heads: a perfect copy is still underpowered,
    # which is why the channel is a finding there and never a verdict.
    model = tm.build("llama")
    a = load_model(_save(model, tmp_path / "four-heads"))
    same = test_heads(a, a, IDS, IDS)
    assert all(c.agree == c.neurons == tm.HEADS for c in same.layers)
    assert same.p_full > DEFAULT_ALPHA and same.conclusion != LINEAGE
