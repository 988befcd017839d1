"""Name resolution: which checkpoint tensor plays each role of a family table.

A role is a tuple of alternative names (checkpoints of one family are saved
under several namings); the first one present wins. Layer roles are relative
to a layer prefix containing `{i}`. `pick` and `in_layer` are for roles that
must be there and always return a name; `find` and `find_in_layer` return
None when the role is absent.

`layer_census` says which layer indices the *table's roles* claim. A tensor
under the layer prefix that no role claims (a stray `model.layers.1000.dummy`)
must not decide how many layers a model has: transformers ignores it, so we
do too, and say so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from attest.arch.roles import LAYER_ROLES, Role
from attest.arch.spec import ArchSpec
from attest.errors import InputError

_INDEX = r"(\d+)"


def _prefix_pattern(prefix: str) -> str:
    return re.escape(prefix).replace(r"\{i\}", _INDEX)


def _module(rel: str) -> str:
    """`self_attn.q_proj.weight` -> `self_attn.q_proj`: a role's bias lives in the same module."""
    return rel.rsplit(".", 1)[0] if "." in rel else ""


@dataclass(frozen=True)
class LayerCensus:
    """The layer indices a checkpoint's tensors claim, and the tensors under the prefix that no role claims."""

    claimed: frozenset[int]
    claimed_names: tuple[tuple[int, str], ...]  # (layer index, tensor name) of every claimed tensor
    unclaimed: tuple[str, ...]  # sorted


class TensorNames:
    """The tensor names of one checkpoint, resolved against a family table."""

    def __init__(self, root: Path, spec: ArchSpec, names: Iterable[str]) -> None:
        self.root = root
        self.spec = spec
        self.family = spec.family
        self.names = set(names)
        self.layer_prefix = self._pick_prefix()

    # -- model-level roles -------------------------------------------------
    def find(self, candidates: Sequence[str]) -> str | None:
        """The first of `candidates` present in the checkpoint, or None."""
        for n in candidates:
            if n in self.names:
                return n
        return None

    def pick(self, candidates: Sequence[str], what: str) -> str:
        """The first of `candidates` present; a clear InputError when none is."""
        found = self.find(candidates)
        if found is not None:
            return found
        if not candidates:
            raise InputError(f"{self.root}: the {self.family} table names no {what} tensor")
        raise InputError(
            f"{self.root}: {self.family} checkpoint has no {what} tensor (looked for {', '.join(candidates)})"
        )

    # -- layer roles -------------------------------------------------------
    def layer_names(self, i: int, rel: Sequence[str]) -> list[str]:
        prefix = self.layer_prefix.format(i=i)
        return [prefix + n for n in rel]

    def find_in_layer(self, i: int, rel: Sequence[str]) -> str | None:
        return self.find(self.layer_names(i, rel))

    def in_layer(self, i: int, rel: Sequence[str], what: str) -> str:
        return self.pick(self.layer_names(i, rel), f"layer {i} {what}")

    def _pick_prefix(self) -> str:
        """The first prefix alternative under which a table role has a tensor.

        Only role tensors count, so a stray `transformer.h.0.dummy` cannot
        steer a checkpoint saved as `h.{i}.` to the wrong prefix; a prefix
        with only unclaimed tensors is a last resort (it yields the clearer
        "no transformer layers" error later).
        """
        claims = _role_matcher(self.spec)
        fallback: str | None = None
        for prefix in self.spec.layer_prefix:
            probe = re.compile(_prefix_pattern(prefix) + "(.*)", re.DOTALL)
            for n in self.names:
                m = probe.match(n)
                if m is None:
                    continue
                if claims.fullmatch(m.group(2)):
                    return prefix
                fallback = fallback or prefix
        if fallback is not None:
            return fallback
        raise InputError(f"{self.root}: no transformer layers found for family {self.family}")

    # -- which layers exist ------------------------------------------------
    def layer_census(self) -> LayerCensus:
        """Layer indices claimed by the table's roles, and the tensors under the layer prefix no role claims."""
        probe = re.compile(_prefix_pattern(self.layer_prefix) + "(.*)", re.DOTALL)
        claims = _role_matcher(self.spec)
        claimed: list[tuple[int, str]] = []
        unclaimed: list[str] = []
        for name in self.names:
            m = probe.match(name)
            if m is None:
                continue
            if claims.fullmatch(m.group(2)):
                claimed.append((int(m.group(1)), name))
            else:
                unclaimed.append(name)
        return LayerCensus(frozenset(i for i, _ in claimed), tuple(sorted(claimed)), tuple(sorted(unclaimed)))


def _role_matcher(spec: ArchSpec) -> re.Pattern[str]:
    """A regex over layer-relative names: a role tensor or another tensor of a role's module (its bias)."""
    rels: set[str] = {n for role in LAYER_ROLES for n in spec.names(role)}
    if spec.mla is not None:  # the MLA kind's tensors are not Role fields
        rels |= set(spec.mla.roles())
    if spec.mixer is not None:  # a mixer's tensors are not Role fields either
        rels |= set(spec.mixer.roles)
    patterns = {re.escape(m) + r"\.[^.]+" for m in map(_module, rels) if m}
    patterns |= {re.escape(r) for r in rels}
    ex = spec.experts
    if ex is not None:
        stacked = ex.stacked_names()
        patterns |= {re.escape(m) + r"\.[^.]+" for m in map(_module, stacked) if m}
        patterns |= {re.escape(r) for r in stacked}
        expert = re.escape(ex.prefix).replace(r"\{e\}", r"\d+")
        for rel in (n for role in (Role.EXPERT_UP, Role.EXPERT_GATE, Role.EXPERT_DOWN) for n in ex.names(role)):
            patterns.add(expert + re.escape(rel))
            if _module(rel):
                patterns.add(expert + re.escape(_module(rel)) + r"\.[^.]+")
    if not patterns:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile("|".join(sorted(patterns)), re.DOTALL)
