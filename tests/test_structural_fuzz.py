"""Structural fuzzing: mutate field values and types of valid documents; only AttestErrors may escape.

Targets (tests/structural_fuzz.py): config.json, tokenizer.json, a shard
index, the safetensors header, statement documents (re-signed, then read,
parsed and verified against a tiny model) and evidence (re-signed by a
verifier key, then read).  The CI budget is modest (a few thousand cases);
bench/fuzz_structure.py runs >= 20,000 and records the exit-code histogram.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.structural_fuzz import Targets, build_targets, mutate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CASES = {"config": 500, "tokenizer": 500, "shard_index": 300, "safetensors_header": 500, "bundle": 200, "evidence": 300}
SETTINGS: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
SEEN: dict[str, Counter[int]] = {name: Counter() for name in CASES}


@pytest.fixture(scope="module")
def targets(tiny_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Targets:
    return build_targets(tmp_path_factory.mktemp("fuzz"), tiny_model("llama"))


def _fuzz(name: str) -> Callable[[Targets], None]:
    @settings(max_examples=CASES[name], **SETTINGS)
    @given(rnd=st.randoms(use_true_random=False))
    def check(targets: Targets, rnd: random.Random) -> None:
        # Anything but an AttestError propagates out of `case` and fails the test.
        code = targets.case(name, rnd)
        assert code in (0, 3, 4), code
        SEEN[name][code] += 1

    return check


test_fuzz_config = _fuzz("config")
test_fuzz_tokenizer = _fuzz("tokenizer")
test_fuzz_shard_index = _fuzz("shard_index")
test_fuzz_safetensors_header = _fuzz("safetensors_header")
test_fuzz_bundle = _fuzz("bundle")
test_fuzz_evidence = _fuzz("evidence")


def test_the_fuzzer_reaches_both_outcomes(targets: Targets) -> None:
    """A fuzzer that only ever produced refusals (or only acceptances) would test little."""
    rnd = random.Random(5)
    for name in CASES:
        codes = Counter(targets.case(name, rnd) for _ in range(60))
        assert codes[0] > 0 and sum(codes.values()) > codes[0], (name, codes)


def test_mutations_change_the_document() -> None:
    doc = {"a": 1, "b": [1, 2, {"c": "x"}]}
    rnd = random.Random(0)
    assert sum(mutate(doc, rnd) != doc for _ in range(50)) > 40
    assert doc == {"a": 1, "b": [1, 2, {"c": "x"}]}  # the original is never edited
