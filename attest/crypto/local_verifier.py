"""The verifier's own signing key, for evidence files.

Evidence is always signed by whoever verified, never by a publisher: a
licensee's or auditor's evidence names its author by key.  Without `--key`,
`verify` uses (and on first use creates) a local verifier key in the attest
configuration folder and says so; its `.pub` beside it is what another party
adds to their *verifier* trust store, which is kept apart from publisher keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from attest.crypto.keys import generate_keypair, key_id, load_private_key, private_key_path, public_key_path

LOCAL_VERIFIER_NAME = "local-verifier"


def config_home() -> Path:
    """`$ATTEST_HOME`, else `$XDG_CONFIG_HOME/attest`, else `~/.config/attest`."""
    if os.environ.get("ATTEST_HOME"):
        return Path(os.environ["ATTEST_HOME"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "attest"


def verifier_trust_dir() -> Path:
    """The default verifier trust store: the local verifier's own public key lives here."""
    return config_home() / "verifiers"


@dataclass(frozen=True)
class LocalVerifierKey:
    key: Ed25519PrivateKey
    private_path: Path
    public_path: Path
    created: bool

    @property
    def kid_hex(self) -> str:
        return key_id(self.key.public_key()).hex()


def local_verifier_key() -> LocalVerifierKey:
    """Load the local verifier key, creating it (mode 0600, unencrypted) on first use."""
    stem = verifier_trust_dir() / LOCAL_VERIFIER_NAME
    created = False
    if not private_key_path(stem).exists():
        stem.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        generate_keypair(stem, None)
        created = True
    return LocalVerifierKey(
        load_private_key(private_key_path(stem), None), private_key_path(stem), public_key_path(stem), created
    )
