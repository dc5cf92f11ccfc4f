"""No function or method in src/edgegate is longer than MAX_LINES lines.

A function that no longer fits on a screen or two is read in pieces and changed in pieces;
past this length each of ours had several jobs that read better as named helpers. The
count is ``ast``'s span of the whole definition: decorators excluded, signature, docstring
and body included, nested functions counted in their parent as well as on their own.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "edgegate"
MAX_LINES = 80


def long_functions(root: Path, limit: int = MAX_LINES) -> list[str]:
    """``path:line name (n lines)`` for each function or method under ``root`` over ``limit``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > limit:
                    found.append(
                        f"{path.relative_to(root.parent).as_posix()}:{node.lineno} {node.name} ({n} lines)"
                    )
    return found


def test_no_function_is_longer_than_the_limit() -> None:
    too_long = long_functions(SRC)
    assert not too_long, f"functions over {MAX_LINES} lines (split them):\n" + "\n".join(too_long)


def test_the_check_sees_a_long_function(tmp_path: Path) -> None:
    # a walker that silently finds nothing (wrong root, wrong node types) would pass forever
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    lines = [
        "class C:",
        "    async def long(self) -> None:",
        *(f"        x{i} = {i}" for i in range(MAX_LINES)),
        "",
        "",
        "def short() -> None:",
        "    pass",
        "",
    ]
    (pkg / "m.py").write_text("\n".join(lines), encoding="utf-8")
    assert long_functions(pkg) == [f"pkg/m.py:2 long ({MAX_LINES + 1} lines)"]
    assert any(SRC.rglob("*.py")), f"no sources under {SRC}"


def test_comments_give_reasons_not_issue_numbers() -> None:
    """A comment that says "issue 12" tells a reader nothing once the tracker is gone: src/
    states the reason instead."""
    import re

    pattern = re.compile(r"\bissues? \d+\b", re.IGNORECASE)
    hits = [
        f"{p.relative_to(SRC.parent)}:{i}"
        for p in sorted(SRC.rglob("*.py"))
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, "issue numbers in src/ (say why instead):\n" + "\n".join(hits)
