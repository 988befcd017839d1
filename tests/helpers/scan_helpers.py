"""A model tree for the scan tests, and a work function whose worker the test can kill.

Importable by Ray workers (the test puts this folder on their PYTHONPATH).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

from attest.scan.work import Context, Job, Outcome, scan_one

# display names in the tree -> what the scan must conclude
GOOD = ("org-a/derived-llama", "org-b/qwen", "gpt2-x", "acme/tiny-mistral@")
CORRUPT = "loose/broken.safetensors"
ESCAPING = "evil"


def build_tree(root: Path, outside: Path) -> Path:
    """Six models: four good (one a derivative of base-llama, one in an HF cache layout), one corrupt, one escaping."""
    from helpers.models import save_tiny_model
    from helpers.registry_world import save_derivative

    hub = root / "hub"
    save_derivative("llama", 21, hub / "org-a" / "derived-llama")
    save_tiny_model("qwen2", hub / "org-b" / "qwen", seed=5)
    gpt2 = save_tiny_model("gpt2", hub / "gpt2-x", seed=6)
    (gpt2 / "onnx").mkdir()
    (gpt2 / "onnx" / "model.onnx").write_bytes(b"not a model: inside a model folder, never scanned on its own")
    # An HF cache: snapshots/<rev>/ holds symlinks to content-addressed blobs/.
    staged = save_tiny_model("mistral", root / "staging-mistral", seed=7)
    repo = hub / "cache" / "models--acme--tiny-mistral"
    snap = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snap.name)
    for f in sorted(staged.iterdir()):
        blob = repo / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, blob)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    shutil.rmtree(staged)
    # A corrupt checkpoint: a safetensors header length pointing past the end of the file.
    (hub / "loose").mkdir()
    (hub / "loose" / "broken.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{garbage")
    # A folder whose weights are a symlink out of the scan roots: refused, never read.
    save_tiny_model("llama", outside / "secret", seed=9)
    evil = hub / "evil"
    evil.mkdir()
    shutil.copyfile(outside / "secret" / "config.json", evil / "config.json")
    (evil / "model.safetensors").symlink_to(outside / "secret" / "model.safetensors")
    return hub


def killable(job: Job, ctx: Context, *, signal_dir: str, target: str) -> Outcome:
    """scan_one, except that the first attempt at `target` announces its pid and waits to be killed."""
    d = Path(signal_dir)
    if target in job.display and not (d / "killed").exists():
        (d / "pid.tmp").write_text(str(os.getpid()))
        os.replace(d / "pid.tmp", d / "pid")
        time.sleep(120)  # the test SIGKILLs this worker long before
    out = scan_one(job, ctx)
    return out
