"""`attest compare` and `attest fingerprint` (filled in by the core engine)."""

from attest.cli.app import app  # noqa: F401
