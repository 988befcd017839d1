#!/usr/bin/env python
"""What the lineage test costs: time added to `issue` and `verify` on a real-shape checkpoint, bundle size at 7B.

    PYTHONPATH=. python bench/make_checkpoint.py llama-1.2b --out /tmp/ckpt-1.2b
    PYTHONPATH=. python bench/lineage_cost.py --checkpoint /tmp/ckpt-1.2b

Issues a bundle from the checkpoint (the issue timings include the payload
build) and verifies the checkpoint against it three ways: as shipped (the
lineage test fed the layers the invariant pass loads, one read), the lineage
test alone on its own read of the suspect (what verify added before the
shared read), and verify with the payload removed from the statement (the
invariant pass alone), so the time the test adds is the first minus the
third.  Prints markdown with the load average after each step; nothing here
asserts a number.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import cbor2
from common import cpu_flags

from attest.arch.detect import load_model
from attest.bundle.container import read_attestation
from attest.crypto.keys import TrustStore, generate_keypair, load_private_key
from attest.invariants.methods import DEFAULT
from attest.lineage.payload import BUNDLE_NEURONS, BUNDLE_TOKENS, DATA_BUDGET, PAYLOAD_FORMAT, test_against_payload
from attest.sketch.statement import StatementView
from attest.vocab.selection import locate
from attest.workflows.issue import issue_bundle
from attest.workflows.verify import verify_suspect


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


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--skip-no-lineage", action="store_true", help="do not time verify without the lineage test")
    args = ap.parse_args()
    print(f"- CPU: {cpu_flags()}")
    print(f"- payload at 7B shape (32 layers, f 11008, k {BUNDLE_NEURONS}): {size_at_7b():,} bytes of CBOR")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_keypair(root / "k", None)
        key = load_private_key(root / "k.key", None)
        model = load_model(args.checkpoint)
        print(f"- load before issue: {load()}", flush=True)
        t0 = time.perf_counter()
        issued = issue_bundle(model, key, root / "b.attest", method=DEFAULT, name="ckpt", issuer="bench", meta={})
        issue_wall = time.perf_counter() - t0
        print(
            f"- issue: {issue_wall:.1f} s wall; timings {issued.to_json()['seconds']}; bundle {issued.bundle_bytes:,} B"
            f"; load after {load()}",
            flush=True,
        )
        opened = read_attestation((root / "b.attest").read_bytes(), TrustStore.from_pubkey(root / "k.pub"))
        view = StatementView.parse(opened.document)
        # verify as shipped: the lineage test fed the layers the sketch pass loads (one read)
        suspect = load_model(args.checkpoint)
        t0 = time.perf_counter()
        v = verify_suspect(opened, suspect, view=view)
        verify_wall = time.perf_counter() - t0
        print(
            f"- verify (one read): {verify_wall:.1f} s wall, verdict {v.verdict.value}, "
            f"lineage p {v.lineage.p_value if v.lineage else float('nan'):.2g}; load after {load()}",
            flush=True,
        )
        # the lineage test's own pass over the suspect (what verify did a second time before)
        suspect = load_model(args.checkpoint)
        located = locate(suspect.vocab, view.tokens)
        t0 = time.perf_counter()
        res = test_against_payload(view.lineage, suspect, located)
        lineage_s = time.perf_counter() - t0
        same = v.lineage is not None and res.record() == v.lineage.record()
        print(
            f"- lineage test alone, its own read (suspect side): {lineage_s:.1f} s; same counts as verify: {same}"
            f"; load after {load()}",
            flush=True,
        )
        if not args.skip_no_lineage:
            # the same verify with no lineage payload: the invariant sketch alone
            suspect = load_model(args.checkpoint)
            t0 = time.perf_counter()
            verify_suspect(opened, suspect, view=dataclasses.replace(view, lineage=None))
            bare = time.perf_counter() - t0
            print(
                f"- verify without the lineage test: {bare:.1f} s; the test adds {verify_wall - bare:.1f} s "
                f"({(verify_wall - bare) / bare:+.0%}); load after {load()}",
                flush=True,
            )
        print(f"- layers {suspect.n_layers}, tokens used {res.layers[0].tokens if res.layers else 0}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
