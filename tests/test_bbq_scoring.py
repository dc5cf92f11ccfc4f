"""Scoring logic, the result cache and kill-and-resume, on the FAKE backend of
test_bbq_fakebackend.py (labelled there: it controls which answers the "model" prefers).
Real-runtime scoring is tested in test_bbq_e2e.py."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _support import count_answers
from test_bbq_fakebackend import FakeBackend

from edgegate.bbq import prompts
from edgegate.bbq.cache import ResultCache
from edgegate.bbq.dataset import BBQItem, load
from edgegate.bbq.metrics import model_metrics
from edgegate.bbq.scoring import ScoreConfig, Scorer, encode
from edgegate.bbq.targets import derive_all
from edgegate.errors import BackendError, InputError

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "bbq"


@pytest.fixture(scope="module")
def items() -> list[BBQItem]:
    return load(FIXTURES, condition="both")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    p = tmp_path / "model.bin"
    p.write_bytes(b"fake weights")
    return p


def _expected(fake: FakeBackend, it: BBQItem) -> int:
    return int(np.argmax([fake.preference(a) for a in it.answers]))


@pytest.mark.parametrize("chat", [False, True])
def test_letter_mode_picks_the_models_top_letter(
    items: list[BBQItem], model: Path, chat: bool
) -> None:
    fake = FakeBackend(model, seed=3, chat=chat)
    answers = Scorer(fake, ScoreConfig(batch_size=5)).score(items)
    assert [a.uid for a in answers] == [it.uid for it in items]  # item order kept
    assert [a.choice for a in answers] == [_expected(fake, it) for it in items]
    assert fake.calls == len(items)


def test_permutation_exposes_position_bias(items: list[BBQItem], model: Path) -> None:
    # a model that always says "A": with rotations its choice follows the position, so each item
    # gets each answer once and SRS is exactly 1/3; without rotation it would look like a bias
    fake = FakeBackend(model, position_bias={"A": 100.0})
    answers = Scorer(fake, ScoreConfig(permute=True)).score(items)
    assert len(answers) == 3 * len(items)
    assert all(a.choice == prompts.order(a.rotation)[0] == a.rotation for a in answers)
    d = derive_all(items)
    m = model_metrics(answers, {it.uid: it for it in items}, d.targets)
    assert m["overall"].srs == pytest.approx(1 / 3)


def test_low_letter_mass_is_a_counted_parse_failure(items: list[BBQItem], model: Path) -> None:
    fake = FakeBackend(model, other_logit=50.0)  # almost all mass on non-letter tokens
    answers = Scorer(fake, ScoreConfig(min_letter_mass=0.5)).score(items)
    assert all(a.choice is None for a in answers)
    d = derive_all(items)
    m = model_metrics(answers, {it.uid: it for it in items}, d.targets)
    assert m["overall"].n_failures == len(items) and m["overall"].srs is None


def test_loglik_mode(items: list[BBQItem], model: Path) -> None:
    fake = FakeBackend(model, seed=11)
    answers = Scorer(fake, ScoreConfig(mode="loglik", permute=True)).score(items)
    assert len(answers) == len(items)  # rotation is meaningless without letters
    assert [a.choice for a in answers] == [_expected(fake, it) for it in items]


def test_sampled_mode_seeds_and_failures(items: list[BBQItem], model: Path) -> None:
    fake = FakeBackend(model, garbage_every=4)
    cfg = ScoreConfig(seeds=3, temperature=1.0)
    answers = Scorer(fake, cfg).score(items)
    assert len(answers) == 3 * len(items)
    assert sum(a.choice is None for a in answers) == (3 * len(items)) // 4
    # same seeds again (fresh fake, same garbage schedule): identical answers
    again = Scorer(FakeBackend(model, garbage_every=4), cfg).score(items)
    assert [a.choice for a in again] == [a.choice for a in answers]
    # temperature 0 asks once whatever --seeds says
    assert ScoreConfig(seeds=5).seed_list() == [0]


def test_parse_letter() -> None:
    assert prompts.parse_letter(" B.") == 1
    assert prompts.parse_letter("(C) The man") == 2
    assert prompts.parse_letter("A") == 0
    assert prompts.parse_letter("I think so") is None
    assert prompts.parse_letter("Answer") is None


def test_bad_config() -> None:
    with pytest.raises(InputError):
        ScoreConfig(mode="guess")
    with pytest.raises(InputError):
        ScoreConfig(mode="loglik", temperature=0.7)


def test_nan_from_backend_is_a_backend_error(items: list[BBQItem], model: Path) -> None:
    class NaNBackend(FakeBackend):
        def next_token_logprobs(self, prompts, candidates):  # type: ignore[no-untyped-def]
            return np.full((len(prompts), len(candidates)), np.nan)

    with pytest.raises(BackendError, match="NaN"):
        Scorer(NaNBackend(model), ScoreConfig()).score(items[:2])


def test_bos_not_doubled_by_chat_text(model: Path) -> None:
    class BosInText(FakeBackend):
        def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
            ids = [1 if c == "\x01" else ord(c) for c in text]
            return [1, *ids] if add_special else ids

    fake = BosInText(model)
    assert encode(fake, "\x01hi", chat=True) == [1, ord("h"), ord("i")]
    assert encode(fake, "hi", chat=True) == [1, ord("h"), ord("i")]


def test_cache_makes_rerun_free(items: list[BBQItem], model: Path, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c.sqlite")
    first = Scorer(FakeBackend(model, seed=1), ScoreConfig(), cache=cache).score(items)
    fake2 = FakeBackend(model, seed=1)
    second = Scorer(fake2, ScoreConfig(), cache=cache).score(items)
    assert fake2.calls == 0 and second == first
    # another prompt mode is another key
    fake3 = FakeBackend(model, seed=1)
    Scorer(fake3, ScoreConfig(mode="loglik"), cache=cache).score(items)
    assert fake3.calls == 3 * len(items)  # three continuations per item
    # a changed model file is another model
    model.write_bytes(b"other weights")
    fake4 = FakeBackend(model, seed=1)
    Scorer(fake4, ScoreConfig(), cache=cache).score(items)
    assert fake4.calls == len(items)
    mode = sqlite3.connect(tmp_path / "c.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    cache.close()


_count = count_answers


def test_kill_and_resume(items: list[BBQItem], model: Path, tmp_path: Path) -> None:
    db, log1, log2 = tmp_path / "r.sqlite", tmp_path / "log1", tmp_path / "log2"
    script = HERE / "test_bbq_fakebackend.py"
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(FIXTURES), str(db), str(log1), str(model), "0.1"], env=env
    )
    deadline = time.time() + 60
    while _count(db) < 8 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up
    proc.wait()
    committed = _count(db)
    assert 8 <= committed < len(items), "the run must be killed mid-way"
    # resume: only the missing units are scored, nothing committed is scored again
    done = subprocess.run(
        [sys.executable, str(script), str(FIXTURES), str(db), str(log2), str(model)],
        env=env,
        timeout=120,
    )
    assert done.returncode == 0
    assert len(log2.read_text().splitlines()) == len(items) - committed
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT uid, seed, rotation, COUNT(*) FROM answers GROUP BY uid, seed, rotation"
    ).fetchall()
    assert len(rows) == len(items) and all(r[3] == 1 for r in rows)
    con.close()
    # final answers and metrics equal an uninterrupted run
    cache = ResultCache(db)
    resumed = Scorer(FakeBackend(model), ScoreConfig(batch_size=4), cache=cache).score(items)
    cache.close()
    clean = Scorer(FakeBackend(model), ScoreConfig(batch_size=4)).score(items)
    assert resumed == clean
    d = derive_all(items)
    by = {it.uid: it for it in items}
    assert model_metrics(resumed, by, d.targets) == model_metrics(clean, by, d.targets)


def test_prompt_longer_than_context_is_a_counted_failure(items: list[BBQItem], model: Path) -> None:
    fake = FakeBackend(model)
    n_chars = [len(fake.tokenize(prompts.letter_plain(it))) for it in items]
    fake.n_ctx = sorted(n_chars)[len(items) // 2]  # about half the prompts fit
    answers = Scorer(fake, ScoreConfig()).score(items)
    failed = [a for a in answers if a.choice is None]
    assert len(failed) == sum(n > fake.n_ctx for n in n_chars) > 0
    assert all("tokens >" in a.detail for a in failed)
    assert fake.calls == len(items) - len(failed)


def test_minimal_work_counts_each_distinct_prefix_once() -> None:
    """The denominator-free half of work efficiency: a shared prefix (system prompt, a context
    shared by its answers) counts once; efficiency = minimal / evaluated."""
    from edgegate.bbq.scoring import Work, _PrefixCount

    pc = _PrefixCount()
    pc.add([1, 2, 3, 4])
    pc.add([1, 2, 3, 5])  # shares 3 positions
    pc.add([1, 2, 3, 4])  # nothing new
    pc.add([9])
    assert pc.nodes == 6
    assert Work(tokens_evaluated=12, minimal_tokens=6).efficiency == 0.5
