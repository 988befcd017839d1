"""Where the per-model work runs: in this process, or as Ray tasks.

Both engines take the same jobs and yield `(job index, Outcome)` as models
finish; the driver records each outcome.  Neither schedules anything itself:
`local` runs the jobs one after another, and `ray` hands one task per model to
Ray, which places it by its CPU and memory request and re-runs it (at most
`max_retries` times) when its worker process dies.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from attest.errors import ExitCode, InputError
from attest.scan.plan import Resources, local_threads
from attest.scan.work import Context, Job, Outcome, scan_one

WorkFn = Callable[[Job, Context], Outcome]
DEFAULT_MAX_RETRIES = 2
ENGINES = ("local", "ray")


def run_local(
    jobs: Sequence[Job], plans: Sequence[Resources], ctx: Context, work: WorkFn = scan_one
) -> Iterator[tuple[int, Outcome]]:
    """One model after another, each with every core of this machine (one thread for a small model)."""
    cores = os.cpu_count() or 1
    for i, (job, plan) in enumerate(zip(jobs, plans)):
        threads = local_threads(plan, cores)
        yield i, work(Job(job.path, job.display, job.source_bytes, job.source_mtime, threads), ctx)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(
            "--engine ray needs Ray, which is not installed: pip install -c constraints.txt 'attest-fingerprint[scale]'"
        ) from None
    return ray


def _failed(job: Job, message: str, code: ExitCode = ExitCode.INTERNAL_ERROR) -> Outcome:
    return Outcome(job.path, job.display, "error", error=message, exit_class=int(code))


class RayEngine:
    """A Ray instance for one scan: the cluster at `address`, one already running here, or a local one started now."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.ray = import_ray()
        self.started = False
        if not self.ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            elif num_cpus:
                kwargs["num_cpus"] = num_cpus
            try:
                self.ray.init(**kwargs)
            except ConnectionError as exc:
                raise InputError(f"cannot reach the Ray cluster at {address}: {exc}") from None
            self.started = True
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        # A request no node can satisfy would wait forever: such a model is failed instead.
        self.max_cpus = max((int(n.get("CPU", 0)) for n in nodes), default=1)
        self.max_memory = max((int(n.get("memory", 0)) for n in nodes), default=0)
        self.total_cpus = sum(int(n.get("CPU", 0)) for n in nodes)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()

    def run(
        self,
        jobs: Sequence[Job],
        plans: Sequence[Resources],
        ctx: Context,
        work: WorkFn = scan_one,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> Iterator[tuple[int, Outcome]]:
        ray = self.ray
        remote = ray.remote(_task)
        ctx_ref = ray.put(ctx)
        # Bounded submission keeps the driver's memory flat for 100,000 models;
        # Ray still decides where and when each submitted task runs.
        window = max(8, 2 * self.total_cpus)
        pending: dict[Any, int] = {}
        queue = iter(range(len(jobs)))

        def submit() -> Iterator[tuple[int, Outcome]]:
            for i in queue:
                job, plan = jobs[i], plans[i]
                if self.max_memory and plan.memory_bytes > self.max_memory:
                    yield (
                        i,
                        _failed(
                            job,
                            f"needs {plan.memory_bytes / 2**30:.1f} GiB of memory; the largest Ray node has "
                            f"{self.max_memory / 2**30:.1f} GiB",
                            ExitCode.INPUT_ERROR,
                        ),
                    )
                    continue
                cpus = max(1, min(plan.cpus, self.max_cpus))
                ref = remote.options(
                    num_cpus=cpus, memory=plan.memory_bytes, max_retries=max_retries, retry_exceptions=False
                ).remote(Job(job.path, job.display, job.source_bytes, job.source_mtime, cpus), ctx_ref, work)
                pending[ref] = i
                if len(pending) >= window:
                    return

        yield from submit()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    # Retries exhausted (the worker kept dying) or the task was lost: record it, go on.
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
                    out = _failed(jobs[i], f"Ray task failed after {max_retries} retries: {first}")
                yield i, out
            yield from submit()


def _task(job: Job, ctx: Context, work: WorkFn) -> Outcome:
    return work(job, ctx)
