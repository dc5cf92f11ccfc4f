"""Interrupted runs: `edgegate check` killed during its BBQ step (Ctrl-C = SIGINT to the
process group, then SIGKILL to the main process only), then re-run on the same cache.

Real llama.cpp on the fixture GGUF pair and a seeded sample of the real BBQ data. Checks:
- SIGINT exits 130 with one "interrupted" line and no traceback; SIGKILL leaves no orphaned
  backend process and a SQLite cache that passes integrity_check;
- no committed answer is lost or changed by a later run, and the resumed run never scores a
  cached answer again (an SQLite trigger records every insert that hits an existing key);
- the final report equals an uninterrupted run's, apart from the schema's timing fields.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="the BBQ step runs on llama-cpp-python here")

from test_reproducible import masked

from edgegate.bbq.scoring import ScoreConfig

REPO = Path(__file__).resolve().parents[1]
GGUF = REPO / "fixtures" / "models" / "gguf"
BBQ = REPO.parent / "shared" / "bbq" / "data"
ITEMS = 64
TOTAL = 2 * ITEMS  # dense + compressed answers (one seed, no rotations: the policy turns them off)
BATCH = ScoreConfig().batch_size  # the scorer commits after every batch (the check keeps the default)

pytestmark = pytest.mark.skipif(not BBQ.is_dir(), reason=f"real BBQ data not at {BBQ}")

POLICY = f"""version: 1
name: interrupt
fail_on_inconclusive: false
checks:
  bbq: {{required: true, runtime: llamacpp, items: {ITEMS}, min_items: 10, permute_options: false, disambig_items: 0}}
"""

_RESCORED = """
CREATE TABLE IF NOT EXISTS rescored (uid TEXT, model TEXT);
CREATE TRIGGER IF NOT EXISTS rescored_trg BEFORE INSERT ON answers
WHEN EXISTS (SELECT 1 FROM answers a WHERE a.model = NEW.model AND a.backend = NEW.backend
             AND a.prompt = NEW.prompt AND a.uid = NEW.uid AND a.seed = NEW.seed
             AND a.rotation = NEW.rotation)
BEGIN INSERT INTO rescored VALUES (NEW.uid, NEW.model); END;
"""


def _start(cwd: Path) -> subprocess.Popen[str]:
    argv = [
        sys.executable, "-m", "edgegate.cli", "check", str(GGUF / "dense-f16.gguf"), str(GGUF / "wanda50-f16.gguf"),
        "--policy", "../policy.yaml", "--bbq-data", str(BBQ), "--seed", "11", "--cache-dir", "cache",
        "--json-out", "report.json", "--threads", "1", "-q",
    ]  # fmt: skip
    env = {**os.environ, "EDGEGATE_DEBUG": ""}
    env.pop("GITHUB_STEP_SUMMARY", None)
    # its own session: SIGINT to the group is what a terminal's Ctrl-C does
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return int(c.execute("SELECT COUNT(*) FROM answers").fetchone()[0])
    except sqlite3.OperationalError:  # table not created yet
        return 0


def _rows(db: Path) -> dict[tuple[str, ...], tuple[object, ...]]:
    with sqlite3.connect(db) as c:
        rows = c.execute(
            "SELECT model, backend, prompt, uid, seed, rotation, choice, detail FROM answers"
        ).fetchall()
    return {tuple(map(str, r[:6])): (r[6], r[7]) for r in rows}


def _wait_for(db: Path, proc: subprocess.Popen[str], at_least: int) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        n = _count(db)
        if n >= at_least:
            return n
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended (exit {proc.returncode}) before {at_least} answers: {proc.communicate()[1][-2000:]}"
            )
        time.sleep(0.005)
    pytest.fail("no progress in 120 s")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_interrupted_run_resumes_to_the_same_report(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY, "utf-8")
    base, work = tmp_path / "base", tmp_path / "work"
    base.mkdir()
    work.mkdir()

    ref = _start(base)
    _, ref_err = ref.communicate(timeout=300)
    # 1 when BBQ on this small sample is inconclusive (nothing verified: never green), else 0
    assert ref.returncode in (0, 1), ref_err
    assert _count(base / "cache" / "bbq.sqlite") == TOTAL

    db = work / "cache" / "bbq.sqlite"
    # 1) Ctrl-C after the first committed batch
    p = _start(work)
    n = _wait_for(db, p, BATCH)
    assert n < TOTAL, "the run finished before it could be interrupted"
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "edgegate: interrupted" in err and "Traceback" not in err, err
    after_int = _rows(db)
    assert BATCH <= len(after_int) < TOTAL and len(after_int) % BATCH == 0  # whole batches only
    with sqlite3.connect(db) as c:
        c.executescript(_RESCORED)

    # 2) SIGKILL the main process only, one batch later
    p = _start(work)
    _wait_for(db, p, len(after_int) + BATCH)
    kids = _children(p.pid)  # isolated backends (if any) must not outlive a killed parent
    p.kill()
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 20
    while any(_alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(k) for k in kids), f"orphaned backend processes {kids} after SIGKILL"
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    after_kill = _rows(db)
    assert len(after_kill) < TOTAL, "the run finished before SIGKILL"
    assert {k: after_kill[k] for k in after_int} == after_int, (
        "answers committed before Ctrl-C changed"
    )

    # 3) resume to the end
    p = _start(work)
    _, err = p.communicate(timeout=300)
    assert p.returncode == ref.returncode, err
    final = _rows(db)
    assert len(final) == TOTAL
    assert {k: final[k] for k in after_kill} == after_kill, (
        "answers committed before SIGKILL changed"
    )
    with sqlite3.connect(db) as c:
        rescored = c.execute("SELECT uid, model FROM rescored").fetchall()
    assert rescored == [], f"{len(rescored)} cached answers were scored again"
    # same answers as the uninterrupted run (model/prompt keys are content hashes, not paths)
    assert final == _rows(base / "cache" / "bbq.sqlite")

    a = json.loads((base / "report.json").read_text("utf-8"))
    b = json.loads((work / "report.json").read_text("utf-8"))
    assert json.dumps(masked(a), indent=2) == json.dumps(masked(b), indent=2)
