"""Writing files safely: output paths checked before any work, atomic writes."""
