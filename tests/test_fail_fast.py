"""Fail-fast (issue 21, lever 3): once a required check has failed or errored, the checks after
it are not run; every report lists them as not run with the reason, never as a pass, and the
status keeps its exit code. The checks are fakes registered for the test (tests/test_runner.py's
helpers) that record whether they ran; the Action test runs the real CLI on the fixtures."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml
from _support import run_cli
from test_runner import ALL, gate, only, result

from edgegate.checks.base import CheckContext, CheckResult, Status
from edgegate.gate import decide
from edgegate.policy import CHECK_NAMES, parse_policy
from edgegate.report import render
from edgegate.report.json_report import build_report, validate_report
from edgegate.results import GateResult, check_result_from_dict
from edgegate.runner import GateOptions, registered, run_shard

REPO = Path(__file__).resolve().parents[1]
REASON = "not run: fail-fast — required check 'size' already failed"
Inputs = tuple[Path, Path]


def recording(calls: list[str], status: Status) -> dict[str, Callable[[CheckContext], CheckResult]]:
    """Fake checks for every check name: each records that it ran, then returns ``status``."""

    def make(name: str) -> Callable[[CheckContext], CheckResult]:
        def run(ctx: CheckContext) -> CheckResult:
            calls.append(name)
            return result(status, name)(ctx)

        return run

    return {n: make(n) for n in CHECK_NAMES}


def with_fail_fast(policy: str, value: bool) -> str:
    return policy.replace("checks:", f"fail_fast: {str(value).lower()}\nchecks:", 1)


def outcome(g: GateResult, name: str) -> Any:
    return next(o for o in g.outcomes if o.name == name)


def size_fails(calls: list[str]) -> dict[str, Callable[[CheckContext], CheckResult]]:
    checks = recording(calls, Status.PASS)
    fail = result(Status.FAIL, "size")

    def size(ctx: CheckContext) -> CheckResult:
        calls.append("size")
        return fail(ctx)

    return {**checks, "size": size}


# -- the gate: what runs, what is listed, the status -------------------------------------------


def test_a_failing_required_check_stops_the_later_checks(inputs: Inputs) -> None:
    calls: list[str] = []
    g = gate(inputs, size_fails(calls), with_fail_fast(ALL, True))
    assert calls == ["sparsity", "size"]  # speed, fidelity, perplexity, bbq never started
    assert (g.status, g.exit_code) == ("fail", 1)
    assert g.reasons == ("size: size: fail: size fail",)
    later = [outcome(g, n) for n in ("speed", "fidelity", "perplexity", "bbq")]
    for o in later:  # listed, selected, not run, never a pass
        assert (o.gate, o.selected, o.result.status, o.reason, o.result.summary) == (
            "not-run",
            True,
            Status.SKIPPED,
            REASON,
            REASON,
        )
    assert (
        outcome(g, "speed").required is False
    )  # advisory checks after the stop are not run either
    assert any(
        n.startswith("not run (fail-fast): speed, fidelity, perplexity, bbq: required check 'size'")
        for n in g.notes
    )
    assert not any(n.startswith("could not run") for n in g.notes)  # not "unavailable": stopped


def test_an_erroring_required_check_stops_too_and_keeps_its_exit_code(inputs: Inputs) -> None:
    calls: list[str] = []

    def crash(ctx: CheckContext) -> CheckResult:
        calls.append("sparsity")
        raise RuntimeError("backend fell over")

    g = gate(
        inputs, {**recording(calls, Status.PASS), "sparsity": crash}, with_fail_fast(ALL, True)
    )
    assert calls == ["sparsity"]
    assert (g.status, g.exit_code) == ("error", 3)
    assert {outcome(g, n).gate for n in CHECK_NAMES[1:]} == {"not-run"}
    assert (
        outcome(g, "size").reason
        == "not run: fail-fast — required check 'sparsity' already errored"
    )


def test_inconclusive_under_fail_on_inconclusive_is_a_failure_that_stops(inputs: Inputs) -> None:
    calls: list[str] = []
    checks = {**recording(calls, Status.PASS), "size": result(Status.INCONCLUSIVE, "size")}
    g = gate(inputs, checks, with_fail_fast(ALL, True))  # fail_on_inconclusive defaults to true
    assert calls == ["sparsity"] and outcome(g, "speed").gate == "not-run"
    lenient = with_fail_fast(ALL, True).replace(
        "checks:", "fail_on_inconclusive: false\nchecks:", 1
    )
    calls.clear()
    g = gate(
        inputs, checks, lenient
    )  # inconclusive is then "not verified", not a failure: nothing stops
    assert calls == ["sparsity", "fidelity", "perplexity", "speed", "bbq"]


def test_checks_run_cheapest_first_and_are_reported_in_policy_order(inputs: Inputs) -> None:
    """The run order comes from each check's declared cost (NEEDS.cost): the static checks,
    then the one scoring pass (fidelity, perplexity), then the timed runs (speed), then BBQ.
    A required perplexity failure under fail-fast therefore never pays for the speed runs."""
    from edgegate import checks as check_modules

    assert check_modules.run_order(CHECK_NAMES) == (
        "sparsity",
        "size",
        "fidelity",
        "perplexity",
        "speed",
        "bbq",
    )
    calls: list[str] = []
    g = gate(
        inputs,
        {**recording(calls, Status.PASS), "perplexity": result(Status.FAIL, "perplexity")},
        with_fail_fast(ALL, True),
    )
    assert calls == [
        "sparsity",
        "size",
        "fidelity",
    ]  # perplexity (a fake without a recorder) failed next
    assert outcome(g, "speed").gate == "not-run" and outcome(g, "bbq").gate == "not-run"
    assert [o.name for o in g.outcomes] == list(CHECK_NAMES)


def test_an_advisory_failure_stops_nothing(inputs: Inputs) -> None:
    calls: list[str] = []
    checks = {**recording(calls, Status.PASS), "speed": result(Status.FAIL, "speed")}
    pol = with_fail_fast(ALL.replace("  speed: {}", "  speed: {required: false}"), True)
    g = gate(inputs, checks, pol)
    assert calls == [
        "sparsity",
        "size",
        "fidelity",
        "perplexity",
        "bbq",
    ]  # speed (a fake without a recorder) ran too
    assert outcome(g, "speed").gate == "advisory"
    assert not any(o.gate == "not-run" for o in g.outcomes)
    assert (g.status, g.exit_code) == ("pass", 0)


def test_an_advisory_check_that_errors_stops_nothing(inputs: Inputs) -> None:
    """Only a *required* check stops the run: an advisory one's unreadable input still makes the
    run an input error (exit 2, issue 15), but the others are measured and reported."""
    from edgegate.errors import InputError

    calls: list[str] = []

    def unreadable(ctx: CheckContext) -> CheckResult:
        raise InputError("cannot read the compressed model")

    pol = with_fail_fast(ALL.replace("  speed: {}", "  speed: {required: false}"), True)
    g = gate(inputs, {**recording(calls, Status.PASS), "speed": unreadable}, pol)
    assert outcome(g, "speed").gate == "error" and outcome(g, "speed").required is False
    assert calls == ["sparsity", "size", "fidelity", "perplexity", "bbq"]
    assert (g.status, g.exit_code) == ("error", 2)


def test_without_fail_fast_every_check_runs(inputs: Inputs) -> None:
    for pol, kw in (
        (ALL, {}),
        (with_fail_fast(ALL, False), {}),
        (with_fail_fast(ALL, True), {"fail_fast": False}),
    ):
        calls: list[str] = []
        g = gate(inputs, size_fails(calls), pol, **kw)
        # the default is false; the option beats the policy; cheapest first
        assert calls == ["sparsity", "size", "fidelity", "perplexity", "speed", "bbq"], (pol, kw)
        assert not any(o.gate == "not-run" for o in g.outcomes)
        assert (g.status, g.exit_code) == ("fail", 1)
        assert g.policy.fail_fast is False  # the report's resolved policy says what applied


def test_the_option_turns_it_on_over_the_policy(inputs: Inputs) -> None:
    calls: list[str] = []
    g = gate(inputs, size_fails(calls), ALL, fail_fast=True)
    assert calls == ["sparsity", "size"] and g.policy.fail_fast is True
    assert build_report(g)["policy"]["resolved"]["fail_fast"] is True


def test_the_default_lives_in_the_schema() -> None:
    assert parse_policy(ALL).fail_fast is False
    assert parse_policy(with_fail_fast(ALL, True)).fail_fast is True
    from edgegate.errors import PolicyError

    with pytest.raises(PolicyError, match="fail_fast: expected boolean"):
        parse_policy(ALL.replace("checks:", "fail_fast: sometimes\nchecks:", 1))


# -- every report lists the checks that did not run, with the reason --------------------------


def _stopped(inputs: Inputs) -> GateResult:
    return gate(inputs, size_fails([]), with_fail_fast(ALL, True))


def test_json_report(inputs: Inputs) -> None:
    report = build_report(_stopped(inputs))
    assert validate_report(report) == [] and report["schema_version"] == "2.1"
    assert (report["status"], report["exit_code"]) == ("fail", 1)
    checks = {c["check"]: c for c in report["checks"]}
    for name in ("speed", "fidelity", "perplexity", "bbq"):
        c = checks[name]
        assert (c["status"], c["gate"], c["selected"], c["gate_reason"], c["summary"]) == (
            "skipped",
            "not-run",
            True,
            REASON,
            REASON,
        )
        assert c["error"]["type"] == "FailFast" and c["verdicts"] == []
    assert report["verification"]["not_verified"] == ["fidelity", "perplexity", "bbq"]
    assert report["policy"]["resolved"]["fail_fast"] is True


def test_markdown_html_junit_and_terminal(inputs: Inputs) -> None:
    g = _stopped(inputs)
    md = render("markdown", g)
    assert md.startswith("## ❌ edgegate: FAIL")
    assert f"| bbq | yes | ⏭️ not-run | {REASON} |" in md and "✅ not-run" not in md

    html = render("html", g)
    assert "<span class='pill not-run'>not-run</span>" in html
    assert "not run: fail-fast — required check &#x27;size&#x27; already failed" in html

    import xml.etree.ElementTree as ET

    suites = ET.fromstring(render("junit", g))
    bbq = suites.find("testsuite[@name='edgegate.bbq']")
    assert bbq is not None and bbq.get("skipped") == "1" and bbq.get("failures") == "0"
    skipped = bbq.find("testcase/skipped")
    assert skipped is not None and skipped.get("message") == REASON

    from rich.console import Console

    from edgegate.report.terminal import print_summary

    buf = io.StringIO()
    print_summary(g, Console(file=buf, width=200, color_system=None))
    rows = [line for line in buf.getvalue().splitlines() if "│ bbq" in line]
    assert len(rows) == 1 and "not-run" in rows[0] and REASON in rows[0]
    assert "FAIL (exit 1)" in buf.getvalue()


# -- the CLI flag overrides the policy key; exit code 1 ---------------------------------------


def _cli(
    inputs: Inputs, tmp_path: Path, policy: str, *flags: str
) -> tuple[int, list[str], dict[str, Any]]:
    pol = tmp_path / "policy.yaml"
    pol.write_text(policy)
    out = tmp_path / "report.json"
    out.unlink(missing_ok=True)
    calls: list[str] = []
    with ExitStack() as stack:
        for name, fn in size_fails(calls).items():
            stack.enter_context(registered(name, fn))
        code, text = run_cli(
            "check",
            str(inputs[0]),
            str(inputs[1]),
            "--policy",
            str(pol),
            "-q",
            "--json-out",
            str(out),
            *flags,
        )
    assert out.is_file(), text
    return code, calls, json.loads(out.read_text())


def test_cli_flag_overrides_the_policy_key(inputs: Inputs, tmp_path: Path) -> None:
    code, calls, rep = _cli(inputs, tmp_path, with_fail_fast(ALL, True))
    assert (code, rep["status"], calls) == (1, "fail", ["sparsity", "size"])
    assert {c["check"]: c["gate"] for c in rep["checks"]}["bbq"] == "not-run"
    code, calls, rep = _cli(inputs, tmp_path, with_fail_fast(ALL, True), "--no-fail-fast")
    assert (code, rep["status"], calls) == (
        1,
        "fail",
        ["sparsity", "size", "fidelity", "perplexity", "speed", "bbq"],
    )
    assert rep["policy"]["resolved"]["fail_fast"] is False
    code, calls, rep = _cli(inputs, tmp_path, ALL, "--fail-fast")
    assert (code, rep["status"], calls) == (1, "fail", ["sparsity", "size"])
    assert validate_report(rep) == []
    code, calls, rep = _cli(inputs, tmp_path, ALL)  # neither: the schema's default, false
    assert (code, calls) == (1, ["sparsity", "size", "fidelity", "perplexity", "speed", "bbq"])


# -- shards: fail-fast applies within a shard only ---------------------------------------------


def test_a_shards_placeholders_stop_nothing(inputs: Inputs) -> None:
    """In shard 2/2 the unsplit checks are "runs in shard 1" placeholders; under --strict those
    read as failed skips, and must not stop the shard's own work."""
    calls: list[str] = []
    checks = {**recording(calls, Status.PASS)}
    with ExitStack() as stack:
        for name in CHECK_NAMES:
            stack.enter_context(registered(name, checks[name]))
        opts = GateOptions(
            compressed=inputs[1],
            dense=inputs[0],
            policy=parse_policy(ALL),
            shard=(2, 2),
            strict=True,
            fail_fast=True,
        )
        run = run_shard(opts)
    assert not any(o.gate == "not-run" for o in run.gate.outcomes)
    assert outcome(run.gate, "sparsity").gate == "fail"  # the placeholder, judged under --strict


def test_a_sharded_checks_measured_placeholder_stops_nothing(
    inputs: Inputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A split check in a shard only measures ("shard 1/2: measured; the verdict comes from
    merge"); under --strict that placeholder reads as a failed skip and must not stop the checks
    after it. Fidelity stands in for a split check here (a fake module: measure and judge)."""
    import types

    from edgegate import checks as check_modules

    measured: list[str] = []

    def measure(ctx: CheckContext, shard: Any) -> dict[str, Any]:
        measured.append("fidelity")
        return {"chunks": [1, 2]}

    fake = types.SimpleNamespace(SHARDED=True, measure=measure, judge=lambda parts, section: None)
    real_load = check_modules.load
    monkeypatch.setattr(check_modules, "load", lambda n: fake if n == "fidelity" else real_load(n))
    calls: list[str] = []
    with ExitStack() as stack:
        for name, fn in recording(calls, Status.PASS).items():
            if name != "fidelity":  # unregistered: the runner treats it as a split check
                stack.enter_context(registered(name, fn))
        pol = parse_policy(only("sparsity", "fidelity", "perplexity"))
        run = run_shard(
            GateOptions(
                compressed=inputs[1],
                dense=inputs[0],
                policy=pol,
                shard=(1, 2),
                strict=True,
                fail_fast=True,
            )
        )
    assert measured == ["fidelity"] and calls == ["sparsity", "perplexity"]
    assert outcome(run.gate, "fidelity").gate == "fail"  # the placeholder, judged under --strict
    assert outcome(run.gate, "perplexity").gate == "pass"
    assert run.measured == {"fidelity": {"chunks": [1, 2]}}


def test_shard_1_stops_and_merge_keeps_the_checks_it_did_not_run(inputs: Inputs) -> None:
    """Shard 1 stops after its failing check; its partial file carries why the rest did not run,
    and the merge (which never applies fail-fast itself) lists them as not-run, not as skipped."""
    from edgegate.partial import check_payload

    calls: list[str] = []
    with ExitStack() as stack:
        for name, fn in size_fails(calls).items():
            stack.enter_context(registered(name, fn))
        opts = GateOptions(
            compressed=inputs[1],
            dense=inputs[0],
            policy=parse_policy(ALL),
            shard=(1, 2),
            fail_fast=True,
        )
        run = run_shard(opts)
    assert calls == ["sparsity", "size"]
    carried = check_payload(run.gate, (1, 2), run.measured, run.sharded)["results"]
    assert carried["bbq"]["summary"] == REASON
    pol = parse_policy(ALL).strict()  # under fail_on_skipped a plain skip would be a failure
    d = decide(
        pol, True, (), (), lambda n: check_result_from_dict(json.loads(json.dumps(carried[n])))
    )
    gates = {o.name: (o.gate, o.reason) for o in d.outcomes}
    assert gates["bbq"] == ("not-run", REASON) and gates["size"][0] == "fail"
    assert d.reasons == (
        f"size: {carried['size']['summary']}: size fail",
    )  # the stopped checks are no failure of their own
    assert (d.status, d.exit_code) == ("fail", 1)


# -- the GitHub Action passes its input to the CLI ---------------------------------------------


def _action(
    tmp_path: Path, fail_fast: str | None
) -> tuple[int, dict[str, str], dict[str, Any], str]:
    action = yaml.safe_load((REPO / "action.yml").read_text())
    assert action["inputs"]["fail-fast"]["default"] == ""  # empty: the policy decides
    step = next(s for s in action["runs"]["steps"] if s.get("id") == "run")
    assert step["env"]["FAIL_FAST"] == "${{ inputs.fail-fast }}"
    outputs, rep = tmp_path / "outputs", tmp_path / "rep"
    outputs.unlink(missing_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "FAIL_FAST")
    }
    env.update(
        DENSE="fixtures/models/dense",
        COMPRESSED="fixtures/models/claimed50",
        POLICY="policies/strict.yaml",
        ARGS="--only sparsity,size -q",
        OUT=str(rep),
        FAIL_ON_ERROR="true",
        ALLOW_PARTIAL="false",
        GITHUB_OUTPUT=str(outputs),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    if fail_fast is not None:
        env["FAIL_FAST"] = fail_fast
    (rep / "edgegate.json").unlink(missing_ok=True)
    r = subprocess.run(
        ["bash", "-c", step["run"]], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    out = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    report = (
        json.loads((rep / "edgegate.json").read_text()) if (rep / "edgegate.json").exists() else {}
    )
    return r.returncode, out, report, r.stdout + r.stderr


def test_action_input_reaches_the_cli(tmp_path: Path) -> None:
    # claimed50 claims 50% sparsity and has 33%: strict's sparsity check fails, size comes after it
    code, out, rep, text = _action(tmp_path, "true")
    assert (code, out["status"], out["exit-code"]) == (1, "fail", "1"), text
    gates = {c["check"]: c["gate"] for c in rep["checks"]}
    assert gates["sparsity"] == "fail" and gates["size"] == "not-run"
    assert rep["command"][-1] == "--fail-fast"
    for value in (
        "",
        None,
        "false",
    ):  # empty or absent: the policy (strict: no fail_fast, so false)
        code, out, rep, text = _action(tmp_path, value)
        assert (code, out["status"]) == (1, "fail"), text
        assert {c["check"]: c["gate"] for c in rep["checks"]}["size"] in ("pass", "fail")
        assert ("--no-fail-fast" in rep["command"]) == (value == "false")
    code, out, rep, text = _action(tmp_path, "yes")  # a typo is refused, not read as false
    assert (code, out["status"], out["exit-code"]) == (2, "error", "2") and rep == {}
    assert "fail-fast input must be true, false or empty" in text


def test_a_study_ignores_fail_fast(tmp_path: Path) -> None:
    """A study measures every variant whole (its table needs every column), whatever the
    policy's fail_fast says."""
    (tmp_path / "policy.yaml").write_text(
        "version: 1\nfail_fast: true\nchecks:\n  sparsity: {}\n  size: {}\n"
    )
    spec = tmp_path / "study.yaml"
    spec.write_text(
        f"version: 1\nname: ff\npolicy: policy.yaml\nmodels_dir: {REPO / 'fixtures' / 'models'}\nout: out\n"
        "dense: {path: dense, label: dense}\nvariants:\n  - {name: claimed50, path: claimed50, label: c50}\n"
    )
    code, text = run_cli("study", str(spec), "-q")
    assert code == 0, text
    rep = json.loads((tmp_path / "out" / "variants" / "claimed50.report.json").read_text())
    gates = {c["check"]: c["gate"] for c in rep["checks"]}
    assert gates["sparsity"] == "fail" and gates["size"] in (
        "pass",
        "fail",
    )  # size ran after the failure
    assert rep["policy"]["resolved"]["fail_fast"] is False
