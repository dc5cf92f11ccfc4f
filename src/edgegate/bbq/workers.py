"""Score batches on several processes of one model at once (see backends/pool.py for when).

Each worker thread drives one backend process through its own ``Scorer`` and hands finished
batches to the calling thread, which alone commits them (the result cache's SQLite handle
and the progress display belong to it). A worker's failure stops the others after their
current batch and is raised in the caller; so is an interrupt of the caller.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, Union

if TYPE_CHECKING:
    from edgegate.bbq.metrics import Answer

B = TypeVar("B")
_Msg = Union["list[Answer]", "_Notice", BaseException, None]


@dataclass(frozen=True)
class _Notice:
    text: str  # said by the caller (the progress display is its own)


class Unavailable(Exception):
    """A worker that could not start (its process did not open): its batch goes back to the
    others, and the run goes on with fewer processes."""


def run(
    workers: Sequence[Callable[[B], list[Answer]]],
    batches: Sequence[B],
    commit: Callable[[list[Answer]], None],
    log: Callable[[str], None] = lambda _: None,
) -> None:
    """Score ``batches`` on ``workers`` (one callable per process; the first must work),
    committing each batch's answers in this thread as it arrives. Batches are taken in
    order from one queue, so a process slowed by another job on its core takes fewer."""
    if len(workers) == 1:
        for b in batches:
            commit(workers[0](b))
        return
    todo: queue.SimpleQueue[B] = queue.SimpleQueue()
    for b in batches:
        todo.put(b)
    # a worker's messages: one batch's answers, a notice, its error, or None when it has finished
    inbox: queue.Queue[_Msg] = queue.Queue()
    stop = threading.Event()

    def work(score: Callable[[B], list[Answer]]) -> None:
        try:
            while not stop.is_set():
                try:
                    b = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    inbox.put(score(b))
                except Unavailable as e:
                    todo.put(b)
                    inbox.put(_Notice(f"{e}; going on with the other processes"))
                    return
        except BaseException as e:  # handed to the caller, raised there
            inbox.put(e)
        finally:
            inbox.put(None)

    threads = [
        threading.Thread(target=work, args=(w,), daemon=True, name=f"bbq-worker-{i}")
        for i, w in enumerate(workers)
    ]
    for t in threads:
        t.start()
    _collect(inbox, len(threads), commit, log, stop, threads)
    # a batch handed back by a process that failed to open after the others had finished
    while True:
        try:
            b = todo.get_nowait()
        except queue.Empty:
            return
        commit(workers[0](b))


def _collect(
    inbox: queue.Queue[_Msg],
    live: int,
    commit: Callable[[list[Answer]], None],
    log: Callable[[str], None],
    stop: threading.Event,
    threads: list[threading.Thread],
) -> None:
    failed: BaseException | None = None
    try:
        while live:
            try:  # a timeout keeps the caller responsive to signals
                msg = inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            if msg is None:
                live -= 1
            elif isinstance(msg, BaseException):
                failed = msg
                break
            elif isinstance(msg, _Notice):
                log(msg.text)
            else:
                commit(msg)
    finally:
        stop.set()  # the others finish the batch in hand (each call has its deadline)
        for t in threads:
            t.join()
    if failed is not None:
        # what the others finished is kept (a rerun resumes after it), then the error
        while not inbox.empty():
            msg = inbox.get_nowait()
            if isinstance(msg, list):
                commit(msg)
        raise failed
