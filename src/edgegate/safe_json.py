"""One loader for every JSON file a user hands us (config.json, shard indexes, tokenizer
configs, pruning metadata, BBQ rows, partial files).

Python's ``json`` recurses once per nesting level: ``[[[[...]]]]`` 200k deep raised
RecursionError, which surfaced as "internal error", exit 3, with no file named. Here the
depth is measured first with a linear scan in C (regex + numpy, no recursion), the size is
capped before reading, and every failure is an ``InputError`` subclass (exit 2) that names the
file (and line, for JSON lines) and quotes at most a short excerpt.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.errors import EdgegateError, InputError, excerpt

MAX_DEPTH = 256  # real configs nest < 10 levels; json's C scanner overflows near 1000
MAX_BYTES = 256 << 20  # 256 MiB: far above any config or index; partial files included
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)  # a JSON string, escapes included
_OPEN = np.zeros(256, np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when ``raw`` nests brackets deeper than ``limit`` (cheap for ordinary text: fewer
    opening brackets than the limit cannot nest deeper than it)."""
    return raw.count(b"[") + raw.count(b"{") > limit and nesting_depth(raw) > limit


def nesting_depth(raw: bytes) -> int:
    """Deepest bracket nesting of a JSON text, ignoring brackets inside strings; O(n), no
    recursion (an unbalanced text gives some number, and the parser then reports it)."""
    bare = _STRING.sub(b'""', raw)
    steps = _OPEN[np.frombuffer(bare, np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (non-finite numbers are not allowed)")


def loads(
    raw: bytes | str,
    *,
    where: str | Path,
    error: type[EdgegateError] = InputError,
    hint: str | None = None,
    max_depth: int = MAX_DEPTH,
    allow_nan: bool = True,
) -> Any:
    """Parse ``raw``; any problem raises ``error`` naming ``where`` (a path or "path:line")."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if too_deep(data, max_depth):
        raise error(
            f"JSON nested {nesting_depth(data)} levels deep (more than {max_depth}): not a file edgegate reads",
            path=where,
            hint=hint or "the file is corrupt or hostile",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(
            f"not UTF-8 text ({e.reason} at byte {e.start})", path=where, hint=hint
        ) from None
    try:
        if allow_nan:
            return json.loads(text)
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise error(
            f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})", path=where, hint=hint
        ) from None
    except (ValueError, RecursionError) as e:  # _no_constant; huge ints; a depth the scan missed
        raise error(
            f"not valid JSON ({excerpt(str(e), 120, quote=False)})", path=where, hint=hint
        ) from None


def load(
    path: str | Path,
    *,
    error: type[EdgegateError] = InputError,
    hint: str | None = None,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    allow_nan: bool = True,
    expect_object: bool = True,
) -> Any:
    """Read and parse the JSON file ``path`` (an object unless ``expect_object`` is False)."""
    p = Path(path)
    try:
        if not p.is_file():
            raise error("not a regular file" if p.exists() else "no such file", path=p, hint=hint)
        size = p.stat().st_size
        if size > max_bytes:
            raise error(
                f"JSON file is {size} bytes, more than the {max_bytes}-byte cap",
                path=p,
                hint=hint or "the file is corrupt or not what edgegate expects here",
            )
        raw = p.read_bytes()
    except OSError as e:
        raise error(f"cannot read: {e.strerror or type(e).__name__}", path=p, hint=hint) from None
    doc = loads(raw, where=p, error=error, hint=hint, max_depth=max_depth, allow_nan=allow_nan)
    if expect_object and not isinstance(doc, dict):
        raise error(f"expected a JSON object, got {type(doc).__name__}", path=p, hint=hint)
    return doc


__all__ = ["MAX_BYTES", "MAX_DEPTH", "load", "loads", "nesting_depth", "too_deep"]
