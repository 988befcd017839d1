"""Model merges on state dicts, written out as real HF checkpoints (tests and bench/lineage_merges.py).

The usual recipes of merging toolkits, written from their definitions:

- task arithmetic (Ilharco et al. 2023): θ = θ₀ + λ·Σ_t (θ_t − θ₀);
- TIES (Yadav et al. 2023): per tensor, each task vector τ_t = θ_t − θ₀ keeps only
  its top-k fraction of entries by |τ_t| (trim), each entry's sign is the sign of
  the sum of the trimmed τ_t (elect), and the entry is the mean of the trimmed
  τ_t that agree with it (disjoint mean); θ = θ₀ + λ·that;
- SLERP of two models, per tensor, treating the flattened tensors a, b as vectors:
  Ω = arccos(⟨a, b⟩ / (|a|·|b|)), θ = sin((1−t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b.
  When a and b are near-parallel (|cos Ω| > PARALLEL, or either is zero) sin Ω is
  too small to divide by and SLERP tends to LERP anyway, so LERP is used;
- LERP: θ = (1−t)·a + t·b.

Every function takes and returns float32 tensors keyed by the checkpoint's own
names; `save_merge` writes float16 safetensors, the config and the tokenizer.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch

StateDict = dict[str, torch.Tensor]
PARALLEL = 0.9995  # |cos Ω| above which SLERP falls back to LERP (sin Ω < 0.032)


def load_state(folder: Path) -> StateDict:
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}


def _same_keys(*sds: StateDict) -> None:
    keys = set(sds[0])
    for sd in sds[1:]:
        if set(sd) != keys or any(sd[k].shape != sds[0][k].shape for k in keys):
            raise ValueError("merged models must have the same tensor names and shapes")


def task_arithmetic(base: StateDict, tuned: list[StateDict], lam: float) -> StateDict:
    _same_keys(base, *tuned)
    return {k: base[k] + lam * sum((t[k] - base[k] for t in tuned), torch.zeros_like(base[k])) for k in base}


def _trim(tau: torch.Tensor, keep: float) -> torch.Tensor:
    """`tau` with all but its top `keep` fraction of entries by magnitude set to zero."""
    n = max(1, math.ceil(keep * tau.numel()))
    if n >= tau.numel():
        return tau.clone()
    flat = tau.abs().flatten()
    cut = torch.topk(flat, n, sorted=False).indices
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[cut] = True  # by index, not by a threshold: ties at the cut cannot keep more than n
    return torch.where(mask.view_as(tau), tau, torch.zeros_like(tau))


def ties(base: StateDict, tuned: list[StateDict], keep: float, lam: float) -> StateDict:
    _same_keys(base, *tuned)
    out: StateDict = {}
    for k in base:
        taus = torch.stack([_trim(t[k] - base[k], keep) for t in tuned])
        sign = torch.sign(taus.sum(dim=0))
        agree = (torch.sign(taus) == sign) & (taus != 0)
        count = agree.sum(dim=0).clamp(min=1)
        out[k] = base[k] + lam * torch.where(agree, taus, torch.zeros_like(taus)).sum(dim=0) / count
    return out


def lerp(a: StateDict, b: StateDict, t: float) -> StateDict:
    _same_keys(a, b)
    return {k: (1 - t) * a[k] + t * b[k] for k in a}


def slerp_tensor(a: torch.Tensor, b: torch.Tensor, t: float) -> tuple[torch.Tensor, bool]:
    """SLERP of one tensor pair, and whether it fell back to LERP (near-parallel or zero)."""
    a64, b64 = a.double().flatten(), b.double().flatten()
    na, nb = float(a64.norm()), float(b64.norm())
    if na == 0.0 or nb == 0.0:
        return (1 - t) * a + t * b, True
    cos = float(a64 @ b64) / (na * nb)
    if abs(cos) > PARALLEL:
        return (1 - t) * a + t * b, True
    omega = math.acos(max(-1.0, min(1.0, cos)))
    s = math.sin(omega)
    wa, wb = math.sin((1 - t) * omega) / s, math.sin(t * omega) / s
    return (wa * a64 + wb * b64).view_as(a).to(a.dtype), False


def slerp(a: StateDict, b: StateDict, t: float) -> tuple[StateDict, int]:
    """Per-tensor SLERP, and how many tensors fell back to LERP."""
    _same_keys(a, b)
    out: StateDict = {}
    fallbacks = 0
    for k in a:
        out[k], fell = slerp_tensor(a[k], b[k], t)
        fallbacks += fell
    return out, fallbacks


def save_merge(sd: StateDict, like: Path, out: Path) -> Path:
    """Write `sd` as a checkpoint folder with `like`'s config.json and tokenizer.json."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous().to(torch.float16) for k, v in sd.items()},
        str(out / "model.safetensors"),
        metadata={"format": "pt"},
    )
    cfg = json.loads((like / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    shutil.copyfile(like / "tokenizer.json", out / "tokenizer.json")
    return out
