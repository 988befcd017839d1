#!/usr/bin/env python
"""How many head tokens m_h does a bundle need?  The head channel through the bundle path (issue 11).

    PYTHONPATH=. python bench/lineage_heads_mh.py [--cache DIR]

Synthetic Llamas of tests/helpers/many_heads.py (4 layers, H = 8..64 heads,
random init), the cases of bench/lineage_heads.py: a copy whose FFNs were all
re-initialised with attention kept (5% drift; also 20%, 50% and 100% drift,
harder derived cases), and an independent twin.  For each m_h the base's
payload is built (`build_payload(..., head_tokens=m_h)`, int8, through CBOR)
and the suspect tested against it as `verify` does.  Prints a markdown table
(per-layer head agreement, head-channel p, whether it joined, verdict p).
Seconds on a laptop.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import REPO, use_repo_imports  # noqa: E402

use_repo_imports()
sys.path.insert(0, str(REPO / "tests"))

import cbor2  # noqa: E402
from helpers import many_heads as mh  # noqa: E402

from attest.arch.detect import load_model  # noqa: E402
from attest.lineage.payload import build_payload, test_against_payload  # noqa: E402
from attest.vocab.selection import locate, select  # noqa: E402

M_H = (8, 12, 16, 32)
HEADS = (8, 16, 32, 64)
DRIFTS = (0.05, 0.2, 0.5, 1.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args(argv)
    cache = args.cache or Path(tempfile.mkdtemp(prefix="heads-mh-"))
    print("| H | case | " + " | ".join(f"m_h = {m}: agreement per layer, p_heads" for m in M_H) + " | joined | p |")
    print("|---|---|" + "---|" * len(M_H) + "---|---|")
    for heads in HEADS:
        model = mh.many_heads(heads, 0)
        base = load_model(mh.save(model, cache / f"{heads}" / "base"))
        tokens = select(base.vocab, 256)
        ids = [i for i in locate(base.vocab, tokens) if i is not None]
        payloads = {m: cbor2.loads(cbor2.dumps(build_payload(base, ids, head_tokens=m))) for m in M_H}
        cases = [(f"FFNs replaced, drift {d:g}", mh.ffn_replaced(model, heads, drift=d)) for d in DRIFTS]
        cases.append(("independent twin", mh.many_heads(heads, 31)))
        for name, other in cases:
            suspect = load_model(mh.save(other, cache / f"{heads}" / name.replace(" ", "-").replace(",", "")))
            cells, joined, p = [], "", ""
            for m in M_H:
                r = test_against_payload(payloads[m], suspect, locate(suspect.vocab, tokens))
                assert r.heads is not None
                per = " ".join(f"{x.agreement:.2f}" for x in r.heads.layers)
                cells.append(f"{per}, {r.heads.p_channel:.2g}")
                joined, p = str(r.heads_joined), f"{r.p_value:.2g}"  # joined does not depend on m_h
            print(f"| {heads} | {name} | " + " | ".join(cells) + f" | {joined} | {p} (m_h = {M_H[-1]}) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
