"""Which layers of a MoE checkpoint carry experts: a family's `MoeLayerRule` evaluated on config.json.

Many MoE families keep a few dense FFN layers (GLM-4.5's leading dense layers,
ERNIE-4.5's `moe_layer_start_index`, Qwen-MoE's `mlp_only_layers`). The rule is
data on the table; this module only reads the config values it names, and a
malformed value is a clean input error, never a crash or a silent guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attest.arch.spec import MoeLayerRule
from attest.documents.model_docs import config_value
from attest.errors import InputError


def _index(value: Any, what: str, root: object) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{root}: config {what} must be an integer, got {value!r}")
    return value


def moe_layer_flags(
    rule: MoeLayerRule | None, config: Mapping[str, Any] | None, n_layers: int, root: object
) -> list[bool] | None:
    """Per layer, True when the config makes it a MoE layer; None when the config cannot say.

    None (no rule, or no config as with GGUF) leaves the choice to the
    checkpoint: a layer is MoE when its router tensor is present.
    """
    if rule is None or not config:
        return None
    listed = config_value(config, rule.listed)
    if listed is not None:
        if not isinstance(listed, list):
            raise InputError(f"{root}: config MoE layer list must be a list, got {type(listed).__name__}")
        moe = {_index(v, "MoE layer index", root) for v in listed}
        return [i in moe for i in range(n_layers)]
    first = config_value(config, rule.first)
    last = config_value(config, rule.last)
    every = config_value(config, rule.every)
    dense = config_value(config, rule.dense)
    lo = 0 if first is None else _index(first, "first MoE layer", root)
    hi = n_layers - 1 if last is None or last == -1 else _index(last, "last MoE layer", root)
    step = 1 if every is None else _index(every, "MoE layer interval", root)
    if step <= 0:
        raise InputError(f"{root}: config MoE layer interval must be positive, got {step}")
    if dense is None:
        dense_set: set[int] = set()
    elif isinstance(dense, list):
        dense_set = {_index(v, "dense layer index", root) for v in dense}
    else:
        raise InputError(f"{root}: config dense layer list must be a list, got {type(dense).__name__}")
    return [lo <= i <= hi and (i + 1) % step == 0 and i not in dense_set for i in range(n_layers)]
