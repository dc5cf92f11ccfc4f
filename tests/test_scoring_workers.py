"""One model scored on several processes at once (bbq/workers.py, backends/pool.py): the
answers are the same bits as on one process, every batch is committed exactly once, a
process that does not open leaves its work to the others, and a failure is raised after
what the others finished is kept."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgegate.backends import available, open_backend
from edgegate.backends.pool import (
    PARALLEL_RUNTIMES,
    available_memory,
    scoring_processes,
    usable_cpus,
)
from edgegate.bbq import workers
from edgegate.bbq.cache import ResultCache
from edgegate.bbq.dataset import load, stratified_sample
from edgegate.bbq.metrics import Answer
from edgegate.bbq.scoring import Pool, ScoreConfig, score_model

ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / "fixtures" / "models" / "gguf"
REAL = ROOT.parent / "shared" / "bbq" / "data"  # ../shared/bbq/data: never copied into the repo


def _answers(batch: list[int]) -> list[Answer]:
    return [Answer(f"u{i}", 0, 0, i % 3, "") for i in batch]


def _committed() -> tuple[list[int], Callable[[list[Answer]], None]]:
    got: list[int] = []
    owner = threading.get_ident()

    def commit(answers: list[Answer]) -> None:
        assert threading.get_ident() == owner  # only the caller touches the cache
        got.extend(int(a.uid[1:]) for a in answers)

    return got, commit


def test_every_batch_is_committed_once_by_the_caller() -> None:
    batches = [[i, i + 100] for i in range(23)]
    got, commit = _committed()
    workers.run([_answers, _answers, _answers], batches, commit)
    assert sorted(got) == sorted(x for b in batches for x in b)


def test_a_process_that_does_not_open_leaves_its_batch_to_the_others() -> None:
    said: list[str] = []
    tried = threading.Event()

    def first(batch: list[int]) -> list[Answer]:
        tried.wait(10)  # holds its first batch until the other process has taken one
        return _answers(batch)

    def unavailable(batch: list[int]) -> list[Answer]:
        tried.set()
        raise workers.Unavailable("a second process did not open")

    got, commit = _committed()
    batches = [[i] for i in range(9)]
    workers.run([first, unavailable], batches, commit, log=said.append)
    assert sorted(got) == list(range(9))
    assert said and "did not open" in said[0]


def test_a_failure_is_raised_after_the_others_work_is_kept() -> None:
    gate = threading.Event()
    done: list[int] = []
    lost: list[int] = []

    def first(batch: list[int]) -> list[Answer]:
        gate.wait(10)  # its first batch ends after the other process has failed
        done.extend(batch)
        return _answers(batch)

    def broken(batch: list[int]) -> list[Answer]:
        lost.extend(batch)
        gate.set()
        raise RuntimeError("the runtime crashed")

    got, commit = _committed()
    with pytest.raises(RuntimeError, match="crashed"):
        workers.run([first, broken], [[1], [2], [3], [4]], commit)
    # everything the working process finished is committed (a rerun resumes after it)
    assert sorted(got) == sorted(done) and done and len(lost) == 1
    assert lost[0] not in got


def test_pool_size(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"\0" * 1024)
    assert scoring_processes("llamacpp", model, threads=1, requested=3).processes == 3
    assert scoring_processes("transformers", model, threads=None).processes == 1
    one_per_cpu = scoring_processes("llamacpp", model, threads=1, cpus=[0, 1])
    assert one_per_cpu.processes == 2, one_per_cpu.reason
    # several processes are opened with their threads said: a runtime's default for batches
    # (llama-cpp-python: every CPU) would have each process wait on the others' cores
    assert one_per_cpu.threads == 1
    asked = scoring_processes("llamacpp", model, threads=None, requested=2, cpus=[0, 1, 2, 3])
    assert (asked.processes, asked.threads) == (2, 2)
    assert scoring_processes("llamacpp", model, threads=2, cpus=[0, 1]).processes == 1
    huge = tmp_path / "huge.gguf"
    with open(huge, "wb") as f:  # a sparse file: its size, no disk
        f.truncate(2 * (available_memory() or 1 << 40))
    bound = scoring_processes("llamacpp", huge, threads=1, cpus=[0, 1])
    assert bound.processes == 1 and "free memory" in bound.reason
    assert "llamacpp" in PARALLEL_RUNTIMES and usable_cpus() >= 1


def _score(name: str, mode: str, processes: int, cache_dir: Path) -> Any:
    path = GGUF / name
    items = stratified_sample(load(REAL, condition="ambig"), 24, seed=3)

    def open_one(n_ctx: int = 512) -> Any:
        return open_backend("llamacpp", path, n_ctx=n_ctx, threads=1, timeout=300)

    return score_model(
        open_one,
        path,
        "llamacpp",
        items,
        ScoreConfig(mode=mode, batch_size=3, permute=mode == "letter"),
        ResultCache(cache_dir / "bbq.sqlite"),
        pool=Pool(processes, open_one),
    )


@pytest.mark.skipif(not available("llamacpp"), reason="llama-cpp-python is not installed")
@pytest.mark.parametrize(
    ("name", "mode"), [("dense-f16.gguf", "loglik"), ("dense-q8_0.gguf", "letter")]
)
def test_two_processes_give_the_answers_of_one(name: str, mode: str, tmp_path: Path) -> None:
    one = _score(name, mode, 1, tmp_path / "one")
    two = _score(name, mode, 2, tmp_path / "two")
    assert (one.processes, two.processes) == (1, 2)
    assert two.scored_here == one.scored_here == len(one.answers)
    # the same answers, log-probabilities included, to the last rounded digit
    assert two.answers == one.answers
    assert one.work is not None and two.work is not None
    # the second process evaluated its share: the total covers every answer's positions
    assert two.work.minimal_tokens == one.work.minimal_tokens
    assert two.work.tokens_evaluated >= one.work.tokens_evaluated * 0.95
