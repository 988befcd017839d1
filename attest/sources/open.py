"""Pick the right reader for a model path."""

from __future__ import annotations

from pathlib import Path

from attest.errors import InputError
from attest.sources.base import WeightSource

SUPPORTED = "a Hugging Face folder (config.json + *.safetensors or pytorch_model*.bin), a .safetensors file, a .gguf file, a .bin file or an .onnx file"


def open_weights(path: str | Path) -> WeightSource:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".safetensors":
            from attest.sources.safetensors_source import SafetensorsSource

            return SafetensorsSource.from_path(p)
        if suffix == ".gguf":
            from attest.sources.gguf_source import GGUFSource

            return GGUFSource.from_path(p)
        if suffix in (".bin", ".pt", ".pth"):
            from attest.sources.torch_source import TorchSource

            return TorchSource.from_path(p)
        if suffix == ".onnx":
            from attest.sources.onnx import OnnxSource

            return OnnxSource.from_path(p)
        raise InputError(f"{p}: unknown model file type '{suffix}'; expected {SUPPORTED}")
    if any(p.glob("*.safetensors")) or (p / "model.safetensors.index.json").exists():
        from attest.sources.safetensors_source import SafetensorsSource

        return SafetensorsSource.from_path(p)
    if any(p.glob("pytorch_model*.bin")):
        from attest.sources.torch_source import TorchSource

        return TorchSource.from_path(p)
    ggufs = sorted(p.glob("*.gguf"))
    if len(ggufs) == 1:
        from attest.sources.gguf_source import GGUFSource

        return GGUFSource.from_path(ggufs[0])
    onnx = sorted(p.glob("*.onnx"))
    if len(onnx) == 1:
        from attest.sources.onnx import OnnxSource

        return OnnxSource.from_path(onnx[0])
    raise InputError(f"{p}: no model weights found; expected {SUPPORTED}")
