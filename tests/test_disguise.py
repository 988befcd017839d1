"""The demo's BERT disguise preserves the function exactly, and attest still sees the copy."""

from __future__ import annotations

import torch
from helpers.models import write_tokenizer
from transformers import BertConfig, BertModel

from attest.arch.detect import load_model
from attest.demo.disguise import disguise_bert
from attest.invariants.methods import DEFAULT
from attest.workflows.compare import compare_models


def _bert(seed: int) -> BertModel:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    model = BertModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.2 * torch.randn_like(p))
    return model


def test_disguise_without_noise_preserves_outputs_up_to_the_hidden_permutation(tmp_path) -> None:
    model = _bert(0)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    disguised = disguise_bert(sd, 4, noise=0.0, seed=3)
    assert any(not torch.equal(sd[k], disguised[k]) for k in sd)
    twin = _bert(1)
    twin.load_state_dict(disguised)
    ids = torch.randint(0, 512, (2, 12))
    with torch.no_grad():
        a = model(ids).last_hidden_state
        b = twin(ids).last_hidden_state
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(3))
    # The residual stream of the copy is the original's, permuted.
    assert torch.allclose(a[..., perm], b, atol=1e-5)

    base_dir, copy_dir = tmp_path / "base", tmp_path / "copy"
    model.save_pretrained(base_dir)
    write_tokenizer(base_dir)
    twin = _bert(1)
    twin.load_state_dict(disguise_bert(sd, 4, noise=0.02, seed=3))
    twin.save_pretrained(copy_dir)
    write_tokenizer(copy_dir)
    result = compare_models(
        load_model(base_dir), load_model(copy_dir), DEFAULT.with_options(n_tokens=256), precision="fp32"
    )
    assert result.verdict.value == "match" and result.score > 0.99
