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
