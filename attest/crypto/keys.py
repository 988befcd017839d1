"""Ed25519 signing keys, their key ids, and the verifier's trust store.

Private keys are PKCS#8 PEM, optionally passphrase-encrypted; public keys are
SubjectPublicKeyInfo PEM.  A key id (kid) is the RFC 9679 COSE Key Thumbprint:
SHA-256 over the deterministic CBOR of the COSE_Key holding only the members
RFC 9679 §4 requires for an OKP key, ``{1: 1 (kty OKP), -1: 6 (crv Ed25519),
-2: x}``.  Anyone can recompute it from the public key alone, so a kid names a
key without trusting whoever wrote it down.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cbor2
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from attest.errors import InputError

__all__ = [
    "KeyInfo",
    "TrustedKey",
    "TrustStore",
    "identity_of",
    "key_file_is_encrypted",
    "private_key_exposure",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "key_id",
    "public_key_path",
    "private_key_path",
]

# COSE registry values (RFC 9053 / IANA "COSE Key Types", "COSE Elliptic Curves")
_KTY_OKP = 1
_CRV_ED25519 = 6

# A PEM key is well under 1 KiB; anything bigger is not a key we wrote.
_MAX_KEY_FILE = 64 * 1024


@dataclass(frozen=True)
class KeyInfo:
    """What `generate_keypair` wrote."""

    kid: bytes
    private_path: Path
    public_path: Path
    encrypted: bool

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()


def private_key_path(out_stem: Path) -> Path:
    # Appending (not with_suffix) keeps names like "acme.v2" intact.
    return out_stem.parent / (out_stem.name + ".key")


def public_key_path(out_stem: Path) -> Path:
    return out_stem.parent / (out_stem.name + ".pub")


def key_id(public_key: Ed25519PublicKey) -> bytes:
    """RFC 9679 COSE Key Thumbprint (SHA-256) of an Ed25519 public key."""
    if not isinstance(public_key, Ed25519PublicKey):
        raise InputError("key id: not an Ed25519 public key")
    x = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    cose_key = {1: _KTY_OKP, -1: _CRV_ED25519, -2: x}
    # Keys 1, -1, -2 encode as 0x01, 0x20, 0x21: cbor2's canonical order and
    # RFC 8949 §4.2.1 bytewise order coincide here.
    return hashlib.sha256(cbor2.dumps(cose_key, canonical=True)).digest()


def _write_exclusive(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never clobber, never follow a planted symlink; the mode is set at
    # creation so the file is never readable by others, not even briefly.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)  # umask may have removed bits we want (0644 pub)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_keypair(out_stem: Path, passphrase: bytes | None) -> KeyInfo:
    """Write OUT.key (PKCS#8 PEM, mode 0600) and OUT.pub (SPKI PEM); never overwrite."""
    out_stem = Path(out_stem)
    if not out_stem.name or out_stem.name in (".", ".."):
        raise InputError(f"keygen: {out_stem} does not name a key (use DIR/NAME)")
    if passphrase is not None and len(passphrase) == 0:
        raise InputError("keygen: the passphrase is empty (omit it to write an unencrypted key)")
    priv_path = private_key_path(out_stem)
    pub_path = public_key_path(out_stem)
    for p in (priv_path, pub_path):
        if p.exists() or p.is_symlink():
            raise InputError(f"keygen: {p} already exists; refusing to overwrite a key")
    try:
        out_stem.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"keygen: cannot create {out_stem.parent}: {exc.strerror}") from None

    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    priv_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    pub = key.public_key()
    pub_pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    try:
        _write_exclusive(priv_path, priv_pem, 0o600)
    except FileExistsError:
        raise InputError(f"keygen: {priv_path} already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise InputError(f"keygen: cannot write {priv_path}: {exc.strerror}") from None
    try:
        _write_exclusive(pub_path, pub_pem, 0o644)
    except OSError as exc:
        # A private key without its public half is useless and confusing.
        priv_path.unlink(missing_ok=True)
        if isinstance(exc, FileExistsError):
            raise InputError(f"keygen: {pub_path} already exists; refusing to overwrite a key") from None
        raise InputError(f"keygen: cannot write {pub_path}: {exc.strerror}") from None
    return KeyInfo(kid=key_id(pub), private_path=priv_path, public_path=pub_path, encrypted=bool(passphrase))


def _read_key_file(path: Path, what: str) -> bytes:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{what} is a directory, not a key file: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > _MAX_KEY_FILE:
        raise InputError(f"{what} {path} is too large to be a key file")
    return data


def load_private_key(path: Path, passphrase: bytes | None) -> Ed25519PrivateKey:
    """Load an Ed25519 PKCS#8 PEM private key, with a clear error for each way it can fail."""
    data = _read_key_file(path, "private key")
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
    if encrypted and not passphrase:
        raise InputError(f"private key {path} is encrypted: give its passphrase (--passphrase-env VAR)")
    try:
        # An unencrypted key with a passphrase supplied loads anyway: the
        # passphrase protects nothing, but refusing would not protect anything either.
        key = serialization.load_pem_private_key(data, password=passphrase if encrypted else None)
    except ValueError:
        if encrypted:
            raise InputError(f"private key {path}: wrong passphrase or corrupt key") from None
        if b"PUBLIC KEY-----" in data:
            raise InputError(f"{path} is a public key; a private key (.key) is needed") from None
        raise InputError(f"{path} is not a PEM private key (or it is corrupt)") from None
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise InputError(f"private key {path}: cannot load ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"private key {path} is {type(key).__name__.lstrip('_')}, not Ed25519")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Load an Ed25519 SubjectPublicKeyInfo PEM public key."""
    data = _read_key_file(path, "public key")
    if b"PRIVATE KEY-----" in data:
        # Never parse (or echo) secret material given where a public key belongs.
        raise InputError(f"{path} holds a private key; give the .pub file instead")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(f"{path} is not a PEM public key (or it is corrupt)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"public key {path} is {type(key).__name__.lstrip('_')}, not Ed25519")
    return key


IDENTITY_SUFFIX = ".identity"
_MAX_IDENTITY_BYTES = 1024


def identity_of(pub_path: Path) -> str:
    """The name a trust store gives the key in `pub_path`.

    The verifier decides who a key belongs to, never the bundle: the optional
    text file NAME.identity beside NAME.pub (its first line), else the file stem.
    """
    ident = pub_path.with_suffix(IDENTITY_SUFFIX)
    if ident.is_file() and not ident.is_symlink():
        if ident.stat().st_size > _MAX_IDENTITY_BYTES:
            raise InputError(f"{ident}: an identity file holds one short line (at most {_MAX_IDENTITY_BYTES} bytes)")
        try:
            line = ident.read_text(encoding="utf-8").splitlines()[0].strip() if ident.stat().st_size else ""
        except UnicodeDecodeError:
            raise InputError(f"{ident}: an identity file must be UTF-8 text") from None
        if line:
            return line
    return pub_path.stem


@dataclass(frozen=True)
class TrustedKey:
    """One key the verifier trusts, and the name it is trusted under."""

    name: str
    kid: bytes
    public_key: Ed25519PublicKey
    path: Path | None = None


class TrustStore:
    """Public keys a verifier trusts, looked up by kid.

    A trust store is a folder of SPKI PEM ``.pub`` files named after their
    owners (keys/README.md).  The kid is always recomputed from the key, so a
    file's name cannot make a key trusted under another key's id.
    """

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._by_kid: dict[bytes, TrustedKey] = {}
        for k in keys:
            # The first name wins for a key present twice (same kid = same key).
            self._by_kid.setdefault(k.kid, k)

    @classmethod
    def from_public_keys(cls, keys: dict[str, Ed25519PublicKey]) -> TrustStore:
        return cls(TrustedKey(name, key_id(pk), pk) for name, pk in keys.items())

    @classmethod
    def from_pubkey(cls, path: Path) -> TrustStore:
        path = Path(path)
        pk = load_public_key(path)
        return cls([TrustedKey(identity_of(path), key_id(pk), pk, path)])

    @classmethod
    def from_dir(cls, path: Path) -> TrustStore:
        path = Path(path)
        if not path.exists():
            raise InputError(f"trust store not found: {path}")
        if not path.is_dir():
            raise InputError(f"trust store {path} is not a directory")
        files = sorted(p for p in path.glob("*.pub") if p.is_file())
        if not files:
            raise InputError(f"trust store {path} holds no .pub files")
        keys = []
        for f in files:
            pk = load_public_key(f)
            keys.append(TrustedKey(identity_of(f), key_id(pk), pk, f))
        return cls(keys)

    @classmethod
    def from_path(cls, path: Path) -> TrustStore:
        """A folder of .pub files, or a single .pub file."""
        path = Path(path)
        return cls.from_dir(path) if path.is_dir() else cls.from_pubkey(path)

    def lookup(self, kid: bytes) -> TrustedKey | None:
        return self._by_kid.get(bytes(kid))

    def __len__(self) -> int:
        return len(self._by_kid)

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._by_kid.values())

    def __contains__(self, kid: object) -> bool:
        return isinstance(kid, (bytes, bytearray)) and bytes(kid) in self._by_kid


def private_key_exposure(path: Path) -> str | None:
    """A warning when a private key file can be read by others than its owner (mode & 0o077)."""
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return None
    if mode & 0o077:
        return f"private key {path} is readable by others (mode {mode & 0o777:04o}); chmod 600 it"
    return None


def key_file_is_encrypted(path: Path) -> bool:
    """Whether a PEM private key file is passphrase-encrypted (reads only its first line)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return b"ENCRYPTED" in head
