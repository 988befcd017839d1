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
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from common import cpu_flags

from attest.arch.detect import load_model
from attest.bundle.container import read_attestation
from attest.crypto.keys import TrustStore, generate_keypair, load_private_key
from attest.invariants.methods import DEFAULT
from attest.lineage.payload import layout_document, payload_size, test_against_payload
from attest.sketch.statement import StatementView
from attest.vocab.selection import locate
from attest.workflows.issue import issue_bundle
from attest.workflows.verify import verify_suspect


def size_at_7b() -> int:
    """CBOR bytes of the default payload at 7B shape (32 layers, f = 11008, 32 heads), heads included."""
    return payload_size(layout_document(32, 11008, 32))


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def timed(label: str, fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Run fn; print and return (result, wall s, CPU s of this process).  CPU time is what the step
    costs; wall time on a shared machine also counts everyone else's jobs."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(f"- {label}: {wall:.1f} s wall, {cpu:.1f} s CPU; load after {load()}", flush=True)
    return out, wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, help="keep the key and bundle here; an existing bundle is reused")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the three verify variants, interleaved")
    args = ap.parse_args()
    print(f"- CPU: {cpu_flags()}")
    print(f"- payload at 7B shape (32 layers, f 11008, 32 heads, default layout): {size_at_7b():,} bytes of CBOR")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "b.attest").is_file():
            generate_keypair(root / "k", None)
            key = load_private_key(root / "k.key", None)
            model = load_model(args.checkpoint)
            print(f"- load before issue: {load()}", flush=True)
            issued, _w, _c = timed(
                "issue",
                lambda: issue_bundle(
                    model, key, root / "b.attest", method=DEFAULT, name="ckpt", issuer="bench", meta={}
                ),
            )
            print(f"- issue timings {issued.to_json()['seconds']}; bundle {issued.bundle_bytes:,} B", flush=True)
        print(f"- bundle {(root / 'b.attest').stat().st_size:,} B", flush=True)
        opened = read_attestation((root / "b.attest").read_bytes(), TrustStore.from_pubkey(root / "k.pub"))
        view = StatementView.parse(opened.document)
        bare_view = dataclasses.replace(view, lineage=None)
        for round_ in range(args.repeat):
            print(f"- round {round_ + 1}, load before {load()}", flush=True)
            # the invariant pass alone: the same verify with the payload removed from the statement
            s0 = load_model(args.checkpoint)
            _v, bare_w, bare_c = timed(
                "verify without the lineage test", lambda: verify_suspect(opened, s0, view=bare_view)
            )
            # as shipped: the lineage test fed the layers the invariant pass loads (one read)
            s1 = load_model(args.checkpoint)
            v, one_w, one_c = timed(
                "verify with the lineage test (one read)", lambda: verify_suspect(opened, s1, view=view)
            )
            # the lineage test on its own read of the suspect: what verify added before the shared read
            s2 = load_model(args.checkpoint)
            located = locate(s2.vocab, view.tokens)
            res, alone_w, alone_c = timed(
                "lineage test alone, its own read", lambda: test_against_payload(view.lineage, s2, located)
            )
            same = v.lineage is not None and res.record() == v.lineage.record()
            print(
                f"- verdict {v.verdict.value}, lineage p {res.p_value:.2g}, same counts: {same}; "
                f"the test now adds {one_w - bare_w:.1f} s wall / {one_c - bare_c:.1f} s CPU to verify; "
                f"before (its own read) {alone_w:.1f} s wall / {alone_c:.1f} s CPU",
                flush=True,
            )
        print(f"- layers {s2.n_layers}, tokens used {res.layers[0].tokens if res.layers else 0}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
