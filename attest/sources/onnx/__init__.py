"""ONNX graphs of BERT-family encoders, read as Hugging Face BERT tensors.

An ONNX export rarely keeps the Hugging Face names of the weights that matter:
exporters fold `Linear` weights into anonymous `[in, out]` MatMul initializers
(`onnx::MatMul_470`, `val_49`), and quantizers replace them by int8 tensors
that a small constant subgraph turns back into floats. So the roles are read
from what the graph *computes*, not from what it is called. The package
follows the data:

- `loader`: the optional `onnx` import, file-size limits, initializers out of the protobuf;
- `graph`: nodes as plain records in topological order;
- `tensors`: initializer bytes (inline or external data) viewed as numpy arrays;
- `folding`: which tensors are constants, their shapes and (row-sliced) values;
- `patterns`: linear/norm/lookup events and the declarative BERT layer pattern;
- `source`: `OnnxSource`, the `WeightSource` over the matched names.

The result is exposed under plain HF BERT names, so the `BERT` family table
applies unchanged. When the graph cannot be mapped but the initializers carry
HF names, those names are used instead; when both exist they are cross-checked.
"""

from attest.sources.onnx.loader import MAX_EXTERNAL_BYTES, MAX_NODES, MAX_ONNX_BYTES, ONNX_EXTRA_HINT, import_onnx
from attest.sources.onnx.source import OnnxSource

__all__ = ["MAX_EXTERNAL_BYTES", "MAX_NODES", "MAX_ONNX_BYTES", "ONNX_EXTRA_HINT", "OnnxSource", "import_onnx"]
