"""A small, bounded HTTP client: one request, a timeout, a response size cap, no redirects followed.

Time-stamp authorities (RFC 3161 §3.4) and SCITT transparency services
(SCRAPI) are reached over plain HTTP(S) POST/GET.  Both are untrusted network
peers: a response is read up to a cap and never beyond, redirects are returned
to the caller (SCRAPI gives 302/303 meaning), and every failure becomes one
`NetworkError` with a message a person can act on.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from attest.errors import InputError

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_TIMEOUT", "HttpResponse", "NetworkError", "check_url", "request"]

DEFAULT_TIMEOUT = 10.0  # seconds, per request
DEFAULT_MAX_BYTES = 1024 * 1024  # a time-stamp token or a receipt is a few KiB


class NetworkError(InputError):
    """A service could not be reached, timed out, or answered with an HTTP error (exit 4)."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Returning None makes urllib raise HTTPError for 3xx, which we turn into a response.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def check_url(url: str, what: str) -> str:
    """Accept only absolute http(s) URLs (no file:, ftp: or data: surprises)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"{what} URL {url!r} must be an absolute http:// or https:// URL")
    return url


def _read_capped(fp: Any, max_bytes: int, url: str) -> bytes:
    data: bytes = fp.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise NetworkError(f"{url}: response is larger than the {max_bytes}-byte limit")
    return data


def request(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    what: str = "service",
    errors_as_responses: bool = False,
) -> HttpResponse:
    """One HTTP exchange.  2xx and 3xx come back as responses; 4xx/5xx and transport failures raise NetworkError.

    `HttpResponse` for 4xx/5xx is never returned: callers would have to
    remember to check (unless `errors_as_responses`, for protocols whose
    error bodies carry meaning, such as SCRAPI's problem details).  The error text includes the status and the first
    bytes of any body (servers often explain themselves there).
    """
    check_url(url, what)
    if not timeout > 0:
        raise InputError(f"{what} timeout must be positive")
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            data = _read_capped(resp, max_bytes, url)
            return HttpResponse(status=int(resp.status), headers=dict(resp.headers.items()), body=data)
    except urllib.error.HTTPError as exc:
        hdrs = dict(exc.headers.items()) if exc.headers is not None else {}
        if 300 <= exc.code < 400 or errors_as_responses:
            try:
                data = _read_capped(exc, max_bytes, url)
            except OSError:
                data = b""
            return HttpResponse(status=exc.code, headers=hdrs, body=data)
        try:
            detail = _read_capped(exc, 4096, url)[:200]
        except (OSError, NetworkError):
            detail = b""
        text = detail.decode("utf-8", "replace").strip()
        if text.startswith("<") or not text.isprintable():
            text = ""  # an HTML error page or binary problem details: the status says enough
        raise NetworkError(
            f"{what} {url} answered HTTP {exc.code} {exc.reason}" + (f": {text}" if text else "")
        ) from None
    except TimeoutError:
        raise NetworkError(f"{what} {url} did not answer within {timeout:g} s") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise NetworkError(f"{what} {url} did not answer within {timeout:g} s") from None
        raise NetworkError(f"cannot reach {what} {url}: {reason}") from None
    except http.client.HTTPException as exc:
        raise NetworkError(f"{what} {url}: broken HTTP response ({exc.__class__.__name__})") from None
    except OSError as exc:
        # Connection reset mid-body, TLS failures and the like.
        if "timed out" in str(exc):
            raise NetworkError(f"{what} {url} did not answer within {timeout:g} s") from None
        raise NetworkError(f"{what} {url}: {exc}") from None
