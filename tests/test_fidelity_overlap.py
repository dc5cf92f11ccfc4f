"""The fidelity pass side by side compares a chunk while both models score the next one
(``fidelity.scored_pass``, ``backends/together.py``): the same bits as in turn, on the real
llama.cpp runtime in its isolated child processes (the fixture GGUFs); in turn nothing
overlaps, as before; a model failing mid-pass raises the error it always raised, with every
thread joined and no call of the other model left running."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgegate import fidelity as fid
from edgegate.backends import available, open_backend
from edgegate.errors import BackendError, InputError
from edgegate.perplexity import Chunking, chunk_text

ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / "fixtures" / "models" / "gguf"
DENSE, WANDA = GGUF / "dense-f16.gguf", GGUF / "wanda50-f16.gguf"
EVAL = ROOT / "fixtures" / "text" / "eval.txt"
pytestmark = pytest.mark.skipif(
    not available("llamacpp"), reason="llama-cpp-python is not installed"
)


@pytest.fixture
def models() -> Iterator[tuple[Any, Any, Chunking]]:
    """Both fixture models, each in its own child process (as the gate opens them), and the
    chunks of a text: 63 scored rows per chunk."""
    opened = [
        open_backend("llamacpp", p, n_ctx=128, threads=1, timeout=300) for p in (DENSE, WANDA)
    ]
    try:
        ch = chunk_text(opened[0], EVAL.read_text()[:6000], 128, "chunked")
        yield opened[0], opened[1], ch
    finally:
        for be in opened:
            be.close()


def _same(a: fid.PassResult, b: fid.PassResult) -> None:
    assert len(a.chunks) == len(b.chunks) > 1
    for s, t in zip(a.chunks, b.chunks, strict=True):
        assert np.array_equal(s.kl, t.kl) and np.array_equal(s.top1, t.top1)
        assert np.array_equal(s.nll_dense, t.nll_dense)
        assert np.array_equal(s.nll_compressed, t.nll_compressed)


def _no_pass_threads() -> bool:
    return not any(t.name.startswith("fidelity") for t in threading.enumerate())


@pytest.mark.parametrize(
    ("row_budget", "handover_rows"),
    [
        (None, None),  # the defaults: one block per chunk, all of it handed over
        (5, 32),  # 5-row blocks: 6 handed over, the 7 others compared before the next chunk
        (5, 0),  # nothing handed over: side by side, compared in turn
    ],
)
def test_overlapped_pass_gives_the_bits_of_in_turn(
    models: tuple[Any, Any, Chunking],
    monkeypatch: pytest.MonkeyPatch,
    row_budget: int | None,
    handover_rows: int | None,
) -> None:
    d, c, ch = models
    if row_budget is not None:
        monkeypatch.setattr(fid, "ROW_BUDGET", row_budget * d.n_vocab)
    if handover_rows is not None:
        monkeypatch.setattr(fid, "HANDOVER_BUDGET", handover_rows * d.n_vocab)
    idx = range(len(ch.chunks))
    turn = fid.scored_pass(d, c, ch, idx)
    both = fid.scored_pass(d, c, ch, idx, side_by_side=True)
    _same(both, turn)
    assert set(both.seconds) == {"dense", "compressed", "compare"}
    assert all(v > 0 for v in both.seconds.values())
    # a subset of the chunks, in any order (a shard's), overlaps the same way
    some = [5, 0, 3]
    _same(fid.scored_pass(d, c, ch, some, side_by_side=True), fid.scored_pass(d, c, ch, some))
    assert fid.scored_pass(d, c, ch, [], side_by_side=True).chunks == ()
    assert _no_pass_threads()


class _Counted:
    """A real backend whose scoring calls are counted as they begin (a spy: same answers)."""

    def __init__(self, be: Any, begun: list[int], lock: threading.Lock) -> None:
        self.be, self.begun, self.lock = be, begun, lock

    def __getattr__(self, name: str) -> Any:
        return getattr(self.be, name)

    def score_tokens_kept(self, tokens: Sequence[int], first: int = 1) -> np.ndarray:
        with self.lock:
            self.begun[0] += 1
        return np.asarray(self.be.score_tokens_kept(tokens, first))


@pytest.mark.parametrize("side_by_side", [True, False])
def test_a_chunk_is_compared_while_the_next_is_scored_side_by_side_only(
    models: tuple[Any, Any, Chunking], monkeypatch: pytest.MonkeyPatch, side_by_side: bool
) -> None:
    """Side by side, chunk k's comparison can wait until both models have begun chunk k + 1
    (it would wait forever if that scoring came after it); in turn, no scoring of the next
    chunk begins before the comparison of this one is over, as before."""
    d, c, ch = models
    begun, lock = [0], threading.Lock()
    n = 6
    compared: list[int] = []  # scoring calls begun when each chunk (one block) was compared
    compare = fid.compare_rows

    def watched(dd: np.ndarray, cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = len(compared)
        if side_by_side and k + 1 < n:
            for _ in range(3000):
                with lock:
                    if begun[0] >= 2 * (k + 2):
                        break
                time.sleep(0.01)
        with lock:
            compared.append(begun[0])
        return compare(dd, cc)

    monkeypatch.setattr(fid, "compare_rows", watched)
    res = fid.scored_pass(
        _Counted(d, begun, lock), _Counted(c, begun, lock), ch, range(n), side_by_side=side_by_side
    )
    assert len(res.chunks) == n
    if side_by_side:
        assert compared == [2 * (k + 2) for k in range(n - 1)] + [2 * n]
    else:
        assert compared == [2 * (k + 1) for k in range(n)]


class _Killed:
    """A real backend whose child process is killed (SIGKILL, as a runtime crash) when its
    ``at``-th chunk is to be scored: the call then fails as a crashed runtime does."""

    def __init__(self, be: Any, at: int) -> None:
        self.be, self.at, self.calls = be, at, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.be, name)

    def score_tokens_kept(self, tokens: Sequence[int], first: int = 1) -> np.ndarray:
        self.calls += 1
        if self.calls == self.at:
            os.kill(self.be.pid, signal.SIGKILL)
        return np.asarray(self.be.score_tokens_kept(tokens, first))


@pytest.mark.parametrize("side_by_side", [True, False])
def test_a_model_crashing_mid_pass_raises_its_error_and_leaves_nothing_running(
    side_by_side: bool,
) -> None:
    """The compressed model's process dies while it scores the third chunk (side by side:
    while this process compares the second): BackendError, as in turn, once the dense
    model's call of that chunk is over; its process answers the next call (no call of it
    was left in flight)."""
    d = open_backend("llamacpp", DENSE, n_ctx=128, threads=1, timeout=300)
    c = open_backend("llamacpp", WANDA, n_ctx=128, threads=1, timeout=300)
    try:
        ch = chunk_text(d, EVAL.read_text()[:6000], 128, "chunked")
        with pytest.raises(BackendError, match=r"crashed|gone"):
            fid.scored_pass(d, _Killed(c, 3), ch, range(6), side_by_side=side_by_side)
        assert _no_pass_threads()
        assert len(d.score_tokens(ch.chunks[0], ch.first)) == len(ch.chunks[0]) - ch.first
    finally:
        d.close()
        c.close()


class _Torn:
    """A real backend that hands over one row too few of its ``at``-th chunk's logits (a
    fault no real runtime here makes on demand): the comparison of that chunk fails."""

    def __init__(self, be: Any, at: int) -> None:
        self.be, self.at, self.chunk = be, at, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.be, name)

    def score_tokens_kept(self, tokens: Sequence[int], first: int = 1) -> np.ndarray:
        self.chunk += 1
        return np.asarray(self.be.score_tokens_kept(tokens, first))

    def kept_logits(self, start: int, stop: int) -> np.ndarray:
        rows = np.asarray(self.be.kept_logits(start, stop))
        return rows[1:] if self.chunk == self.at else rows


@pytest.mark.parametrize("side_by_side", [True, False])
def test_a_comparison_failing_mid_pass_joins_the_scoring_of_the_next_chunk(
    models: tuple[Any, Any, Chunking], side_by_side: bool
) -> None:
    """The comparison of the second chunk fails (side by side: on this thread while both
    models score the third chunk): the same InputError as in turn, the threads joined, and
    both models' calls over (each answers the next call)."""
    d, c, ch = models
    with pytest.raises(InputError, match="differ in shape"):
        fid.scored_pass(d, _Torn(c, 2), ch, range(6), side_by_side=side_by_side)
    assert _no_pass_threads()
    for be in (d, c):
        assert len(be.score_tokens(ch.chunks[1], ch.first)) == len(ch.chunks[1]) - ch.first
