"""Function-preserving disguises of DeepSeek-V2/V3 (MLA) models, on the real `transformers` state dict.

The residual stream is a row vector h; `rotation` maps h -> h·Q for a random
orthogonal Q after every norm gain reading the stream has been folded into the
weights that read it (`fold-gains`): readers' input columns become W·Q, writers'
rows Qᵀ·W, the embedding E·Q.  Each MLA latent (q's and kv's) is rotated the same
way after its own RMSNorm gain is folded into q_b / kv_b: an RMSNorm with unit
gain commutes with an orthogonal map.  The tests run the real model before and
after, so a mistake here shows up as a logits mismatch, not as a false pass.

The state dict is the in-memory one: routed experts stacked as
`mlp.experts.gate_up_proj` [E, 2f, d] (gate half first) and `mlp.experts.down_proj` [E, d, f].
"""

from __future__ import annotations

from typing import Any, Callable

import torch

Tensor = torch.Tensor
State = dict[str, Tensor]
Meta = dict[str, Tensor]  # what a step records: "expert_map.{i}" = original index of each new expert


def _orthogonal(n: int, gen: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # a Haar-random orthogonal matrix


def _layers(sd: State) -> list[str]:
    idx = sorted({int(k.split(".")[2]) for k in sd if k.startswith("model.layers.")})
    return [f"model.layers.{i}." for i in idx]


def _readers_of_attn_norm(sd: State, p: str) -> list[str]:
    return [
        p + n
        for n in ("self_attn.q_proj.weight", "self_attn.q_a_proj.weight", "self_attn.kv_a_proj_with_mqa.weight")
        if p + n in sd
    ]


def _readers_of_ffn_norm(sd: State, p: str) -> list[str]:
    names = ("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.gate.weight", "mlp.experts.gate_up_proj")
    names += ("mlp.shared_experts.gate_proj.weight", "mlp.shared_experts.up_proj.weight")
    return [p + n for n in names if p + n in sd]


def _writers(sd: State, p: str) -> list[str]:
    names = ("self_attn.o_proj.weight", "mlp.down_proj.weight", "mlp.experts.down_proj")
    return [p + n for n in (*names, "mlp.shared_experts.down_proj.weight") if p + n in sd]


def fold_gains(sd: State, cfg: Any, gen: torch.Generator, meta: Meta) -> None:
    """Every RMSNorm gain into the weights that read it (then the gain is 1)."""
    for p in _layers(sd):
        for norm, readers in (
            ("input_layernorm.weight", _readers_of_attn_norm(sd, p)),
            ("post_attention_layernorm.weight", _readers_of_ffn_norm(sd, p)),
        ):
            g = sd[p + norm]
            for r in readers:
                sd[r] = sd[r] * g  # scales the input columns (last axis), stacked experts too
            sd[p + norm] = torch.ones_like(g)
        for norm, reader in (
            ("self_attn.q_a_layernorm.weight", "self_attn.q_b_proj.weight"),
            ("self_attn.kv_a_layernorm.weight", "self_attn.kv_b_proj.weight"),
        ):
            if p + norm in sd:
                sd[p + reader] = sd[p + reader] * sd[p + norm]
                sd[p + norm] = torch.ones_like(sd[p + norm])
    g = sd["model.norm.weight"]
    sd["lm_head.weight"] = sd["lm_head.weight"] * g
    sd["model.norm.weight"] = torch.ones_like(g)


def rotation(sd: State, cfg: Any, gen: torch.Generator, meta: Meta) -> None:
    """h -> h·Q in the residual stream (gains must be folded first)."""
    q = _orthogonal(int(cfg.hidden_size), gen)
    sd["model.embed_tokens.weight"] = sd["model.embed_tokens.weight"] @ q
    sd["lm_head.weight"] = sd["lm_head.weight"] @ q
    for p in _layers(sd):
        for r in _readers_of_attn_norm(sd, p) + _readers_of_ffn_norm(sd, p):
            sd[r] = sd[r] @ q
        for w in _writers(sd, p):
            sd[w] = q.t() @ sd[w]


def latent_rotation(sd: State, cfg: Any, gen: torch.Generator, meta: Meta) -> None:
    """An orthogonal map inside the q and kv latents (their gains must be folded first)."""
    for p in _layers(sd):
        rank = int(cfg.kv_lora_rank)
        r = _orthogonal(rank, gen)
        kv_a = sd[p + "self_attn.kv_a_proj_with_mqa.weight"]
        sd[p + "self_attn.kv_a_proj_with_mqa.weight"] = torch.cat([r @ kv_a[:rank], kv_a[rank:]])
        sd[p + "self_attn.kv_b_proj.weight"] = sd[p + "self_attn.kv_b_proj.weight"] @ r.t()
        if p + "self_attn.q_a_proj.weight" in sd:
            rq = _orthogonal(int(cfg.q_lora_rank), gen)
            sd[p + "self_attn.q_a_proj.weight"] = rq @ sd[p + "self_attn.q_a_proj.weight"]
            sd[p + "self_attn.q_b_proj.weight"] = sd[p + "self_attn.q_b_proj.weight"] @ rq.t()


def _q_name(sd: State, p: str) -> str:
    return p + ("self_attn.q_proj.weight" if p + "self_attn.q_proj.weight" in sd else "self_attn.q_b_proj.weight")


def head_perm(sd: State, cfg: Any, gen: torch.Generator, meta: Meta) -> None:
    """The same permutation of the heads in q, kv_b (k_nope and v) and the o columns."""
    h, dn, dr, dv = (
        int(cfg.num_attention_heads),
        int(cfg.qk_nope_head_dim),
        int(cfg.qk_rope_head_dim),
        int(cfg.v_head_dim),
    )
    for p in _layers(sd):
        perm = torch.randperm(h, generator=gen)
        qn = _q_name(sd, p)
        sd[qn] = sd[qn].reshape(h, dn + dr, -1)[perm].reshape(h * (dn + dr), -1)
        kv_b = p + "self_attn.kv_b_proj.weight"
        sd[kv_b] = sd[kv_b].reshape(h, dn + dv, -1)[perm].reshape(h * (dn + dv), -1)
        o = p + "self_attn.o_proj.weight"
        sd[o] = sd[o].reshape(-1, h, dv)[:, perm].reshape(-1, h * dv)


def qk_vo_maps(sd: State, cfg: Any, gen: torch.Generator, meta: Meta) -> None:
    """Per head: an orthogonal map on q_nope and k_nope, an invertible map A on v and A⁻¹ on the o columns."""
    h, dn, dr, dv = (
        int(cfg.num_attention_heads),
        int(cfg.qk_nope_head_dim),
        int(cfg.qk_rope_head_dim),
        int(cfg.v_head_dim),
    )
    for p in _layers(sd):
        qn, kv_b, o = _q_name(sd, p), p + "self_attn.kv_b_proj.weight", p + "self_attn.o_proj.weight"
        q = sd[qn].reshape(h, dn + dr, -1).clone()
        kv = sd[kv_b].reshape(h, dn + dv, -1).clone()
        out = sd[o].reshape(-1, h, dv).clone()
        for j in range(h):
            r = _orthogonal(dn, gen)
            a = _orthogonal(dv, gen) * (0.5 + torch.rand(dv, generator=gen, dtype=torch.float64))  # invertible
            q[j, :dn] = r @ q[j, :dn]
            kv[j, :dn] = r @ kv[j, :dn]
            kv[j, dn:] = a @ kv[j, dn:]
            out[:, j] = out[:, j] @ torch.linalg.inv(a)
        sd[qn], sd[kv_b], sd[o] = q.reshape(sd[qn].shape), kv.reshape(sd[kv_b].shape), out.reshape(sd[o].shape)


def _perm_scale(gate: Tensor, up: Tensor, down: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Permute a gated FFN's neurons and move a positive scale from each down column into its up row."""
    f = up.shape[0]
    perm = torch.randperm(f, generator=gen)
    s = 0.25 + 3.0 * torch.rand(f, generator=gen, dtype=torch.float64)
    return gate[perm], up[perm] * s[:, None], down[:, perm] / s


def ffn_perm_scale(sd: State, cfg: Any, gen: torch.Generator, meta: Meta) -> None:
    """Neuron permutation and up/down rescaling in dense FFNs, every routed expert and the shared experts."""
    for p in _layers(sd):
        for m in ("mlp.", "mlp.shared_experts."):
            if p + m + "up_proj.weight" in sd:
                names = [p + m + n + "_proj.weight" for n in ("gate", "up", "down")]
                out = _perm_scale(*(sd[n] for n in names), gen)
                sd.update(zip(names, out, strict=True))
        gu = p + "mlp.experts.gate_up_proj"
        if gu in sd:
            f = sd[gu].shape[1] // 2
            dn = p + "mlp.experts.down_proj"
            parts = [_perm_scale(e[:f], e[f:], d, gen) for e, d in zip(sd[gu], sd[dn], strict=True)]
            sd[gu] = torch.stack([torch.cat([g, u]) for g, u, _ in parts])
            sd[dn] = torch.stack([d for _, _, d in parts])


def expert_perm(sd: State, cfg: Any, gen: torch.Generator, meta: Meta) -> None:
    """Reorder the routed experts, with the router rows (and the selection bias) reordered alike."""
    for p in _layers(sd):
        gu = p + "mlp.experts.gate_up_proj"
        if gu not in sd:
            continue
        perm = torch.randperm(sd[gu].shape[0], generator=gen)
        old = meta.get(p, torch.arange(perm.numel()))
        meta[p] = old[perm]
        for n in (gu, p + "mlp.experts.down_proj", p + "mlp.gate.weight", p + "mlp.gate.e_score_correction_bias"):
            if n in sd:
                sd[n] = sd[n][perm]


STEPS: dict[str, Callable[[State, Any, torch.Generator, Meta], None]] = {
    "fold-gains": fold_gains,
    "rotation": rotation,
    "latent-rotation": latent_rotation,
    "head-perm": head_perm,
    "qk-vo-maps": qk_vo_maps,
    "ffn-perm-scale": ffn_perm_scale,
    "expert-perm": expert_perm,
}


def apply(model: Any, steps: tuple[str, ...], seed: int) -> tuple[Any, Meta]:
    """A disguised copy of `model` (same class and config), the steps applied in float64 and stored
    float32, and per MoE layer prefix the original index of each new expert (when experts moved)."""
    import copy

    gen = torch.Generator().manual_seed(seed)
    sd = {k: v.detach().double().clone() for k, v in model.state_dict().items()}
    meta: Meta = {}
    for step in steps:
        STEPS[step](sd, model.config, gen, meta)
    out = copy.deepcopy(model)
    out.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return out.eval(), meta
