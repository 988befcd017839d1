"""GGUF reading: dequantization, llama.cpp's Q/K permutation, family tables, hostile files.

A tiny real `transformers` LlamaForCausalLM (GQA) is converted to GGUF the way
llama.cpp's converter does (`tests/gguf_fixtures.py`) and must read back as the
same model: the canonical tensors equal the HF ones within quantization error,
and `compare_models` scores the pair a match.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any

import gguf  # noqa: E402
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q  # noqa: E402
from helpers.gguf_fixtures import (  # noqa: E402
    byte_level_tokens,
    convert_hf_model,
    llama_cpp_permute,
    write_gguf,
    write_llama_gguf,
    write_tokenizer_json,
)

from attest.arch.canonical import CanonicalModel  # noqa: E402
from attest.arch.detect import load_model  # noqa: E402
from attest.arch.gguf_families import GGUF_ARCHS  # noqa: E402
from attest.errors import ExitCode, InputError, UnsupportedModelError  # noqa: E402
from attest.invariants.methods import DEFAULT  # noqa: E402
from attest.scoring.decision import Verdict  # noqa: E402
from attest.sources.gguf_source import GGUFSource  # noqa: E402
from attest.workflows.compare import compare_models  # noqa: E402

VOCAB = 512
HIDDEN, HEADS, KV_HEADS, FFN, LAYERS = 64, 4, 2, 128, 2
# Max abs error of a dequantized weight against the original, per type (weights ~ N(0, 0.1)).
QUANT_ATOL = {Q.F16: 2e-4, Q.Q8_0: 3e-3, Q.Q4_0: 6e-2}


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """N(0, 0.1) weights and norm gains around 1, so gains and quantization both matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            noise = torch.randn(p.shape, generator=gen)
            if p.dim() >= 2:
                p.copy_(noise * 0.1)
            elif p.dim() == 1:
                p.add_(noise * 0.3)


@pytest.fixture(scope="module")
def tokens() -> list[str]:
    return byte_level_tokens(VOCAB)


@pytest.fixture(scope="module")
def hf_llama(tmp_path_factory: pytest.TempPathFactory, tokens: list[str]) -> tuple[Any, Path]:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    _randomise(model, 0)
    folder = tmp_path_factory.mktemp("hf-llama")
    model.save_pretrained(folder)
    write_tokenizer_json(folder, tokens)
    return model, folder


@pytest.fixture(scope="module")
def llama_gguf(
    tmp_path_factory: pytest.TempPathFactory, hf_llama: tuple[Any, Path], tokens: list[str]
) -> dict[Q, Path]:
    model, _ = hf_llama
    folder = tmp_path_factory.mktemp("gguf-llama")
    return {q: write_llama_gguf(model, tokens, folder / f"tiny-{q.name}.gguf", q) for q in (Q.F16, Q.Q8_0, Q.Q4_0)}


def _hf_attn(model: Any, i: int) -> Any:
    return model.model.layers[i].self_attn


# --------------------------------------------------------------------------- reading
def test_metadata_and_shapes(llama_gguf: dict[Q, Path], tokens: list[str]) -> None:
    path = llama_gguf[Q.Q8_0]
    with GGUFSource.from_path(path) as src:
        meta = src.metadata()
        assert src.format == "gguf" and src.files() == [path] and src.config() is None
        assert meta["general.architecture"] == "llama"
        assert meta["llama.block_count"] == LAYERS and isinstance(meta["llama.block_count"], int)
        assert meta["tokenizer.ggml.tokens"] == tokens
        assert all(isinstance(t, int) for t in meta["tokenizer.ggml.token_type"])
        assert not any(k.startswith("GGUF.") for k in meta)
        # torch order [out, in]: the reverse of GGUF's ne order
        assert src.shape("token_embd.weight") == (VOCAB, HIDDEN)
        assert src.shape("blk.0.attn_k.weight") == (KV_HEADS * HIDDEN // HEADS, HIDDEN)
        assert src.shape("blk.0.ffn_down.weight") == (HIDDEN, FFN)
        assert src.qtype_name("blk.0.attn_q.weight") == "Q8_0"
        assert src.qtype_name("blk.0.attn_norm.weight") == "F32"
        w = src.get("blk.1.ffn_up.weight")
        assert w.dtype == torch.float32 and tuple(w.shape) == (FFN, HIDDEN)
        spec, dims = src.arch_spec()
        assert spec.source_format == "gguf" and spec.family == "llama"
        assert dims == {"hidden": HIDDEN, "layers": LAYERS, "heads": HEADS, "kv_heads": KV_HEADS}


@pytest.mark.parametrize("qtype", [Q.F16, Q.Q8_0])
def test_qk_permutation_is_undone(llama_gguf: dict[Q, Path], hf_llama: tuple[Any, Path], qtype: Q) -> None:
    model, _ = hf_llama
    atol = QUANT_ATOL[qtype]
    reader = gguf.GGUFReader(llama_gguf[qtype])
    raw = {t.name: t for t in reader.tensors}
    with GGUFSource.from_path(llama_gguf[qtype]) as src:
        for i in range(LAYERS):
            attn = _hf_attn(model, i)
            for short, hf_w, n in (("q", attn.q_proj.weight, HEADS), ("k", attn.k_proj.weight, KV_HEADS)):
                hf_w = hf_w.detach()
                name = f"blk.{i}.attn_{short}.weight"
                torch.testing.assert_close(src.get(name), hf_w, rtol=0, atol=atol)
                # The file itself holds the converter's permuted rows ...
                t = raw[name]
                stored = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy())
                permuted = torch.from_numpy(llama_cpp_permute(hf_w.numpy(), HEADS, n))
                torch.testing.assert_close(stored, permuted, rtol=0, atol=atol)
                # ... which differ grossly from HF's order.
                assert (stored - hf_w).abs().max() > 20 * atol
            # V and O are not permuted.
            torch.testing.assert_close(
                src.get(f"blk.{i}.attn_v.weight"), attn.v_proj.weight.detach(), rtol=0, atol=atol
            )


def test_canonical_view_matches_hf(llama_gguf: dict[Q, Path], hf_llama: tuple[Any, Path]) -> None:
    model, folder = hf_llama
    g, h = load_model(llama_gguf[Q.F16]), load_model(folder)
    assert g.dims == h.dims and g.family == h.family == "llama"
    assert not g.tied_head
    _assert_same_canonical(g, h, atol=QUANT_ATOL[Q.F16])


@pytest.mark.parametrize(("qtype", "floor"), [(Q.F16, 0.999), (Q.Q8_0, 0.99), (Q.Q4_0, 0.95)])
def test_compare_gguf_with_hf_original(
    llama_gguf: dict[Q, Path], hf_llama: tuple[Any, Path], qtype: Q, floor: float
) -> None:
    _, folder = hf_llama
    result = compare_models(load_model(llama_gguf[qtype]), load_model(folder), DEFAULT)
    assert result.score >= floor, (qtype.name, result.score)
    assert result.verdict == Verdict.MATCH
    assert result.coverage == 1.0
    assert result.token_mode == "strings" and result.n_tokens >= 64
    assert result.model_a["format"] == "gguf" and result.model_a["tokenizer"] == "bpe-bytelevel"


# --------------------------------------------------------------------------- quantization
_KQUANTS = (Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_NL, Q.IQ4_XS, Q.IQ2_XXS, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.BF16)


@pytest.fixture(scope="module")
def random_quant_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 2-D tensor per type, filled with random blocks (any bytes are a valid encoding)."""
    rng = np.random.default_rng(0)
    raw = {}
    for q in _KQUANTS:
        block, type_size = gguf.GGML_QUANT_SIZES[q]
        raw[f"w.{q.name}"] = (rng.integers(0, 256, size=(7, 2 * type_size), dtype=np.uint8), q)
    return write_gguf(tmp_path_factory.mktemp("quants") / "quants.gguf", "llama", {}, raw=raw)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # random scales include inf/NaN
@pytest.mark.parametrize("qtype", _KQUANTS, ids=lambda q: q.name)
def test_row_gather_equals_full_dequantize(random_quant_file: Path, qtype: Q, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"w.{qtype.name}"
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    with GGUFSource.from_path(random_quant_file) as src:
        assert src.shape(name) == (7, 2 * block)
        full = src.get(name)
        seen: list[tuple[int, ...]] = []
        real = gguf.quants.dequantize
        monkeypatch.setattr(gguf.quants, "dequantize", lambda d, q: (seen.append(d.shape), real(d, q))[1])
        rows = [5, 0, 5, 3]
        got = src.get_rows(name, rows)
    torch.testing.assert_close(got, full[rows], rtol=0, atol=0, equal_nan=True)
    assert seen == [(len(rows), 2 * gguf.GGML_QUANT_SIZES[qtype][1])]  # only the requested rows were decoded


def test_row_gather_q4_0_embedding(llama_gguf: dict[Q, Path], hf_llama: tuple[Any, Path]) -> None:
    model, _ = hf_llama
    rows = [511, 3, 200, 3]
    with GGUFSource.from_path(llama_gguf[Q.Q4_0]) as src:
        got = src.get_rows("token_embd.weight", rows)
        torch.testing.assert_close(got, src.get("token_embd.weight")[rows], rtol=0, atol=0)
    torch.testing.assert_close(got, model.model.embed_tokens.weight.detach()[rows], rtol=0, atol=QUANT_ATOL[Q.Q4_0])
    with GGUFSource.from_path(llama_gguf[Q.Q4_0]) as src, pytest.raises(InputError, match="out of range"):
        src.get_rows("token_embd.weight", [VOCAB])


@pytest.mark.parametrize(
    ("qtype", "data"),
    [
        (Q.Q8_K, np.zeros((2, 292), dtype=np.uint8)),  # gguf-py has no Q8_K dequantizer
        (Q.I32, np.arange(8, dtype=np.int32)),
    ],
    ids=["Q8_K", "I32"],
)
def test_type_gguf_py_cannot_dequantize(tmp_path: Path, qtype: Q, data: np.ndarray) -> None:
    path = write_gguf(tmp_path / "t.gguf", "llama", {}, raw={"x": (data, qtype)})
    with GGUFSource.from_path(path) as src, pytest.raises(InputError, match=qtype.name):
        src.get("x")


# --------------------------------------------------------------------------- family tables
# Cases of tests/family_configs.py, each converted with the rules of its llama.cpp converter class.
_FAMILY_CASES = [
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "phi3",
    "gpt2",
    "gpt_neox",
    "falcon",
    "falcon-40b",
    "bloom",
    "mpt",
    "starcoder2",
    "olmo",
    "stablelm",
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "bert",
    "olmo2",
    "olmo3",
    "exaone4",
    "granite",
    "seed_oss",
    "apertus",
    "cohere",
    "cohere2",
    "phi",
    "cohere-qknorm",
    "smollm3",
    "ernie4_5",
    "ernie4_5_moe",
    "hunyuan_v1_dense",
    "granitemoe",
    "phimoe",
    "glm4_moe",
    "gpt_oss",
    "llama4_text",
]


def _build(case: str) -> Any:
    from helpers import family_configs
    from transformers import AutoModel, AutoModelForCausalLM

    spec = family_configs.CASES[case]
    auto = AutoModel if spec.auto == "base" else AutoModelForCausalLM
    torch.manual_seed(0)
    model = auto.from_config(family_configs.tiny_config(case), attn_implementation="eager", dtype=torch.float32)
    _randomise(model, 1)
    model.tie_weights()
    return model.eval()


@pytest.mark.parametrize("case", _FAMILY_CASES)
def test_gguf_table_reads_what_the_converter_wrote(case: str, tmp_path: Path, tokens: list[str]) -> None:
    model = _build(case)
    # The GGUF writer below emits exactly VOCAB tokens; a drift in the family configs must fail loudly.
    assert model.config.vocab_size == VOCAB, "helpers/family_configs.py changed its vocabulary size"
    model.save_pretrained(tmp_path)
    write_tokenizer_json(tmp_path, tokens)
    # F32 so that the GGUF and HF canonical views must agree exactly.
    path = convert_hf_model(model, tmp_path / "model.gguf", tokens, qtype=Q.F32)
    g, h = load_model(path), load_model(tmp_path)
    assert g.family == h.family
    assert g.dims == h.dims
    assert g.norm_kind == h.norm_kind
    _assert_same_canonical(g, h, atol=1e-6)


def test_glm4moe_nextn_blocks_are_not_layers(tmp_path: Path, tokens: list[str]) -> None:
    """glm.py counts the NextN (MTP) block in block_count; it must not become a layer of the model."""
    model = _build("glm4_moe")
    model.save_pretrained(tmp_path)
    write_tokenizer_json(tmp_path, tokens)
    path = convert_hf_model(model, tmp_path / "model.gguf", tokens, qtype=Q.F32)
    n = model.config.num_hidden_layers
    with GGUFSource.from_path(path) as src:
        meta = src.metadata()
        assert meta["glm4moe.block_count"] == n + 1 and meta["glm4moe.nextn_predict_layers"] == 1
        assert f"blk.{n}.attn_q.weight" in src.names()
    g = load_model(path)
    assert g.n_layers == n == load_model(tmp_path).n_layers
    note = next(w for w in g.warnings if w.startswith("ignored"))
    assert "past the declared" in note and f"blk.{n}." in note
    assert not any("exp_probs_b" in w for w in g.warnings)  # the selection bias is a claimed tensor


def test_gguf_tables_follow_their_hf_tables() -> None:
    """A GGUF table is its HF table under llama.cpp's names: the same roles filled, the same norms."""
    from attest.arch.families import HF_FAMILIES
    from attest.arch.gguf_families import LLAMA_CPP_NAMES
    from attest.arch.roles import LAYER_ROLES, MODEL_ROLES, Role

    by_family = {s.family: s for s in HF_FAMILIES}
    for name, arch in GGUF_ARCHS.items():
        for spec in (arch.spec, arch.moe_spec):
            if spec is None:
                continue
            table = by_family[spec.family]
            assert (spec.norm, spec.qk_norm_scope, spec.qk_norm_kind) == (
                table.norm,
                table.qk_norm_scope,
                table.qk_norm_kind,
            ), name
            assert (spec.experts is None) == (table.experts is None), name
            for role in (*MODEL_ROLES, *LAYER_ROLES):
                if role is Role.KNOWN_UNUSED or not table.names(role):
                    continue
                assert spec.names(role), (name, role)
                # every name is llama.cpp's for some role (no invented names)
                assert set(spec.names(role)) <= {n for v in LLAMA_CPP_NAMES.values() for n in v} | {
                    "attn_norm_2.weight",
                    "layer_output_norm.weight",
                    "attn_output_norm.weight",
                    "post_attention_norm.weight",
                }, (name, role)


def test_gpt_oss_mxfp4_gguf_reads_as_its_dequantised_weights(tmp_path: Path, tokens: list[str]) -> None:
    """The released gpt-oss GGUFs keep weights in GGML MXFP4: attest reads such a file as exactly
    the MXFP4-rounded weights (the HF model holding gguf-py's round trip of every matrix)."""
    from helpers import family_configs
    from transformers import AutoModelForCausalLM

    # MXFP4 rows are 32 wide: f = 32 so that every expert matrix can be encoded.
    config = family_configs.tiny_config("gpt_oss", intermediate_size=32)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32).eval()
    _randomise(model, 1)
    path = convert_hf_model(model, tmp_path / "model.gguf", tokens, qtype=Q.MXFP4)
    with GGUFSource.from_path(path) as src:
        assert src.qtype_name("blk.0.ffn_gate_exps.weight") == "MXFP4"
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                arr = np.ascontiguousarray(p.detach().numpy(), dtype=np.float32)
                if p.dim() == 3:  # the converter writes experts as [E, out, in]: round the rows it encodes
                    arr = arr.transpose(0, 2, 1).copy()
                rounded = gguf.quants.dequantize(gguf.quants.quantize(arr, Q.MXFP4), Q.MXFP4).reshape(arr.shape)
                if p.dim() == 3:
                    rounded = rounded.transpose(0, 2, 1)
                p.copy_(torch.from_numpy(np.ascontiguousarray(rounded)))
    hf = tmp_path / "hf"
    model.save_pretrained(hf)
    write_tokenizer_json(hf, tokens)
    g, h = load_model(path), load_model(hf)
    assert g.family == h.family == "gpt_oss" and g.dims == h.dims
    _assert_same_canonical(g, h, atol=1e-6)


def test_a_transposed_gguf_expert_stack_is_refused(tmp_path: Path, tokens: list[str]) -> None:
    """ffn_down_exps written [E, f, d] instead of [E, d, f]: an input error naming the tensor and shapes."""
    model = _build("mixtral")
    with torch.no_grad():
        for layer in model.model.layers:
            ex = layer.mlp.experts
            ex.down_proj = torch.nn.Parameter(ex.down_proj.detach().transpose(1, 2).contiguous())
    path = convert_hf_model(model, tmp_path / "model.gguf", tokens, qtype=Q.F32)
    with pytest.raises(InputError, match=r"stacked expert down 'blk\.0\.ffn_down_exps\.weight' .*has shape"):
        load_model(path).layer(0)


def test_every_gguf_arch_is_a_gguf_table() -> None:
    from attest.arch.families import HF_FAMILIES

    hf_families = {s.family for s in HF_FAMILIES}
    for name, arch in GGUF_ARCHS.items():
        for spec in (arch.spec, arch.moe_spec):
            if spec is not None:
                assert spec.source_format == "gguf" and spec.family in hf_families, name
                assert spec.norm_gain_offset == 0.0, name  # llama.cpp stores Gemma's gains with the +1


# --------------------------------------------------------------------------- hostile files
@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    rng = np.random.default_rng(1)
    toks = ["<s>", "Ġhello", "world", "Ġfoo"]
    tensors = {
        "token_embd.weight": rng.standard_normal((4, 32)),
        "blk.0.attn_norm.weight": np.ones(32),
        "blk.0.ffn_norm.weight": np.ones(32),
        "blk.0.xfn_norm.weight": np.ones(32),  # renamed to a duplicate below
    }
    path = write_gguf(
        tmp_path_factory.mktemp("small") / "small.gguf",
        "llama",
        tensors,
        metadata={"llama.block_count": 1, "llama.block_counx": 1, "llama.embedding_length": 32},
        tokens=toks,
        qtype=Q.Q8_0,
    )
    return path.read_bytes()


def _mutate_at(data: bytes, marker: bytes, skip: int, value: bytes) -> bytes:
    at = data.index(marker) + len(marker) + skip
    return data[:at] + value + data[at + len(value) :]


# name -> (how to spoil the small file, the expected message)
_HOSTILE: dict[str, tuple[Any, str]] = {
    "empty": (lambda d: b"", "empty file"),
    "bad magic": (lambda d: b"GGUX" + d[4:], "bad magic"),
    "truncated header": (lambda d: d[:40], "truncated"),
    "truncated metadata": (lambda d: d[: d.index(b"tokenizer.ggml.tokens") + 60], "truncated"),
    "truncated data": (lambda d: d[:-20], "truncated"),
    "bad version": (lambda d: d[:4] + struct.pack("<I", 7) + d[8:], "version 7"),
    "absurd tensor count": (lambda d: d[:8] + struct.pack("<Q", 2**60) + d[16:], "claims"),
    "absurd kv count": (lambda d: d[:16] + struct.pack("<Q", 2**40) + d[24:], "claims"),
    # tokenizer.ggml.tokens: u32 value type, u32 item type, then the u64 length
    "huge array": (lambda d: _mutate_at(d, b"tokenizer.ggml.tokens", 8, struct.pack("<Q", 2**62)), "array"),
    "unknown value type": (
        lambda d: _mutate_at(d, b"llama.block_count", 0, struct.pack("<I", 77)),
        "unknown value type",
    ),
    "duplicate key": (lambda d: d.replace(b"llama.block_counx", b"llama.block_count"), "appears twice"),
    # tensor info: u32 n_dims, n_dims x u64 dims, u32 type
    "unknown tensor type": (
        lambda d: _mutate_at(d, b"token_embd.weight", 4 + 16, struct.pack("<I", 99)),
        "unknown type",
    ),
    "too many dims": (lambda d: _mutate_at(d, b"token_embd.weight", 0, struct.pack("<I", 9)), "dimensions"),
    "huge dim": (lambda d: _mutate_at(d, b"token_embd.weight", 4, struct.pack("<Q", 2**40)), "dimensions"),
    "partial block": (lambda d: _mutate_at(d, b"token_embd.weight", 4, struct.pack("<Q", 33)), "blocks"),
    "duplicate tensor": (lambda d: d.replace(b"blk.0.xfn_norm.weight", b"blk.0.ffn_norm.weight"), "appears twice"),
    "data offset past end": (
        lambda d: _mutate_at(d, b"blk.0.ffn_norm.weight", 4 + 8 + 4, struct.pack("<Q", 2**50)),
        "truncated",
    ),
}


@pytest.mark.parametrize("case", list(_HOSTILE))
def test_hostile_file_is_a_clean_input_error(small_gguf: bytes, tmp_path: Path, case: str) -> None:
    spoil, message = _HOSTILE[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(spoil(small_gguf))
    with pytest.raises(InputError, match=message):
        src = GGUFSource.from_path(path)
        src.metadata()
        for name in src.names():
            src.get(name)


def test_split_shard_is_rejected_with_advice(tmp_path: Path) -> None:
    path = write_gguf(
        tmp_path / "m-00001-of-00002.gguf",
        "llama",
        {"token_embd.weight": np.ones((4, 32))},
        metadata={"split.count": 2, "split.no": 0},
    )
    with pytest.raises(InputError, match="split GGUF"):
        GGUFSource.from_path(path)


def test_non_string_tokens_are_rejected(tmp_path: Path) -> None:
    path = write_gguf(
        tmp_path / "t.gguf",
        "llama",
        {"token_embd.weight": np.ones((4, 32)), "blk.0.attn_q.weight": np.ones((32, 32))},
        metadata={"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": [1, 2, 3, 4]},
    )
    with pytest.raises(InputError, match="not a list of strings"):
        load_model(path)


def test_unsupported_architecture_lists_supported(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", "mamba", {"token_embd.weight": np.ones((4, 32))})
    with pytest.raises(UnsupportedModelError) as err:
        load_model(path)
    for arch in ("llama", "qwen2", "gemma2", "bert"):
        assert arch in str(err.value)


def test_random_corruption_never_escapes_as_a_traceback(small_gguf: bytes, tmp_path: Path) -> None:
    rng = np.random.default_rng(2024)
    header_end = small_gguf.index(b"blk.0.attn_norm.weight") + 64
    path = tmp_path / "fuzz.gguf"
    outcomes = {"ok": 0, "error": 0}
    for _ in range(300):
        data = bytearray(small_gguf)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(0, header_end))] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            data = data[: int(rng.integers(0, len(data)))]
        path.write_bytes(bytes(data))
        try:
            with GGUFSource.from_path(path) as src:
                src.metadata()
                for name in src.names():
                    src.get(name)
                    src.shape(name)
            outcomes["ok"] += 1
        except InputError:
            outcomes["error"] += 1
    assert outcomes["error"] > 0


@pytest.mark.parametrize("case", ["truncated data", "bad magic", "unsupported architecture"])
def test_cli_exit_code_4(
    small_gguf: bytes, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from attest.cli.app import main

    path = tmp_path / "bad.gguf"
    if case == "unsupported architecture":
        write_gguf(path, "rwkv6", {"token_embd.weight": np.ones((4, 32))})
        expected = "GGUF architecture 'rwkv6' is not supported"
    else:
        path.write_bytes(_HOSTILE[case][0](small_gguf))
        expected = {"truncated data": "truncated", "bad magic": "not a GGUF file"}[case]
    monkeypatch.setattr(sys, "argv", ["attest", "compare", str(path), str(path)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == int(ExitCode.INPUT_ERROR)
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


# --------------------------------------------------------------------------- helpers
def _assert_same_canonical(a: CanonicalModel, b: CanonicalModel, *, atol: float) -> None:
    """Every canonical tensor of `a` equals `b`'s (gains as effective gains, offsets applied)."""

    def close(x: torch.Tensor | None, y: torch.Tensor | None, what: str) -> None:
        assert (x is None) == (y is None), what
        if x is not None and y is not None:
            torch.testing.assert_close(x.float(), y.float(), rtol=0, atol=atol, msg=lambda m: f"{what}: {m}")

    ids = list(range(0, a.dims.vocab, 37))
    close(a.embedding_rows(ids), b.embedding_rows(ids), "embedding rows")
    close(a.head_rows(ids), b.head_rows(ids), "head rows")
    close(a.final_norm_gain(), b.final_norm_gain(), "final norm")
    close(a.embed_norm_gain(), b.embed_norm_gain(), "embedding norm")
    for i in range(a.n_layers):
        la, lb = a.layer(i), b.layer(i)
        for field in ("q", "k", "v", "o", "q_norm", "k_norm"):
            close(getattr(la.attn, field, None), getattr(lb.attn, field, None), f"layer {i} {field}")
        for field in ("attn_norm", "ffn_norm", "attn_out_norm", "ffn_out_norm", "router"):
            close(getattr(la, field), getattr(lb, field), f"layer {i} {field}")
        mlps_a = ([la.mlp] if la.mlp else []) + la.experts + la.shared_experts
        mlps_b = ([lb.mlp] if lb.mlp else []) + lb.experts + lb.shared_experts
        assert len(mlps_a) == len(mlps_b), f"layer {i} FFN count"
        for j, (ma, mb) in enumerate(zip(mlps_a, mlps_b)):
            for field in ("up", "gate", "down"):
                close(getattr(ma, field), getattr(mb, field), f"layer {i} FFN {j} {field}")


@pytest.mark.parametrize("case", ["deepseek_v2", "deepseek_v3"])
def test_deepseek2_gguf_reads_the_split_mla_tensors(case: str, tmp_path: Path, tokens: list[str]) -> None:
    """Arch `deepseek2` (DeepSeek-V2/V3, Kimi-K2) as DeepseekV2Model writes it: kv_b split into
    per-head transposed `attn_k_b` and `attn_v_b`, MQA head counts in the metadata, stacked experts,
    dense leading layers without a router. The MLA view and the score equal the HF original's."""
    import dataclasses

    from attest.arch.mla import MlaAttention
    from attest.sources import open_weights

    model = _build(case)
    model.save_pretrained(tmp_path)
    write_tokenizer_json(tmp_path, tokens)
    path = convert_hf_model(model, tmp_path / "model.gguf", tokens, qtype=Q.F32)
    names = set(open_weights(path).names())
    assert "blk.1.attn_k_b.weight" in names and "blk.1.attn_kv_b.weight" not in names
    assert ("blk.1.exp_probs_b.bias" in names) == (case == "deepseek_v3")
    g, h = load_model(path), load_model(tmp_path)
    assert g.family == "deepseek_v3" and g.dims.n_heads == h.dims.n_heads and g.dims.n_kv_heads == 1
    assert not [w for w in g.warnings if "ignored" in w], g.warnings  # every tensor claimed
    _assert_same_canonical(g, h, atol=1e-6)
    for i in range(h.n_layers):
        la, lb = g.layer(i).attn, h.layer(i).attn
        assert isinstance(la, MlaAttention) and isinstance(lb, MlaAttention)
        for f in dataclasses.fields(la):
            x, y = getattr(la, f.name), getattr(lb, f.name)
            if isinstance(x, torch.Tensor):
                torch.testing.assert_close(x.float(), y.float(), rtol=0, atol=1e-6, msg=f"layer {i} {f.name}")
            else:
                assert x == y, f"layer {i} {f.name}"
    res = compare_models(g, h, DEFAULT.with_options(n_tokens=128), precision="fp32")
    assert res.score > 0.9999 and all(set(p.terms) >= {"qk", "vo"} for p in res.pairs)
