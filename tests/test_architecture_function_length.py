"""No function in src/edgegate is longer than 80 lines (issue 19): a longer one is split into
named helpers. Length runs from the ``def`` line to the body's last line (decorators not
counted, nested functions counted in their parent), as the file stands: `make lint` keeps
the files `ruff format`-ed, so this is the length after formatting.

``ALLOWED`` names the functions still over the limit once formatted, each to be split by the
owner of its file; an entry is removed when its function is split (none left now).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LIMIT = 80

# "path/under/src/edgegate.py:qualified.name"
ALLOWED: frozenset[str] = frozenset()  # e.g. {"runner.py:_run"}; empty: every function fits


def function_lengths(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(qualified name, lines) of every function under ``tree``, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{node.name}"
            yield name, (node.end_lineno or node.lineno) - node.lineno + 1
            yield from function_lengths(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from function_lengths(node, f"{prefix}{node.name}.")
        else:
            yield from function_lengths(node, prefix)


def long_functions(limit: int = LIMIT) -> dict[str, int]:
    out = {}
    for path in sorted((SRC / "edgegate").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        rel = path.relative_to(SRC / "edgegate").as_posix()
        for name, lines in function_lengths(tree):
            if lines > limit:
                out[f"{rel}:{name}"] = lines
    return out


def test_the_measure_counts_def_to_last_line_with_qualified_names() -> None:
    tree = ast.parse(
        "class A:\n"
        "    @staticmethod\n"
        "    def f() -> None:\n"
        "        def g() -> None:\n"
        "            pass\n"
        "\n"
        "        g()\n"
        "if True:\n"
        "    async def h() -> None:\n"
        "        pass\n"
    )
    assert dict(function_lengths(tree)) == {"A.f": 5, "A.f.g": 2, "h": 2}


def test_no_function_is_over_80_lines() -> None:
    over = {k: v for k, v in long_functions().items() if k not in ALLOWED}
    assert not over, f"functions over {LIMIT} lines (split them into named helpers): " + ", ".join(
        f"{k} ({v})" for k, v in sorted(over.items())
    )
