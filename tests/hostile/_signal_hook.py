"""Test hooks for interrupting a real ``edgegate`` run at a known point (no race).

Imported by the interpreter that runs the CLI (``python -c "import _signal_hook; ..."``),
configured by environment variables:

``EDGEGATE_HOOK_HANG_RUNTIME=MARKER``
    Registers ``llamacpp`` as a runtime that loads instantly, tokenizes, and then never
    finishes a scoring call: the first one writes its process id to MARKER and sleeps. It runs
    in edgegate's isolated child process like any runtime. This stands for a long native
    batch (a real one on the tiny fixtures ends in milliseconds, too soon to interrupt).

``EDGEGATE_HOOK_HOLD_AFTER_PUTS=N`` with ``EDGEGATE_HOOK_MARKER=MARKER``
    After the N-th batch of BBQ answers this process commits to the cache, writes MARKER and
    waits (interruptibly) for a signal: the run cannot finish before the test interrupts it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any


class HangingBackend:
    runtime = "llamacpp"

    def __init__(self, path: Path, **_: object) -> None:
        self.model_path = Path(path)
        self.n_ctx = 512
        self.n_vocab = 1000
        self.load_s = 0.0

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return [1 + sum(map(ord, w)) % 900 for w in text.split()] or [
            1
        ]  # the same in every process

    def detokenize(self, ids: list[int]) -> str:
        return " ".join(map(str, ids))

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        return None

    def _hang(self, *args: Any, **kwargs: Any) -> Any:
        marker = Path(os.environ["EDGEGATE_HOOK_HANG_RUNTIME"])
        # one name per process: with both models' processes hanging (the fidelity pass side by
        # side) two of them write the marker, and a shared temporary name made one fail
        tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
        tmp.write_text(str(os.getpid()))
        tmp.replace(marker)  # appears whole
        time.sleep(3600)

    token_logprobs = score_tokens = score_tokens_kept = next_token_logprobs = loglikelihood = _hang
    generate = time_run = _hang

    def info(self) -> dict[str, Any]:
        return {"runtime": "llamacpp"}

    def close(self) -> None:
        pass


def _install() -> None:
    # These tests send SIGINT as a terminal's Ctrl-C does. A test run started in the background
    # (`cmd &`, nohup) hands its children SIGINT *ignored*, and the gate rightly keeps an
    # ignored SIGINT ignored (edgegate.signals): the gate under test must start as a
    # foreground program would, with Python's own SIGINT handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.environ.get("EDGEGATE_HOOK_HANG_RUNTIME"):
        from edgegate.backends import RuntimeSpec, register_runtime

        register_runtime(RuntimeSpec("llamacpp", f"{__name__}:HangingBackend", (), "llamacpp"))
    hold = os.environ.get("EDGEGATE_HOOK_HOLD_AFTER_PUTS")
    if hold:
        from edgegate.bbq.cache import ResultCache

        put = ResultCache.put
        done = [0]

        def put_then_hold(self: ResultCache, *args: Any, **kwargs: Any) -> None:
            put(self, *args, **kwargs)  # committed before the hold
            done[0] += 1
            if done[0] == int(hold):
                Path(os.environ["EDGEGATE_HOOK_MARKER"]).write_text(str(os.getpid()))
                time.sleep(3600)

        ResultCache.put = put_then_hold  # type: ignore[method-assign]


_install()
