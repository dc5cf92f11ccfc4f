"""Two runs sharing a result cache score the dense model once: the second waits for the first
and reuses its answers. Real `edgegate bbq run` processes on the fixture GGUFs and real BBQ
items; the order is forced by holding the scoring lock in the test until both runs wait on it,
so the outcome does not depend on how fast the machine is."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from edgegate.bbq import prompts
from edgegate.bbq.cache import ResultCache

REPO = Path(__file__).resolve().parents[1]
GGUF = REPO / "fixtures" / "models" / "gguf"
DENSE, COMP = GGUF / "dense-f16.gguf", GGUF / "wanda50-f16.gguf"
WAITING = "another edgegate run is scoring this model into the same cache"


def _start(cache: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    return subprocess.Popen(
        [sys.executable, "-m", "edgegate.cli", "bbq", "run", str(DENSE), str(COMP), "--runtime", "llamacpp",
         "--data", str(REPO / "fixtures" / "bbq"), "--items", "9", "--disambig-items", "6", "--min-items", "3",
         "--threads", "1", "--cache-dir", str(cache), "--allow-inconclusive",
         "--fixed-n"],  # one scoring call per model: in looks, which run scores which look would be a race
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_two_runs_sharing_a_cache_score_the_dense_model_once(tmp_path: Path) -> None:
    cache = ResultCache.in_dir(tmp_path)
    key = (cache.model_hash(DENSE), "llamacpp", prompts.template_hash("letter", temperature=0.0))
    logs: list[list[str]] = [[], []]
    waiting = [threading.Event(), threading.Event()]
    with cache.scoring_lock(*key):
        procs = [_start(tmp_path), _start(tmp_path)]

        def read(i: int) -> None:
            stream = procs[i].stderr
            assert stream is not None
            for line in stream:
                logs[i].append(line)
                if WAITING in line:
                    waiting[i].set()
            waiting[i].set()  # the run ended (without waiting, the assertion below says so)

        readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in (0, 1)]
        for t in readers:
            t.start()
        for ev in waiting:
            assert ev.wait(600)
        # both runs reached the dense model and wait on the lock the test holds
        assert all(any(WAITING in line for line in log) for log in logs), logs
    for p in procs:
        assert p.wait(600) == 0, logs
    for t in readers:
        t.join(60)
    cache.close()
    scored_dense = [sum("scoring (dense): started" in line for line in log) for log in logs]
    assert sorted(scored_dense) == [0, 1], (
        logs
    )  # one run scored the dense model, the other reused it
    scored_comp = [sum("scoring (compressed): started" in line for line in log) for log in logs]
    assert sorted(scored_comp) == [0, 1], (
        logs
    )  # the same for the compressed model, whoever came first
