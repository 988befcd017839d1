"""Helpers for replaying hostile inputs: damaged model folders, re-signed bundles, measured runs."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attest.bundle.cbor_safe import canonical_dumps, is_array
from attest.bundle.container import STATEMENT_CONTENT_TYPE
from attest.bundle.cose import sign1
from attest.crypto.keys import key_id

ROOT = Path(__file__).resolve().parents[1]


def read_safetensors(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_safetensors(path: Path, header: dict[str, Any] | bytes, data: bytes) -> None:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)


def thaw(value: Any) -> Any:
    """A decoded CBOR value (frozen maps, tuples) as plain, mutable dicts and lists."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if is_array(value):
        return [thaw(v) for v in value]
    return value


def resign(
    document: Mapping[str, Any], png: bytes, key: Any, *, issuer: str = "Test Lab", subject: str = "tiny"
) -> bytes:
    """A `.attest` file around `document`, validly signed by `key`, with NO validation on the way.

    `issue_statement` refuses malformed documents (as it should); this builds
    what a trusted but buggy or hostile signer could publish, so that what is
    tested is the verifier's reading, not the signature check.
    """
    statement = sign1(
        canonical_dumps(document),
        key,
        kid=key_id(key.public_key()),
        issuer=issuer,
        subject=subject,
        iat=1_700_000_000,
        content_type=STATEMENT_CONTENT_TYPE,
    )
    return canonical_dumps(
        {
            "format": "attest-bundle/1",
            "statement": statement,
            "image": {"media_type": "image/png", "data": png},
            "receipts": [],
            "timestamps": [],
        }
    )


_MEASURE = """
import resource, sys
sys.argv = ["attest", *sys.argv[1:]]
from attest.cli.app import main
try:
    main()
finally:
    sys.stderr.write("\\nPEAK_KB=%d\\n" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run_measured(args: list[Any], timeout: float = 240) -> tuple[int, str, float, float]:
    """Run the attest CLI in a fresh process: (exit code, stderr, peak RSS in MB, seconds)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=env,
    )
    seconds = time.perf_counter() - t
    peak = [ln for ln in proc.stderr.splitlines() if ln.startswith("PEAK_KB=")]
    peak_mb = int(peak[-1].split("=")[1]) / 1024 if peak else float("nan")
    return proc.returncode, proc.stderr, peak_mb, seconds
