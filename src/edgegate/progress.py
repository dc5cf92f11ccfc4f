"""Progress reporting on stderr (never stdout, which carries machine output).

Library code takes an optional ``Progress`` and uses::

    with progress.task("scanning tensors", total=n) as advance:
        for t in tensors:
            ...
            advance(1)

``NullProgress`` (quiet mode, tests, library use) does nothing. ``make_progress`` picks the
reporter for a command: rich bars with an ETA on a terminal, and plain timestamped lines when
stderr is not a terminal (CI logs), where a bar would print nothing useful for half an hour.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Protocol

from edgegate.escape import markup, terminal


class Progress(Protocol):
    def task(
        self, description: str, total: float | None = None
    ) -> AbstractContextManager[Callable[[float], None]]: ...  # pragma: no cover

    def log(self, message: str) -> None: ...  # pragma: no cover


def make_progress(quiet: bool = False, stream: IO[str] | None = None) -> Progress:
    """The progress reporter for a command: none when quiet, bars on a terminal, lines in logs."""
    if quiet:
        return NullProgress()
    stream = stream or sys.stderr
    if stream.isatty():
        return RichProgress()
    return LogProgress(stream)


def _noop(n: float = 1) -> None:
    pass


class NullProgress:
    @contextmanager
    def task(
        self, description: str, total: float | None = None
    ) -> Iterator[Callable[[float], None]]:
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
    def task(
        self, description: str, total: float | None = None
    ) -> Iterator[Callable[[float], None]]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as _RP,
        )

        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
        if total is not None:
            columns.append(MofNCompleteColumn())
        columns.append(TimeElapsedColumn())
        if total is not None:
            columns.append(TimeRemainingColumn())
        with _RP(*columns, console=self.console, transient=True) as bar:
            tid = bar.add_task(markup(description), total=total)  # descriptions and logs quote data

            def advance(n: float = 1) -> None:
                bar.advance(tid, n)

            yield advance
        self.console.print(f"[dim]done:[/] {markup(description)}")

    def log(self, message: str) -> None:
        self.console.print(markup(message))


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class LogProgress:
    """Plain progress lines for logs without a terminal (CI): one line when a task starts, one
    every ``interval_s`` while it runs (done/total, rate, ETA) and one when it ends."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.clock = clock

    def _line(self, text: str) -> None:
        print(
            f"[edgegate {time.strftime('%H:%M:%S')}] {terminal(text)}", file=self.stream, flush=True
        )

    @contextmanager
    def task(
        self, description: str, total: float | None = None
    ) -> Iterator[Callable[[float], None]]:
        start = self.clock()
        last = start
        done = 0.0
        self._line(f"{description}: started" + (f" ({_count(total)} to do)" if total else ""))

        def advance(n: float = 1) -> None:
            nonlocal done, last
            done += n
            now = self.clock()
            if now - last >= self.interval_s:
                last = now
                self._line(f"{description}: {self._status(done, total, now - start)}")

        yield advance
        self._line(f"{description}: done in {_duration(self.clock() - start)}")

    @staticmethod
    def _status(done: float, total: float | None, elapsed: float) -> str:
        rate = done / elapsed if elapsed > 0 else 0.0
        if not total:
            return f"{_count(done)} done, {rate:.3g}/s, {_duration(elapsed)} elapsed"
        eta = (total - done) / rate if rate > 0 else float("inf")
        eta_s = _duration(eta) if eta != float("inf") else "unknown"
        return (
            f"{_count(done)}/{_count(total)} ({100 * done / total:.0f}%), {rate:.3g}/s, ETA {eta_s}"
        )

    def log(self, message: str) -> None:
        # the line already starts "[edgegate HH:MM:SS]": no second "edgegate:" after it
        self._line(message.removeprefix("edgegate: "))


def _count(x: float) -> str:
    """569,597,000 rather than 5.69597e+08 (bytes to hash, items to score)."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"
