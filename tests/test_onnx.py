"""ONNX encoders: graph tracing, dequantization, comparison with the HF original, hostile files.

A tiny real `transformers` BertModel is written as ONNX graphs laid out like
real exports (`tests/onnx_fixtures.py`: anonymous [in, out] MatMul weights,
Gemm with HF names, decomposed LayerNorm, and four int8 weight-only layouts).
Each graph is first run with onnx's reference evaluator against the HF forward
pass, so the fixtures are known to compute BERT; then attest must read the same
canonical weights back and `compare_models` must call the pair a match.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("transformers")


from helpers.onnx_fixtures import (  # noqa: E402
    HEADS,
    LAYERS,
    QUANT_MODES,
    build_bert_onnx,
    dequantized,
    hf_weights,
    non_bert_onnx,
    run_graph,
    save_hf,
    tiny_bert,
    torch_export,
    wordpiece_vocab,
    write_vocab,
)

from attest.arch.detect import load_model  # noqa: E402
from attest.errors import ExitCode, InputError, UnsupportedModelError  # noqa: E402
from attest.invariants.methods import DEFAULT  # noqa: E402
from attest.scoring.decision import Verdict  # noqa: E402
from attest.sources.onnx import ONNX_EXTRA_HINT, OnnxSource  # noqa: E402
from attest.sources.onnx import loader as onnx_source  # noqa: E402
from attest.workflows.compare import compare_models  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# name -> build_bert_onnx options
FP32_VARIANTS: dict[str, dict[str, Any]] = {
    "dynamo-matmul": {},
    "decomposed-layernorm": {"layernorm": "decomposed"},
    "gemm-hf-names": {"linear": "gemm", "hf_names": True},
    "qkv-emitted-v-k-q": {"qkv_order": ("value", "key", "query")},
}
INT8_VARIANTS: dict[str, dict[str, Any]] = {q: {"quant": q} for q in QUANT_MODES if q != "none"}
INT8_VARIANTS["qdq-channel-decomposed"] = {"quant": "qdq-channel", "layernorm": "decomposed"}
# Linear weights as [out, in] in the HF state dict, and the output axis of their [in, out] ONNX form.
LINEARS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "o": "attention.output.dense",
    "up": "intermediate.dense",
    "down": "output.dense",
}


@pytest.fixture(scope="module")
def bert() -> Any:
    return tiny_bert(0)


@pytest.fixture(scope="module")
def vocab() -> list[str]:
    return wordpiece_vocab()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory, bert: Any, vocab: list[str]) -> Path:
    return save_hf(bert, tmp_path_factory.mktemp("hf-bert"), vocab)


@pytest.fixture(scope="module")
def onnx_dirs(tmp_path_factory: pytest.TempPathFactory, bert: Any, vocab: list[str]) -> dict[str, Path]:
    """One folder per variant: model.onnx next to the same vocab.txt as the HF model."""
    out: dict[str, Path] = {}
    for name, opts in {**FP32_VARIANTS, **INT8_VARIANTS}.items():
        folder = tmp_path_factory.mktemp(f"onnx-{name}")
        build_bert_onnx(bert, folder / "model.onnx", **opts)
        write_vocab(folder, vocab)
        out[name] = folder
    return out


@pytest.fixture(scope="module")
def torch_dir(tmp_path_factory: pytest.TempPathFactory, bert: Any, vocab: list[str]) -> Path:
    folder = tmp_path_factory.mktemp("onnx-torch")
    if not torch_export(bert, folder / "model.onnx"):
        pytest.skip("this torch has no TorchScript ONNX exporter")
    write_vocab(folder, vocab)
    return folder


def _hf_output(model: Any, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids)).last_hidden_state.numpy()


def _quant_of(opts: dict[str, Any]) -> str:
    return str(opts.get("quant", "none"))


# --------------------------------------------------------------------------- the fixtures are BERT
@pytest.mark.parametrize("variant", list(FP32_VARIANTS) + list(INT8_VARIANTS))
def test_fixture_graph_computes_the_hf_model(bert: Any, onnx_dirs: dict[str, Path], variant: str) -> None:
    ids = np.array([[2, 17, 99, 300, 45, 7, 3]], dtype=np.int64)
    got, want = run_graph(onnx_dirs[variant] / "model.onnx", ids), _hf_output(bert, ids)
    if variant in FP32_VARIANTS:
        np.testing.assert_allclose(got, want, atol=1e-4)
    else:
        assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.999


# --------------------------------------------------------------------------- weights read back
def _check_canonical(folder: Path, bert: Any, quant: str, atol: float = 1e-6) -> None:
    """Canonical q/k/v/o/up/down, gains and embedding rows equal what the graph stores."""
    W = hf_weights(bert)
    cm = load_model(folder)
    assert cm.family == "bert" and cm.source.format == "onnx"
    assert (cm.dims.n_layers, cm.dims.n_heads, cm.dims.hidden) == (LAYERS, HEADS, 64)
    for i in range(LAYERS):
        layer = cm.layer(i)
        got = {
            "q": layer.attn.q,
            "k": layer.attn.k,
            "v": layer.attn.v,
            "o": layer.attn.o,
            "up": layer.mlp.up,
            "down": layer.mlp.down,
        }  # type: ignore[union-attr]
        for role, module in LINEARS.items():
            hf = W[f"encoder.layer.{i}.{module}.weight"]
            # The graph stores [in, out], quantized along out; compare with exactly that.
            expected = dequantized(hf.T.copy(), quant, axis=1).T
            np.testing.assert_allclose(got[role].float().numpy(), expected, atol=atol, err_msg=f"layer {i} {role}")
            step = np.abs(hf).max() / 127 if quant != "qdq-tensor" else (hf.max() - min(hf.min(), 0)) / 255
            assert np.abs(got[role].float().numpy() - hf).max() <= step * 0.51 + atol
        prev = "embeddings.LayerNorm.weight" if i == 0 else f"encoder.layer.{i - 1}.output.LayerNorm.weight"
        np.testing.assert_allclose(layer.attn_norm.numpy(), W[prev], atol=1e-7)  # type: ignore[union-attr]
        np.testing.assert_allclose(
            layer.ffn_norm.numpy(), W[f"encoder.layer.{i}.attention.output.LayerNorm.weight"], atol=1e-7
        )  # type: ignore[union-attr]
    rows = [0, 5, 77, 511]
    emb = W["embeddings.word_embeddings.weight"]
    expected_rows = dequantized(emb, quant, axis=0)[rows] if quant == "cast-mul" else emb[rows]
    np.testing.assert_allclose(cm.embedding_rows(rows).float().numpy(), expected_rows, atol=atol)


@pytest.mark.parametrize("variant", list(FP32_VARIANTS))
def test_fp32_graph_reads_back_the_hf_weights(bert: Any, onnx_dirs: dict[str, Path], variant: str) -> None:
    _check_canonical(onnx_dirs[variant], bert, "none")
    assert OnnxSource.from_path(onnx_dirs[variant] / "model.onnx").metadata()["warnings"] == []


@pytest.mark.parametrize("variant", list(INT8_VARIANTS))
def test_int8_graph_reads_back_within_quantization_error(bert: Any, onnx_dirs: dict[str, Path], variant: str) -> None:
    _check_canonical(onnx_dirs[variant], bert, _quant_of(INT8_VARIANTS[variant]))
    meta = OnnxSource.from_path(onnx_dirs[variant] / "model.onnx").metadata()
    assert set(meta["onnx.weight_storage"]) & {"int8", "uint8"}


def test_torch_export_reads_back_the_hf_weights(bert: Any, torch_dir: Path) -> None:
    _check_canonical(torch_dir, bert, "none")


def test_hf_tensor_set_is_complete(bert: Any, onnx_dirs: dict[str, Path]) -> None:
    """Every HF tensor (but the position_ids buffer) is exposed, so parameter counts agree."""
    src = OnnxSource.from_path(onnx_dirs["dynamo-matmul"] / "model.onnx")
    want = {k for k in hf_weights(bert) if not k.endswith("position_ids")}
    assert set(src.names()) == want
    for name in want:
        assert src.shape(name) == tuple(hf_weights(bert)[name].shape)


def test_rows_are_read_without_changing_values(onnx_dirs: dict[str, Path]) -> None:
    src = OnnxSource.from_path(onnx_dirs["cast-mul"] / "model.onnx")
    name = "embeddings.word_embeddings.weight"
    rows = [3, 300, 3, 0]
    assert torch.equal(src.get_rows(name, rows), src.get(name)[rows])
    q = "encoder.layer.1.attention.self.query.weight"  # stored transposed: rows are ONNX columns
    assert torch.equal(src.get_rows(q, [1, 0, 63]), src.get(q)[[1, 0, 63]])
    with pytest.raises(InputError, match="out of range"):
        src.get_rows(name, [512])


# --------------------------------------------------------------------------- comparisons
@pytest.mark.parametrize("variant", ["dynamo-matmul", "gemm-hf-names"])
def test_fp32_onnx_matches_hf(hf_dir: Path, onnx_dirs: dict[str, Path], variant: str) -> None:
    res = compare_models(load_model(onnx_dirs[variant]), load_model(hf_dir), DEFAULT, precision="fp32")
    assert res.coverage == 1.0 and res.token_mode == "strings"
    assert res.score >= 0.999 and res.verdict is Verdict.MATCH


def test_torch_export_matches_hf(hf_dir: Path, torch_dir: Path) -> None:
    res = compare_models(load_model(torch_dir), load_model(hf_dir), DEFAULT, precision="fp32")
    assert res.score >= 0.999 and res.verdict is Verdict.MATCH


@pytest.mark.parametrize("variant", list(INT8_VARIANTS))
def test_int8_onnx_matches_hf(hf_dir: Path, onnx_dirs: dict[str, Path], variant: str) -> None:
    res = compare_models(load_model(onnx_dirs[variant]), load_model(hf_dir), DEFAULT, precision="fp32")
    assert res.score >= 0.98 and res.verdict is Verdict.MATCH


def test_unrelated_bert_does_not_match(tmp_path: Path, onnx_dirs: dict[str, Path], vocab: list[str]) -> None:
    other = save_hf(tiny_bert(1), tmp_path / "other", vocab)
    res = compare_models(load_model(onnx_dirs["qdq-channel"]), load_model(other), DEFAULT, precision="fp32")
    assert res.verdict is not Verdict.MATCH and res.score < 0.3


# --------------------------------------------------------------------------- fallbacks and warnings
def test_untraceable_graph_falls_back_to_hf_names(bert: Any, tmp_path: Path, vocab: list[str]) -> None:
    path = build_bert_onnx(bert, tmp_path / "model.onnx", layernorm="custom", linear="gemm", hf_names=True)
    write_vocab(tmp_path, vocab)
    src = OnnxSource.from_path(path)
    meta = src.metadata()
    assert meta["onnx.mapping"] == "names"
    assert any("Hugging Face names" in w for w in meta["warnings"])
    assert src.config()["num_attention_heads"] == HEADS  # still read from the attention reshape
    _check_canonical(tmp_path, bert, "none")


def test_untraceable_anonymous_graph_is_unsupported(bert: Any, tmp_path: Path) -> None:
    path = build_bert_onnx(bert, tmp_path / "model.onnx", layernorm="custom")
    with pytest.raises(UnsupportedModelError, match="only BERT-family encoders are supported"):
        OnnxSource.from_path(path)


def test_unknown_head_count_falls_back_with_a_warning(bert: Any, tmp_path: Path) -> None:
    src = OnnxSource.from_path(build_bert_onnx(bert, tmp_path / "model.onnx", reshape_heads=False))
    assert src.config()["num_attention_heads"] == 1  # hidden 64 / assumed head_dim 64
    assert any("head count" in w for w in src.metadata()["warnings"])


def test_conflicting_names_are_reported(bert: Any, tmp_path: Path) -> None:
    """An export whose names lie about roles: the graph decides, and the conflict is recorded."""
    path = build_bert_onnx(bert, tmp_path / "model.onnx", linear="gemm", hf_names=True)
    model = onnx.load(str(path))
    swap = {"bert.encoder.layer.0.attention.self.query.weight": "bert.encoder.layer.0.attention.self.key.weight"}
    swap.update({v: k for k, v in swap.items()})
    for t in model.graph.initializer:
        t.name = swap.get(t.name, t.name)
    for n in model.graph.node:
        n.input[:] = [swap.get(x, x) for x in n.input]
    onnx.save(model, str(path))
    src = OnnxSource.from_path(path)
    assert any("disagrees" in w for w in src.metadata()["warnings"])
    q = src.get("encoder.layer.0.attention.self.query.weight").numpy()
    np.testing.assert_array_equal(q, hf_weights(bert)["encoder.layer.0.attention.self.query.weight"])


# --------------------------------------------------------------------------- errors
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "attest", *args], capture_output=True, text=True, env=env, timeout=300)


def test_non_bert_graph_is_exit_4_with_a_clear_message(tmp_path: Path, hf_dir: Path) -> None:
    path = non_bert_onnx(tmp_path / "classifier.onnx")
    proc = _cli("compare", str(path), str(hf_dir))
    assert proc.returncode == ExitCode.INPUT_ERROR, proc.stderr
    assert "ONNX graph: only BERT-family encoders are supported; found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_onnx_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, onnx_dirs: dict[str, Path]) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setattr(onnx_source, "_ONNX", None)
    with pytest.raises(InputError) as err:
        load_model(onnx_dirs["dynamo-matmul"])
    assert str(err.value) == ONNX_EXTRA_HINT


def test_not_an_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07\x12\x04junk" + os.urandom(200))
    with pytest.raises(InputError, match="not a valid ONNX model"):
        OnnxSource.from_path(path)


def test_file_size_is_bounded(monkeypatch: pytest.MonkeyPatch, onnx_dirs: dict[str, Path]) -> None:
    monkeypatch.setattr(onnx_source, "MAX_ONNX_BYTES", 1000)
    with pytest.raises(InputError, match="external data"):
        OnnxSource.from_path(onnx_dirs["dynamo-matmul"] / "model.onnx")


def _save_external(src: Path, folder: Path) -> Path:
    model = onnx.load(str(src))
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "model.onnx"
    onnx.save_model(
        model,
        str(out),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    return out


def test_external_data_inside_the_folder_is_read(
    bert: Any, onnx_dirs: dict[str, Path], tmp_path: Path, vocab: list[str]
) -> None:
    out = _save_external(onnx_dirs["qdq-channel"] / "model.onnx", tmp_path / "ext")
    write_vocab(out.parent, vocab)
    src = OnnxSource.from_path(out)
    assert [p.name for p in src.files()] == ["model.onnx", "weights.bin"]
    _check_canonical(out.parent, bert, "qdq-channel")


@pytest.mark.parametrize("location", ["../weights.bin", "/etc/passwd", "sub/../../weights.bin", "missing.bin"])
def test_external_data_outside_the_folder_is_refused(onnx_dirs: dict[str, Path], tmp_path: Path, location: str) -> None:
    out = _save_external(onnx_dirs["dynamo-matmul"] / "model.onnx", tmp_path / "inner")
    (tmp_path / "weights.bin").write_bytes((tmp_path / "inner" / "weights.bin").read_bytes())
    model = onnx.load(str(out), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save(model, str(out))
    with pytest.raises(InputError, match="external data"):
        OnnxSource.from_path(out)


def test_external_data_range_is_checked(onnx_dirs: dict[str, Path], tmp_path: Path) -> None:
    out = _save_external(onnx_dirs["dynamo-matmul"] / "model.onnx", tmp_path / "inner")
    (out.parent / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(InputError, match="past the end"):
        OnnxSource.from_path(out)


def test_random_corruption_never_escapes_as_a_traceback(onnx_dirs: dict[str, Path], tmp_path: Path) -> None:
    """Flipped bytes anywhere (protobuf framing, shapes, names, weights) give a clean InputError or a valid read."""
    data = (onnx_dirs["cast-mul"] / "model.onnx").read_bytes()
    rng = np.random.default_rng(2024)
    path = tmp_path / "model.onnx"
    # Bias the flips towards the graph structure: weights fill most of the file.
    n_struct = len(data) // 10
    for trial in range(150):
        blob = bytearray(data)
        for pos in rng.integers(0, n_struct if trial % 2 else len(blob), size=int(rng.integers(1, 6))):
            blob[int(pos)] = int(rng.integers(0, 256))
        path.write_bytes(bytes(blob))
        try:
            src = OnnxSource.from_path(path)
            for name in src.names():
                src.get(name)
        except InputError:
            pass
