"""Policy YAML: one strict pass that refuses duplicate keys, aliases and deep nesting, and
keeps each field path's line number for the error messages."""

from __future__ import annotations

from typing import Any

import yaml

from edgegate.errors import PolicyError, excerpt
from edgegate.policy._validate import _tname

# A policy is a few KB of YAML; PyYAML's pure-Python scanner takes ~1 s per MB, so a 10 MB
# value once took ~19 s to parse before its error was even built. Refuse early instead.
MAX_POLICY_BYTES = 256 * 1024
MAX_NESTING = 32  # the schema nests 4 levels


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one) and aliases
    (nested ``*refs`` expand exponentially: a few lines of "billion laughs" hung validation)."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            ev = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"YAML aliases (*{ev.anchor}) are not allowed in policy files; write the value out",
                ev.start_mark,
            )
        return super().compose_node(parent, index)


def _construct_mapping(
    loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if (
            not isinstance(key, (str, int, float, bool)) and key is not None
        ):  # {a: 1}: 2 (found by fuzzing)
            raise yaml.constructor.ConstructorError(
                None, None, f"a {_tname(key)} cannot be a key; keys are names", key_node.start_mark
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key '{key}' (first on line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyError(
            f"policy is {len(text)} characters, more than the {MAX_POLICY_BYTES} a policy may have",
            path=source,
            hint="a policy is a short YAML file; check that this is the right file",
        )
    try:  # one pass: the node tree gives the line numbers, the same tree builds the document
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            doc = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(f"{where}not valid YAML: {problem}", path=source) from exc
    except ValueError as exc:  # e.g. an integer of more than 4300 digits (Python's int-size guard)
        raise PolicyError(
            f"not valid YAML: {excerpt(str(exc), 120, quote=False)}", path=source
        ) from None
    except RecursionError:  # PyYAML composes recursively: [[[[... thousands deep
        raise PolicyError(
            f"nested more than {MAX_NESTING} levels",
            path=source,
            hint="a policy nests a few levels",
        ) from None
    if node is not None and _depth(node) > MAX_NESTING:  # our own walks below recurse too
        raise PolicyError(
            f"nested more than {MAX_NESTING} levels",
            path=source,
            hint="a policy nests a few levels",
        )
    if doc is None:
        raise PolicyError(
            "policy file is empty", path=source, hint="start from 'edgegate policy init'"
        )
    if not isinstance(doc, dict):
        raise PolicyError(f"expected a mapping at the top level, got {_tname(doc)}", path=source)
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return doc, lines


def _depth(node: yaml.Node) -> int:
    """Nesting depth of a node tree, without recursion."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        n, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(n, yaml.MappingNode):
            stack.extend((v, d + 1) for _, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend((v, d + 1) for v in n.value)
    return deepest


def _index_lines(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            sub = (*path, str(k.value))
            out[sub] = k.start_mark.line + 1
            _index_lines(v, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _index_lines(v, (*path, str(i)), out)
