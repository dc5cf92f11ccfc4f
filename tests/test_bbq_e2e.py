"""BBQ end to end on real runtimes and the real fixture models (tiny trained Llama, dense and
Wanda-pruned), on the project's own BBQ-format fixture items."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import count_answers

from edgegate.backends import open_backend
from edgegate.bbq import prompts
from edgegate.bbq.cache import ResultCache
from edgegate.bbq.dataset import BBQItem, load
from edgegate.bbq.scoring import ScoreConfig, Scorer
from edgegate.cli import main

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "fixtures" / "models"
ITEMS = REPO / "fixtures" / "bbq"

# runtime -> (dense, compressed) model paths it loads natively
PAIRS = {
    "mlx": (MODELS / "dense", MODELS / "wanda50"),
    # llama.cpp converts the pruned HF folder to GGUF itself (into --cache-dir)
    "llamacpp": (MODELS / "gguf" / "dense-f16.gguf", MODELS / "wanda50"),
}


@pytest.fixture(scope="module")
def items() -> list[BBQItem]:
    return load(ITEMS, condition="both")


@pytest.fixture(scope="module", params=["mlx", "llamacpp"])
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def dense(runtime: str) -> Iterator[Any]:
    b = open_backend(runtime, PAIRS[runtime][0], n_ctx=512, threads=2)
    yield b
    b.close()


def test_letter_answers_match_direct_backend_calls(dense: Any, items: list[BBQItem]) -> None:
    items = items[::3]  # 11 of the 32 items keep the file fast
    answers = Scorer(dense, ScoreConfig(batch_size=4)).score(items)
    letters = [dense.tokenize(x, add_special=False) for x in prompts.LETTERS]
    assert all(len(t) == 1 for t in letters)
    for it, a in zip(items, answers, strict=True):
        text = dense.chat_prompt(prompts.SYSTEM, prompts.letter_user(it, 0))
        assert text is not None  # the fixture tokenizer has a chat template
        toks = dense.tokenize(text, add_special=False)  # the template writes <|bos|> itself
        lp = dense.next_token_logprobs([toks], [t[0] for t in letters])[0]
        want = int(np.argmax(lp))
        if a.choice != want:  # " A"-style variants may add mass; recompute with them
            detail = json.loads(a.detail)["lp"]
            assert int(np.argmax(detail)) == a.choice
        assert a.choice in (0, 1, 2)
        mass = json.loads(a.detail)["mass"]
        assert 0.0 < mass <= 1.0 + 1e-6 and mass >= math.exp(float(np.max(lp))) - 1e-4


def test_loglik_answers_match_direct_backend_calls(dense: Any, items: list[BBQItem]) -> None:
    sub = items[:6]
    answers = Scorer(dense, ScoreConfig(mode="loglik")).score(sub)
    for it, a in zip(sub, answers, strict=True):
        ctx = dense.tokenize(prompts.loglik_context(it), add_special=True)
        lps = []
        for ans in it.answers:
            whole = dense.tokenize(prompts.loglik_context(it) + " " + ans, add_special=True)
            assert whole[: len(ctx)] == ctx
            lps.append(dense.loglikelihood([(ctx, whole[len(ctx) :])])[0].logprob)
        assert a.choice == int(np.argmax(lps))


def test_cli_run_dense_vs_pruned(
    runtime: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d, c = PAIRS[runtime]
    args = [
        "bbq",
        "run",
        str(d),
        str(c),
        "--runtime",
        runtime,
        "--data",
        str(ITEMS),
        "--items",
        "0",
        "--min-items",
        "5",
        "--threads",
        "2",
        "--cache-dir",
        str(tmp_path),
        "--json",
    ]
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    assert code in (0, 1), out.err
    res = json.loads(out.out)
    m = res["measurements"]
    # 16 ambiguous items judged for bias, plus the 16 disambiguated ones for validity/accuracy
    assert (
        m["data"]["n_used"] == 32
        and m["data"]["n_disambig"] == 16
        and m["data"]["excluded"]["count"] == 0
    )
    assert m["overall"]["n"] == 16 and m["validity"]["status"] in ("valid", "invalid", "unverified")
    # options rotated three ways by default: 16 x 3 answer pairs; each model's letter profile
    assert sum(sum(r.values()) for r in m["transitions"]["matrix"].values()) == 48
    assert sum(m["position_profiles"]["dense"]["counts"].values()) <= 96
    if m["judged"]:
        assert set(m["delta_srs_by_category"]) == {
            "Age",
            "Disability_status",
            "Physical_appearance",
        }
    for v in res["verdicts"]:
        if v["status"] == "skipped":
            continue  # a verdict not judged says why in its message
        assert (
            v["n"] is not None
            and v["test"]
            and v["ci"] is not None
            and v["effect_size"] is not None
        )
    # exit 1 exactly when the result is not a pass (fail, error, or inconclusive: never a pass)
    assert code == (0 if res["status"] == "pass" else 1)
    # everything is cached: both models' 32 items x 3 rotations, and a re-run asks the runtime nothing
    cache = ResultCache(tmp_path / "bbq.sqlite")
    assert cache.db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 192
    cache.close()

    def must_not_open(*a: object, **k: object) -> None:
        raise AssertionError("the re-run opened a runtime although every answer is cached")

    monkeypatch.setattr("edgegate.checks.bbq.open_for_bbq", must_not_open)
    with contextlib.suppress(SystemExit):
        main(args)
    again = json.loads(capsys.readouterr().out)["measurements"]
    # the same measurements; the re-run says every answer came from the cache
    assert again.pop("result_cache") == {
        r: {"answers": 96, "from_cache": 96} for r in ("dense", "compressed")
    }
    assert m.pop("result_cache") == {
        r: {"answers": 96, "from_cache": 0} for r in ("dense", "compressed")
    }
    assert (
        set(m.pop("work")) == {"dense", "compressed"} and "work" not in again
    )  # cached answers cost nothing
    assert again == m


def test_sampled_mode_scores_a_dense_vs_dense_null_with_fresh_seeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sampled letters (the paper preset's mode) on llama.cpp: the dense model is scored a second
    time with seeds 2..3, paired to the compressed model's seeds 0..1, and emergence is judged
    against that null."""
    d, c = PAIRS["llamacpp"]
    args = [
        "bbq",
        "run",
        str(d),
        str(c),
        "--runtime",
        "llamacpp",
        "--data",
        str(ITEMS),
        "--items",
        "0",
        "--min-items",
        "5",
        "--threads",
        "2",
        "--cache-dir",
        str(tmp_path),
        "--json",
        "--allow-inconclusive",
        "--temperature",
        "0.7",
        "--seeds",
        "2",
        "--no-permute",
        "--disambig-items",
        "0",
    ]
    with contextlib.suppress(SystemExit):
        main(args)
    res = json.loads(capsys.readouterr().out)
    m = res["measurements"]
    em = m["emergence"]
    assert "null_emerged" in em and em["only_compressed"] + em["only_null"] <= em["dense_srs0"]
    assert m["position_profiles"]["dense"]["rotations"] == [0]
    # 16 items x 2 seeds for each of dense, compressed and the null run (seeds 2 and 3)
    con = sqlite3.connect(tmp_path / "bbq.sqlite")
    seeds = sorted(r[0] for r in con.execute("SELECT DISTINCT seed FROM answers"))
    total = con.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    con.close()
    assert seeds == [0, 1, 2, 3] and total == 16 * 2 * 3


_HOOKED_MAIN = (
    f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent / 'hostile')!r}); "
    "import _signal_hook; from edgegate.cli import main; main()"
)


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_kill_and_resume_real_llamacpp(tmp_path: Path, workers: str) -> None:
    """`edgegate bbq run` on llama.cpp, SIGKILLed while held after its second committed batch
    (tests/hostile/_signal_hook: no race with a run that ends in seconds), then re-run:
    no answer lost or stored twice, and the result equals an uninterrupted run's. With two
    scoring processes per model the other process is mid-batch when the kill lands."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    d, c = PAIRS["llamacpp"]

    def cmd(cache: Path, *, held: bool = False) -> list[str]:
        # held: the CLI under tests/hostile/_signal_hook, which stops after a committed batch
        # (EDGEGATE_HOOK_HOLD_AFTER_PUTS) so the kill lands mid-run without a race
        start = ["-c", _HOOKED_MAIN] if held else ["-m", "edgegate.cli"]
        return [
            sys.executable,
            *start,
            "bbq",
            "run",
            str(d),
            str(c),
            "--data",
            str(ITEMS),
            "--items",
            "0",
            "--condition",
            "both",
            "--min-items",
            "5",
            "--runtime",
            "llamacpp",  # auto would pick transformers for the HF folder
            "--threads",
            "1",
            "--workers",
            workers,
            "--cache-dir",
            str(cache),
            "--json",
        ]

    count = count_answers
    db = tmp_path / "a" / "bbq.sqlite"
    marker = tmp_path / "held"
    env = {**os.environ, "EDGEGATE_HOOK_HOLD_AFTER_PUTS": "2", "EDGEGATE_HOOK_MARKER": str(marker)}
    proc = subprocess.Popen(
        cmd(tmp_path / "a", held=True),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the run never reached its second committed batch"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    total = 32 * 2 * 3  # items x models x option rotations (letter mode)
    assert 0 < count(db) < total, "killed mid-way"
    resumed = subprocess.run(cmd(tmp_path / "a"), capture_output=True, text=True, timeout=600)
    clean = subprocess.run(cmd(tmp_path / "b"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == clean.returncode and resumed.returncode in (0, 1), resumed.stderr
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT model, uid, seed, rotation, COUNT(*) FROM answers GROUP BY model, uid, seed, rotation"
    ).fetchall()
    con.close()
    assert len(rows) == total and all(r[-1] == 1 for r in rows)
    got, want = json.loads(resumed.stdout)["measurements"], json.loads(clean.stdout)["measurements"]
    # the resumed run scored only what the killed one had not committed, and says so
    reuse = got.pop("result_cache")
    assert want.pop("result_cache")["dense"]["from_cache"] == 0
    got.pop("work", None)
    want.pop("work")
    assert got == want
    cached, total = (sum(r[k] for r in reuse.values()) for k in ("from_cache", "answers"))
    assert 0 < cached < total


def test_a_warm_run_scores_only_the_compressed_side(tmp_path: Path) -> None:
    """The CI pattern of action.yml's results cache: the dense model's answers kept between
    runs; the next run (another compressed model) scores only the compressed side, and the
    report says how many answers came from the cache. Null: a run on a cold cache reuses none."""
    import subprocess
    import sys

    d, c = PAIRS["llamacpp"]

    def run(comp: Path) -> dict[str, Any]:
        cmd = [
            sys.executable,
            "-m",
            "edgegate.cli",
            "bbq",
            "run",
            str(d),
            str(comp),
            "--data",
            str(ITEMS),
            "--items",
            "0",
            "--min-items",
            "5",
            "--threads",
            "2",
            "--cache-dir",
            str(tmp_path),
            "--json",
            "--allow-inconclusive",
            "--runtime",
            "llamacpp",
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert r.returncode in (0, 1), r.stderr
        return dict(json.loads(r.stdout)["measurements"])

    cold = run(c)
    assert (
        cold["result_cache"]["dense"]["from_cache"] == 0
        and cold["result_cache"]["compressed"]["from_cache"] == 0
    )
    # work efficiency of the scoring this run did: both models scored, each evaluated at least
    # the minimum (every distinct prompt prefix once) and said how close it came
    assert set(cold["work"]) == {"dense", "compressed"}
    for w in cold["work"].values():
        assert 0 < w["minimal_tokens"] <= w["tokens_evaluated"] and w["efficiency"] == round(
            w["minimal_tokens"] / w["tokens_evaluated"], 4
        )
    warm = run(MODELS / "gguf" / "claimed50-f16.gguf")
    assert (
        warm["result_cache"]["dense"]["from_cache"] == warm["result_cache"]["dense"]["answers"] > 0
    )
    assert warm["result_cache"]["compressed"]["from_cache"] == 0
    assert set(warm["work"]) == {"compressed"}  # the dense side cost nothing


def test_sequential_looks_on_a_null_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The known null of the group-sequential loop (bbq/sequential.py) on real llama.cpp: the
    dense model against its byte-identical copy is scored in three looks, never stops early,
    and every verdict equals a --fixed-n run's (same items, same answers, same rule)."""
    import shutil

    d = PAIRS["llamacpp"][0]
    copy = tmp_path / "copy" / "dense-copy.gguf"
    copy.parent.mkdir()
    shutil.copyfile(d, copy)

    def run(*extra: str) -> dict[str, Any]:
        with contextlib.suppress(SystemExit):
            main(
                [
                    "bbq",
                    "run",
                    str(d),
                    str(copy),
                    "--runtime",
                    "llamacpp",
                    "--data",
                    str(ITEMS),
                    "--items",
                    "0",
                    "--min-items",
                    "5",
                    "--threads",
                    "2",
                    "--cache-dir",
                    str(tmp_path / "cache"),
                    "--json",
                    "--mode",
                    "loglik",
                    *extra,
                ]
            )
        return dict(json.loads(capsys.readouterr().out))

    seq, fixed = run(), run("--fixed-n")
    rec = seq["measurements"].pop("sequential")
    assert rec["looks_planned"] == 3 and len(rec["looks"]) == 3 and not rec["stopped_early"]
    assert [lk["n_ambig"] for lk in rec["looks"]] == sorted(lk["n_ambig"] for lk in rec["looks"])
    assert rec["looks"][-1]["n_ambig"] == 16 and all(lk["crossed"] == [] for lk in rec["looks"])
    assert fixed["measurements"].pop("sequential")["why"].startswith("fixed n")
    assert seq["verdicts"] == fixed["verdicts"] and seq["status"] == fixed["status"]
