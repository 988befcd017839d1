"""`attest scan`: fingerprint every model under some folders into a registry, locally or on Ray.

- `discovery`: which models are under the roots (HF folders, cache snapshots, loose files).
- `plan`: each model's CPU and memory request, from tensor headers only.
- `work`: one model's work (hash, fingerprint, identify) as a function of plain data.
- `engines`: run the work here, one model after another, or as one Ray task per model.
- `records`: the registry's `scan_records` work log, written by the driver only.
- `runner`: `run_scan`, the driver.

docs/scale.md gives the cost model; docs/cli.md the command.
"""

from attest.scan.discovery import Found, discover
from attest.scan.runner import ScanSummary, run_scan

__all__ = ["Found", "ScanSummary", "discover", "run_scan"]
