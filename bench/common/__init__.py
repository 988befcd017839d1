"""What the benchmarks share: where the repository and the cache are, the test
helpers on the import path, and the machine facts every RESULTS file records.

Benchmarks run as scripts (`python bench/NAME.py`), so `bench/` is on the path
and this package imports as `common`.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE_ENV = "ATTEST_BENCH_CACHE"
WHEELS_ENV = "ATTEST_BENCH_WHEELS"


def cache_root(option: Path | None = None) -> Path:
    """The benchmark cache: `--cache`, else $ATTEST_BENCH_CACHE, else bench/cache (git-ignored)."""
    if option is not None:
        return Path(option)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return REPO / "bench" / "cache"


def local_wheels() -> Path | None:
    """An optional folder of wheels to install benchmark-only packages from ($ATTEST_BENCH_WHEELS)."""
    value = os.environ.get(WHEELS_ENV)
    return Path(value) if value else None


def use_repo_imports() -> None:
    """Put the repository (attest/) and tests/ (the `helpers` package) first on sys.path, once."""
    for p in (str(REPO), str(REPO / "tests")):
        if p not in sys.path:
            sys.path.insert(0, p)


def cpu_flags(
    interesting: tuple[str, ...] = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni"),
) -> str:
    """The CPU model and the SIMD flags that decide the fast matmul path."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    have = [f for f in interesting if f in flags]
    return f"{model}; {os.cpu_count()} CPUs; flags: {' '.join(have) or 'none of ' + ', '.join(interesting)}"
