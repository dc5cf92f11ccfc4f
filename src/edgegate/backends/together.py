"""The dense and the compressed model called together: in turn, or at once on two threads (each
blocks on its own model's process, so the two processes work together where the cores hold
both: backends/pool.py).

A backend serves one call at a time: the caller never has two calls of one model in flight
(``start``'s calls are over once its ``result`` returns, and only then does it call again).
Leaving a ``Both`` joins its threads: an error waits for the other model's call to end (each
call has its deadline), while Ctrl-C or SIGTERM (``edgegate.signals``) first ends both models'
processes (``abort``, where a backend has it: ``_subprocess.IsolatedBackend``), as a call on
the main thread does, instead of waiting out their batches.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from edgegate.backends.base import Backend

T = TypeVar("T")


class Started(Generic[T]):
    """A call on both models that ``Both.start`` began (at once) or put off (in turn)."""

    def __init__(
        self,
        futures: tuple[Future[T], Future[T]] | None = None,
        later: Callable[[], tuple[T, T]] | None = None,
    ) -> None:
        self._futures, self._later = futures, later

    def result(self) -> tuple[T, T]:
        """Both answers, once both calls are over. A failing call raises its error, the dense
        model's first (the other call is joined by ``Both.close``, never left running)."""
        if self._futures is None:
            assert self._later is not None
            return self._later()
        dense, comp = self._futures
        return dense.result(), comp.result()


class Both:
    """Call a function on the dense and on the compressed model: in turn, or, with
    ``at_once``, on two threads. A context manager: leaving it joins every call it began."""

    def __init__(self, dense: Backend, comp: Backend, at_once: bool) -> None:
        self.models = (dense, comp)
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="fidelity") if at_once else None

    def __call__(self, fn: Callable[[Backend], T]) -> tuple[T, T]:
        """Both answers now (at once: the dense model's call on this thread)."""
        if self.pool is None:
            return fn(self.models[0]), fn(self.models[1])
        later = self.pool.submit(fn, self.models[1])
        first = fn(self.models[0])
        return first, later.result()

    def start(self, fn: Callable[[Backend], T]) -> Started[T]:
        """At once: both calls begin on the pool's threads and this thread is free until
        ``result``. In turn: nothing begins before ``result``, which makes both calls, as
        ``__call__`` does (the models work in the order they always did)."""
        if self.pool is None:
            return Started(later=lambda: self(fn))
        return Started(
            futures=(self.pool.submit(fn, self.models[0]), self.pool.submit(fn, self.models[1]))
        )

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Both:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.pool is not None and exc is not None and not isinstance(exc, Exception):
            for be in self.models:  # calls of the pool's threads end with their processes
                abort = getattr(be, "abort", None)
                if callable(abort):
                    abort()
        self.close()
