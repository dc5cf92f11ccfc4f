"""A policy default has one home: the policy schema. Code that needs one asks for it
(``policy.check_default``, ``section_defaults``, ``with_section_defaults``); nothing restates it
as a literal fallback or a command-line default that could drift from the schema (the speed
check once fell back to 5 repetitions while the schema said 6)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import pytest

from edgegate.cli import cli
from edgegate.policy import (
    check_default,
    parse_policy,
    policy_schema,
    section_defaults,
    with_section_defaults,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "edgegate"
CHECKS = tuple(policy_schema()["properties"]["checks"]["properties"])
_GET = re.compile(
    r"""\.get\(\s*["']([a-z_]+)["']\s*,\s*(-?[0-9][0-9_.e]*|True|False|"[^"]*"|'[^']*')\s*\)"""
)


def _defaults() -> dict[str, set[str]]:
    """Policy key -> the JSON texts of its schema defaults (a key may live in several checks)."""
    out: dict[str, set[str]] = {}
    for check in CHECKS:
        for key, value in section_defaults(check).items():
            out.setdefault(key, set()).add(json.dumps(value))
    return out


def _literal_json(lit: str) -> str:
    if lit in ("True", "False"):
        return lit.lower()
    if lit[0] in "\"'":
        return json.dumps(lit[1:-1])
    return json.dumps(float(lit)) if any(c in lit for c in ".e") else lit


def test_no_policy_default_is_restated_as_a_literal_fallback() -> None:
    keys = _defaults()
    hits = []
    for f in sorted(SRC.rglob("*.py")):
        if f.name == "policy.py":
            continue
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            for m in _GET.finditer(line):
                key, lit = m.group(1), m.group(2)
                if key not in keys:
                    continue
                numeric_or_bool = lit[0] not in "\"'"
                # a number or flag as the fallback of a policy key is a second home for its
                # default; a string only when it is that key's default ("" for "no value" is not)
                if numeric_or_bool or _literal_json(lit) in keys[key]:
                    hits.append(f"{f.relative_to(SRC)}:{i}: {m.group(0)}")
    assert not hits, "policy defaults restated outside the schema:\n" + "\n".join(hits)


def test_the_scanner_sees_a_restated_default() -> None:
    """The rule above can fail: the lines it was written against are caught."""
    keys = _defaults()
    for line in (
        'int(sec.get("repetitions", 5))',
        'float(section.get("claim_tolerance", 0.05))',
        'section.get("mode", "chunked")',
        'bool(section.get("require_claim", False))',
    ):
        m = _GET.search(line)
        assert m and m.group(1) in keys
    assert _GET.search('ident.get("runtime", "")') and json.dumps("") not in keys["runtime"]


def _command_options() -> list[tuple[str, str, click.Parameter]]:
    out = []
    for group in ("", "bbq"):
        ctx = click.Context(cli)
        grp: Any = cli if not group else cli.get_command(ctx, group)
        for name in grp.list_commands(ctx):
            cmd = grp.get_command(ctx, name)
            out.extend((f"{group} {name}".strip(), p.name or "", p) for p in cmd.params)
    return out


# command -> the policy check whose keys its options mirror (option name -> policy key)
_MIRRORS: dict[str, tuple[str, dict[str, str]]] = {
    "ppl": ("perplexity", {"n_ctx": "n_ctx", "mode": "mode", "runtime": "runtime"}),
    "bbq run": (
        "bbq",
        {
            "items": "items",
            "seed": "seed",
            "mode": "mode",
            "condition": "condition",
            "seeds": "seeds",
            "temperature": "temperature",
            "permute": "permute_options",
            "disambig_items": "disambig_items",
            "runtime": "runtime",
        },
    ),
    "bench": (
        "speed",
        {
            "repetitions": "repetitions",
            "warmup": "warmup",
            "prompt_tokens": "prompt_tokens",
            "gen_tokens": "gen_tokens",
        },
    ),
    "scan": ("sparsity", {"tolerance": "claim_tolerance"}),
}


@pytest.mark.parametrize("command", sorted(_MIRRORS))
def test_command_line_defaults_are_the_schemas(command: str) -> None:
    check, mapping = _MIRRORS[command]
    params = {name: p for cmd, name, p in _command_options() if cmd == command}
    assert params, f"no command {command!r}"
    for opt, key in mapping.items():
        assert opt in params, f"{command} has no option {opt}"
        assert params[opt].default == check_default(check, key), (command, opt)


def test_sections_built_elsewhere_get_the_policy_files_defaults() -> None:
    """A section completed by ``with_section_defaults`` equals the one the policy loader builds
    from the same YAML (an explicit null stays null in both)."""
    for check in ("sparsity", "size", "speed", "perplexity", "bbq"):
        pol = parse_policy(f"version: 1\nchecks:\n  {check}: {{}}\n")
        built: Any = dict(pol.checks[check].section)
        assert with_section_defaults(check, {}) == json.loads(json.dumps(built)), check


def test_typed_sections_are_the_schemas_keys_without_defaults_of_their_own() -> None:
    """One frozen dataclass per check mirrors the schema's block exactly; the defaults stay in
    the schema (a dataclass default would be a second home)."""
    import dataclasses

    from edgegate.checks.sections import SECTIONS, typed

    assert set(SECTIONS) == set(CHECKS), sorted(
        set(SECTIONS) ^ set(CHECKS)
    )  # every check's section is typed
    for check, cls in SECTIONS.items():
        schema_keys = set(policy_schema()["$defs"][check]["properties"])
        # a run's decisions (BBQ: runtime/mode auto resolved) are declared apart from the policy keys
        decided = set(getattr(cls, "DECIDED", ()))
        names = {f.name for f in dataclasses.fields(cls)}
        assert not decided & schema_keys and decided <= names, check
        assert names - decided == schema_keys, (check, sorted((names - decided) ^ schema_keys))
        assert all(
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            for f in dataclasses.fields(cls)
        ), check
        built = typed(cls, check, {})
        assert dataclasses.asdict(built) == {k: section_defaults(check).get(k) for k in names}, (
            check
        )
        with pytest.raises(dataclasses.FrozenInstanceError):
            built.enabled = False  # type: ignore[misc]
