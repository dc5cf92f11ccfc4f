"""SIGINT and SIGTERM end a run promptly and cleanly.

Python turns SIGINT into ``KeyboardInterrupt``; SIGTERM (what CI systems send on cancel or
timeout) has no Python handler by default and ended the gate on the spot, skipping every
``finally``: the runtime child process then ran on until its batch ended. ``handling_signals``
makes SIGTERM raise ``Terminated``, which, like ``KeyboardInterrupt``, is a ``BaseException``:
checks do not catch it, every ``with``/``finally`` runs (an open SQLite transaction rolls
back, so the answer cache keeps whole batches only), and the isolated backends kill their
child processes instead of waiting for a batch to finish. The CLI exits 130 (SIGINT) or 143
(SIGTERM), the shell's convention of 128 + the signal number.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(BaseException):
    """SIGTERM arrived; raised in the main thread like ``KeyboardInterrupt``."""

    exit_code = 128 + int(signal.SIGTERM)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def handling_signals() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` (and SIGINT ``KeyboardInterrupt``) while the block runs;
    the previous handlers come back afterwards. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, _raise_terminated)
    if before[signal.SIGINT] is signal.SIG_IGN or before[signal.SIGINT] is None:
        pass  # ignored on purpose (nohup, a background job): keep it so
    else:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for s, h in before.items():
            if h is not None:
                signal.signal(s, h)


__all__ = ["Terminated", "handling_signals"]
