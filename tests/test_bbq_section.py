"""The typed BBQ policy section: built from the schema's defaults like the other checks'
sections, recorded in a BBQ measurement as the same JSON "policy" the check wrote when the
section was a dict, and read back from a partial file with an InputError (never a traceback)
when that JSON is malformed."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from edgegate.checks.sections import BBQSection, bbq_section
from edgegate.errors import InputError
from edgegate.policy import parse_policy, policy_schema, section_defaults

DECISIONS = {
    "runtime_choice": {"runtime": "llamacpp", "requested": "auto", "reason": "a GGUF ships"},
    "mode_choice": {"mode": "letter", "requested": "auto", "reason": "a chat template"},
}


def _decided(sec: BBQSection) -> BBQSection:
    """``sec`` as a run with ``runtime: auto`` and ``mode: auto`` records it."""
    return dataclasses.replace(
        sec, runtime_choice=DECISIONS["runtime_choice"], mode_choice=DECISIONS["mode_choice"]
    )


def _recorded(section: dict[str, Any], **decided: Any) -> dict[str, Any]:
    """The "policy" JSON as the check recorded it while the section was a dict: the schema's
    defaults overlaid with the section's non-null keys, then the run's decisions added."""
    pol = {**section_defaults("bbq"), **{k: v for k, v in section.items() if v is not None}}
    pol.update(decided)
    return json.loads(json.dumps(pol))


def test_the_defaults_record_as_the_schemas_defaults_in_the_schemas_order() -> None:
    got = bbq_section().to_dict()
    assert list(got.items()) == list(section_defaults("bbq").items())


@pytest.mark.parametrize(
    "section",
    [
        {},
        {
            "items": 50,
            "mode": "auto",
            "alpha": 0.01,
            "data": "bbq/",
            "sequential": False,
            "looks": 2,
        },
        {
            "max_unbiased_to_biased_rate": 0.1,
            "min_items": 20,
        },  # the retired key, with no default, when set
        {"runtime": None, "temperature": None},  # a null is the default, as before
    ],
)
def test_the_recorded_json_is_unchanged(section: dict[str, Any]) -> None:
    """Same keys, values and order as the dict the check recorded, so partial files written
    before and after agree (``combine`` compares them between shards)."""
    assert list(bbq_section(section).to_dict().items()) == list(_recorded(section).items())
    assert list(_decided(bbq_section(section)).to_dict().items()) == list(
        _recorded(section, **DECISIONS).items()
    )


def test_a_policy_files_section_is_the_one_the_check_reads() -> None:
    pol = parse_policy(
        "version: 1\nchecks:\n  bbq:\n    items: 40\n    max_unbiased_to_biased_rate: 0.2\n"
    )
    sec = bbq_section(pol.checks["bbq"].section)
    assert (
        sec.items == 40
        and sec.max_unbiased_to_biased_rate == 0.2
        and sec.alpha == section_defaults("bbq")["alpha"]
    )
    assert sec.runtime_choice is None and sec.mode_choice is None
    assert sec.to_dict() == _recorded({"items": 40, "max_unbiased_to_biased_rate": 0.2})


def test_overrides_win_and_the_section_is_frozen() -> None:
    sec = bbq_section({"min_items": 5}, min_items=7, seeds=2)
    assert (sec.min_items, sec.seeds) == (7, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sec.alpha = 0.5  # type: ignore[misc]


def test_the_fields_are_typed_as_the_schema_types_them() -> None:
    """Each policy key's annotation is its schema type (a number may be written as an int)."""
    json_kind = {
        "boolean": "bool",
        "integer": "int",
        "number": "float",
        "string": "str",
        "null": "None",
    }
    defs = policy_schema()["$defs"]
    kinds = {f.name: str(f.type) for f in dataclasses.fields(BBQSection)}
    for key, sub in defs["bbq"]["properties"].items():
        ref = sub.get("$ref", "").split("/")[-1]
        sub = {**defs.get(ref, {}), **sub}
        types: str | list[str] = "string" if "enum" in sub else sub["type"]
        want = " | ".join(json_kind[t] for t in ([types] if isinstance(types, str) else types))
        want = f"{want} | None" if "default" not in sub and "None" not in want else want
        assert kinds[key] == want, key


@pytest.mark.parametrize(
    "section", [{}, {"max_unbiased_to_biased_rate": 0.1, "mode": "loglik", "items": 0}]
)
def test_the_recorded_json_reads_back_as_the_same_section(section: dict[str, Any]) -> None:
    sec = _decided(bbq_section(section))
    assert BBQSection.from_dict(json.loads(json.dumps(sec.to_dict()))) == sec
    assert BBQSection.from_dict(bbq_section(section).to_dict()) == bbq_section(section)


def test_an_older_record_without_the_newer_keys_gets_their_defaults() -> None:
    old = {k: v for k, v in bbq_section().to_dict().items() if k not in ("sequential", "looks")}
    assert BBQSection.from_dict(old) == bbq_section()
    assert (
        BBQSection.from_dict({**old, "min_items": 300.0}).min_items == 300.0
    )  # JSON's integral float is an integer


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (["alpha", 0.05], "checks.bbq.policy"),
        (None, "checks.bbq.policy"),
        ({"alpha": "0.05"}, "checks.bbq.policy.alpha"),
        ({"min_items": True}, "checks.bbq.policy.min_items"),
        ({"min_items": 2.5}, "checks.bbq.policy.min_items"),
        ({"per_category": 1}, "checks.bbq.policy.per_category"),
        ({"data": 3}, "checks.bbq.policy.data"),
        ({"runtime_choice": "llamacpp"}, "checks.bbq.policy.runtime_choice"),
        ({"mode_choice": {"mode": 1}}, "checks.bbq.policy.mode_choice"),
        ({"alpah": 0.05}, "checks.bbq.policy.alpah"),
    ],
)
def test_a_malformed_record_is_an_input_error_naming_the_field(doc: Any, field: str) -> None:
    with pytest.raises(InputError) as err:
        BBQSection.from_dict(doc, path="part-2.json")
    assert err.value.field == field
    assert "part-2.json" in str(err.value) and field in str(err.value)


def test_merging_a_part_with_a_malformed_policy_is_an_input_error() -> None:
    from edgegate.bbq.measurement import combine

    part = {
        "sample": [],
        "sample_sha256": "x",
        "items": [],
        "answers": {"dense": [], "compressed": []},
        "data": {},
        "config": {},
        "policy": {**bbq_section().to_dict(), "alpha": [0.05]},
        "duration_s": 0.0,
    }
    with pytest.raises(InputError) as err:
        combine([("p1.json", part)])
    assert err.value.field == "checks.bbq.policy.alpha" and "p1.json" in str(err.value)
