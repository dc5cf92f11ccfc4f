"""Policy validation: every problem as 'line N: field.path: message', with the closest valid
key or the allowed values."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping
from typing import Any

from edgegate.errors import excerpt
from edgegate.policy._schema import policy_schema


def validation_errors(doc: Any, lines: Mapping[tuple[str, ...], int] | None = None) -> list[str]:
    """Every problem in ``doc`` as 'line N: field.path: message', most useful first."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(policy_schema())
    out: list[str] = list(_nonfinite(doc, (), lines or {}))
    for err in validator.iter_errors(doc):
        out.extend(_describe(err, lines or {}))
    # In file order, so the first message is the first thing to fix.
    return sorted(out, key=lambda m: int(m.split(":")[0][5:]) if m.startswith("line ") else 0)


def _nonfinite(
    value: Any, path: tuple[str, ...], lines: Mapping[tuple[str, ...], int]
) -> Iterator[str]:
    """YAML's .nan/.inf load as floats that JSON Schema's bounds let through (NaN compares
    false both ways): a NaN threshold then failed every model with "0 violates >= nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        line = lines.get(path) or lines.get(path[:-1])
        where = f"line {line}: " if line else ""
        yield f"{where}{_dotted(path)}: {value} is not a finite number (write a number such as 0.05)"
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _nonfinite(v, (*path, str(k)), lines)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nonfinite(v, (*path, str(i)), lines)


def _close(word: str, options: list[str]) -> list[str]:
    # difflib indexes every character of its word first: seconds for a 10 MB value
    return difflib.get_close_matches(word, options, n=1, cutoff=0.6) if len(word) <= 200 else []


def _dotted(path: tuple[str, ...]) -> str:
    """The field path for a message; a hostile 10 MB key is shown as a short excerpt."""
    return excerpt(".".join(path), 120, quote=False) if path else "(top level)"


def _describe(err: Any, lines: Mapping[tuple[str, ...], int]) -> list[str]:
    path = tuple(str(p) for p in err.absolute_path)

    def at(p: tuple[str, ...], msg: str) -> str:
        line = lines.get(p) or lines.get(p[:-1]) if p else None
        dotted = _dotted(p)
        return f"line {line}: {dotted}: {msg}" if line else f"{dotted}: {msg}"

    kind = err.validator
    schema = err.schema
    inst = err.instance
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        msgs = []
        for key in sorted(set(inst) - set(allowed), key=str):
            close = _close(str(key), allowed)
            tip = f"did you mean '{close[0]}'? " if close else ""
            msgs.append(at((*path, str(key)), f"unknown key ({tip}allowed: {', '.join(allowed)})"))
        return msgs
    if kind == "enum":
        options = [str(o) for o in schema["enum"]]
        close = _close(str(inst), options)
        tip = f"did you mean '{close[0]}'? " if close else ""
        return [at(path, f"{excerpt(inst)} is not allowed ({tip}allowed: {', '.join(options)})")]
    if kind == "type":
        want = schema["type"] if isinstance(schema["type"], str) else " or ".join(schema["type"])
        return [at(path, f"expected {want}, got {_tname(inst)} ({excerpt(inst)})")]
    if kind == "const":
        return [at(path, f"must be {schema['const']!r}, got {excerpt(inst)}")]
    if kind == "required":
        return [
            at(path, err.message.replace("is a required property", "is required (missing key)"))
        ]
    if kind in ("anyOf", "oneOf") and err.context:
        # Report the branch that matches the value's shape (a mapping vs a number).
        branch = [
            e for e in err.context if isinstance(inst, dict) == (e.schema.get("type") == "object")
        ]
        if branch:
            return _describe(max(branch, key=lambda e: len(e.absolute_path)), lines)
        return [at(path, f"{excerpt(inst)} is neither a number nor a mapping of the allowed keys")]
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[
            kind
        ]
        return [at(path, f"{excerpt(inst)} must be {op} {schema[kind]}")]
    return [at(path, excerpt(err.message, 200, quote=False))]


def _tname(v: Any) -> str:
    if v is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "mapping",
    }.get(type(v), type(v).__name__)
