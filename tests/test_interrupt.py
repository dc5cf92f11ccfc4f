"""Interrupted runs: `edgegate check` killed during its BBQ step (Ctrl-C = SIGINT to the
process group, SIGTERM to the main process as a CI runner sends it, then SIGKILL to the main
process only), then re-run on the same cache.

Each interruption happens at a hook, not in a race with the run: ``_signal_hook`` (imported by
the interpreter that runs the CLI) holds the run right after its N-th committed batch of
answers and writes a marker; the signal is sent once the marker is there, so the run can
never finish first (it once did on a busy machine: exit 1 instead of 130).

Real llama.cpp on the fixture GGUF pair and a seeded sample of the real BBQ data. Checks:
- SIGINT exits 130 and SIGTERM 143, with one "interrupted"/"terminated" line and no traceback;
  SIGKILL leaves no orphaned backend process and a SQLite cache that passes integrity_check;
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
BATCH = (
    ScoreConfig().batch_size
)  # the scorer commits after every batch (the check keeps the default)

pytestmark = pytest.mark.skipif(not BBQ.is_dir(), reason=f"real BBQ data not at {BBQ}")

POLICY = f"""version: 1
name: interrupt
fail_on_inconclusive: false
checks:
  bbq: {{required: true, runtime: llamacpp, items: {ITEMS}, min_items: 10, permute_options: false, disambig_items: 0,
        sequential: false}}
"""
# sequential: false: one scoring call per model, so commits come in whole batches of BATCH
# (in looks, each look's last batch is short and the arithmetic below would not hold)

_RESCORED = """
CREATE TABLE IF NOT EXISTS rescored (uid TEXT, model TEXT);
CREATE TRIGGER IF NOT EXISTS rescored_trg BEFORE INSERT ON answers
WHEN EXISTS (SELECT 1 FROM answers a WHERE a.model = NEW.model AND a.backend = NEW.backend
             AND a.prompt = NEW.prompt AND a.uid = NEW.uid AND a.seed = NEW.seed
             AND a.rotation = NEW.rotation)
BEGIN INSERT INTO rescored VALUES (NEW.uid, NEW.model); END;
"""


HOOKS = REPO / "tests" / "hostile"
_MAIN = f"import sys; sys.path.insert(0, {str(HOOKS)!r}); import _signal_hook; from edgegate.cli import main; main()"


def _start(cwd: Path, hold_after: int | None = None) -> subprocess.Popen[str]:
    """The gate; with ``hold_after`` it stops after that many committed batches and waits for
    a signal (the marker file ``cwd/held`` says it is there)."""
    argv = [
        sys.executable, "-c", _MAIN, "check", str(GGUF / "dense-f16.gguf"), str(GGUF / "wanda50-f16.gguf"),
        "--policy", "../policy.yaml", "--bbq-data", str(BBQ), "--seed", "11", "--cache-dir", "cache",
        "--json-out", "report.json", "--threads", "1", "-q",
    ]  # fmt: skip
    env = {**os.environ, "EDGEGATE_DEBUG": ""}
    env.pop("GITHUB_STEP_SUMMARY", None)
    (cwd / "held").unlink(missing_ok=True)
    if hold_after is not None:
        env.update(
            EDGEGATE_HOOK_HOLD_AFTER_PUTS=str(hold_after), EDGEGATE_HOOK_MARKER=str(cwd / "held")
        )
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


def _wait_held(cwd: Path, proc: subprocess.Popen[str]) -> None:
    """Until the run is held at its hook (a condition, not a delay)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if (cwd / "held").exists():
            return
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended (exit {proc.returncode}) before its hook: {proc.communicate()[1][-2000:]}"
            )
        time.sleep(0.01)
    pytest.fail("the run never reached its hook in 300 s")


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
    p = _start(work, hold_after=1)
    _wait_held(work, p)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "edgegate: interrupted" in err and "Traceback" not in err, err
    after_int = _rows(db)
    assert len(after_int) == BATCH < TOTAL  # the committed batch, whole
    with sqlite3.connect(db) as c:
        c.executescript(_RESCORED)

    # 1b) SIGTERM to the main process only (what CI sends on cancel), one batch later
    p = _start(work, hold_after=1)
    _wait_held(work, p)
    os.kill(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "edgegate: terminated" in err and "Traceback" not in err, err
    after_term = _rows(db)
    assert len(after_term) == 2 * BATCH < TOTAL
    assert {k: after_term[k] for k in after_int} == after_int, (
        "answers committed before SIGTERM changed"
    )

    # 2) SIGKILL the main process only, one batch later
    p = _start(work, hold_after=1)
    _wait_held(work, p)
    kids = _children(p.pid)
    assert kids, (
        "no runtime child process to watch"
    )  # isolated backends (if any) must not outlive a killed parent
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
    assert len(after_kill) == 3 * BATCH
    assert {k: after_kill[k] for k in after_term} == after_term, (
        "answers committed before Ctrl-C and SIGTERM changed"
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
