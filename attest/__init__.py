"""attest: verifiable fingerprints of large language models.

The public API (docs/api.md) is re-exported here from `attest.api`:
`compare`, `fingerprint`, `issue`, `verify`, `inspect`, their result types and
the errors of `attest.errors`.  They are imported on first use, so
`import attest` stays cheap (no torch) for tools that only need the version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_ERRORS = ("AttestError", "BundleError", "ExitCode", "InputError", "UnsupportedModelError")

__all__ = [
    "__version__",
    "Comparison",
    "Inspection",
    "Issued",
    "Verification",
    "Verdict",
    "Policy",
    "DEFAULT_POLICY",
    "compare",
    "fingerprint",
    "identify",
    "Identification",
    "TsaOptions",
    "inspect",
    "issue",
    "load",
    "open_bundle",
    "resolve_policy",
    "scan",
    "trust_store",
    "verify",
    "AttestError",
    "BundleError",
    "ExitCode",
    "InputError",
    "UnsupportedModelError",
]

# What `__getattr__` fetches from attest.api on first use (everything public but the errors).
_API = frozenset(__all__) - set(_ERRORS) - {"__version__"}

if TYPE_CHECKING:
    from attest.api import (
        DEFAULT_POLICY,
        Comparison,
        Identification,
        Inspection,
        Issued,
        Policy,
        TsaOptions,
        Verdict,
        Verification,
        compare,
        fingerprint,
        identify,
        inspect,
        issue,
        load,
        open_bundle,
        resolve_policy,
        scan,
        trust_store,
        verify,
    )
    from attest.errors import AttestError, BundleError, ExitCode, InputError, UnsupportedModelError


def __getattr__(name: str) -> Any:
    if name in _API:
        from attest import api

        return getattr(api, name)
    if name in _ERRORS:
        from attest import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'attest' has no attribute {name!r}")
