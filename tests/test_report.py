"""Reports: JSON validates against the shipped schema, Markdown/JUnit/HTML say what the gate
decided, with observed value, threshold, n and CI for every verdict."""

from __future__ import annotations

import hashlib
import json
import math
import re
import xml.etree.ElementTree as ET
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgegate.checks.base import CheckContext, CheckResult, Interval, Status, Verdict, compare
from edgegate.cli import cli
from edgegate.policy import CHECK_NAMES, parse_policy
from edgegate.report import FORMATS, render
from edgegate.report.json_report import build_report, report_schema, validate_report
from edgegate.results import GateResult
from edgegate.runner import GateOptions, registered, run_gate

POLICY = """version: 1
name: test-policy
claims: {sparsity: 0.5}
checks:
  sparsity: {}
  size: {}
  speed: {required: false}
  perplexity: {}
  bbq: {}
"""


def _sparsity(ctx: CheckContext) -> CheckResult:
    tensors = []
    for layer in range(2):
        for kind in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
            zeros = 0 if kind in ("o_proj", "down_proj") else 50
            tensors.append(
                {
                    "name": f"l{layer}.{kind}",
                    "kind": kind,
                    "layer": layer,
                    "zeros": zeros,
                    "numel": 100,
                }
            )
    actual = sum(t["zeros"] for t in tensors) / sum(t["numel"] for t in tensors)
    v = compare(
        "sparsity.claim",
        actual,
        ">=",
        ctx.claims["sparsity"] - 0.02,
        what="measured sparsity",
        n=1400,
    )
    return CheckResult.from_verdicts(
        "sparsity",
        [v],
        {"tensors": tensors, "by_kind": {"q_proj": {"sparsity": 0.5}}},
        f"{actual:.1%} vs claimed 50%",
    )


def _size(ctx: CheckContext) -> CheckResult:
    m = {
        "dense": {"disk_bytes": 4000},
        "compressed": {"disk_bytes": 3990, "format": "safetensors"},
        "projected": {"bitmask": 2300, "2:4": None},
    }
    return CheckResult.from_verdicts(
        "size", [compare("size.saving", 0.0025, ">=", 0.0, unit="")], m, "0.25% saved"
    )


def _ppl(ctx: CheckContext) -> CheckResult:
    v = compare(
        "perplexity.relative_increase",
        0.031,
        "<=",
        0.05,
        n=12,
        ci=Interval(0.02, 0.04, 0.95, "bootstrap"),
    )
    return CheckResult.from_verdicts(
        "perplexity", [v], {"dense": 12.0, "compressed": 12.37}, "+3.1% perplexity"
    )


def _bbq(ctx: CheckContext) -> CheckResult:
    vs = [
        Verdict(
            "bbq.srs_increase_abs",
            Status.FAIL,
            "Age +0.12 vs 0.05",
            0.12,
            0.05,
            "<=",
            n=300,
            ci=Interval(0.07, 0.17, 0.95, "Newcombe paired"),
            effect_size=0.31,
            effect_size_name="cohens_h",
            test="exact McNemar",
            p_value=0.0004,
            scope="Age",
        ),
        Verdict(
            "bbq.srs_increase_abs",
            Status.PASS,
            "Gender +0.01",
            0.01,
            0.05,
            "<=",
            n=300,
            scope="Gender_identity",
        ),
    ]
    m = {
        "delta_srs_by_category": {"Age": 0.12, "Gender_identity": 0.01},
        "overall": {"delta_srs": 0.065},
    }
    return CheckResult.from_verdicts("bbq", vs, m, "SRS rose in Age")


def _speed(ctx: CheckContext) -> CheckResult:
    return CheckResult.skipped(
        "speed", "runtime 'mlx' is not installed (install it with: pip install 'edgegate[mlx]')"
    )


FAKES = {"sparsity": _sparsity, "size": _size, "perplexity": _ppl, "bbq": _bbq, "speed": _speed}


@pytest.fixture()
def gate(tmp_path: Path) -> GateResult:
    dense = tmp_path / "dense.safetensors"
    dense.write_bytes(b"D" * 4000)
    comp = tmp_path / "comp"
    comp.mkdir()
    (comp / "model.safetensors").write_bytes(b"C" * 3990)
    (comp / "config.json").write_text("{}")
    with ExitStack() as stack:
        for name in CHECK_NAMES:
            stack.enter_context(registered(name, FAKES.get(name)))
        return run_gate(
            GateOptions(
                compressed=comp, dense=dense, policy=parse_policy(POLICY, "p.yaml"), argv=("check",)
            )
        )


def test_gate_outcome(gate: GateResult) -> None:
    assert (gate.status, gate.exit_code) == ("fail", 1)
    assert any("smart pruning paradox" in n for n in gate.notes)


def test_json_report_validates_and_records_inputs(gate: GateResult) -> None:
    report = json.loads(render("json", gate))
    assert validate_report(report) == []
    assert (
        report["schema_version"] == "2.1"
        and report["status"] == "fail"
        and report["exit_code"] == 1
    )
    comp = next(i for i in report["inputs"] if i["role"] == "compressed")
    assert [f["path"] for f in comp["files"]] == ["config.json", "model.safetensors"]
    assert comp["files"][1]["sha256"] == hashlib.sha256(b"C" * 3990).hexdigest()
    bbq = next(c for c in report["checks"] if c["check"] == "bbq")
    v = bbq["verdicts"][0]
    assert (v["observed"], v["threshold"], v["n"], v["ci"]["low"], v["p_value"]) == (
        0.12,
        0.05,
        300,
        0.07,
        0.0004,
    )
    assert report["claims"] == {"values": {"sparsity": 0.5}, "sources": {"sparsity": "policy"}}
    assert report["policy"]["resolved"]["checks"]["bbq"]["max_srs_increase_abs"] == 0.05
    assert report["environment"]["cpu_count"] >= 1


def test_schema_marks_nondeterministic_fields_and_rejects_garbage(gate: GateResult) -> None:
    schema = report_schema()
    assert schema["properties"]["duration_s"]["x-nondeterministic"] is True
    assert schema["properties"]["environment"]["x-nondeterministic"] is True
    report = build_report(gate)
    report["status"] = "passed"
    report["checks"][0]["verdicts"][0]["n"] = -1
    errors = validate_report(report)
    assert any(e.startswith("status:") for e in errors) and any("verdicts.0.n" in e for e in errors)


def test_markdown_summary(gate: GateResult) -> None:
    md = render("markdown", gate)
    assert md.startswith("## ❌ edgegate: FAIL")
    assert "smart pruning paradox" in md
    row = next(line for line in md.splitlines() if "bbq.srs_increase_abs | Age" in line)
    assert "0.12" in row and "<= 0.05" in row and "| 300 |" in row and "[0.07, 0.17] 95%" in row
    assert "`sparsity` = 0.5 (from policy)" in md


def test_junit(gate: GateResult) -> None:
    root = ET.fromstring(render("junit", gate))
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    assert cases[("edgegate.bbq", "bbq.srs_increase_abs[Age]")].find("failure") is not None
    assert cases[("edgegate.bbq", "bbq.srs_increase_abs[Gender_identity]")].find("failure") is None
    assert cases[("edgegate.speed", "speed")].find("skipped") is not None
    assert cases[("edgegate.sparsity", "sparsity.claim")].find("failure") is not None
    bbq_suite = next(s for s in root.iter("testsuite") if s.get("name") == "edgegate.bbq")
    assert (bbq_suite.get("tests"), bbq_suite.get("failures")) == ("2", "1")


def test_html_is_self_contained_with_charts(gate: GateResult) -> None:
    html = render("html", gate)
    assert "http://" not in html and "https://" not in html and "<script" not in html.lower()
    assert html.count("<svg") == 3
    assert "Sparsity per layer, by module kind" in html and "claimed 50%" in html
    assert "Bytes on disk vs claimed size" in html and "Δperplexity vs ΔSRS" in html
    assert "false assurance" in html
    assert hashlib.sha256(b"C" * 3990).hexdigest() in html
    # o_proj and down_proj bars are empty (0 height) in both layers.
    assert len(re.findall(r"layer \d · (o_proj|down_proj): 0%", html)) == 4


def test_every_format_renders_for_a_run_with_no_measurements(tmp_path: Path) -> None:
    f, f2 = tmp_path / "m.gguf", tmp_path / "m2.gguf"
    f.write_bytes(b"x")
    f2.write_bytes(b"y")
    with ExitStack() as stack:
        for name in CHECK_NAMES:
            stack.enter_context(registered(name, None))
        g = run_gate(GateOptions(compressed=f2, dense=f, policy=parse_policy(POLICY)))
    for fmt in FORMATS:
        assert render(fmt, g)
    assert validate_report(build_report(g)) == []


def test_cli_writes_reports_and_step_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dense, comp = tmp_path / "d.safetensors", tmp_path / "c.safetensors"
    dense.write_bytes(b"d")
    comp.write_bytes(b"c")
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY)
    summary = tmp_path / "summary.md"
    summary.write_text("previous step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = {k: tmp_path / f"r.{k}" for k in ("json", "md", "html", "xml")}
    args = [
        "check",
        str(dense),
        str(comp),
        "--policy",
        str(pol),
        "-q",
        "--json-out",
        str(out["json"]),
        "--md-out",
        str(out["md"]),
        "--html-out",
        str(out["html"]),
        "--junit-out",
        str(out["xml"]),
    ]
    with ExitStack() as stack:
        for name in CHECK_NAMES:
            stack.enter_context(registered(name, FAKES.get(name)))
        r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1, r.output
    report: dict[str, Any] = json.loads(out["json"].read_text())
    assert validate_report(report) == []
    assert summary.read_text().startswith("previous step\n## ❌ edgegate: FAIL")
    assert out["md"].read_text() in summary.read_text()
    ET.fromstring(out["xml"].read_text())
    assert out["html"].read_text().startswith("<!DOCTYPE html>")


def test_per_layer_kind_chart_from_nested_measurements() -> None:
    from edgegate.report.html_charts import _sparsity_charts

    m = {
        "sparsity": {
            "by_layer_kind": {
                "0": {"q_proj": {"zeros": 5, "numel": 10}, "o_proj": {"zeros": 0, "numel": 10}},
                "1": {"q_proj": 0.5},
            }
        }
    }
    (svg,) = list(_sparsity_charts(m, 0.5))
    assert "Sparsity per layer, by module kind" in svg
    assert (
        "layer 0 · q_proj: 50%" in svg
        and "layer 0 · o_proj: 0%" in svg
        and "layer 1 · q_proj: 50%" in svg
    )
    assert "layer 1 · o_proj" not in svg  # missing data is drawn as n/a, never as a value


def test_svg_charts_are_well_formed_for_any_input() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from edgegate.report.svg import Point, RefLine, bar_chart, forest_plot, quadrant_scatter

    # Labels are the user's text and may well read "NaN"; what must never appear is a number
    # that is not finite (a coordinate or a formatted value), so labels avoid those words.
    label = st.text(min_size=1, max_size=12).filter(
        lambda s: not any(w in s.lower() for w in ("nan", "inf"))
    )
    value = st.one_of(
        st.none(),
        st.floats(min_value=0, max_value=1e12, allow_nan=False),
        st.sampled_from([math.nan, math.inf]),
    )
    coord = st.one_of(st.floats(-5, 5), st.sampled_from([math.nan, math.inf, -math.inf]))
    limit = st.one_of(st.none(), st.floats(-1, 1), st.sampled_from([math.nan, math.inf]))
    ci = st.one_of(st.none(), st.tuples(coord, coord))

    @settings(max_examples=30, deadline=None)
    @given(
        st.lists(st.tuples(label, value), min_size=1, max_size=12),
        st.lists(st.tuples(label, coord, coord, ci, ci), max_size=8),
        limit,
        limit,
        st.booleans(),
    )
    def check(
        bars: list[tuple[str, float | None]],
        points: list[tuple[str, float, float, Any, Any]],
        x_limit: float | None,
        y_limit: float | None,
        x_log: bool,
    ) -> None:
        refs = [RefLine(0.5, "r&"), RefLine(math.nan, "bad ref")]
        svg = bar_chart("t<&>", [b[0] for b in bars], [('s"', [b[1] for b in bars])], refs=refs)
        ET.fromstring(svg)
        assert not re.search("nan|inf", svg.lower().replace("n/a", ""))
        pts = [Point(lab, x, y, x_ci=xc, y_ci=yc) for lab, x, y, xc, yc in points]
        svg = quadrant_scatter(
            "q", pts, x_label="x", y_label="y", x_limit=x_limit, y_limit=y_limit, x_log=x_log
        )
        ET.fromstring(svg)
        assert not re.search("nan|inf", svg.lower())
        svg = forest_plot("f", pts, x_label="x", limit=x_limit, limit_label="lim")
        ET.fromstring(svg)
        assert not re.search("nan|inf", svg.lower())

    check()


def test_advisory_failure_is_not_a_junit_failure(tmp_path: Path) -> None:
    """speed is advisory (required: false): a failed advisory verdict does not gate, so JUnit
    must not turn a dashboard red for it; it is a passing testcase that says 'advisory fail'."""

    def slow(ctx: CheckContext) -> CheckResult:
        return CheckResult.from_verdicts(
            "speed", [compare("speed.min_speedup", 0.9, ">=", 1.0)], {}, "0.9x"
        )

    dense, comp = tmp_path / "d.safetensors", tmp_path / "c.safetensors"
    dense.write_bytes(b"D" * 10)
    comp.write_bytes(b"C" * 10)
    pol = parse_policy("version: 1\nname: p\nchecks:\n  speed: {required: false}\n", "p.yaml")
    with ExitStack() as stack:
        for name in CHECK_NAMES:
            stack.enter_context(registered(name, slow if name == "speed" else None))
        g = run_gate(GateOptions(compressed=comp, dense=dense, policy=pol, only=("speed",)))
    root = ET.fromstring(render("junit", g))
    case = next(c for c in root.iter("testcase") if c.get("name") == "speed.min_speedup")
    assert case.find("failure") is None
    out = case.find("system-out")
    assert out is not None and (out.text or "").startswith(
        "advisory fail (this check does not gate)"
    )
    assert (
        next(s for s in root.iter("testsuite") if s.get("name") == "edgegate.speed").get("failures")
        == "0"
    )


def test_terminal_summary_keeps_brackets_of_install_hints(gate: GateResult) -> None:
    import io

    from rich.console import Console

    from edgegate.report.terminal import print_summary

    buf = io.StringIO()
    print_summary(gate, Console(file=buf, width=400, color_system=None))
    assert "pip install 'edgegate[mlx]'" in buf.getvalue()
