"""Same inputs, policy and seed -> the same JSON report, byte for byte, apart from the fields
the report schema marks non-deterministic (timestamps, durations, the machine, timings).

Two real `edgegate check` runs (llama.cpp on the fixture GGUF pair: sparsity, size,
perplexity, BBQ on the fixture items) in separate working dirs with separate result caches,
so the second run recomputes everything instead of reading the first one's answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import pytest

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads(
    (REPO / "src" / "edgegate" / "schemas" / "report.schema.json").read_text("utf-8")
)
GGUF = REPO / "fixtures" / "models" / "gguf"
MASK = "<non-deterministic>"

pytest.importorskip("llama_cpp", reason="llama-cpp-python is the runtime these checks use")


def _nondeterministic() -> tuple[set[str], set[str], set[str], set[str]]:
    """(top-level fields, per-check fields, measurement keys, whole checks) from the schema."""
    top = {k for k, v in SCHEMA["properties"].items() if v.get("x-nondeterministic")}
    check = SCHEMA["$defs"]["check"]["properties"]
    per_check = {k for k, v in check.items() if v.get("x-nondeterministic")}
    meas = check["measurements"]
    return (
        top,
        per_check,
        set(meas.get("x-nondeterministic-keys", ())),
        set(meas.get("x-nondeterministic-checks", ())),
    )


def _mask_keys(obj: Any, keys: set[str]) -> Any:
    if isinstance(obj, dict):
        return {k: (MASK if k in keys else _mask_keys(v, keys)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mask_keys(v, keys) for v in obj]
    return obj


def masked(doc: dict[str, Any]) -> dict[str, Any]:
    top, per_check, keys, whole = _nondeterministic()
    out = {k: (MASK if k in top else v) for k, v in doc.items()}
    checks = []
    for c in doc["checks"]:
        c = {k: (MASK if k in per_check else v) for k, v in c.items()}
        if c["check"] in whole:
            c = {**c, "measurements": MASK, "verdicts": MASK, "summary": MASK}
        else:
            c["measurements"] = _mask_keys(c["measurements"], keys)
        checks.append(c)
    out["checks"] = checks
    return out


def _run(cwd: Path, policy: Path) -> tuple[int, str, bytes]:
    argv = [
        sys.executable, "-m", "edgegate.cli", "check", str(GGUF / "dense-f16.gguf"), str(GGUF / "wanda50-f16.gguf"),
        "--policy", str(policy), "--bbq-data", str(REPO / "fixtures" / "bbq"), "--seed", "5",
        "--cache-dir", "cache", "--json-out", "report.json", "--threads", "1", "-q",
    ]  # fmt: skip
    cwd.mkdir()
    env = {**os.environ, "EDGEGATE_DEBUG": ""}
    env.pop("GITHUB_STEP_SUMMARY", None)
    p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return (
        p.returncode,
        p.stderr,
        (cwd / "report.json").read_bytes() if (cwd / "report.json").exists() else b"",
    )


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, str, bytes]]:
    root = tmp_path_factory.mktemp("repro")
    text = root / "eval.txt"  # a short slice of the fixture eval text keeps perplexity quick
    text.write_text((REPO / "fixtures" / "text" / "eval.txt").read_text("utf-8")[:4000], "utf-8")
    policy = root / "policy.yaml"
    policy.write_text(
        "version: 1\nname: repro\nfail_on_inconclusive: false\nchecks:\n"
        "  sparsity: {required: true}\n  size: {required: true}\n"
        f"  perplexity: {{required: true, runtime: llamacpp, n_ctx: 128, min_chunks: 2, text: {json.dumps(str(text))}}}\n"
        "  bbq: {required: true, runtime: llamacpp, items: 16, min_items: 10, condition: both}\n",
        "utf-8",
    )
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda d: _run(root / d, policy), ["a", "b"]))


def test_reports_are_valid_and_complete(reports: list[tuple[int, str, bytes]]) -> None:
    for code, err, raw in reports:
        assert raw, err
        doc = json.loads(raw)
        jsonschema.validate(doc, SCHEMA)
        assert code == doc["exit_code"], err
        assert {
            c["check"]: c["status"] != "error"
            for c in doc["checks"]
            if c["gate"] != "not-in-policy"
        } == dict.fromkeys(["sparsity", "size", "perplexity", "bbq"], True), err
        bbq = next(c for c in doc["checks"] if c["check"] == "bbq")
        # 16 sampled items, every one answered by both models: the ambiguous ones carry the bias
        # verdicts, the disambiguated ones validity and accuracy (validity comes first)
        m = bbq["measurements"]
        assert (
            m["overall"]["n"] + m["disambig_accuracy"]["n"] == 16
            and bbq["verdicts"][0]["name"] == "bbq.validity"
        )


def test_same_inputs_give_byte_identical_reports(reports: list[tuple[int, str, bytes]]) -> None:
    (_, _, a), (_, _, b) = reports
    da, db = json.loads(a), json.loads(b)
    assert da != db, (
        "timestamps/durations differ between runs; the masking must be what makes them equal"
    )
    ma, mb = json.dumps(masked(da), indent=2), json.dumps(masked(db), indent=2)
    if ma != mb:  # show the first differing lines: a new timing key belongs in the schema's list
        la, lb = ma.splitlines(), mb.splitlines()
        first = next(i for i, (x, y) in enumerate(zip(la, lb, strict=False)) if x != y)
        pytest.fail(
            "reports differ beyond the schema's non-deterministic fields:\n"
            + "\n".join(
                f"{x!r} != {y!r}"
                for x, y in zip(la[first : first + 5], lb[first : first + 5], strict=False)
            )
        )


def test_masking_keeps_the_results(reports: list[tuple[int, str, bytes]]) -> None:
    """The comparison above must not be vacuous: verdict values survive the masking."""
    doc = masked(json.loads(reports[0][2]))
    ppl = next(c for c in doc["checks"] if c["check"] == "perplexity")
    assert ppl["verdicts"][0]["observed"] is not None
    bbq = next(c for c in doc["checks"] if c["check"] == "bbq")
    assert bbq["verdicts"] and bbq["measurements"] != MASK
    assert doc["inputs"] and doc["policy"]["sha256"]
