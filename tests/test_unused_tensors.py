"""Junk tensors in a checkpoint must not block a verdict (issue 12, item 4).

The attack: add one unused tensor (`model.layers.1000.dummy`, 4 bytes) or an
extra `model.layers.4.*` tensor to a 4-layer checkpoint. transformers loads
the folder with identical logits, so attest must still see the same model:
layers are counted from config.json, tensors that no table role claims are
ignored, and one note says how many were.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.models import randomise_, write_tokenizer  # noqa: E402

from attest.arch.detect import load_model  # noqa: E402
from attest.errors import InputError  # noqa: E402
from attest.invariants.methods import DEFAULT  # noqa: E402
from attest.scoring.decision import Verdict  # noqa: E402
from attest.workflows.compare import compare_models  # noqa: E402

LAYERS, HIDDEN = 4, 64

# case -> junk tensors added to model.safetensors
JUNK: dict[str, dict[str, torch.Tensor]] = {
    "far layer, no role": {"model.layers.1000.dummy": torch.zeros(1)},
    "next layer, a real role": {"model.layers.4.self_attn.q_proj.weight": torch.randn(HIDDEN, HIDDEN)},
    "next layer, no role": {"model.layers.4.dummy": torch.ones(2, 2)},
    "real layer, no role": {"model.layers.2.self_attn.secret_scale": torch.ones(3)},
}


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=512,
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    randomise_(model, 0)
    folder = tmp_path_factory.mktemp("llama")
    model.save_pretrained(folder)
    write_tokenizer(folder)
    return folder


def _with_junk(original: Path, dest: Path, junk: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(original, dest)
    weights = dest / "model.safetensors"
    tensors = load_file(weights)
    assert not junk.keys() & tensors.keys()
    save_file({**tensors, **junk}, weights, metadata={"format": "pt"})
    return dest


def _logits(folder: Path) -> torch.Tensor:
    from transformers import LlamaForCausalLM

    model: Any = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.arange(0, 500, 7).reshape(1, -1)
    with torch.no_grad():
        return model(ids).logits


def _ignored_notes(warnings: list[str]) -> list[str]:
    return [w for w in warnings if w.startswith("ignored ")]


def test_a_clean_checkpoint_has_no_ignored_tensors(original: Path) -> None:
    model = load_model(original)
    assert model.n_layers == LAYERS
    assert _ignored_notes(model.warnings) == []


@pytest.mark.parametrize("case", list(JUNK))
def test_junk_tensors_do_not_change_the_verdict(original: Path, tmp_path: Path, case: str) -> None:
    junk = _with_junk(original, tmp_path / "junk", JUNK[case])
    # transformers ignores the junk: the model computes exactly the same function
    assert torch.equal(_logits(original), _logits(junk))

    suspect = load_model(junk)
    assert suspect.n_layers == LAYERS
    notes = _ignored_notes(suspect.warnings)
    assert len(notes) == 1, suspect.warnings
    name = next(iter(JUNK[case]))
    assert notes[0].startswith("ignored 1 tensor(s)") and name in notes[0]

    result = compare_models(load_model(original), suspect, DEFAULT)
    assert result.verdict == Verdict.MATCH
    assert result.score >= 0.999
    assert notes[0] in result.notes


def test_many_junk_tensors_give_one_note(original: Path, tmp_path: Path) -> None:
    extra = {f"model.layers.{i}.dummy": torch.zeros(1) for i in range(10, 60)}
    model = load_model(_with_junk(original, tmp_path / "junk", extra))
    notes = _ignored_notes(model.warnings)
    assert len(notes) == 1 and notes[0].startswith("ignored 50 tensor(s)")
    assert model.n_layers == LAYERS


def test_without_a_config_layers_come_from_claimed_tensors(original: Path, tmp_path: Path) -> None:
    junk = _with_junk(original, tmp_path / "junk", JUNK["far layer, no role"])
    (junk / "config.json").unlink()
    model = load_model(junk)
    assert model.n_layers == LAYERS
    assert len(_ignored_notes(model.warnings)) == 1


def test_a_missing_layer_is_still_an_error(original: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "holed"
    shutil.copytree(original, folder)
    weights = folder / "model.safetensors"
    tensors = {k: v for k, v in load_file(weights).items() if not k.startswith("model.layers.1.")}
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(InputError, match=r"layers \[1\] are missing"):
        load_model(folder)


@pytest.mark.parametrize("declared", [10**12, "4x", True, -4])
def test_a_hostile_layer_count_is_a_clean_error(original: Path, tmp_path: Path, declared: object) -> None:
    folder = tmp_path / "bad-config"
    shutil.copytree(original, folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = declared
    (folder / "config.json").write_text(json.dumps(config))
    # 10**12 must be refused from the tensors' evidence, never by building range(10**12)
    with pytest.raises(InputError, match="layer"):
        load_model(folder)


def test_junk_cannot_steer_the_layer_prefix(tmp_path: Path) -> None:
    # A GPT-2 base model is saved under `h.{i}.`, the table's second prefix; a junk
    # tensor under the first (`transformer.h.{i}.`) must not capture the choice.
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    model = GPT2Model(GPT2Config(vocab_size=512, n_embd=HIDDEN, n_layer=2, n_head=4, n_positions=64)).eval()
    folder = tmp_path / "gpt2"
    model.save_pretrained(folder)
    write_tokenizer(folder)
    clean = load_model(folder)
    assert clean.layer_prefix == "h.{i}." and clean.n_layers == 2
    junk = _with_junk(folder, tmp_path / "junk", {"transformer.h.0.dummy": torch.zeros(1)})
    suspect = load_model(junk)
    assert suspect.layer_prefix == "h.{i}." and suspect.n_layers == 2
    torch.testing.assert_close(suspect.layer(1).attn.q, clean.layer(1).attn.q, rtol=0, atol=0)
