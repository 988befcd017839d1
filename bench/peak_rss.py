"""Run a command in a fresh child process; report wall time and peak RSS.

    python bench/peak_rss.py [--runs 3] [--json] [--poll] -- CMD [ARGS...]

Library use (bench/perf.py):

    from peak_rss import measure, median_of
    m = median_of(["attest", "fingerprint", "model/"], runs=3)
    m.wall_s, m.peak_rss_bytes, m.runs

Peak RSS comes from the kernel's high-water mark for that one child, read with
os.wait4(pid) when it exits.  getrusage(RUSAGE_CHILDREN) is not used: its
ru_maxrss is the largest of *all* children this process ever waited for, so a
second, smaller run would report the first run's peak.  wait4 covers the child
and any grandchildren it waited for; with --poll (psutil) the sum of the RSS
of the whole live process tree is sampled as well, for commands that run
workers in parallel (the kernel's figure is per process, not per tree).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

__all__ = ["Run", "Measurement", "measure", "median_of"]


@dataclass(frozen=True)
class Run:
    """One execution of the command in its own fresh process."""

    wall_s: float
    peak_rss_bytes: int  # kernel high-water mark of the child (ru_maxrss)
    tree_peak_rss_bytes: int | None  # sampled sum over the process tree (poll=True only)
    user_s: float
    sys_s: float
    returncode: int


@dataclass(frozen=True)
class Measurement:
    """Medians over several fresh-process runs, with the runs themselves."""

    cmd: list[str]
    wall_s: float
    peak_rss_bytes: int
    runs: list[Run] = field(default_factory=list)
    tree_peak_rss_bytes: int | None = None  # median of the sampled tree sums (poll=True only)

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_bytes / 2**20


def _maxrss_bytes(ru_maxrss: int) -> int:
    # Linux reports KiB, macOS bytes.
    return ru_maxrss if sys.platform == "darwin" else ru_maxrss * 1024


class _TreePoller(threading.Thread):
    """Samples the summed RSS of a process and its descendants."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        import psutil

        self._psutil = psutil
        self._pid = pid
        self._interval = interval
        self._done = threading.Event()
        self.peak = 0

    def run(self) -> None:
        try:
            self._proc = self._psutil.Process(self._pid)
        except self._psutil.NoSuchProcess:  # already gone: nothing to sample
            return
        while not self._done.is_set():
            try:
                procs = [self._proc, *self._proc.children(recursive=True)]
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                        pass
                self.peak = max(self.peak, total)
            except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                return
            self._done.wait(self._interval)

    def stop(self) -> None:
        self._done.set()
        self.join()


def measure(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    poll: bool = False,
    poll_interval: float = 0.05,
    quiet: bool = False,
    check: bool = True,
) -> Run:
    """Run `cmd` once in a new process and measure it.

    `quiet` sends the child's stdout to /dev/null (stderr is kept for errors).
    With `check`, a non-zero exit raises CalledProcessError: a failed run's
    time and memory mean nothing.  On `timeout` the child is killed and
    TimeoutExpired raised.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), env=None if env is None else dict(env), cwd=cwd, stdout=subprocess.DEVNULL if quiet else None
    )
    poller = _TreePoller(proc.pid, poll_interval) if poll else None
    if poller:
        poller.start()
    deadline = None if timeout is None else start + timeout
    try:
        while True:
            # wait4 with WNOHANG lets us enforce the timeout without losing
            # the child's rusage (Popen.wait would reap it and discard it).
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
            if pid:
                break
            if deadline and time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise subprocess.TimeoutExpired(list(cmd), timeout or 0.0)
            time.sleep(0.01)
    finally:
        if poller:
            poller.stop()
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, list(cmd))
    return Run(
        wall_s=wall,
        peak_rss_bytes=_maxrss_bytes(ru.ru_maxrss),
        tree_peak_rss_bytes=poller.peak if poller else None,
        user_s=ru.ru_utime,
        sys_s=ru.ru_stime,
        returncode=proc.returncode,
    )


def median_of(cmd: Sequence[str], runs: int = 3, **kwargs: object) -> Measurement:
    """`measure` the command `runs` times, each in a fresh process; medians of wall and peak RSS.

    The runs are sequential (parallel runs would compete for the same cores and
    page cache).  The first run also warms the page cache for the later ones;
    callers that want cold-cache numbers must drop caches themselves.
    """
    if runs < 1:
        raise ValueError("runs must be >= 1")
    results = [measure(cmd, **kwargs) for _ in range(runs)]  # type: ignore[arg-type]
    trees = [r.tree_peak_rss_bytes for r in results if r.tree_peak_rss_bytes is not None]
    return Measurement(
        cmd=list(cmd),
        wall_s=statistics.median(r.wall_s for r in results),
        peak_rss_bytes=int(statistics.median(r.peak_rss_bytes for r in results)),
        runs=results,
        tree_peak_rss_bytes=int(statistics.median(trees)) if trees else None,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the measurement as JSON")
    ap.add_argument("--poll", action="store_true", help="also sample the process tree's summed RSS (psutil)")
    ap.add_argument("--quiet", action="store_true", help="discard the command's stdout")
    ap.add_argument("--timeout", type=float)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("give the command after --")
    try:
        m = median_of(cmd, runs=a.runs, poll=a.poll, quiet=a.quiet, timeout=a.timeout)
    except subprocess.CalledProcessError as exc:
        print(f"peak_rss: command failed with exit code {exc.returncode}: {shlex.join(cmd)}", file=sys.stderr)
        return exc.returncode if 0 < exc.returncode < 256 else 1
    except subprocess.TimeoutExpired:
        print(f"peak_rss: command timed out after {a.timeout} s", file=sys.stderr)
        return 124
    if a.json:
        print(json.dumps({**asdict(m), "peak_rss_mib": m.peak_rss_mib}, indent=2))
    else:
        print(f"{shlex.join(cmd)}")
        for i, r in enumerate(m.runs, 1):
            tree = f", tree {r.tree_peak_rss_bytes / 2**20:.0f} MiB" if r.tree_peak_rss_bytes is not None else ""
            print(
                f"  run {i}: {r.wall_s:.2f} s wall, {r.user_s + r.sys_s:.2f} s CPU, "
                f"peak RSS {r.peak_rss_bytes / 2**20:.0f} MiB{tree}"
            )
        tree = f", tree {m.tree_peak_rss_bytes / 2**20:.0f} MiB" if m.tree_peak_rss_bytes is not None else ""
        print(f"median of {len(m.runs)}: {m.wall_s:.2f} s, peak RSS {m.peak_rss_mib:.0f} MiB{tree}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
