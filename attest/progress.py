"""Progress bars on stderr, shown only to a person at a terminal."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, Protocol


class Tracker(Protocol):
    def task(self, description: str, total: float | None) -> int: ...
    def advance(self, task: int, amount: float = 1.0) -> None: ...


class _Silent:
    def task(self, description: str, total: float | None) -> int:
        return 0

    def advance(self, task: int, amount: float = 1.0) -> None:
        pass


class _Rich:
    def __init__(self, progress: object) -> None:
        self._p = progress

    def task(self, description: str, total: float | None) -> int:
        return self._p.add_task(description, total=total)  # type: ignore[attr-defined]

    def advance(self, task: int, amount: float = 1.0) -> None:
        self._p.advance(task, amount)  # type: ignore[attr-defined]


@contextmanager
def progress(enabled: bool = True) -> Iterator[Tracker]:
    if not enabled or not sys.stderr.isatty():
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as p:
        yield _Rich(p)


SILENT: Tracker = _Silent()
