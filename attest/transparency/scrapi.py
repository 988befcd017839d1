"""A SCRAPI client (SCITT Reference APIs, draft-ietf-scitt-scrapi-08): register a signed statement, get its receipt.

The subset used:

- ``POST {base}/entries`` with ``Content-Type: application/cose`` and the
  signed statement; the service answers ``201`` with the receipt
  (``application/cose``), or ``303 See Other`` with a ``Location`` to poll;
- ``GET {location}``: ``302 Found`` while registration runs (honouring a
  bounded ``Retry-After``), ``200`` with the receipt when done;
- errors are 4xx/5xx, ideally with RFC 9290 concise problem details (CBOR
  map, -1 title, -2 detail), whose title and detail we show.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Mapping

from attest.bundle.cbor_safe import safe_loads
from attest.errors import AttestError, InputError
from attest.net.http import DEFAULT_TIMEOUT, HttpResponse, request
from attest.transparency.receipt import MAX_RECEIPT_BYTES

__all__ = ["TransparencyError", "register_statement"]

_COSE = "application/cose"
MAX_POLL_SECONDS = 300.0


class TransparencyError(InputError):
    """The transparency service refused the statement or answered unusably (exit 4)."""


def _problem(body: bytes) -> str | None:
    # RFC 9290 concise problem details: {-1: title, -2: detail}.
    try:
        obj = safe_loads(body, max_size=4096, max_depth=2, max_items=16, what="problem details")
    except AttestError:
        return None
    if not isinstance(obj, Mapping):
        return None
    parts = [str(obj[k]) for k in (-1, -2) if isinstance(obj.get(k), str)]
    return ": ".join(parts) or None


def _entries_url(base: str) -> str:
    return base.rstrip("/") + "/entries"


def _retry_after(resp: HttpResponse, default: float) -> float:
    value = resp.header("Retry-After")
    try:
        return min(max(float(value), 0.0), 30.0) if value is not None else default
    except ValueError:
        return default


def _receipt_of(resp: HttpResponse, url: str) -> bytes:
    if not resp.body:
        raise TransparencyError(f"transparency service {url} returned an empty receipt")
    if len(resp.body) > MAX_RECEIPT_BYTES:
        raise TransparencyError(f"transparency service {url} returned a receipt larger than {MAX_RECEIPT_BYTES} bytes")
    return resp.body


def register_statement(
    statement: bytes,
    base_url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_wait: float = 60.0,
    poll_interval: float = 1.0,
) -> bytes:
    """Submit `statement` (a COSE_Sign1) to the service at `base_url`; returns the receipt bytes.

    Waits at most `max_wait` seconds in total for an asynchronous
    registration.  Errors raise TransparencyError or NetworkError (exit 4).
    """
    url = _entries_url(base_url)
    resp = request(
        url,
        method="POST",
        body=statement,
        timeout=timeout,
        max_bytes=MAX_RECEIPT_BYTES + 1,
        headers={"Content-Type": _COSE, "Accept": _COSE},
        what="transparency service",
        errors_as_responses=True,
    )
    if resp.status in (200, 201):
        return _receipt_of(resp, url)
    deadline = time.monotonic() + min(max_wait, MAX_POLL_SECONDS)
    while resp.status in (302, 303):
        location = resp.header("Location")
        if not location:
            raise TransparencyError(f"transparency service {url} answered {resp.status} without a Location")
        poll = urllib.parse.urljoin(url, location)
        if resp.status == 302 or poll == url:
            wait = _retry_after(resp, poll_interval)
            if time.monotonic() + wait > deadline:
                raise TransparencyError(
                    f"transparency service {url} did not finish the registration within "
                    f"{max_wait:g} s (still pending at {poll})"
                )
            time.sleep(wait)
        resp = request(
            poll,
            method="GET",
            timeout=timeout,
            max_bytes=MAX_RECEIPT_BYTES + 1,
            headers={"Accept": _COSE},
            what="transparency service",
            errors_as_responses=True,
        )
        if resp.status == 200:
            return _receipt_of(resp, poll)
        url = poll
    problem = _problem(resp.body)
    raise TransparencyError(
        f"transparency service {url} answered HTTP {resp.status}" + (f": {problem}" if problem else "")
    )
