"""Policy files: parse, validate against the shipped JSON Schema, fill defaults, freeze.

Parse-then-execute: nothing runs until the whole file validated. Every object in the schema
rejects unknown keys, because a typo (``max_srs_increse_abs``) that silently switched a
threshold off would turn the gate into a rubber stamp. Errors name the file, the line, the
field path and the closest valid key or the allowed values.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from edgegate.errors import PolicyError

CHECK_NAMES: tuple[str, ...] = ("sparsity", "size", "speed", "perplexity", "bbq")
PRESETS: tuple[str, ...] = ("strict", "default", "edge-iot", "paper")


@dataclass(frozen=True)
class CheckPolicy:
    """One check's block with every default filled in; ``section`` is what the check reads."""

    name: str
    enabled: bool
    required: bool
    section: Mapping[str, Any]


@dataclass(frozen=True)
class Policy:
    version: int
    name: str
    description: str
    claims: Mapping[str, float]
    fail_on_inconclusive: bool
    fail_on_skipped: bool
    checks: Mapping[str, CheckPolicy]  # only the checks the file lists, in CHECK_NAMES order
    source: str | None = None
    sha256: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def enabled_checks(self) -> list[CheckPolicy]:
        return [c for c in self.checks.values() if c.enabled]

    def strict(self) -> Policy:
        """``--strict``: skipped or inconclusive required checks fail the gate."""
        return replace(self, fail_on_inconclusive=True, fail_on_skipped=True)

    def to_dict(self) -> dict[str, Any]:
        """The resolved policy (defaults filled), as the report records it."""
        return {
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "claims": dict(self.claims),
            "fail_on_inconclusive": self.fail_on_inconclusive,
            "fail_on_skipped": self.fail_on_skipped,
            "checks": {n: _plain(c.section) for n, c in self.checks.items()},
        }


# ---------------------------------------------------------------- loading


def load_policy(path: str | Path) -> Policy:
    p = Path(path)
    if not p.exists():
        raise PolicyError("policy file not found", path=p, hint="pass an existing YAML file or run 'edgegate policy init'")
    if p.is_dir():
        raise PolicyError("is a directory, expected a YAML policy file", path=p)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file: {exc.strerror}", path=p) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError("policy file is not UTF-8 text", path=p) from exc
    policy = parse_policy(text, source=str(p))
    return replace(policy, sha256=hashlib.sha256(data).hexdigest())


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    doc, lines = _load_yaml(text, source)
    errors = validation_errors(doc, lines)
    if errors:
        more = f" [and {len(errors) - 1} more problem(s); run 'edgegate policy validate {source}']" if len(errors) > 1 else ""
        raise PolicyError(errors[0] + more, path=source)
    return _build(doc, source)


def validation_errors(doc: Any, lines: Mapping[tuple[str, ...], int] | None = None) -> list[str]:
    """Every problem in ``doc`` as 'line N: field.path: message', most useful first."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(policy_schema())
    out: list[str] = []
    for err in validator.iter_errors(doc):
        out.extend(_describe(err, lines or {}))
    # In file order, so the first message is the first thing to fix.
    return sorted(out, key=lambda m: int(m.split(":")[0][5:]) if m.startswith("line ") else 0)


@lru_cache(maxsize=1)
def policy_schema() -> dict[str, Any]:
    text = resources.files("edgegate").joinpath("schemas/policy.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def preset_text(name: str) -> str:
    """The commented YAML of a shipped preset (also in the repo's policies/ folder)."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"choose one of: {', '.join(PRESETS)}"
        raise PolicyError(f"unknown preset '{name}'", field="--preset", hint=hint)
    return resources.files("edgegate").joinpath(f"data/presets/{name}.yaml").read_text("utf-8")


def load_preset(name: str) -> Policy:
    return parse_policy(preset_text(name), source=f"preset:{name}")


def resolve_policy(value: str | Path) -> Policy:
    """A policy file, or a shipped preset by name (``strict`` or ``preset:strict``) when no
    file of that name exists."""
    name = str(value).removeprefix("preset:")
    if not Path(value).exists() and name in PRESETS:
        return load_preset(name)
    return load_policy(value)


# ---------------------------------------------------------------- YAML with duplicate-key check


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one) and aliases
    (nested ``*refs`` expand exponentially: a few lines of "billion laughs" hung validation)."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            ev = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{ev.anchor}) are not allowed in policy files; write the value out",
                ev.start_mark,
            )
        return super().compose_node(parent, index)


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first on line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    try:
        doc = yaml.load(text, Loader=_StrictLoader)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(f"{where}not valid YAML: {problem}", path=source) from exc
    if doc is None:
        raise PolicyError("policy file is empty", path=source, hint="start from 'edgegate policy init'")
    if not isinstance(doc, dict):
        raise PolicyError(f"expected a mapping at the top level, got {_tname(doc)}", path=source)
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return doc, lines


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


# ---------------------------------------------------------------- error messages


def _describe(err: Any, lines: Mapping[tuple[str, ...], int]) -> list[str]:
    path = tuple(str(p) for p in err.absolute_path)

    def at(p: tuple[str, ...], msg: str) -> str:
        line = lines.get(p) or lines.get(p[:-1]) if p else None
        dotted = ".".join(p) or "(top level)"
        return f"line {line}: {dotted}: {msg}" if line else f"{dotted}: {msg}"

    kind = err.validator
    schema = err.schema
    inst = err.instance
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        msgs = []
        for key in sorted(set(inst) - set(allowed), key=str):
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            tip = f"did you mean '{close[0]}'? " if close else ""
            msgs.append(at((*path, str(key)), f"unknown key ({tip}allowed: {', '.join(allowed)})"))
        return msgs
    if kind == "enum":
        options = [str(o) for o in schema["enum"]]
        close = difflib.get_close_matches(str(inst), options, n=1, cutoff=0.6)
        tip = f"did you mean '{close[0]}'? " if close else ""
        return [at(path, f"'{inst}' is not allowed ({tip}allowed: {', '.join(options)})")]
    if kind == "type":
        want = schema["type"] if isinstance(schema["type"], str) else " or ".join(schema["type"])
        return [at(path, f"expected {want}, got {_tname(inst)} ({inst!r})")]
    if kind == "const":
        return [at(path, f"must be {schema['const']!r}, got {inst!r}")]
    if kind == "required":
        return [at(path, err.message.replace("is a required property", "is required (missing key)"))]
    if kind in ("anyOf", "oneOf") and err.context:
        # Report the branch that matches the value's shape (a mapping vs a number).
        branch = [e for e in err.context if isinstance(inst, dict) == (e.schema.get("type") == "object")]
        if branch:
            return _describe(max(branch, key=lambda e: len(e.absolute_path)), lines)
        return [at(path, f"{inst!r} is neither a number nor a mapping of the allowed keys")]
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        return [at(path, f"{inst!r} must be {op} {schema[kind]}")]
    return [at(path, err.message)]


def _tname(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}.get(
        type(v), type(v).__name__
    )


# ---------------------------------------------------------------- defaults and freezing


def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: Mapping[str, Any] = policy_schema()["$defs"][ref.split("/")[-1]]
        return resolved
    return schema


def _with_defaults(value: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    props = _resolve(schema).get("properties", {})
    out = dict(value)
    for key, sub in props.items():
        if key not in out and "default" in sub:
            out[key] = json.loads(json.dumps(sub["default"]))  # a fresh copy
    return out


def _build(doc: Mapping[str, Any], source: str) -> Policy:
    top = _with_defaults(doc, policy_schema())
    check_props = policy_schema()["properties"]["checks"]["properties"]
    checks: dict[str, CheckPolicy] = {}
    raw_checks = top.get("checks") or {}
    for name in CHECK_NAMES:
        if name not in raw_checks:
            continue
        section = _with_defaults(raw_checks[name] or {}, check_props[name])
        checks[name] = CheckPolicy(name, bool(section["enabled"]), bool(section["required"]), _freeze(section))
    return Policy(
        version=int(top["version"]),
        name=str(top["name"]),
        description=str(top["description"]).strip(),
        claims=MappingProxyType({k: float(v) for k, v in (top.get("claims") or {}).items()}),
        fail_on_inconclusive=bool(top["fail_on_inconclusive"]),
        fail_on_skipped=bool(top["fail_on_skipped"]),
        checks=MappingProxyType(checks),
        source=source,
        raw=_freeze(dict(doc)),
    )


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def iter_policy_files(paths: list[str]) -> Iterator[Path]:
    for p in paths:
        path = Path(p)
        if path.is_dir():
            yield from sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        else:
            yield path
