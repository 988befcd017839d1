"""Architecture adapters: declarative per-family tables and the canonical view."""
