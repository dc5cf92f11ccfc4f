"""``ErrorRecord``: why a check errored (or did not run), as reports and partial files hold it.

Its JSON is the dict ``EdgegateError.to_dict`` always wrote (the report schema's ``error``); a
record read back from a partial file is checked, and a malformed one is an InputError that
names the key, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgegate.errors import BackendError, ErrorRecord, ExitCode, InputError
from edgegate.merge import merge_gate
from edgegate.partial import load_parts, write_partial
from edgegate.policy import parse_policy
from edgegate.results import CheckResult, Status

# the shape every error dict had before the record type: six keys, in this order
OLD_KEYS = ["type", "message", "path", "field", "hint", "exit_code"]


@pytest.mark.parametrize(
    "exc,code",
    [
        (InputError("bad value", path="p.yaml", field="checks.size", hint="fix it"), 2),
        (BackendError("runtime crashed", hint="see its log"), 3),
    ],
)
def test_the_record_writes_the_old_dict_and_reads_it_back(exc: Exception, code: int) -> None:
    assert isinstance(exc, InputError | BackendError)
    rec = exc.record()
    d = rec.to_dict()
    assert list(d) == OLD_KEYS
    assert d == {
        "type": type(exc).__name__,
        "message": exc.message,
        "path": exc.path,
        "field": exc.field,
        "hint": exc.hint,
        "exit_code": code,
    }
    assert exc.to_dict() == d
    back = ErrorRecord.from_dict(json.loads(json.dumps(d)))
    assert back == rec and back.to_dict() == d
    assert back.exit_code is ExitCode(code) and back.code is ExitCode(code)


def test_a_record_without_an_exit_code_writes_none_and_reads_as_a_runtime_error() -> None:
    rec = ErrorRecord("FailFast", "not run", field="fail_fast", hint="h")  # fail-fast's "not run"
    assert rec.to_dict() == {
        "type": "FailFast",
        "message": "not run",
        "path": None,
        "field": "fail_fast",
        "hint": "h",
    }
    assert ErrorRecord.from_dict(rec.to_dict()) == rec
    assert rec.exit_code is None and rec.code is ExitCode.RUNTIME_ERROR


GOOD: dict[str, Any] = {
    "type": "InputError",
    "message": "m",
    "path": None,
    "field": None,
    "hint": None,
    "exit_code": 2,
}


@pytest.mark.parametrize(
    "bad,key",
    [
        ({k: v for k, v in GOOD.items() if k != "message"}, "message"),
        ({k: v for k, v in GOOD.items() if k != "type"}, "type"),
        ({**GOOD, "exit_code": 7}, "exit_code"),
        ({**GOOD, "exit_code": 0}, "exit_code"),  # 0 and 1 are verdicts, not errors
        ({**GOOD, "exit_code": "2"}, "exit_code"),
        ({**GOOD, "exit_code": True}, "exit_code"),
        ({**GOOD, "exit_code": 2.0}, "exit_code"),
        ({**GOOD, "message": 5}, "message"),
        ({**GOOD, "type": None}, "type"),
        ({**GOOD, "path": ["a"]}, "path"),
        ({**GOOD, "hint": {"x": 1}}, "hint"),
    ],
)
def test_a_malformed_record_is_an_input_error_naming_the_key(bad: dict[str, Any], key: str) -> None:
    with pytest.raises(InputError) as e:
        ErrorRecord.from_dict(bad, path="part-1.json", field="results.size.error")
    assert e.value.field == f"results.size.error.{key}" and e.value.path == "part-1.json"
    assert e.value.exit_code is ExitCode.INPUT_ERROR


@pytest.mark.parametrize("bad", [None, "boom", ["a"], 3])
def test_a_record_that_is_not_an_object_is_an_input_error(bad: object) -> None:
    with pytest.raises(InputError) as e:
        ErrorRecord.from_dict(bad)
    assert e.value.field == "error" and "an error record" in e.value.message


POLICY = "version: 1\nchecks:\n  size: {}\n"


def _shard_file(tmp: Path, result: CheckResult) -> Path:
    """Shard 1 of 1's partial file, written by the real writer, carrying ``result``."""
    pol = parse_policy(POLICY)
    fp = {"policy": pol.to_dict(), "settings": {"strict": False, "only": [], "skip": []}}
    gate = {
        "claims": {},
        "claim_sources": {},
        "inputs": [],
        "environment": {},
        "argv": [],
        "started_at": "2024-01-01T00:00:00+00:00",
    }
    payload = {"gate": gate, "results": {"size": result.to_dict()}, "checks": {}}
    return write_partial(
        tmp / "part-1.json", command="check", shard=(1, 1), fingerprint=fp, payload=payload
    )


def test_an_errored_result_survives_the_partial_file(tmp_path: Path) -> None:
    err = InputError(
        "cannot read the checkpoint", path="m.safetensors", field="header", hint="re-download it"
    )
    res = CheckResult("size", Status.ERROR, err.one_line(), error=err.record())
    merged = merge_gate(load_parts([_shard_file(tmp_path, res)]), parse_policy(POLICY))
    back = merged.result("size")
    assert back is not None and back.error == res.error and back.to_dict() == res.to_dict()
    assert (merged.status, merged.exit_code) == ("error", 2)  # the record's exit code decides


def test_a_tampered_record_in_a_partial_file_is_an_input_error(tmp_path: Path) -> None:
    res = CheckResult("size", Status.ERROR, "boom", error=BackendError("boom").record())
    p = _shard_file(tmp_path, res)
    doc = json.loads(p.read_text())
    doc["results"]["size"]["error"]["exit_code"] = 7
    p.write_text(json.dumps(doc))
    with pytest.raises(InputError) as e:
        merge_gate(load_parts([p]), parse_policy(POLICY))
    assert e.value.field == "results.size.error.exit_code" and e.value.path == str(p)
    assert "got 7" in e.value.message
