"""Progress reporting on stderr (never stdout, which carries machine output).

Library code takes an optional ``Progress`` and uses::

    with progress.task("scanning tensors", total=n) as advance:
        for t in tensors:
            ...
            advance(1)

``NullProgress`` (quiet mode, tests, library use) does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Progress(Protocol):
    def task(
        self, description: str, total: float | None = None
    ) -> AbstractContextManager[Callable[[float], None]]: ...  # pragma: no cover

    def log(self, message: str) -> None: ...  # pragma: no cover





def _noop(n: float = 1) -> None:
    pass


class NullProgress:
    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Callable[[float], None]]:
        yield _noop

    def log(self, message: str) -> None:
        pass


class RichProgress:
    """A rich progress bar on stderr for every task; bars appear only for tasks that run
    longer than a moment (rich's transient bars), logs are plain lines on stderr."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Callable[[float], None]]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import (
            Progress as _RP,
        )

        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
        if total is not None:
            columns.append(MofNCompleteColumn())
        columns.append(TimeElapsedColumn())
        with _RP(*columns, console=self.console, transient=True) as bar:
            tid = bar.add_task(description, total=total)

            def advance(n: float = 1) -> None:
                bar.advance(tid, n)

            yield advance
        self.console.print(f"[dim]done:[/] {description}")

    def log(self, message: str) -> None:
        self.console.print(message)
