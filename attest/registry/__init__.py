"""A registry of attested base models: signed bundles in a folder, indexed in SQLite.

- `schema`: the index tables, the schema version and connection settings.
- `entry`: one registered base, derived from a verified bundle.
- `store`: the folder itself and `add`, `list_entries`, `remove`, `verify`.

docs/registry.md describes the layout, the schema, the concurrency model and
the tamper checks.
"""

from attest.registry.entry import Entry
from attest.registry.schema import SCHEMA_VERSION
from attest.registry.store import (
    AddReport,
    Problem,
    Registry,
    VerifyReport,
    add,
    list_entries,
    remove,
    verify,
)

__all__ = [
    "SCHEMA_VERSION",
    "AddReport",
    "Entry",
    "Problem",
    "Registry",
    "VerifyReport",
    "add",
    "list_entries",
    "remove",
    "verify",
]
