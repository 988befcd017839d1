"""Replays of issue 12's hostile-input findings (Medium 5 and 6, and the Low items on weights).

Each case goes through the real entry point (`attest compare`, which runs
`load_model` and a comparison, or `attest verify` for bundles) and asserts the
error class by its exit code (4 input, 3 bundle), a message naming what is
wrong, and no traceback.  The memory findings run in a fresh process and
assert that the refusal is quick and that the peak resident set stays close
to that of a run which fails at once; their big files are sparse, so the
tests take almost no disk.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.hostile_helpers import (
    read_safetensors,
    resign,
    run_measured,
    thaw,
    write_safetensors,
)
from test_bad_inputs import assert_input_error, run_cli

BUNDLE_ERROR = 3
#: Growth of the peak RSS over a run that fails immediately; the replayed
#: findings grew by 1 to 6 GB, a clean refusal by a few MB.
MAX_GROWTH_MB = 200
MAX_SECONDS = 60


@pytest.fixture
def good(tiny_model: Callable[..., Path]) -> Path:
    return tiny_model("llama")


@pytest.fixture
def broken(good: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(good, folder)
    return folder


@pytest.fixture(scope="module")
def baseline_peak(tmp_path_factory: pytest.TempPathFactory) -> float:
    """Peak RSS of a CLI run that fails at once (imports only)."""
    missing = tmp_path_factory.mktemp("base") / "nothing-here"
    code, err, peak, _s = run_measured(["compare", missing, missing])
    assert code == 4, err
    return peak


def assert_quick_and_small(
    code: int, err: str, peak: float, seconds: float, baseline: float, expected: int, *needles: str
) -> None:
    assert "Traceback" not in err, err
    assert code == expected, f"exit {code}: {err}"
    for needle in needles:
        assert needle.lower() in err.lower(), f"{needle!r} not in {err}"
    assert seconds < MAX_SECONDS, f"took {seconds:.1f} s"
    assert peak - baseline < MAX_GROWTH_MB, f"peak RSS {peak:.0f} MB vs {baseline:.0f} MB for an immediate failure"


# --------------------------------------------------------------------------- config.json
DEEP = "[" * 200_000 + "]" * 200_000


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[1, 2, 3]", ("config.json", "expected an object")),
        ('{"model_type": "llama", "num_hidden_layers": 1e999}', ("config.json", "overflows")),
        ('{"model_type": "llama", "hidden_size": "4x"}', ("config.json", "hidden_size", "whole number")),
        ('{"model_type": "llama", "num_attention_heads": [4]}', ("config.json", "num_attention_heads", "an array")),
        ('{"model_type": "llama", "num_key_value_heads": "four"}', ("config.json", "num_key_value_heads")),
        ('{"model_type": "llama", "num_hidden_layers": true}', ("config.json", "num_hidden_layers", "boolean")),
        ('{"model_type": "llama", "head_dim": -16}', ("config.json", "head_dim", "out of range")),
        ('{"model_type": "llama", "hidden_size": NaN}', ("config.json", "NaN")),
        ('{"model_type": 7}', ("config.json", "model_type")),
        ('{"model_type": "llama", "x": ' + DEEP + "}", ("config.json", "nested")),
        ('{"model_type": "llama", "hidden_size": ' + "9" * 5000 + "}", ("config.json", "5000 digits")),
    ],
    ids=["array", "1e999", "4x", "[4]", "four", "true", "negative", "NaN", "model_type-int", "deep", "digits"],
)
def test_malformed_config(
    good: Path, broken: Path, text: str, needles: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    (broken / "config.json").write_text(text)
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, *needles)


def test_config_sizes_are_checked_where_the_arch_code_reads_them() -> None:
    """A config that never came from a file (the API's in-memory models) meets the same checks."""
    from helpers.models import build_tiny_model

    from attest.arch.detect import model_from_tensors
    from attest.errors import InputError

    model = build_tiny_model("llama", seed=0)
    tensors = {k: v.detach() for k, v in model.state_dict().items()}
    config = {**model.config.to_dict(), "num_attention_heads": "4x"}
    with pytest.raises(InputError, match="num_attention_heads"):
        model_from_tensors(tensors, config)


# --------------------------------------------------------------------------- safetensors headers
def _header_with(broken: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    st = broken / "model.safetensors"
    header, data = read_safetensors(st)
    result = edit(header)
    write_safetensors(st, result if isinstance(result, bytes) else header, data)


def _deep_header(header: dict[str, Any]) -> bytes:
    return b'{"a": ' + DEEP.encode() + b"}"


def _digits_header(header: dict[str, Any]) -> bytes:
    text = json.dumps(header)
    return text.replace('"shape": [512, 64]', '"shape": [' + "1" * 5000 + ", 64]", 1).encode()


def _bool_shape(header: dict[str, Any]) -> None:
    header["model.norm.weight"]["shape"] = [63, True]


def _overlap(header: dict[str, Any]) -> None:
    up, gate = "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.gate_proj.weight"
    header[gate]["data_offsets"] = list(header[up]["data_offsets"])


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (_deep_header, ("model.safetensors", "nested")),
        (_digits_header, ("model.safetensors", "5000 digits")),
        (_bool_shape, ("model.norm.weight", "malformed shape")),
        (_overlap, ("gate_proj", "up_proj", "overlap")),
    ],
    ids=["nested-200k", "5000-digit-int", "shape-bool", "overlapping-offsets"],
)
def test_malformed_safetensors_header(
    good: Path,
    broken: Path,
    edit: Callable[[dict[str, Any]], Any],
    needles: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _header_with(broken, edit)
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, *needles)


def test_norm_gain_of_the_wrong_shape(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file, save_file

    st = broken / "model.safetensors"
    tensors = load_file(str(st))
    name = "model.layers.0.input_layernorm.weight"
    tensors[name] = torch.ones(65)
    save_file(tensors, str(st))
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, name, "(65,)", "expected (64,)")


def test_embedding_declared_huge_with_no_data(good: Path, broken: Path, baseline_peak: float) -> None:
    # Finding: [300000000, 0] is 0 bytes of data; it grew to 4.9 GB, then exit 5.
    def edit(header: dict[str, Any]) -> None:
        end = header["model.embed_tokens.weight"]["data_offsets"][0]
        header["model.embed_tokens.weight"] = {"dtype": "F32", "shape": [300_000_000, 0], "data_offsets": [end, end]}
        header.pop("lm_head.weight", None)

    _header_with(broken, edit)
    config = json.loads((broken / "config.json").read_text())
    del config["hidden_size"]  # else the width check (0 vs 64) stops it before the vocabulary is sized
    (broken / "config.json").write_text(json.dumps(config))
    code, err, peak, seconds = run_measured(["compare", good, broken])
    assert_quick_and_small(code, err, peak, seconds, baseline_peak, 4, "embedding", "out of range")


# --------------------------------------------------------------------------- tokenizers
def _tok(broken: Path) -> dict[str, Any]:
    return json.loads((broken / "tokenizer.json").read_text())


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda t: t.update(added_tokens=5), ("tokenizer.json", "added_tokens", "an array")),
        (lambda t: t.update(added_tokens=[{"id": "0", "content": "x"}]), ("added_tokens[0].id", "a string")),
        (lambda t: t["model"]["vocab"].update({"hello": "7"}), ("tokenizer.json", "model.vocab")),
        (lambda t: t["model"].update(vocab=5), ("model.vocab", "an integer")),
        (lambda t: t.update(model="BPE"), ("'model' must be an object",)),
        (lambda t: t.update(pre_tokenizer=json.loads("[" * 900 + "]" * 900)), ("tokenizer.json", "nested")),
        (lambda t: t.update(decoder=json.loads("[" * 60 + "]" * 60)), ("'decoder' must be an object",)),
    ],
    ids=["added_tokens-5", "added-id-string", "vocab-id-string", "vocab-int", "model-string", "deep", "decoder-list"],
)
def test_malformed_tokenizer(
    good: Path,
    broken: Path,
    edit: Callable[[dict[str, Any]], Any],
    needles: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tok = _tok(broken)
    edit(tok)
    (broken / "tokenizer.json").write_text(json.dumps(tok))
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, *needles)


def test_tokenizer_with_one_huge_id(good: Path, broken: Path, baseline_peak: float) -> None:
    # Finding: one id of 49,999,999 made a 50 M-entry table (1 GB).
    tok = _tok(broken)
    tok["model"]["vocab"]["zzzz"] = 49_999_999
    (broken / "tokenizer.json").write_text(json.dumps(tok))
    code, err, peak, seconds = run_measured(["compare", good, broken])
    assert_quick_and_small(code, err, peak, seconds, baseline_peak, 4, "49999999", "out of range")


def test_sparse_2gb_vocab_txt(good: Path, broken: Path, baseline_peak: float) -> None:
    # Finding: a 2 GB sparse vocab.txt (no newline: one 2 GB "line") took 4.47 GB.
    (broken / "tokenizer.json").unlink()
    with open(broken / "vocab.txt", "wb") as fh:
        fh.truncate(2 * 1024**3)
    code, err, peak, seconds = run_measured(["compare", good, broken])
    assert_quick_and_small(code, err, peak, seconds, baseline_peak, 4, "vocab.txt", "byte limit")


def test_vocab_txt_still_reads(good: Path, broken: Path) -> None:
    from attest.vocab.readers import from_vocab_txt

    (broken / "vocab.txt").write_text("[PAD]\nhello\n##lo\r\n\nworld\n")
    vocab = from_vocab_txt(broken / "vocab.txt")
    assert vocab.strings == [None, " hello", "lo", None, " world"]


# --------------------------------------------------------------------------- shard indexes
@pytest.mark.parametrize(
    ("weight_map", "needles"),
    [
        ({"model.norm.weight": ["model.safetensors"]}, ("weight_map['model.norm.weight']", "an array")),
        ({"model.norm.weight": 3}, ("weight_map", "an integer")),
        ([["model.norm.weight", "model.safetensors"]], ("'weight_map' must be a non-empty object",)),
    ],
    ids=["value-list", "value-int", "map-list"],
)
def test_malformed_shard_index(
    good: Path, broken: Path, weight_map: Any, needles: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    (broken / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    code, err = run_cli(["compare", good, broken], capsys)
    assert_input_error(code, err, "model.safetensors.index.json", *needles)


# --------------------------------------------------------------------------- GGUF
def test_gguf_with_a_million_and_a_half_empty_strings(good: Path, tmp_path: Path, baseline_peak: float) -> None:
    # Finding: 1.5 M empty metadata strings (12 MB) took 2.75 GB and 81 s.
    n = 1_500_000
    path = tmp_path / "strings.gguf"
    with open(path, "wb") as fh:
        key = b"tokenizer.ggml.tokens"
        fh.write(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key)
        fh.write(struct.pack("<IIQ", 9, 8, n))  # array of n strings
        fh.truncate(fh.tell() + 8 * n)  # each a zero length: the zeros of a sparse file
    code, err, peak, seconds = run_measured(["compare", good, path])
    assert_quick_and_small(code, err, peak, seconds, baseline_peak, 4, "strings.gguf", "786,432 strings")


# --------------------------------------------------------------------------- torch .bin
def _bin_folder(good: Path, folder: Path) -> Path:
    from safetensors.torch import load_file

    folder.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(good / name, folder / name)
    torch.save(load_file(str(good / "model.safetensors")), folder / "stored.bin")
    return folder


def test_zip_deflated_bin_is_refused(good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _bin_folder(good, tmp_path / "deflated")
    with (
        zipfile.ZipFile(folder / "stored.bin") as zin,
        zipfile.ZipFile(folder / "pytorch_model.bin", "w", compression=zipfile.ZIP_DEFLATED) as zout,
    ):
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    (folder / "stored.bin").unlink()
    code, err = run_cli(["compare", good, folder], capsys)
    assert_input_error(code, err, "pytorch_model.bin", "compressed", "safetensors")


def test_stored_bin_still_loads(good: Path, tmp_path: Path) -> None:
    from attest.arch.detect import load_model

    folder = _bin_folder(good, tmp_path / "stored")
    (folder / "stored.bin").rename(folder / "pytorch_model.bin")
    model = load_model(folder)
    assert model.source.format == "torch" and model.n_layers == load_model(good).n_layers


def test_pickle_refusal_never_suggests_unsafe_loading() -> None:
    from attest.sources.torch_source import refusal_reason

    torch_text = (
        "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely "
        "succeed, but it can result in arbitrary code execution.\nWeightsUnpickler error: Unsupported "
        "global: GLOBAL posix.system was not an allowed global by default. Please use "
        "`torch.serialization.add_safe_globals([system])`"
    )
    reason = refusal_reason(torch_text)
    assert "posix.system" in reason
    for advice in ("weights_only", "False", "safe_globals", "arbitrary code"):
        assert advice not in reason


# --------------------------------------------------------------------------- non-finite weights
def test_nan_in_one_q_proj_is_reported_not_dropped(good: Path, broken: Path) -> None:
    from safetensors.torch import load_file, save_file

    from attest.arch.detect import load_model
    from attest.invariants.methods import DEFAULT
    from attest.scoring.decision import Verdict
    from attest.workflows.compare import compare_models

    st = broken / "model.safetensors"
    tensors = load_file(str(st))
    tensors["model.layers.1.self_attn.q_proj.weight"][3, 5] = math.nan
    save_file(tensors, str(st))
    a, b = load_model(good), load_model(broken)
    result = compare_models(a, b, DEFAULT.with_options(n_tokens=128))
    assert [(c.layer, c.term) for c in b.skipped_cells] == [(1, "qk")]
    assert a.skipped_cells == []
    assert "non-finite weights in attn.q" in b.skipped_cells[0].reason
    assert result.verdict == Verdict.INCONCLUSIVE
    assert any("layer 1 qk" in r and "non-finite" in r for r in result.reasons), result.reasons
    assert any("model B: layer 1 qk" in n for n in result.notes), result.notes


# --------------------------------------------------------------------------- bundles
@pytest.fixture(scope="module")
def signed(tiny_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from attest.arch.detect import load_model
    from attest.bundle.container import inspect_attestation
    from attest.crypto.keys import generate_keypair, load_private_key
    from attest.invariants.methods import DEFAULT
    from attest.workflows.issue import issue_bundle

    root = tmp_path_factory.mktemp("signed")
    generate_keypair(root / "pub", None)
    key = load_private_key(root / "pub.key", None)
    out = root / "base.attest"
    issue_bundle(
        load_model(tiny_model("llama")),
        key,
        out,
        method=DEFAULT.with_options(n_tokens=128),
        name="tiny",
        issuer="Test Lab",
        meta={},
    )
    opened = inspect_attestation(out.read_bytes())
    return {"key": key, "pub": root / "pub.pub", "doc": thaw(opened.document), "png": opened.png, "root": root}


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def edit(doc: dict[str, Any]) -> None:
        node = doc
        for p in parents:
            node = node[p]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return edit


_DELETE = object()


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (_set("image.renderer", "dog-v1"), ("image.renderer", "must be a map")),
        (_set("model.parameters", None), ("model.parameters", "null")),
        (_set("method.tokens", _DELETE), ("method.tokens",)),
        (_set("method.latent_seed", -1), ("method.latent_seed", "out of range")),
        (_set("policy.null_std", -1), ("policy.null_std", "outside")),
        (_set("policy.threshold", 7.5), ("policy.threshold", "outside")),
        (_set("policy.min_tokens", True), ("policy.min_tokens", "boolean")),
        (_set("method.layers", "all"), ("method.layers",)),
        (_set("method.pairs", None), ("method.pairs", "must be a map")),
        (_set("method.precision", 16), ("method.precision",)),
        (_set("sketch.cells", [[0, "qk"]]), ("sketch.cells",)),
        (_set("model.tied_head", "yes"), ("model.tied_head",)),
        (_set("tool.version", ["1"]), ("tool.version",)),
    ],
    ids=[
        "renderer-str",
        "parameters-null",
        "no-tokens",
        "latent_seed-neg",
        "null_std-neg",
        "threshold-7.5",
        "min_tokens-bool",
        "layers-str",
        "pairs-null",
        "precision-int",
        "cells-short",
        "tied-str",
        "version-list",
    ],
)
def test_validly_signed_bundle_with_odd_fields(
    signed: dict[str, Any],
    tmp_path: Path,
    edit: Callable[[dict[str, Any]], None],
    needles: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = thaw(signed["doc"])
    edit(doc)
    bundle = tmp_path / "odd.attest"
    bundle.write_bytes(resign(doc, signed["png"], signed["key"]))
    for argv in (
        ["verify", tmp_path / "no-model", "--bundle", bundle, "--pubkey", signed["pub"]],
        ["inspect", bundle, "--pubkey", signed["pub"]],
        ["render", bundle, "--out", tmp_path / "dog.png"],
    ):
        code, err = run_cli(argv, capsys)
        assert "Traceback" not in err and code == BUNDLE_ERROR, f"{argv[0]}: exit {code}: {err}"
        for needle in needles:
            assert needle in err, f"{argv[0]}: {needle!r} not in {err}"


def test_the_unmodified_resigned_bundle_is_accepted(
    signed: dict[str, Any], tiny_model: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The harness itself must not be what makes the cases above fail.
    bundle = tmp_path / "same.attest"
    bundle.write_bytes(resign(signed["doc"], signed["png"], signed["key"]))
    code, err = run_cli(["verify", tiny_model("llama"), "--bundle", bundle, "--pubkey", signed["pub"]], capsys)
    assert code == 0, err


def test_bundle_with_40000_probe_tokens(signed: dict[str, Any], tmp_path: Path, baseline_peak: float) -> None:
    # Finding: issue caps tokens at 16,384 but the verifier accepted 65,536 and
    # tried 6.4 GB per matrix.  One limit now: attest.limits.MAX_PROBE_TOKENS.
    from attest.limits import MAX_PROBE_TOKENS

    doc = thaw(signed["doc"])
    doc["method"]["tokens"] = [f" tok{i}" for i in range(40_000)]
    bundle = tmp_path / "wide.attest"
    bundle.write_bytes(resign(doc, signed["png"], signed["key"]))
    code, err, peak, seconds = run_measured(
        ["verify", signed["root"] / "no-model", "--bundle", bundle, "--pubkey", signed["pub"]]
    )
    assert_quick_and_small(code, err, peak, seconds, baseline_peak, BUNDLE_ERROR, f"at most {MAX_PROBE_TOKENS}")


def test_issue_and_verify_share_the_token_limit() -> None:
    from attest.bundle import container
    from attest.errors import InputError
    from attest.invariants.methods import DEFAULT
    from attest.limits import MAX_PROBE_TOKENS

    assert container.MAX_TOKENS == MAX_PROBE_TOKENS
    DEFAULT.with_options(n_tokens=MAX_PROBE_TOKENS)
    with pytest.raises(InputError):
        DEFAULT.with_options(n_tokens=MAX_PROBE_TOKENS + 1)
