#!/usr/bin/env python
"""The fixture cases' verdicts through `verify` (bundle issued from the base) and `compare`.

    PYTHONPATH=. python bench/lineage_verdicts.py

The cases of tests/test_lineage_verdict.py (committed fixtures plus the pruned,
dropped-layer, rotated-permuted and vocabulary-pruned models built there).
Prints markdown: score, coverage, lineage p and verdict per command.  Nothing
here asserts a number; the test file holds the assertions.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import test_lineage as T
import test_lineage_verdict as V

import attest
from attest.crypto.keys import generate_keypair


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders = {n: T.FIXTURES / n for n in ("base", "finetune", "continued", "twin", "transplant", "wide")}
        folders["pruned"] = T._pruned(root / "pruned")
        folders["dropped"] = T._dropped(root / "dropped")
        folders["rotated"] = T._rotated(root / "rotated")
        folders["vocab_pruned"] = V._vocab_pruned(T.FIXTURES / "finetune", root / "vp", 0.25, seed=7)
        folders["twin_vocab_pruned"] = V._vocab_pruned(T.FIXTURES / "twin", root / "tvp", 0.4, seed=8)
        generate_keypair(root / "k", None)
        bundle = root / "base.attest"
        attest.issue(folders["base"], root / "k.key", bundle, name="base", issuer="k")
        print(
            "| case | expected | coverage | score (verify / compare) | lineage p (verify / compare) | verdict (verify / compare) |"
        )
        print("|---|---|---|---|---|---|")
        for name in V.DERIVED + V.UNRELATED:
            v = attest.verify(folders[name], bundle, trust=root / "k.pub")
            c = attest.compare(folders["base"], folders[name])
            expected = "derived" if name in V.DERIVED else "unrelated"
            print(
                f"| {name} | {expected} | {v.coverage:.0%} | {v.score:.3f} / {c.score:.3f} | "
                f"{v.p_value:.1e} / {c.z_p[1]:.1e} | {v.verdict.value} / {c.verdict.value} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
