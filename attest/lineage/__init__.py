"""Lineage test: do two models share FFN neurons (weights derived), not merely behave alike?

See docs/lineage.md for the statistic, its null and why it is conservative.
"""

from attest.lineage.pair import test_pair
from attest.lineage.payload import build_payload, payload_size, test_against_payload
from attest.lineage.result import DEFAULT_ALPHA, LayerLineage, LineageResult

__all__ = [
    "DEFAULT_ALPHA",
    "LayerLineage",
    "LineageResult",
    "build_payload",
    "payload_size",
    "test_against_payload",
    "test_pair",
]
