"""The wire-format facts every part of attest must agree on, defined once.

Identifiers written into signed documents, the seeds that make a bundle's
pair positions and latent reproducible, and the size budgets shared by the
issuer and the verifier.  This module imports nothing from attest, so any
layer can depend on it without a cycle.
"""

from __future__ import annotations

# -- document identifiers (docs/bundle-format.md) ---------------------------
ATTESTATION_FORMAT = "attest-bundle/1"
STATEMENT_FORMAT = "attest-statement/2"  # /2 adds the "lineage" payload (docs/lineage.md)
STATEMENT_FORMAT_V1 = "attest-statement/1"  # still read: such bundles verify on the score alone
STATEMENT_FORMATS = (STATEMENT_FORMAT_V1, STATEMENT_FORMAT)
LINEAGE_FORMAT = "attest-lineage/1"
EVIDENCE_FORMAT = "attest-evidence/1"
MANIFEST_LAYOUT = "attest-manifest/1"

# -- invariant terms (docs/method.md) ----------------------------------------
LAYER_TERMS = ("qk", "vo", "up", "gate", "router")
GLOBAL_TERMS = ("emb", "head")
HUREF_TERMS = ("qk", "vo", "ffn")
# attention kind: ssm -- a state-space mixer's terms, added to a method for models that have one
MIXER_TERMS = ("ssm_xo", "ssm_z", "ssm_bc", "ssm_dt")
KNOWN_TERMS = frozenset(LAYER_TERMS + GLOBAL_TERMS + HUREF_TERMS + MIXER_TERMS)
GLOBAL_LAYER = -1  # the layer index a sketch cell of a global term (emb, head) carries

# -- seeds: recorded in every bundle, so these only set what `issue` picks ---
PAIR_SEED = 0x9A125  # sketch pair positions; compare uses it too, so dogs agree across commands
LATENT_SEED = 0x5EED_D06  # the count-sketch projection from sketch to latent

# -- sizes -------------------------------------------------------------------
LATENT_DIM = 512  # the dog's latent: 512 float32 values
SKETCH_BUDGET_BYTES = 3_500_000  # what `issue` spends on the float16 sketch: a bundle stays < 4 MB before the image
