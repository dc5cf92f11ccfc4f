"""The gate runner: check resolution, error handling, gate rules, claims, --only/--skip.

The checks here are small functions registered for the test (the real checks have their
own tests); they exercise the runner's decisions, which do not depend on what a check measures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgegate.checks.base import (
    CheckContext,
    CheckResult,
    Interval,
    PolicySection,
    Status,
    Verdict,
    compare,
)
from edgegate.claims import merge_claims, overlay, parse_claim, parse_claims
from edgegate.errors import BackendError, BackendUnavailable, CheckpointError, InputError
from edgegate.policy import CHECK_NAMES, parse_policy
from edgegate.results import GateResult
from edgegate.runner import GateOptions, registered, run_gate, run_one
from edgegate.settings import RunSettings

ALL = "version: 1\nchecks:\n" + "".join(f"  {n}: {{}}\n" for n in CHECK_NAMES)


def result(status: Status, name: str = "x") -> Callable[[CheckContext], CheckResult]:
    def run(ctx: CheckContext) -> CheckResult:
        v = Verdict(
            "v", status, f"{name} {status.value}", 1.0, 2.0, "<=", n=10, ci=Interval(0.5, 1.5)
        )
        return CheckResult.from_verdicts(name, [v], {"seen": True}, f"{name}: {status.value}")

    return run


def gate(
    inputs: tuple[Path, Path], checks: dict[str, Any], policy: str = ALL, **kw: Any
) -> GateResult:
    """Run the gate with ``checks`` registered and every other check made unavailable."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        for name in CHECK_NAMES:
            stack.enter_context(registered(name, checks.get(name)))
        return run_gate(
            GateOptions(compressed=inputs[1], dense=inputs[0], policy=parse_policy(policy), **kw)
        )


def ran(g: GateResult) -> list[Any]:
    """The outcomes of the checks the policy has (every report lists the others too)."""
    return [o for o in g.outcomes if o.gate not in ("not-in-policy", "disabled")]


def only(*names: str) -> str:
    return "version: 1\nchecks:\n" + "".join(f"  {n}: {{}}\n" for n in names)


def test_all_required_pass(inputs: tuple[Path, Path]) -> None:
    g = gate(
        inputs,
        {"sparsity": result(Status.PASS), "size": result(Status.PASS)},
        only("sparsity", "size"),
    )
    assert (g.status, g.exit_code) == ("pass", 0)
    assert [o.gate for o in ran(g)] == ["pass", "pass"]


def test_required_fail_fails_the_gate(inputs: tuple[Path, Path]) -> None:
    g = gate(
        inputs,
        {"sparsity": result(Status.FAIL), "size": result(Status.PASS)},
        only("sparsity", "size"),
    )
    assert (g.status, g.exit_code) == ("fail", 1)
    assert g.reasons == ("sparsity: x: fail: x fail",)  # summary, then the failing verdicts


def test_optional_fail_is_advisory(inputs: tuple[Path, Path]) -> None:
    pol = "version: 1\nchecks:\n  size: {}\n  speed: {required: false}\n"
    g = gate(inputs, {"size": result(Status.PASS), "speed": result(Status.FAIL)}, pol)
    assert (g.status, g.exit_code) == ("pass", 0)
    assert ran(g)[1].gate == "advisory"


def test_unavailable_required_check_is_partial_never_pass(inputs: tuple[Path, Path]) -> None:
    g = gate(inputs, {"size": result(Status.PASS)}, only("size", "bbq"))
    assert (g.status, g.exit_code) == ("partial", 1)  # not a pass: exit 1 unless accepted
    assert (
        gate(
            inputs, {"size": result(Status.PASS)}, only("size", "bbq"), allow_partial=True
        ).exit_code
        == 0
    )
    bbq = ran(g)[1]
    assert (
        bbq.result.status is Status.SKIPPED and "not available in this build" in bbq.result.summary
    )
    assert bbq.gate == "not-verified"


def test_strict_and_fail_on_skipped_turn_skips_into_failures(inputs: tuple[Path, Path]) -> None:
    g = gate(inputs, {"size": result(Status.PASS)}, only("size", "bbq"), strict=True)
    assert (g.status, g.exit_code) == ("fail", 1)
    assert "--strict makes that a failure" in g.reasons[0]
    pol = only("size", "bbq").replace("checks:", "fail_on_skipped: true\nchecks:")
    g = gate(inputs, {"size": result(Status.PASS)}, pol)
    assert (g.status, g.exit_code) == ("fail", 1)
    assert "fail_on_skipped makes that a failure" in g.reasons[0]


def test_inconclusive_follows_fail_on_inconclusive(inputs: tuple[Path, Path]) -> None:
    checks = {"size": result(Status.PASS), "bbq": result(Status.INCONCLUSIVE)}
    assert (
        gate(inputs, checks, only("size", "bbq")).exit_code == 1
    )  # default: fail_on_inconclusive true
    lenient = only("size", "bbq").replace("checks:", "fail_on_inconclusive: false\nchecks:")
    g = gate(inputs, checks, lenient, allow_partial=True)
    assert (g.status, g.exit_code) == ("partial", 0)
    assert gate(inputs, checks, lenient, strict=True).status == "fail"


def test_nothing_verified_is_not_a_pass(inputs: tuple[Path, Path]) -> None:
    """Used to be exit 0 ("incomplete"): a CI step that verified nothing went green."""
    g = gate(inputs, {}, only("speed").replace("{}", "{required: false}"))
    assert (g.status, g.exit_code) == ("unverified", 1)
    assert any("nothing was verified" in r for r in g.reasons)
    g = gate(inputs, {"size": result(Status.SKIPPED)}, only("size", "bbq"))
    assert (g.status, g.exit_code) == ("unverified", 1)
    assert any("no required check was verified" in r for r in g.reasons)


def test_backend_unavailable_is_skipped_with_install_hint(inputs: tuple[Path, Path]) -> None:
    def run(ctx: CheckContext) -> CheckResult:
        raise BackendUnavailable("llamacpp", "llamacpp")

    g = gate(inputs, {"perplexity": run}, only("perplexity"))
    r = ran(g)[0].result
    assert r.status is Status.SKIPPED
    assert "pip install 'edgegate[llamacpp]'" in r.summary


def test_missing_optional_module_is_skipped_with_install_hint(inputs: tuple[Path, Path]) -> None:
    def run(ctx: CheckContext) -> CheckResult:
        raise ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime")

    r = gate(inputs, {"speed": run}, only("speed"))
    r = ran(r)[0].result
    assert r.status is Status.SKIPPED and "edgegate[onnx]" in r.summary


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (CheckpointError("tensor shape mismatch", path="m.safetensors", field="q_proj"), 2),
        (BackendError("llama.cpp crashed", hint="see log"), 3),
        (ZeroDivisionError("division by zero"), 3),
    ],
)
def test_errors_inside_a_check_become_error_results(
    inputs: tuple[Path, Path], exc: Exception, code: int
) -> None:
    def boom(ctx: CheckContext) -> CheckResult:
        raise exc

    g = gate(inputs, {"sparsity": boom, "size": result(Status.FAIL)}, only("sparsity", "size"))
    assert (g.status, g.exit_code) == ("error", code)
    r = ran(g)[0].result
    assert r.status is Status.ERROR and r.error is not None
    assert str(exc) in r.summary or exc.args[0] in r.summary
    assert ran(g)[1].result.status is Status.FAIL  # the other check still ran


def test_a_check_returning_garbage_is_an_error(inputs: tuple[Path, Path]) -> None:
    r = gate(inputs, {"size": lambda ctx: {"status": "pass"}}, only("size"))
    r = ran(r)[0].result
    assert r.status is Status.ERROR and "expected CheckResult" in r.summary


def test_context_gets_section_claims_settings_and_shared_state(inputs: tuple[Path, Path]) -> None:
    seen: dict[str, Any] = {}

    def sparsity(ctx: CheckContext) -> CheckResult:
        ctx.shared.scan_compressed = "scan-object"  # type: ignore[assignment]
        seen["section"] = ctx.section
        seen["claims"] = dict(ctx.claims)
        seen["settings"], seen["claim_sources"] = ctx.settings, dict(ctx.claim_sources)
        seen["paths"] = (ctx.dense_path, ctx.compressed_path)
        return CheckResult.from_verdicts("sparsity", [compare("s", 0.5, ">=", 0.4)], {}, "ok")

    def size(ctx: CheckContext) -> CheckResult:
        seen["shared"] = ctx.shared.scan_compressed
        return CheckResult.from_verdicts("size", [compare("b", 1.0, "<=", 2.0)], {}, "ok")

    pol = "version: 1\nclaims: {sparsity: 0.4, speedup: 2}\nchecks:\n  sparsity: {claim_tolerance: 0.03}\n  size: {}\n"
    g = gate(
        inputs,
        {"sparsity": sparsity, "size": size},
        pol,
        cli_claims={"sparsity": 0.5},
        settings=RunSettings(seed=7),
    )
    assert g.status == "pass"
    assert seen["section"].claim_tolerance == 0.03 and seen["section"].require_claim is False
    assert seen["claims"] == {"sparsity": 0.5, "speedup": 2.0}
    assert g.claim_sources == {"sparsity": "--claim", "speedup": "policy"}
    assert seen["settings"] == RunSettings(seed=7)
    assert seen["claim_sources"] == {"sparsity": "--claim", "speedup": "policy"}
    assert seen["paths"] == (inputs[0], inputs[1])
    assert seen["shared"] == "scan-object"


def test_only_and_skip(inputs: tuple[Path, Path]) -> None:
    checks = {n: result(Status.PASS) for n in CHECK_NAMES}
    g = gate(inputs, checks, only=("sparsity", "size"))
    assert [o.name for o in g.outcomes if o.selected] == ["sparsity", "size"]
    assert all(o.gate == "deselected" for o in g.outcomes if not o.selected)
    assert any("not run (deselected): speed, fidelity, perplexity, bbq" in n for n in g.notes)
    g = gate(inputs, checks, skip=("bbq",))
    assert [o.name for o in g.outcomes if not o.selected] == ["bbq"]
    with pytest.raises(InputError, match=r"unknown check 'sparsty'.*did you mean 'sparsity'"):
        gate(inputs, checks, only=("sparsty",))
    with pytest.raises(InputError, match="not enabled in policy"):
        gate(inputs, checks, only("size"), only=("bbq",))


def test_smart_pruning_paradox_is_called_out(inputs: tuple[Path, Path]) -> None:
    g = gate(
        inputs,
        {"perplexity": result(Status.PASS, "ppl"), "bbq": result(Status.FAIL, "bbq")},
        only("perplexity", "bbq"),
    )
    assert g.status == "fail"
    assert any("smart pruning paradox" in n and "false assurance" in n for n in g.notes)
    g = gate(
        inputs,
        {"perplexity": result(Status.FAIL), "bbq": result(Status.FAIL)},
        only("perplexity", "bbq"),
    )
    assert not any("paradox" in n for n in g.notes)


def test_inputs_are_hashed_independently_of_the_runner(inputs: tuple[Path, Path]) -> None:
    import hashlib

    g = gate(inputs, {"size": result(Status.PASS)}, only("size"))
    dense, comp = g.inputs[0], g.inputs[1]
    assert dense["role"] == "dense" and dense["files"][0]["path"] == "model.safetensors"
    assert dense["files"][0]["sha256"] == hashlib.sha256(b"dense-bytes").hexdigest()
    assert comp["files"][0]["sha256"] == hashlib.sha256(b"compressed").hexdigest()
    assert comp["format"] == "gguf" and comp["total_bytes"] == len(b"compressed")


def test_run_one_records_duration() -> None:
    import time

    def slow(ctx: CheckContext) -> CheckResult:
        time.sleep(0.05)
        return CheckResult.skipped("size", "nothing")

    with registered("size", slow):
        r = run_one(
            "size",
            CheckContext(compressed_path=Path("."), dense_path=None, section=PolicySection()),
        )
    assert r.duration_s >= 0.05


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sparsity=0.5", ("sparsity", 0.5)),
        ("size_saving=50%", ("size_saving", 0.5)),
        ("speedup = 1.5", ("speedup", 1.5)),
        ("speedup=2x", ("speedup", 2.0)),
    ],
)
def test_parse_claim(text: str, expected: tuple[str, float]) -> None:
    assert parse_claim(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sparsity", "expected KEY=VALUE"),
        ("sparsity=", "expected KEY=VALUE"),
        ("sparsty=0.5", "did you mean 'sparsity'"),
        ("method=wanda", r"--claim: unknown claim 'method' \(keys: size_saving, sparsity, speedup"),
        ("sparsity=half", "--claim: claim 'sparsity' must be a number"),
        ("sparsity=1.5", r"fraction in \[0, 1\]"),
        ("sparsity=150%", r"fraction in \[0, 1\], got '150%'"),
        ("speedup=0", "> 0"),
        ("speedup=nan", "must be a finite number"),
    ],
)
def test_parse_claim_errors(text: str, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment) as ei:
        parse_claim(text)
    assert "\n" not in str(ei.value)


def test_parse_claims_repeated() -> None:
    assert parse_claims(["sparsity=0.5", "sparsity=50%", "speedup=2x"]) == {
        "sparsity": 0.5,
        "speedup": 2.0,
    }
    with pytest.raises(InputError, match="given twice with different values"):
        parse_claims(["sparsity=0.4", "sparsity=0.6"])


def test_claim_precedence() -> None:
    values, sources = merge_claims(
        {"sparsity": 0.5}, {"sparsity": 0.4, "speedup": 2.0}, {"sparsity": 0.3, "size_saving": 0.1}
    )
    assert values == {"sparsity": 0.5, "speedup": 2.0, "size_saving": 0.1}
    assert sources == {
        "sparsity": "--claim",
        "speedup": "policy",
        "size_saving": "checkpoint metadata",
    }
    # the rule itself: later layers win per key, the winning value's source goes with it
    assert overlay(({"sparsity": 0.3}, {"sparsity": "pruning_meta.json"}), ({}, {})) == (
        {"sparsity": 0.3},
        {"sparsity": "pruning_meta.json"},
    )
    assert merge_claims({}, {}, {"sparsity": 0.3}, {"sparsity": "x"})[1] == {"sparsity": "x"}


def test_skipped_verdicts_do_not_decide_a_check() -> None:
    # e.g. the size check: min_saving passed, no size claim to verify (skipped verdict).
    ok = Verdict("min_saving", Status.PASS, "ok", 0.0, 0.0, ">=")
    bad = Verdict("min_saving", Status.FAIL, "bad", -0.1, 0.0, ">=")
    none = Verdict("size_claim", Status.SKIPPED, "no claim")
    assert CheckResult.from_verdicts("size", [ok, none], {}, "").status is Status.PASS
    assert CheckResult.from_verdicts("size", [bad, none], {}, "").status is Status.FAIL
    assert CheckResult.from_verdicts("size", [none], {}, "").status is Status.SKIPPED
    assert CheckResult.from_verdicts("size", [], {}, "").status is Status.SKIPPED


def test_data_files_the_checks_read_are_hashed(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    import hashlib

    data = tmp_path / "bbqdata"
    data.mkdir()
    (data / "Age.jsonl").write_text('{"x": 1}\n')
    text = tmp_path / "eval.txt"
    text.write_text("some text")
    pol = f"version: 1\nchecks:\n  perplexity: {{text: '{text}'}}\n  bbq: {{}}\n"
    checks = {"perplexity": result(Status.PASS), "bbq": result(Status.PASS)}
    g = gate(inputs, checks, pol, settings=RunSettings(bbq_data=str(data)))
    by_role = {i["role"]: i for i in g.inputs}
    assert by_role["bbq_data"]["files"] == [
        {"path": "Age.jsonl", "bytes": 9, "sha256": hashlib.sha256(b'{"x": 1}\n').hexdigest()}
    ]
    assert (
        by_role["perplexity_text"]["files"][0]["sha256"] == hashlib.sha256(b"some text").hexdigest()
    )
    g = gate(
        inputs, checks, pol, settings=RunSettings(bbq_data="hf:heegyu/bbq"), skip=("perplexity",)
    )
    assert {i["role"] for i in g.inputs} == {"dense", "compressed"}  # nothing local to hash


def test_the_fidelity_text_is_hashed_once_or_as_its_own(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    text, own = tmp_path / "eval.txt", tmp_path / "kl.txt"
    text.write_text("some text")
    own.write_text("other text")
    checks = {"perplexity": result(Status.PASS), "fidelity": result(Status.PASS)}
    shared = f"version: 1\nchecks:\n  perplexity: {{text: '{text}'}}\n  fidelity: {{}}\n"
    # fidelity alone still reads perplexity's text: that file is an input of the run
    g = gate(inputs, checks, shared, only=("fidelity",))
    assert [i["role"] for i in g.inputs if i["role"].endswith("_text")] == ["fidelity_text"]
    g = gate(inputs, checks, shared)  # both checks, one text: hashed once
    assert [i["role"] for i in g.inputs if i["role"].endswith("_text")] == ["perplexity_text"]
    apart = (
        f"version: 1\nchecks:\n  perplexity: {{text: '{text}'}}\n  fidelity: {{text: '{own}'}}\n"
    )
    g = gate(inputs, checks, apart)
    by_role = {i["role"]: i for i in g.inputs}
    assert (
        by_role["fidelity_text"]["files"][0]["sha256"] == hashlib.sha256(b"other text").hexdigest()
    )


def test_runtime_flag_reaches_fidelity_too() -> None:
    from edgegate.preflight import check_runtime, runtime_flag_problems

    settings = RunSettings(runtimes=("transformers",))
    assert check_runtime("fidelity", {"runtime": "llamacpp"}, settings) == "transformers"
    two = RunSettings(runtimes=("transformers", "llamacpp"))
    assert any("fidelity" in p.message for p in runtime_flag_problems(["fidelity"], two))
