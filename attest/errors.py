"""Error types and the process exit codes they map to.

Every failure a user can cause is one of these, so the CLI can print one clear
line and exit with a code that scripts can rely on (docs/cli.md lists them).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    MATCH = 0
    NO_MATCH = 1
    INCONCLUSIVE = 2
    BAD_BUNDLE = 3
    INPUT_ERROR = 4
    INTERNAL_ERROR = 5


class AttestError(Exception):
    """Base class: a failure with a user-facing message and an exit code."""

    exit_code: ExitCode = ExitCode.INPUT_ERROR


class InputError(AttestError):
    """A model, vocabulary, option or file the user gave us is unusable."""

    exit_code = ExitCode.INPUT_ERROR


class UnsupportedModelError(InputError):
    """The checkpoint is readable but its architecture is not one we know."""


class BundleError(AttestError):
    """A bundle is malformed, tampered with, or signed by an untrusted key."""

    exit_code = ExitCode.BAD_BUNDLE
