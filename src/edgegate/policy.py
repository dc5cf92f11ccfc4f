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
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from edgegate.errors import PolicyError, excerpt

# A policy is a few KB of YAML; PyYAML's pure-Python scanner takes ~1 s per MB, so a 10 MB
# value once took ~19 s to parse before its error was even built. Refuse early instead.
MAX_POLICY_BYTES = 256 * 1024
MAX_NESTING = 32  # the schema nests 4 levels
# fidelity runs before perplexity: its scoring pass (logits compared as they are made) also
# gives the perplexity NLLs, which the perplexity check then reuses (checks._scoring)
CHECK_NAMES: tuple[str, ...] = ("sparsity", "size", "speed", "fidelity", "perplexity", "bbq")
# fidelity scores what perplexity scores unless its block says otherwise: one pass for both
_SHARED_SCORING = ("runtime", "n_ctx", "text", "mode")
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
    fail_fast: (
        bool  # stop after the first required check that fails or errors (default: the schema's)
    )
    checks: Mapping[str, CheckPolicy]  # only the checks the file lists, in CHECK_NAMES order
    source: str | None = None
    sha256: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def base_dir(self) -> Path | None:
        """The policy file's folder: relative paths in the policy resolve against it (None for
        presets and text, whose relative paths resolve against the working directory)."""
        if (
            self.source
            and not self.source.startswith(("preset:", "<"))
            and Path(self.source).is_file()
        ):
            return Path(self.source).resolve().parent
        return None

    def enabled_checks(self) -> list[CheckPolicy]:
        return [c for c in self.checks.values() if c.enabled]

    def strict(self) -> Policy:
        """``--strict``: skipped or inconclusive required checks fail the gate."""
        return replace(self, fail_on_inconclusive=True, fail_on_skipped=True)

    def with_bbq_items(self, n: int) -> tuple[Policy, str]:
        """``--bbq-items N``: a quick run on N BBQ items, with the item minimums scaled by the
        same factor; returns the policy and the caveat every report must carry."""
        cp = self.checks.get("bbq")
        if cp is None or not cp.enabled:
            raise PolicyError("--bbq-items: this policy has no bbq check", field="--bbq-items")
        sec = dict(cp.section)
        full = int(sec.get("items") or 0)  # 0/None: every item of the data set
        ratio = n / full if full else None
        changed = []
        for key in ("min_items", "min_items_per_category"):
            if isinstance(sec.get(key), int):
                new = min(sec[key], math.ceil(sec[key] * ratio)) if ratio else min(sec[key], n)
                if new != sec[key]:
                    changed.append(f"{key} {sec[key]} -> {new}")
                sec[key] = new
        sec["items"] = n
        # the disambiguated items are BBQ items too: "10 items" once still scored 150 of them
        dis = int(sec.get("disambig_items") or 0)
        dis_note = ""
        if dis > n:
            sec["disambig_items"] = n
            dis_note = f" and {n} disambiguated instead of {dis}"
            floor = sec.get("validity_min_disambig_items")
            if isinstance(floor, int) and floor > n:
                sec["validity_min_disambig_items"] = n
                changed.append(f"validity_min_disambig_items {floor} -> {n}")
        caveat = (
            f"quick run: {n} BBQ items instead of the policy's {full or 'all'}{dis_note}"
            + (f" ({', '.join(changed)})" if changed else "")
            + "; not release-grade"
        )
        checks = {**self.checks, "bbq": replace(cp, section=sec)}
        return replace(self, checks=checks), caveat

    def to_dict(self) -> dict[str, Any]:
        """The resolved policy (defaults filled), as the report records it."""
        return {
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "claims": dict(self.claims),
            "fail_on_inconclusive": self.fail_on_inconclusive,
            "fail_on_skipped": self.fail_on_skipped,
            "fail_fast": self.fail_fast,
            "checks": {n: _plain(c.section) for n, c in self.checks.items()},
        }


# ---------------------------------------------------------------- loading


def load_policy(path: str | Path) -> Policy:
    p = Path(path)
    if not p.exists():
        raise PolicyError(
            "policy file not found",
            path=p,
            hint="pass an existing YAML file or run 'edgegate policy init'",
        )
    if p.is_dir():
        raise PolicyError("is a directory, expected a YAML policy file", path=p)
    from edgegate.safe_read import read_regular

    # a FIFO or /dev/zero must be refused before reading, not capped after (4 bytes a character)
    data = read_regular(p, max_bytes=4 * MAX_POLICY_BYTES, what="policy file", error=PolicyError)
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
        more = (
            f" [and {len(errors) - 1} more problem(s); run 'edgegate policy validate {source}']"
            if len(errors) > 1
            else ""
        )
        raise PolicyError(errors[0] + more, path=source)
    return _build(doc, source)


def validation_errors(doc: Any, lines: Mapping[tuple[str, ...], int] | None = None) -> list[str]:
    """Every problem in ``doc`` as 'line N: field.path: message', most useful first."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(policy_schema())
    out: list[str] = list(_nonfinite(doc, (), lines or {}))
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
    if not Path(value).exists():
        if name in PRESETS:
            return load_preset(name)
        # "strickt": a mistyped preset name, not a missing file the user meant to write
        close = difflib.get_close_matches(name, PRESETS, n=1)
        if close and not name.endswith((".yaml", ".yml")) and "/" not in name:
            raise PolicyError(
                f"no policy file or preset named '{name}'",
                field="--policy",
                hint=f"did you mean the preset '{close[0]}'? Presets: {', '.join(PRESETS)}",
            )
    return load_policy(value)


# ---------------------------------------------------------------- YAML with duplicate-key check


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


# ---------------------------------------------------------------- error messages


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


def section_defaults(check: str) -> dict[str, Any]:
    """Every default of the ``checks.<check>`` section, from the schema (their one home)."""
    return _with_defaults({}, policy_schema()["properties"]["checks"]["properties"][check])


def with_section_defaults(check: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """``section`` completed with the schema's defaults for the keys it lacks (as the policy
    loader fills them: an explicit null stays null): what a check reads when its section did
    not come through a policy file (``edgegate bench``, a test calling a check directly)."""
    return {**section_defaults(check), **section}


def check_default(check: str, key: str) -> Any:
    """The schema's default of ``checks.<check>.<key>``: the one home of a policy default, for
    code that runs a check on a section not built from a policy file (``edgegate bench``)."""
    sub = _resolve(policy_schema()["properties"]["checks"]["properties"][check])["properties"][key]
    return json.loads(json.dumps(sub["default"]))


def _build(doc: Mapping[str, Any], source: str) -> Policy:
    top = _with_defaults(doc, policy_schema())
    check_props = policy_schema()["properties"]["checks"]["properties"]
    checks: dict[str, CheckPolicy] = {}
    raw_checks = top.get("checks") or {}
    for name in CHECK_NAMES:
        if name not in raw_checks:
            continue
        section = _with_defaults(raw_checks[name] or {}, check_props[name])
        if name == "fidelity":
            ppl = _with_defaults(raw_checks.get("perplexity") or {}, check_props["perplexity"])
            section = {**{k: ppl[k] for k in _SHARED_SCORING if k in ppl}, **section}
        checks[name] = CheckPolicy(
            name, bool(section["enabled"]), bool(section["required"]), _freeze(section)
        )
    return Policy(
        version=int(top["version"]),
        name=str(top["name"]),
        description=str(top["description"]).strip(),
        claims=MappingProxyType({k: float(v) for k, v in (top.get("claims") or {}).items()}),
        fail_on_inconclusive=bool(top["fail_on_inconclusive"]),
        fail_on_skipped=bool(top["fail_on_skipped"]),
        fail_fast=bool(top["fail_fast"]),
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


def policy_data_path(value: str | Path | None, base_dir: str | Path | None) -> str | None:
    """`checks.bbq.data` as the checks read it: a dataset-hub name (``hf:NAME``) as is, a
    relative folder against the policy file's folder."""
    if not value:
        return None
    if str(value).startswith("hf:"):
        return str(value)
    return str(relative_to_policy(value, base_dir))


def relative_to_policy(value: str | Path, base_dir: str | Path | None) -> Path:
    """A path written in a policy: absolute as is, relative against the policy's folder (so
    `edgegate check` gives the same result from any working directory)."""
    p = Path(value).expanduser()
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


def iter_policy_files(paths: list[str]) -> Iterator[Path]:
    for p in paths:
        path = Path(p)
        if path.is_dir():
            yield from sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        else:
            yield path
