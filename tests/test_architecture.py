"""The package's import graph has no cycles (issue 11), reporters do not import the
runner, and the subprocess proxy answers exactly the Backend protocol.

The graph is built with ``ast`` from every ``import`` in src/edgegate, including imports
inside functions and under ``TYPE_CHECKING``: a lazy import hides a cycle from Python, not
from a reader. Importing ``a.b.c`` also runs the packages ``a`` and ``a.b``, so those are
edges too (except the importer's own packages).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "edgegate"


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted((SRC / PKG).rglob("*.py")):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _targets(node: ast.AST, importer: str, modules: dict[str, Path]) -> set[str]:
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative import
            pkg = importer.split(".")
            if modules[importer].name != "__init__.py":
                pkg = pkg[:-1]
            pkg = pkg[: len(pkg) - node.level + 1]
            base = ".".join([*pkg, base] if base else pkg)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    found = set()
    own = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 2)}
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            mod = ".".join(parts[:i])
            if mod in modules and mod != importer and (mod == name or mod not in own):
                found.add(mod)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[name] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name] |= _targets(node, name, modules)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative DFS, deterministic order)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        path = [root]
        state[root] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop(0)
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph.get(nxt, ()))))
    return None


def test_the_graph_sees_imports_inside_functions() -> None:
    g = import_graph()
    assert "edgegate.backends" in g["edgegate.backends.pair"]
    assert "edgegate.checks.bbq" in g["edgegate.commands.merge"]  # imported inside the command
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("reporter", ["json_report", "markdown", "junit", "html", "terminal"])
def test_reporters_do_not_import_the_runner(reporter: str) -> None:
    g = import_graph()
    seen, todo = set(), [f"edgegate.report.{reporter}"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(g.get(m, ()))
    assert "edgegate.runner" not in seen


def test_the_subprocess_proxy_forwards_every_protocol_method() -> None:
    from edgegate.backends._subprocess import IsolatedBackend
    from edgegate.backends.base import REMOTE_METHODS, Backend

    members = {n for n, v in vars(Backend).items() if callable(v) and not n.startswith("_")}
    # every protocol method, and the optional work counter of local runtimes
    assert (members - {"info", "close"}) | {"work"} == REMOTE_METHODS
    assert {
        "score_tokens",
        "token_logprobs",
        "next_token_logprobs",
        "loglikelihood",
    } <= REMOTE_METHODS
    assert all(callable(getattr(IsolatedBackend, n, None)) for n in members | {"work"})


def test_the_runner_and_preflight_name_no_check() -> None:
    """Checks describe what they need (``NEEDS``: files, runtime use, data inputs); the runner
    and preflight loop over the selected checks instead of knowing their names, so a new check
    needs no edit there."""
    import ast

    from edgegate.policy import CHECK_NAMES

    for module in ("runner.py", "preflight.py"):
        tree = ast.parse((SRC / "edgegate" / module).read_text(encoding="utf-8"))
        named = sorted(
            {
                n.value
                for n in ast.walk(tree)
                if isinstance(n, ast.Constant) and n.value in CHECK_NAMES
            }
        )
        assert not named, f"{module} names check(s) {named}"


def test_every_check_declares_its_needs() -> None:
    from edgegate import checks
    from edgegate.checks.base import Needs, RuntimeUse
    from edgegate.policy import CHECK_NAMES

    for name in CHECK_NAMES:
        module = checks.load(name)
        assert isinstance(getattr(module, "NEEDS", None), Needs), name
    assert (
        checks.needs("speed").runtime is RuntimeUse.SEVERAL
        and checks.needs("bbq").runtime is RuntimeUse.ONE
    )
    assert checks.needs("sparsity").on_swapped_inputs and not checks.needs("perplexity").local_files
    assert checks.needs("no-such-check") == Needs()


def test_commands_do_not_import_each_other() -> None:
    """Output lives in edgegate/report (emit_gate, bbq_text); a command never reaches into
    another command's module."""
    import ast

    for path in sorted((SRC / "edgegate" / "commands").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bad = [
            n.module
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("edgegate.commands")
        ]
        assert not bad, f"{path.name} imports {bad}"
