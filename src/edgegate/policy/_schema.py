"""The policy JSON Schema shipped with the package, and the defaults it holds (their one home)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=1)
def policy_schema() -> dict[str, Any]:
    text = resources.files("edgegate").joinpath("schemas/policy.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


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
