"""Find the models under the scan roots, without reading any weights.

A model is one of:

- a Hugging Face folder: ``config.json`` beside ``*.safetensors`` (or a shard
  index), ``pytorch_model*.bin``, or a single ``.gguf`` / ``.onnx`` file;
- an HF cache snapshot, ``models--org--name/snapshots/<rev>/`` (one model per
  revision; its files are symlinks into ``models--org--name/blobs/``);
- a loose ``.safetensors``, ``.gguf`` or ``.onnx`` file.

A model folder's own files are never reported as models of their own, and the
walk never follows a directory symlink.  A file symlink may point anywhere
under the roots, or, for an HF cache snapshot, into that repository's
``blobs/`` folder.  A model with a symlink leading anywhere else is reported
with a refusal instead of being read: a scan never reads a file outside what
it was pointed at.  Hidden folders (``.git``, ``.cache`` below a root) are not
entered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MODEL_SUFFIXES = (".safetensors", ".gguf", ".onnx")
HF_CACHE_PREFIX = "models--"
# A model folder with more entries than this is not walked for symlinks (and is
# refused): a hostile tree cannot make discovery itself unbounded.
MAX_FOLDER_ENTRIES = 10_000


@dataclass(frozen=True)
class Found:
    """One model found on disk."""

    path: str  # what the scan opens (a folder or a file), absolute
    display: str  # how reports name it (org/name@rev for an HF cache snapshot)
    kind: str  # "hf-folder", "hf-cache", "file"
    source_bytes: int  # bytes of every file in the model (symlinks followed)
    source_mtime: int  # newest mtime of those files, in ns: with source_bytes, a cheap "unchanged?" test
    refusal: str | None = None  # why it is not read (a symlink leading out of bounds)


def _is_hf_folder(names: set[str]) -> bool:
    if "config.json" not in names:
        return False
    if "model.safetensors.index.json" in names or "pytorch_model.bin.index.json" in names:
        return True
    if any(n.endswith(".safetensors") for n in names):
        return True
    if any(n.startswith("pytorch_model") and n.endswith(".bin") for n in names):
        return True
    return sum(n.endswith(".gguf") for n in names) == 1 or sum(n.endswith(".onnx") for n in names) == 1


def _inside(path: str, folders: tuple[str, ...]) -> bool:
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def _hf_cache_blobs(folder: Path) -> str | None:
    """The blobs folder of the HF cache repository `folder` is a snapshot of, if it is one."""
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith(HF_CACHE_PREFIX):
        return os.path.realpath(folder.parent.parent / "blobs")
    return None


def model_files(model: Path) -> list[Path]:
    """Every file of a model (a folder walked without following directory symlinks, or the file itself)."""
    if model.is_file() or model.is_symlink():
        return [model]
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(model, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in sorted(filenames))
        if len(out) > MAX_FOLDER_ENTRIES:
            break
    return out


def _describe(model: Path, display: str, kind: str, allowed: tuple[str, ...]) -> Found:
    files = model_files(model)
    refusal = None
    if len(files) > MAX_FOLDER_ENTRIES:
        refusal = f"more than {MAX_FOLDER_ENTRIES} files in one model folder"
    blobs = _hf_cache_blobs(model if model.is_dir() else model.parent)
    bounds = allowed + ((blobs,) if blobs else ())
    size = 0
    mtime = 0
    for f in files:
        real = os.path.realpath(f)
        if f.is_symlink() and not _inside(real, bounds):
            refusal = refusal or f"{f.name} is a symlink to {real}, outside the scan roots"
            continue
        try:
            st = os.stat(real)
        except OSError as exc:
            refusal = refusal or f"{f.name}: {exc.strerror or exc}"
            continue
        size += st.st_size
        mtime = max(mtime, st.st_mtime_ns)
    return Found(str(model), display, kind, size, mtime, refusal)


def _cache_display(snapshot: Path) -> str:
    repo = snapshot.parent.parent.name[len(HF_CACHE_PREFIX) :].replace("--", "/", 1)
    return f"{repo}@{snapshot.name[:12]}"


def discover(roots: list[Path]) -> list[Found]:
    """Every model under `roots`, each once (by real path), in a stable order."""
    allowed = tuple(os.path.realpath(r) for r in roots)
    found: dict[str, Found] = {}

    def add(model: Path, display: str, kind: str) -> None:
        key = os.path.realpath(model)
        if key not in found:
            found[key] = _describe(model.absolute(), display, kind, allowed)

    for root in roots:
        root = Path(root)
        if root.is_file():
            if root.suffix.lower() in MODEL_SUFFIXES:
                add(root, root.name, "file")
            continue
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            here = Path(dirpath)
            dirnames.sort()
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            if here.name.startswith(HF_CACHE_PREFIX) and (here / "snapshots").is_dir():
                for snap in sorted((here / "snapshots").iterdir()):
                    if not snap.is_dir() or snap.is_symlink():
                        continue
                    inside = {p.name for p in snap.iterdir()}
                    loose = sorted(n for n in inside if n.lower().endswith(MODEL_SUFFIXES))
                    if _is_hf_folder(inside) or len(loose) <= 1:
                        add(snap, _cache_display(snap), "hf-cache")
                    else:  # a GGUF repository: one file per quantisation, each a model
                        for name in loose:
                            add(snap / name, f"{_cache_display(snap)}/{name}", "hf-cache")
                dirnames[:] = []  # blobs/ and refs/ are not models
                continue
            names = set(filenames)
            if _is_hf_folder(names):
                add(here, str(here.relative_to(root)) if here != root else here.name, "hf-folder")
                dirnames[:] = []  # a model folder's own files are not separate models
                continue
            for name in sorted(filenames):
                if name.lower().endswith(MODEL_SUFFIXES):
                    add(here / name, str((here / name).relative_to(root)), "file")
    return sorted(found.values(), key=lambda f: f.path)


def recheck(path: str, roots: tuple[str, ...]) -> str | None:
    """The refusal discovery would give the model at `path` now (None: every symlink stays in bounds)."""
    allowed = tuple(os.path.realpath(r) for r in roots)
    return _describe(Path(path), path, "", allowed).refusal
