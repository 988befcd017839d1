"""MPNet (all-mpnet-base-v2's architecture) through the BERT-like table."""

from __future__ import annotations

import torch
from helpers.models import write_tokenizer
from transformers import MPNetConfig, MPNetModel

from attest.arch.detect import load_model
from attest.invariants.methods import DEFAULT
from attest.workflows.compare import compare_models


def test_mpnet_canonical_view_and_self_match(tmp_path) -> None:
    torch.manual_seed(0)
    cfg = MPNetConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    model = MPNetModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.3 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "m")
    write_tokenizer(tmp_path / "m")
    cm = load_model(tmp_path / "m")
    assert cm.family == "mpnet"
    layer = cm.layer(1)
    att = model.encoder.layer[1].attention
    assert torch.equal(layer.attn.q, att.attn.q.weight.detach())
    assert torch.equal(layer.attn.o, att.attn.o.weight.detach())
    # Post-LN: layer 1's attention reads layer 0's output norm, its FFN the attention norm.
    assert torch.equal(layer.attn_norm, model.encoder.layer[0].output.LayerNorm.weight.detach())
    assert torch.equal(layer.ffn_norm, att.LayerNorm.weight.detach())
    assert torch.equal(cm.layer(0).attn_norm, model.embeddings.LayerNorm.weight.detach())
    result = compare_models(cm, load_model(tmp_path / "m"), DEFAULT.with_options(n_tokens=128), precision="fp32")
    assert result.verdict.value == "match" and abs(result.score - 1.0) < 1e-6
