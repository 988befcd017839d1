#!/usr/bin/env python
"""What the lineage test costs: time added to `issue` and `verify` on a real-shape checkpoint, bundle size at 7B.

    PYTHONPATH=. python bench/make_checkpoint.py llama-1.2b --out /tmp/ckpt-1.2b
    PYTHONPATH=. python bench/lineage_cost.py --checkpoint /tmp/ckpt-1.2b

Issues a bundle from the checkpoint (the issue timings include the payload
build), verifies the checkpoint against it, and times the lineage test of
verify on its own.  Prints markdown; nothing here asserts a number.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cbor2

from attest.arch.detect import load_model
from attest.bundle.container import read_attestation
from attest.crypto.keys import TrustStore, generate_keypair, load_private_key
from attest.invariants.methods import DEFAULT
from attest.lineage.payload import BUNDLE_NEURONS, BUNDLE_TOKENS, DATA_BUDGET, PAYLOAD_FORMAT, test_against_payload
from attest.sketch.statement import StatementView
from attest.vocab.selection import locate
from attest.workflows.issue import issue_bundle
from attest.workflows.verify import verify_suspect


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(sorted(f for f in flags if f.startswith(("avx", "fma", "amx", "sse4"))))
    except OSError:
        pass
    return platform.processor() or "?"


def size_at_7b() -> int:
    """CBOR bytes of the default payload at 7B shape (32 layers, f = 11008), as build_payload lays it out."""
    k, f, layers = BUNDLE_NEURONS, 11008, 32
    m = max(BUNDLE_TOKENS, DATA_BUDGET // (2 * k * layers))
    layer = {
        "index": 31,
        "channels": ["gate", "up"],
        "width": f,
        "neurons": bytes(2 * k),
        "neuron_dtype": "uint16",
        "scale": bytes(8 * k),
        "data": bytes(2 * m * k),
    }
    doc = {
        "format": PAYLOAD_FORMAT,
        "seed": 2**31,
        "n_tokens": 1024,
        "token_positions": bytes(2 * m),
        "token_dtype": "uint16",
        "layers": [dict(layer, index=i) for i in range(layers)],
    }
    return len(cbor2.dumps(doc))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", type=Path, required=True)
    args = ap.parse_args()
    print(f"- CPU flags: {cpu_flags()}")
    print(f"- payload at 7B shape (32 layers, f 11008, k {BUNDLE_NEURONS}): {size_at_7b():,} bytes of CBOR")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_keypair(root / "k", None)
        key = load_private_key(root / "k.key", None)
        model = load_model(args.checkpoint)
        t0 = time.perf_counter()
        issued = issue_bundle(model, key, root / "b.attest", method=DEFAULT, name="ckpt", issuer="bench", meta={})
        issue_wall = time.perf_counter() - t0
        print(
            f"- issue: {issue_wall:.1f} s wall; timings {issued.to_json()['seconds']}; bundle {issued.bundle_bytes:,} B"
        )
        opened = read_attestation((root / "b.attest").read_bytes(), TrustStore.from_pubkey(root / "k.pub"))
        view = StatementView.parse(opened.document)
        suspect = load_model(args.checkpoint)
        t0 = time.perf_counter()
        v = verify_suspect(opened, suspect, view=view)
        verify_wall = time.perf_counter() - t0
        located = locate(suspect.vocab, view.tokens)
        t0 = time.perf_counter()
        res = test_against_payload(view.lineage, suspect, located)
        lineage_s = time.perf_counter() - t0
        print(f"- verify: {verify_wall:.1f} s wall, verdict {v.verdict.value}, lineage p {res.p_value:.2g}")
        print(f"- lineage test alone (suspect side): {lineage_s:.1f} s ({lineage_s / verify_wall:.0%} of verify)")
        print(f"- layers {suspect.n_layers}, tokens used {res.layers[0].tokens if res.layers else 0}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
