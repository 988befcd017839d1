"""Expert storage kinds (attest.arch.experts): every stacked tensor is shape-checked before it is cut.

A tiny real Mixtral (transformers 5 keeps its experts stacked in memory:
`gate_up_proj` [E, 2f, d], `down_proj` [E, d, f]) is read from its own state
dict, then with one stacked tensor stored in another layout or with another
expert count: each must be a clear InputError naming the tensor, the expected
and the found shape (and exit code 4 through the CLI), never a silent misreading.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.models import build_tiny_model, write_tokenizer

from attest.arch.detect import model_from_tensors
from attest.arch.experts import EXPERT_LAYOUTS, ExpertTensors, read_experts
from attest.arch.names import TensorNames
from attest.arch.spec import ExpertLayout, ExpertNames
from attest.errors import ExitCode, InputError
from attest.sources.memory import DictSource

E, D, F = 4, 64, 16  # d != 2f, so a transposed gate_up [E, d, 2f] has another shape than [E, 2f, d]
GATE_UP, DOWN = "model.layers.1.mlp.experts.gate_up_proj", "model.layers.1.mlp.experts.down_proj"


@pytest.fixture(scope="module")
def mixtral() -> tuple[dict[str, torch.Tensor], dict[str, Any], Any]:
    model = build_tiny_model("mixtral", seed=3, intermediate_size=F)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert tuple(state[GATE_UP].shape) == (E, 2 * F, D) and tuple(state[DOWN].shape) == (E, D, F)
    return state, model.config.to_dict(), model


def test_stacked_halves_read_as_the_model_computes(
    mixtral: tuple[dict[str, torch.Tensor], dict[str, Any], Any],
) -> None:
    state, config, model = mixtral
    layer = model_from_tensors(state, config).layer(1)
    experts = model.model.layers[1].mlp.experts
    assert len(layer.experts) == E
    x = torch.randn(5, D, generator=torch.Generator().manual_seed(0))
    for e, mlp in enumerate(layer.experts):
        assert mlp.gate is not None
        # transformers' expert e: down(act(gate(x)) * up(x)), with gate_up's first half the gate
        gate, up = torch.nn.functional.linear(x, experts.gate_up_proj[e]).chunk(2, dim=-1)
        expected = torch.nn.functional.linear(torch.nn.functional.silu(gate) * up, experts.down_proj[e])
        got = (torch.nn.functional.silu(x @ mlp.gate.T) * (x @ mlp.up.T)) @ mlp.down.T
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# name -> (how to spoil the state dict, the tensor named, the expected shape, the found shape)
_SPOILED: dict[str, tuple[Any, str, tuple[int, ...], tuple[int, ...]]] = {
    "gate_up stored [E, d, 2f]": (
        lambda s: {**s, GATE_UP: s[GATE_UP].transpose(1, 2).contiguous()},
        GATE_UP,
        (E, 2 * F, D),
        (E, D, 2 * F),
    ),
    "down stored [E, f, d]": (
        lambda s: {**s, DOWN: s[DOWN].transpose(1, 2).contiguous()},
        DOWN,
        (E, D, D),  # f is read off the down tensor's last axis, so its d axis is what disagrees
        (E, F, D),
    ),
    "one expert fewer than the config": (
        lambda s: {**s, GATE_UP: s[GATE_UP][:-1].contiguous(), DOWN: s[DOWN][:-1].contiguous()},
        DOWN,
        (E, D, F),
        (E - 1, D, F),
    ),
    "gate_up of another width": (
        lambda s: {**s, GATE_UP: s[GATE_UP][:, :-2].contiguous()},
        GATE_UP,
        (E, 2 * F, D),
        (E, 2 * F - 2, D),
    ),
}


@pytest.mark.parametrize("case", list(_SPOILED))
def test_misshaped_stacked_tensor_is_a_clear_input_error(
    case: str, mixtral: tuple[dict[str, torch.Tensor], dict[str, Any], Any]
) -> None:
    state, config, _ = mixtral
    spoil, name, expected, found = _SPOILED[case]
    model = model_from_tensors(spoil(state), config)
    model.layer(0)  # layer 0 is untouched and still reads
    with pytest.raises(InputError) as err:
        model.layer(1)
    message = str(err.value)
    assert f"'{name}'" in message and str(found) in message and f"expected {expected}" in message, message


def test_not_three_dimensional_is_a_clear_input_error(
    mixtral: tuple[dict[str, torch.Tensor], dict[str, Any], Any],
) -> None:
    state, config, _ = mixtral
    model = model_from_tensors({**state, GATE_UP: state[GATE_UP].reshape(E, -1)}, config)
    with pytest.raises(InputError, match=r"'model\.layers\.1\.mlp\.experts\.gate_up_proj'.*3-D"):
        model.layer(1)


def test_separate_stacked_tensors_are_checked_too() -> None:
    """The GGUF form: up and gate [E, f, d], down [E, d, f]; a gate of the wrong width is named."""
    gen = torch.Generator().manual_seed(1)
    tensors = {
        "blk.0.ffn_up_exps.weight": torch.randn(E, F, D, generator=gen),
        "blk.0.ffn_gate_exps.weight": torch.randn(E, F + 1, D, generator=gen),
        "blk.0.ffn_down_exps.weight": torch.randn(E, D, F, generator=gen),
    }
    ex = ExpertNames(
        stacked_up=("ffn_up_exps.weight",),
        stacked_gate=("ffn_gate_exps.weight",),
        stacked_down=("ffn_down_exps.weight",),
    )
    assert ex.storage_kinds() == (ExpertLayout.STACKED,)
    source = DictSource(tensors)
    from dataclasses import replace

    from attest.arch.families import MIXTRAL

    spec = replace(MIXTRAL, layer_prefix=("blk.{i}.",), experts=ex, router=("ffn_gate_inp.weight",))
    names = TensorNames(source.root, spec, tensors)
    x = ExpertTensors(source, names, D, E)
    with pytest.raises(InputError, match=r"'ffn_gate_exps\.weight'|blk\.0\.ffn_gate_exps\.weight"):
        read_experts(x, 0, ex)
    tensors["blk.0.ffn_gate_exps.weight"] = torch.randn(E, F, D, generator=gen)
    source = DictSource(tensors)
    got = read_experts(ExpertTensors(source, TensorNames(source.root, spec, tensors), D, E), 0, ex)
    assert len(got) == E and all(
        torch.equal(g.down, tensors["blk.0.ffn_down_exps.weight"][e]) for e, g in enumerate(got)
    )


def test_every_registered_layout_is_a_layout_kind() -> None:
    assert set(EXPERT_LAYOUTS) <= set(ExpertLayout)
    assert {ExpertLayout.PER_EXPERT, ExpertLayout.STACKED, ExpertLayout.STACKED_HALVES} <= set(EXPERT_LAYOUTS)


def test_cli_exit_code_for_a_misshaped_stacked_checkpoint(
    mixtral: tuple[dict[str, torch.Tensor], dict[str, Any], Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from safetensors.torch import save_file

    from attest.cli.app import main

    state, _, model = mixtral
    folder = tmp_path / "bad-mixtral"
    folder.mkdir()
    model.config.save_pretrained(folder)
    bad = {k: v.contiguous() for k, v in state.items()}
    bad[GATE_UP] = state[GATE_UP].transpose(1, 2).contiguous()
    save_file(bad, str(folder / "model.safetensors"))
    write_tokenizer(folder)
    monkeypatch.setattr(sys, "argv", ["attest", "compare", str(folder), str(folder)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == int(ExitCode.INPUT_ERROR)
    err = capsys.readouterr().err
    assert GATE_UP in err and "Traceback" not in err, err


def test_every_role_names_a_table_field() -> None:
    """A new Role must come with its table field: the name resolver and from_hf read every role."""
    from dataclasses import fields

    from attest.arch.attention import ATTENTION_KINDS
    from attest.arch.roles import EXPERT_ROLES, LAYER_ROLES, MODEL_ROLES
    from attest.arch.spec import ArchSpec, AttentionKind

    spec_fields = {f.name for f in fields(ArchSpec)}
    expert_fields = {f.name for f in fields(ExpertNames)}
    assert {r.field for r in (*MODEL_ROLES, *LAYER_ROLES)} <= spec_fields
    assert {"stacked_" + r.field for r in EXPERT_ROLES} <= expert_fields
    assert set(ATTENTION_KINDS) == set(AttentionKind)  # every kind a table may name has a reader
