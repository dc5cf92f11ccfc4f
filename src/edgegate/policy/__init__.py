"""Policy files: parse, validate against the shipped JSON Schema, fill defaults, freeze.

Parse-then-execute: nothing runs until the whole file validated. Every object in the schema
rejects unknown keys, because a typo (``max_srs_increse_abs``) that silently switched a
threshold off would turn the gate into a rubber stamp. Errors name the file, the line, the
field path and the closest valid key or the allowed values.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypedDict

from edgegate.errors import PolicyError
from edgegate.policy._schema import (
    _with_defaults,
    check_default,
    policy_schema,
    section_defaults,
    with_section_defaults,
)
from edgegate.policy._validate import validation_errors
from edgegate.policy._yaml import MAX_NESTING, MAX_POLICY_BYTES, _load_yaml

__all__ = [
    "CHECK_NAMES",
    "MAX_NESTING",
    "MAX_POLICY_BYTES",
    "PRESETS",
    "CheckPolicy",
    "Policy",
    "ResolvedPolicy",
    "check_default",
    "iter_policy_files",
    "load_policy",
    "load_preset",
    "parse_policy",
    "policy_data_path",
    "policy_schema",
    "preset_text",
    "relative_to_policy",
    "resolve_policy",
    "section_defaults",
    "validation_errors",
    "with_section_defaults",
]

# fidelity runs before perplexity: its scoring pass (logits compared as they are made) also
# gives the perplexity NLLs, which the perplexity check then reuses (checks._scoring)
CHECK_NAMES: tuple[str, ...] = ("sparsity", "size", "speed", "fidelity", "perplexity", "bbq")
# fidelity scores what perplexity scores unless its block says otherwise: one pass for both
_SHARED_SCORING = ("runtime", "n_ctx", "text", "mode")
PRESETS: tuple[str, ...] = ("strict", "default", "edge-iot", "paper")


class ResolvedPolicy(TypedDict):
    """``Policy.to_dict()``: the resolved policy (defaults filled) as reports record it."""

    version: int
    name: str
    description: str
    claims: dict[str, float]
    fail_on_inconclusive: bool
    fail_on_skipped: bool
    fail_fast: bool
    checks: dict[str, dict[str, Any]]  # each check's section, as JSON


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

    def to_dict(self) -> ResolvedPolicy:
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
