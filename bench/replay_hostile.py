"""Replay issue 12's hostile-input findings against one copy of attest; print exit code, message, peak RSS, time.

    python bench/replay_hostile.py [--attest-root DIR] [--mem-limit-gb 3]

`--attest-root` is a folder holding an `attest` package (default: this
checkout), e.g. a `git archive` of an older commit, so the same inputs give a
before/after table.  Each case runs the CLI in a fresh process under an
address-space limit (so a finding that used to grow to gigabytes fails with a
MemoryError instead of taking the machine) and a 120 s timeout.  The cases
mirror tests/test_hostile_inputs.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

_RUN = """
import resource, sys
sys.argv = ["attest", *sys.argv[1:]]
from attest.cli.app import main
try:
    main()
finally:
    sys.stderr.write("\\nPEAK_KB=%d\\n" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _run(root: Path, args: list[Any], mem_gb: float) -> tuple[int, str, float, float]:
    # cwd elsewhere too: `python -c` puts the working directory first on sys.path.
    env = dict(os.environ, PYTHONPATH=str(root))
    limit = int(mem_gb * 1024**3)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    t = time.perf_counter()
    try:
        p = subprocess.run(
            [sys.executable, "-c", _RUN, *map(str, args)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env=env,
            preexec_fn=cap,
            cwd=tempfile.gettempdir(),
        )
        code, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired:
        code, err = -9, "timeout after 120 s"
    seconds = time.perf_counter() - t
    peaks = [ln for ln in err.splitlines() if ln.startswith("PEAK_KB=")]
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("PEAK_KB=")]
    message = next(
        (ln for ln in reversed(lines) if ln.startswith(("error:", "internal error:"))), lines[-1] if lines else ""
    )
    return code, message, int(peaks[-1].split("=")[1]) / 1024 if peaks else float("nan"), seconds


def _st(folder: Path) -> tuple[dict[str, Any], bytes]:
    raw = (folder / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write_st(folder: Path, header: dict[str, Any] | bytes, data: bytes) -> None:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + data)


def cases(good: Path, work: Path) -> dict[str, Callable[[Path], list[Any]]]:
    """name -> function(copy of the good folder) that damages it and returns the CLI arguments."""
    deep = "[" * 200_000 + "]" * 200_000

    def config(text: str) -> Callable[[Path], list[Any]]:
        def f(d: Path) -> list[Any]:
            (d / "config.json").write_text(text)
            return ["compare", good, d]

        return f

    def header(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], list[Any]]:
        def f(d: Path) -> list[Any]:
            h, data = _st(d)
            out = edit(h)
            _write_st(d, out if isinstance(out, bytes) else h, data)
            return ["compare", good, d]

        return f

    def tok(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], list[Any]]:
        def f(d: Path) -> list[Any]:
            t = json.loads((d / "tokenizer.json").read_text())
            edit(t)
            (d / "tokenizer.json").write_text(json.dumps(t))
            return ["compare", good, d]

        return f

    def huge_embed(d: Path) -> list[Any]:
        h, data = _st(d)
        end = h["model.embed_tokens.weight"]["data_offsets"][0]
        h["model.embed_tokens.weight"] = {"dtype": "F32", "shape": [300_000_000, 0], "data_offsets": [end, end]}
        _write_st(d, h, data)
        cfg = json.loads((d / "config.json").read_text())
        cfg.pop("hidden_size")  # else the width check (0 vs 64) stops it first
        (d / "config.json").write_text(json.dumps(cfg))
        return ["compare", good, d]

    def overlap(h: dict[str, Any]) -> None:
        h["model.layers.1.mlp.gate_proj.weight"]["data_offsets"] = list(
            h["model.layers.1.mlp.up_proj.weight"]["data_offsets"]
        )

    def bool_shape(h: dict[str, Any]) -> None:
        h["model.norm.weight"]["shape"] = [63, True]

    def norm_shape(d: Path) -> list[Any]:
        import torch
        from safetensors.torch import load_file, save_file

        t = load_file(str(d / "model.safetensors"))
        t["model.layers.0.input_layernorm.weight"] = torch.ones(65)
        save_file(t, str(d / "model.safetensors"))
        return ["compare", good, d]

    def vocab_txt(d: Path) -> list[Any]:
        (d / "tokenizer.json").unlink()
        with open(d / "vocab.txt", "wb") as fh:
            fh.truncate(2 * 1024**3)
        return ["compare", good, d]

    def gguf(d: Path) -> list[Any]:
        n, path = 1_500_000, d / "strings.gguf"
        with open(path, "wb") as fh:
            key = b"tokenizer.ggml.tokens"
            fh.write(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key)
            fh.write(struct.pack("<IIQ", 9, 8, n))
            fh.truncate(fh.tell() + 8 * n)
        return ["compare", good, path]

    def index_list(d: Path) -> list[Any]:
        (d / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {"model.norm.weight": ["model.safetensors"]}})
        )
        return ["compare", good, d]

    def deflated(d: Path) -> list[Any]:
        import zipfile

        import torch
        from safetensors.torch import load_file

        torch.save(load_file(str(d / "model.safetensors")), d / "stored.bin")
        (d / "model.safetensors").unlink()
        with (
            zipfile.ZipFile(d / "stored.bin") as zin,
            zipfile.ZipFile(d / "pytorch_model.bin", "w", compression=zipfile.ZIP_DEFLATED) as zout,
        ):
            for info in zin.infolist():
                zout.writestr(info.filename, zin.read(info.filename))
        (d / "stored.bin").unlink()
        return ["compare", good, d]

    def huge_id(t: dict[str, Any]) -> None:
        t["model"]["vocab"]["zzzz"] = 49_999_999

    return {
        "config [1,2,3]": config("[1, 2, 3]"),
        "config 1e999": config('{"model_type": "llama", "num_hidden_layers": 1e999}'),
        'config "4x"': config('{"model_type": "llama", "hidden_size": "4x"}'),
        "config [4]": config('{"model_type": "llama", "num_attention_heads": [4]}'),
        'config "four"': config('{"model_type": "llama", "num_key_value_heads": "four"}'),
        "config nested 200k": config('{"model_type": "llama", "x": ' + deep + "}"),
        "st header nested 200k": header(lambda h: b'{"a": ' + deep.encode() + b"}"),
        "st header 5000-digit int": header(
            lambda h: json.dumps(h).replace('"shape": [512, 64]', '"shape": [' + "1" * 5000 + ", 64]", 1).encode()
        ),
        "st shape [63, true]": header(bool_shape),
        "st overlapping offsets": header(overlap),
        "st embedding [3e8, 0]": huge_embed,
        "norm gain wrong shape": norm_shape,
        "tokenizer added_tokens 5": tok(lambda t: t.update(added_tokens=5)),
        "tokenizer vocab id '7'": tok(lambda t: t["model"]["vocab"].update({"hello": "7"})),
        "tokenizer nested 900": tok(lambda t: t.update(pre_tokenizer=json.loads("[" * 900 + "]" * 900))),
        "tokenizer id 49,999,999": tok(huge_id),
        "vocab.txt 2 GB sparse": vocab_txt,
        "GGUF 1.5 M empty strings": gguf,
        "shard index value list": index_list,
        "ZIP_DEFLATED .bin": deflated,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attest-root", type=Path, default=ROOT)
    ap.add_argument("--mem-limit-gb", type=float, default=3.0)
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    args = ap.parse_args()
    from helpers.models import save_tiny_model

    work = Path(tempfile.mkdtemp(prefix="attest-replay-"))
    good = save_tiny_model("llama", work / "good", 0)
    print(f"attest from {args.attest_root}; address space capped at {args.mem_limit_gb} GB")
    print("| case | exit | peak MB | s | message |\n|---|---:|---:|---:|---|")
    for k, (name, make) in enumerate(cases(good, work).items()):
        if args.only not in name:
            continue
        d = work / f"case{k}"
        shutil.copytree(good, d)
        argv = make(d)
        code, msg, peak, seconds = _run(args.attest_root, argv, args.mem_limit_gb)
        msg = msg.replace(str(work), "…").replace("|", "\\|")[:150]
        print(f"| {name} | {code} | {peak:.0f} | {seconds:.1f} | {msg} |", flush=True)
        shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
