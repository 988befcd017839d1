"""Outbound HTTP for the few services attest talks to (time-stamp authorities, transparency services)."""
