"""`attest fingerprint` writes matrices that reproduce `attest compare` offline."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import load_file

from attest.arch.detect import load_model
from attest.invariants.methods import DEFAULT
from attest.workflows.compare import compare_models


def _run(argv, capsys, monkeypatch):
    from attest.cli.app import main

    monkeypatch.setattr(sys, "argv", ["attest", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_fingerprint_files_reproduce_compare(tiny_model, tmp_path, capsys, monkeypatch) -> None:
    a, b = tiny_model("qwen2", 0), tiny_model("qwen2", 1)
    for name, path in (("a", a), ("b", b)):
        code, out, err = _run(
            ["fingerprint", str(path), "--out", str(tmp_path / name), "--tokens", "128", "--json"], capsys, monkeypatch
        )
        assert code == 0, err
        summary = json.loads(out)
        assert len(summary["tokens"]) == 128 and summary["compute"]["flops"] > 0
    ma, mb = (
        load_file(str(tmp_path / "a" / "invariants.safetensors")),
        load_file(str(tmp_path / "b" / "invariants.safetensors")),
    )
    layer_keys = sorted(k for k in ma if k.startswith("layer."))
    assert layer_keys == sorted(k for k in mb if k.startswith("layer.")) and "global.emb" in ma
    for z in ma.values():
        assert z.dtype == torch.float16 and abs(float(z.double().pow(2).mean()) - 1.0) < 1e-3
    offline = sum(
        float(torch.nn.functional.cosine_similarity(ma[k].double().reshape(1, -1), mb[k].double().reshape(1, -1)))
        for k in layer_keys
    ) / len(layer_keys)
    online = compare_models(load_model(a), load_model(b), DEFAULT.with_options(n_tokens=128)).score
    assert offline == pytest.approx(online, abs=1e-6)
    code, out, err = _run(["fingerprint", str(a), "--out", str(tmp_path / "a"), "--tokens", "128"], capsys, monkeypatch)
    assert code == 4 and "refusing to overwrite" in err
