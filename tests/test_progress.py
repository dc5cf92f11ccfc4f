"""Progress in CI logs: without a terminal, plain lines at start, every interval (done/total,
rate, ETA) and at the end; `bbq run` and `check` report through it."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from edgegate.progress import LogProgress, NullProgress, RichProgress, make_progress

REPO = Path(__file__).resolve().parents[1]


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_log_progress_lines_have_rate_and_eta() -> None:
    out, clock = io.StringIO(), _Clock()
    prog = LogProgress(out, interval_s=30, clock=clock)
    with prog.task("BBQ letter scoring (dense)", total=100) as advance:
        for _ in range(10):
            clock.t += 5  # 10 items in 50 s: one line at 30 s
            advance(1)
        clock.t += 100
        advance(10)  # 20 done at 150 s
    lines = out.getvalue().splitlines()
    assert "started (100 to do)" in lines[0]
    # at 30 s: 6 of 100 done, 0.2/s -> 94 left at 0.2/s = 470 s
    assert "6/100 (6%), 0.2/s, ETA 7m50s" in lines[1]
    assert (
        "20/100 (20%)" in lines[2] and "0.133/s, ETA 10m00s" in lines[2]
    )  # 80 left at 20/150 per s
    assert lines[-1].endswith("done in 2m30s")
    assert len(lines) == 4


def test_log_progress_without_total_and_quiet_interval() -> None:
    out, clock = io.StringIO(), _Clock()
    prog = LogProgress(out, interval_s=30, clock=clock)
    with prog.task("hashing", total=None) as advance:
        clock.t += 10
        advance(5)  # under the interval: no line
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].endswith("hashing: started")


def test_make_progress_picks_by_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(make_progress(quiet=True), NullProgress)
    assert isinstance(make_progress(stream=io.StringIO()), LogProgress)
    assert isinstance(make_progress(stream=Tty()), RichProgress)


def test_bbq_run_reports_progress_in_a_log(tmp_path: Path) -> None:
    """`bbq run` used to print nothing at all without a terminal."""
    models, items = REPO / "fixtures" / "models", REPO / "fixtures" / "bbq"
    cmd = [
        sys.executable,
        "-c",
        "from edgegate.cli import main; main()",
        "bbq",
        "run",
        str(models / "gguf" / "dense-f16.gguf"),
        str(models / "gguf" / "dense-f16.gguf"),
        "--runtime",
        "llamacpp",
        "--data",
        str(items),
        "--items",
        "0",
        "--min-items",
        "5",
        "--cache-dir",
        str(tmp_path),
        "--json",
        "--allow-inconclusive",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode in (0, 1), r.stderr
    assert "BBQ letter scoring" in r.stderr and "started" in r.stderr and "done in" in r.stderr
