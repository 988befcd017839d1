"""A real RFC 3161 time-stamp authority on 127.0.0.1 for tests: `openssl ts -reply` behind http.server.

`make_pki(folder, ...)` creates a root CA and a TSA certificate (critical
extended key usage timeStamping) with `cryptography`; `LocalTSA(pki, mode)`
serves RFC 3161 over HTTP (§3.4) on a free port by running
`openssl ts -reply` once per request.  Modes:

- "ok": a normal TSA;
- "http-error": answers HTTP 500;
- "reject": openssl is configured to accept only SHA-256 imprints, so our
  SHA-512 request gets a genuine rejection (PKIStatus 2, badAlg);
- "slow": waits longer than any test timeout before answering.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
SLOW_SECONDS = 3.0


@dataclass(frozen=True)
class Pki:
    folder: Path
    root_pem: Path
    tsa_cert_pem: Path
    tsa_key_pem: Path
    root: x509.Certificate
    tsa_cert: x509.Certificate


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "attest tests")]
    )


def make_pki(
    folder: Path,
    *,
    root_cn: str = "Test Root CA",
    tsa_cn: str = "Test TSA",
    expired: bool = False,
    eku_critical: bool = True,
) -> Pki:
    """A root CA and a TSA certificate it issued.  `expired`: the TSA certificate ended yesterday."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(_name(root_cn))
        .issuer_name(_name(root_cn))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    not_after = now - dt.timedelta(days=1) if expired else now + dt.timedelta(days=365)
    tsa_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(tsa_cn))
        .issuer_name(root.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=10))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=eku_critical)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    root_pem = folder / "root.pem"
    root_pem.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    cert_pem = folder / "tsa.pem"
    cert_pem.write_bytes(tsa_cert.public_bytes(serialization.Encoding.PEM))
    key_pem = folder / "tsa.key"
    key_pem.write_bytes(
        tsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Pki(folder, root_pem, cert_pem, key_pem, root, tsa_cert)


def _openssl_config(pki: Pki, digests: str) -> Path:
    (pki.folder / "serial").write_text("01\n")
    cfg = pki.folder / f"tsa-{digests.replace(',', '').replace(' ', '')}.cnf"
    cfg.write_text(
        "[ tsa ]\n"
        "default_tsa = tsa_config1\n"
        "[ tsa_config1 ]\n"
        f"serial = {pki.folder / 'serial'}\n"
        "crypto_device = builtin\n"
        f"signer_cert = {pki.tsa_cert_pem}\n"
        f"certs = {pki.root_pem}\n"
        f"signer_key = {pki.tsa_key_pem}\n"
        "signer_digest = sha256\n"
        "default_policy = 1.3.6.1.4.1.99999.1\n"
        f"digests = {digests}\n"
        "accuracy = secs:1\n"
        "ordering = yes\n"
        "tsa_name = yes\n"
        "ess_cert_id_chain = no\n"
        "ess_cert_id_alg = sha256\n"
    )
    return cfg


class LocalTSA:
    """An RFC 3161 TSA on 127.0.0.1; use as a context manager, `.url` while running."""

    def __init__(self, pki: Pki, mode: str = "ok") -> None:
        self.pki = pki
        self.mode = mode
        self.requests = 0
        self._lock = threading.Lock()
        self._cfg = _openssl_config(pki, "sha256" if mode == "reject" else "sha256, sha384, sha512")
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/tsa"

    def _reply(self, query: bytes) -> bytes:
        with tempfile.TemporaryDirectory() as tmp, self._lock:  # openssl's serial file is not concurrency-safe
            q, r = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
            q.write_bytes(query)
            subprocess.run(
                [OPENSSL, "ts", "-reply", "-config", str(self._cfg), "-queryfile", str(q), "-out", str(r)],
                check=True,
                capture_output=True,
                timeout=30,
            )
            return r.read_bytes()

    def __enter__(self) -> LocalTSA:  # noqa: PYI034
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                tsa.requests += 1
                length = int(self.headers.get("Content-Length", "0"))
                query = self.rfile.read(min(length, 65536))
                if tsa.mode == "http-error":
                    self.send_error(500, "TSA out of order")
                    return
                if tsa.mode == "slow":
                    time.sleep(SLOW_SECONDS)
                try:
                    body = tsa._reply(query)
                except (subprocess.CalledProcessError, BrokenPipeError):
                    self.send_error(400, "bad query")
                    return
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/timestamp-reply")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (slow mode)
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
