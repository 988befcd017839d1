"""A minimal SCITT transparency service on 127.0.0.1: an append-only RFC 9162 Merkle log speaking SCRAPI.

Written independently of attest.transparency (recursive MTH and PATH straight
from RFC 9162 §2.1.1 and §2.1.3.1) so the tests check one implementation
against another.  Endpoints:

- POST /entries (application/cose): 201 + receipt (mode "sync"), or
  303 + Location (mode "async"; the first GET answers 302, the next 200);
  a body that is not a tagged COSE_Sign1 gets 400 with RFC 9290 problem details;
- GET /entries/{n}: the receipt for entry n at the current tree size;
- GET /.well-known/scitt-keys: the COSE Key Set (one Ed25519 key).

Receipts are COSE_Sign1 with protected {alg: -8, kid, vds: 1, CWT iss},
unprotected {396: {-1: [<<[size, index, path]>>]}} and a detached payload.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(entries: list[bytes]) -> bytes:
    n = len(entries)
    if n == 0:
        return _h(b"")
    if n == 1:
        return _h(b"\x00" + entries[0])
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two smaller than n
    return _h(b"\x01" + mth(entries[:k]) + mth(entries[k:]))


def path(m: int, entries: list[bytes]) -> list[bytes]:
    n = len(entries)
    if n <= 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return path(m, entries[:k]) + [mth(entries[k:])]
    return path(m - k, entries[k:]) + [mth(entries[:k])]


def _dumps(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


class LocalTransparencyService:
    def __init__(self, mode: str = "sync", key: Ed25519PrivateKey | None = None, issuer: str = "ts.test") -> None:
        self.mode = mode
        self.key = key or Ed25519PrivateKey.generate()
        self.issuer = issuer
        self.entries: list[bytes] = []
        self.polls: dict[int, int] = {}
        self._lock = threading.Lock()
        x = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.cose_key = {1: 1, -1: 6, -2: x}
        self.kid = _h(_dumps(self.cose_key))  # RFC 9679 thumbprint
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def append(self, entry: bytes) -> int:
        with self._lock:
            self.entries.append(entry)
            return len(self.entries) - 1

    def receipt(self, index: int, *, key: Ed25519PrivateKey | None = None) -> bytes:
        with self._lock:
            entries = list(self.entries)
        proof = _dumps([len(entries), index, path(index, entries)])
        protected = _dumps({1: -8, 4: self.kid, 15: {1: self.issuer}, 395: 1})
        to_sign = _dumps(["Signature1", protected, b"", mth(entries)])
        signature = (key or self.key).sign(to_sign)
        return _dumps(cbor2.CBORTag(18, [protected, {396: {-1: [proof]}}, None, signature]))

    def __enter__(self) -> LocalTransparencyService:  # noqa: PYI034
        ts = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(
                self,
                code: int,
                body: bytes = b"",
                ctype: str = "application/cose",
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _problem(self, code: int, title: str, detail: str) -> None:
                self._send(code, _dumps({-1: title, -2: detail}), "application/concise-problem-details+cbor")

            def do_POST(self) -> None:
                if self.path != "/entries":
                    self._problem(404, "Not Found", self.path)
                    return
                body = self.rfile.read(min(int(self.headers.get("Content-Length", "0")), 1 << 20))
                try:
                    obj = cbor2.loads(body)
                    ok = getattr(obj, "tag", None) == 18 and len(obj.value) == 4
                except Exception:  # noqa: BLE001 (any undecodable body is "malformed")
                    ok = False
                if not ok:
                    self._problem(400, "Malformed request", "The request could not be parsed")
                    return
                n = ts.append(body)
                if ts.mode == "async":
                    self._send(303, headers={"Location": f"/entries/{n}", "Retry-After": "0"})
                else:
                    self._send(201, ts.receipt(n), headers={"Location": f"/entries/{n}"})

            def do_GET(self) -> None:
                if self.path == "/.well-known/scitt-keys":
                    self._send(200, _dumps([dict(ts.cose_key, **{2: ts.kid})]), "application/cbor")
                    return
                if self.path.startswith("/entries/"):
                    try:
                        n = int(self.path.rsplit("/", 1)[1])
                    except ValueError:
                        n = -1
                    if not 0 <= n < len(ts.entries):
                        self._problem(404, "Not Found", "no such entry")
                        return
                    ts.polls[n] = ts.polls.get(n, 0) + 1
                    if ts.mode == "async" and ts.polls[n] == 1:
                        self._send(302, headers={"Location": f"/entries/{n}", "Retry-After": "0"})
                        return
                    self._send(200, ts.receipt(n))
                    return
                self._problem(404, "Not Found", self.path)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
