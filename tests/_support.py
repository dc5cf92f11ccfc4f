"""Helpers shared by several test files (imported as ``from _support import ...``)."""

from __future__ import annotations

import contextlib
import io
import sqlite3
from pathlib import Path
from typing import Any

from edgegate.cli import main


def run_cli(*args: str) -> tuple[int, str]:
    """`edgegate ARGS` in this process through the CLI's own error handling: (exit code,
    stdout + stderr)."""
    buf = io.StringIO()
    code: Any = 0
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code
    return int(code or 0), buf.getvalue()


def count_answers(db: Path) -> int:
    """Rows in a BBQ result cache; 0 while it does not exist yet or is locked mid-write."""
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            return int(con.execute("SELECT COUNT(*) FROM answers").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def synthetic_bench(
    ratios: list[float], load: Any = None, *, level: float | None = None, repetitions: int = 0
) -> Any:
    """A speed benchmark result whose repetition i ran the compressed model ratios[i] times as
    fast (decode 40 tok/s dense), summarized by the real code: the speed judge is pure, so its
    decision table is tested on given samples. ``level``: the intervals' level (an interim
    look's); ``repetitions``: the count planned (default: as many as given)."""
    from edgegate.speed.bench import BenchConfig, Sample, summarize

    cfg = BenchConfig(repetitions=repetitions or len(ratios), threads=1, sequential=True)
    samples = []
    for i, r in enumerate(ratios):
        for model, tps in (("dense", 40.0), ("compressed", 40.0 * r)):
            samples.append(
                Sample(model, i, len(samples), 0.1, 128 / tps, 0.1 + 128 / tps, 5120.0, tps, None)
            )
    infos: dict[str, dict[str, object]] = {"dense": {}, "compressed": {}}
    return summarize("llamacpp", cfg, samples, infos, None, 1.0, load, level=level)
