"""Adopting the gate in CI: no silently dropped check, one meaning of PARTIAL, everything
knowable refused before the first measurement, sharding with --only, flags that either apply
or are refused, numbers a reviewer can read. Real CLI on the committed fixtures (static checks
and the tiny models' runtimes: seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from _support import run_cli

from edgegate.policy import load_preset, parse_policy
from edgegate.report.json_report import validate_report

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "fixtures" / "models"
DENSE, WANDA, CLAIMED = str(MODELS / "dense"), str(MODELS / "wanda50"), str(MODELS / "claimed50")
GGUF_DENSE, GGUF_WANDA = (
    str(MODELS / "gguf" / "dense-f16.gguf"),
    str(MODELS / "gguf" / "wanda50-f16.gguf"),
)


def _report(tmp_path: Path, *args: str) -> tuple[int, str, dict[str, Any]]:
    out = tmp_path / "r.json"
    out.unlink(missing_ok=True)
    code, text = run_cli("check", *args, "--json-out", str(out), "-q")
    return code, text, json.loads(out.read_text()) if out.exists() else {}


def _policy(tmp_path: Path, body: str) -> str:
    p = tmp_path / "policy.yaml"
    p.write_text("version: 1\n" + body)
    return str(p)


# -- 1. a check left out of the policy is listed, never silently dropped ---------------------


def test_every_report_lists_every_check_and_why_it_did_not_run(tmp_path: Path) -> None:
    pol = _policy(tmp_path, "checks:\n  sparsity: {}\n  speed: {enabled: false}\n")
    code, text, rep = _report(tmp_path, DENSE, WANDA, "--policy", pol)
    assert code == 0, text
    assert validate_report(rep) == []
    gates = {c["check"]: c["gate"] for c in rep["checks"]}
    assert gates == {
        "sparsity": "pass",
        "size": "not-in-policy",
        "speed": "disabled",
        "fidelity": "not-in-policy",
        "perplexity": "not-in-policy",
        "bbq": "not-in-policy",
    }
    reasons = {c["check"]: c["gate_reason"] for c in rep["checks"]}
    assert "no checks.size block" in reasons["size"] and "enabled is false" in reasons["speed"]
    assert any(
        n.startswith(
            "not in the policy (not run, not verified): size, speed, fidelity, perplexity, bbq"
        )
        for n in rep["notes"]
    )
    code, md = run_cli("check", DENSE, WANDA, "--policy", pol, "--md-out", "-", "-q")
    assert "| bbq | no |" in md and "not-in-policy" in md


def test_policy_show_applies_the_same_rule(tmp_path: Path) -> None:
    code, text = run_cli("policy", "show", _policy(tmp_path, "checks:\n  sparsity: {}\n"))
    assert code == 0, text
    checks = json.loads(text)["checks"]
    assert list(checks) == ["sparsity", "size", "speed", "fidelity", "perplexity", "bbq"]
    assert checks["sparsity"]["enabled"] is True and checks["bbq"] == {"enabled": False}
    # what `show` prints is a valid policy that means the same
    again = parse_policy(json.dumps({**json.loads(text), "checks": checks}))
    assert [c.name for c in again.enabled_checks()] == ["sparsity"]


# -- 2. no claim: strict fails, every report says so ------------------------------------------


def test_strict_requires_a_claim_and_reports_say_no_claim_to_verify(tmp_path: Path) -> None:
    assert load_preset("strict").checks["sparsity"].section["require_claim"] is True
    # a GGUF carries no pruning_meta.json: under strict the sparsity check fails for want of a claim
    code, text, rep = _report(
        tmp_path, GGUF_DENSE, GGUF_WANDA, "--policy", "strict", "--only", "sparsity,size"
    )
    assert code == 1, text
    sp = next(c for c in rep["checks"] if c["check"] == "sparsity")
    assert sp["status"] == "fail" and "no claim to verify" in sp["summary"]
    # with a claim it passes; under the default policy no claim is said out loud, not failed
    code, text, rep = _report(
        tmp_path,
        GGUF_DENSE,
        GGUF_WANDA,
        "--policy",
        "strict",
        "--only",
        "sparsity,size",
        "--claim",
        "sparsity=0.5",
        "--allow-partial",
    )
    assert code == 0, text
    code, md = run_cli(
        "check",
        GGUF_DENSE,
        GGUF_WANDA,
        "--policy",
        "default",
        "--only",
        "sparsity,size",
        "--md-out",
        "-",
        "-q",
        "--allow-partial",
    )
    assert code == 0 and "no claim to verify" in md


# -- 3. one meaning of PARTIAL: the shipped example workflow is green as written ---------------


def _run_action(with_: dict[str, str], tmp_path: Path, tag: str) -> tuple[int, dict[str, str]]:
    """The Action's run step with the workflow's inputs (defaults from action.yml), as the
    composite action runs it after installing edgegate."""
    action = yaml.safe_load((REPO / "action.yml").read_text())
    inputs = {k: str(v.get("default", "")) for k, v in action["inputs"].items()} | with_
    step = next(s for s in action["runs"]["steps"] if s.get("id") == "run")
    outputs = tmp_path / f"out-{tag}"
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_STEP_SUMMARY",)}
    env.update(
        DENSE=inputs["dense"],
        COMPRESSED=inputs["compressed"],
        POLICY=inputs["policy"],
        ARGS=inputs["args"],
        OUT=str(tmp_path / inputs["report-dir"]),
        FAIL_ON_ERROR=inputs["fail-on-error"],
        ALLOW_PARTIAL=inputs["allow-partial"],
        GITHUB_OUTPUT=str(outputs),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    r = subprocess.run(
        ["bash", "-c", step["run"]], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    return r.returncode, dict(line.split("=", 1) for line in outputs.read_text().splitlines())


def test_the_example_workflow_is_green_as_written(tmp_path: Path) -> None:
    wf = yaml.safe_load((REPO / ".github" / "workflows" / "edgegate-example.yml").read_text())
    outputs: dict[str, dict[str, str]] = {}
    for step in wf["jobs"]["gate"]["steps"]:
        if step.get("uses") == "./":
            code, outputs[step["id"]] = _run_action(
                {k: str(v) for k, v in step["with"].items()}, tmp_path, step["id"]
            )
            assert code == 0, (
                step["name"],
                outputs[step["id"]],
            )  # every step of the job stays green
        elif "run" in step:
            env = {k: v for k, v in os.environ.items()}
            for k, v in step.get("env", {}).items():  # ${{ steps.ID.outputs.KEY }}
                sid, key = v.split("steps.")[1].split(" }}")[0].split(".outputs.")
                env[k] = outputs[sid][key]
            r = subprocess.run(
                ["bash", "-e", "-c", step["run"]],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert r.returncode == 0, (step["name"], r.stdout, r.stderr)
    assert outputs["honest"]["status"] == "partial" and outputs["claimed50"]["status"] == "fail"


# -- 4. fail fast on what paths, formats and the policy decide ---------------------------------


def test_a_runtime_that_cannot_load_the_format_is_refused_before_measuring(tmp_path: Path) -> None:
    pol = _policy(tmp_path, "checks:\n  sparsity: {}\n  perplexity: {runtime: onnx}\n")
    code, text, rep = _report(tmp_path, DENSE, WANDA, "--policy", pol)
    assert code == 2 and rep == {}, text  # nothing measured, no report
    assert "checks.perplexity.runtime" in text and "runtime 'onnx' cannot load these inputs" in text
    assert "compressed is safetensors" in text
    code, text = run_cli("check", DENSE, WANDA, "--policy", pol, "--runtime", "onnx")
    assert code == 2 and "--runtime" in text


def test_swapped_arguments_stop_before_the_runtime_checks(tmp_path: Path) -> None:
    pol = _policy(
        tmp_path, "checks:\n  sparsity: {}\n  perplexity: {runtime: llamacpp, n_ctx: 128}\n"
    )
    code, text, rep = _report(
        tmp_path,
        GGUF_WANDA,
        GGUF_DENSE,
        "--policy",
        pol,
        "--claim",
        "sparsity=0.5",
        "--cache-dir",
        str(tmp_path / "c"),
    )
    assert code == 2, text
    ppl = next(c for c in rep["checks"] if c["check"] == "perplexity")
    assert ppl["status"] == "skipped" and ppl["summary"].startswith(
        "not run: the dense input is sparser"
    )
    assert ppl["measurements"] == {}


# -- 5. --only x --shard i/n ----------------------------------------------------------------------


@pytest.mark.parametrize(("only", "status"), [("sparsity,size", "fail"), ("size", "partial")])
def test_only_with_shards_runs_and_merges_to_the_unsharded_result(
    tmp_path: Path, only: str, status: str
) -> None:
    parts = []
    for i in (1, 2):
        part = tmp_path / f"p{i}.json"
        code, text = run_cli(
            "check",
            DENSE,
            CLAIMED,
            "--policy",
            "strict",
            "--only",
            only,
            "--shard",
            f"{i}/2",
            "--partial-out",
            str(part),
            "-q",
        )
        assert code == 0, text  # shard 2 simply has nothing of these checks to do
        parts.append(str(part))
    merged = tmp_path / "merged.json"
    code, text = run_cli("merge", *parts, "--policy", "strict", "--json-out", str(merged), "-q")
    whole_code, _t, whole = _report(tmp_path, DENSE, CLAIMED, "--policy", "strict", "--only", only)
    rep = json.loads(merged.read_text())
    assert (code, rep["status"]) == (whole_code, whole["status"]) == (1, status)
    assert [(c["check"], c["status"], c["gate"]) for c in rep["checks"]] == [
        (c["check"], c["status"], c["gate"]) for c in whole["checks"]
    ]


# -- 6. flags apply or are refused ---------------------------------------------------------------


def test_runtime_flag_reaches_perplexity(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pol = _policy(
        tmp_path,
        "fail_on_inconclusive: false\nchecks:\n  perplexity: {runtime: llamacpp, n_ctx: 64, min_chunks: 1}\n",
    )
    code, text, rep = _report(
        tmp_path,
        DENSE,
        WANDA,
        "--policy",
        pol,
        "--runtime",
        "transformers",
        "--cache-dir",
        str(tmp_path / "c"),
    )
    ppl = next(c for c in rep["checks"] if c["check"] == "perplexity")
    assert ppl["status"] not in ("skipped", "error"), text
    assert "on transformers" in ppl["summary"] and {v["scope"] for v in ppl["verdicts"]} == {
        "transformers"
    }
    code, text = run_cli(
        "check", DENSE, WANDA, "--policy", pol, "--runtime", "transformers,llamacpp"
    )
    assert code == 2 and "names 2 runtimes" in text


def test_bbq_items_caps_the_disambiguated_items_too() -> None:
    pol, caveat = load_preset("strict").with_bbq_items(10)
    sec = pol.checks["bbq"].section
    assert (sec["items"], sec["disambig_items"], sec["validity_min_disambig_items"]) == (10, 10, 10)
    assert "10 BBQ items instead of the policy's 900 and 10 disambiguated instead of 250" in caveat


# -- 7 / 10. numbers and lines a reviewer reads ---------------------------------------------------


def test_reports_read_right(tmp_path: Path) -> None:
    code, text, rep = _report(
        tmp_path, DENSE, CLAIMED, "--policy", "strict", "--only", "sparsity,size"
    )
    assert code == 1, text
    # a check that ran and failed was verified: it failed; only the deselected are "not verified"
    assert rep["verification"] == {
        "required": 5,
        "verified": 2,
        "not_verified": ["fidelity", "perplexity", "bbq"],
    }
    claim = next(v for c in rep["checks"] for v in c["verdicts"] if v["name"] == "sparsity_claim")
    assert claim["unit"] == "gap |actual - claimed|"  # 0.167 is the gap, not the sparsity
    code, md = run_cli(
        "check",
        DENSE,
        CLAIMED,
        "--policy",
        "strict",
        "--only",
        "sparsity,size",
        "--md-out",
        "-",
        "-q",
    )
    assert "322.74 KiB" in md and " KB" not in md  # the size check's unit everywhere


def test_an_advisory_failure_is_not_a_red_fail(tmp_path: Path) -> None:
    pol = _policy(tmp_path, "checks:\n  sparsity: {}\n  size: {required: false, min_saving: 0.5}\n")
    html = tmp_path / "r.html"
    code, text = run_cli(
        "check", DENSE, WANDA, "--policy", pol, "--html-out", str(html), "--md-out", "-", "-q"
    )
    assert code == 0, text
    assert "| size | no | ⏭️ advisory fail |" in text or "advisory fail" in text
    row = next(r for r in html.read_text().split("<tr>") if r.startswith("<td><b>size</b>"))
    assert "pill advisory" in row and "pill fail" not in row


def test_progress_lines_have_one_prefix_and_plain_counts() -> None:
    import io

    from edgegate.progress import LogProgress

    buf = io.StringIO()
    p = LogProgress(buf)
    p.log("edgegate: running check size")
    with p.task("hashing", total=569_597_000):
        pass
    lines = buf.getvalue().splitlines()
    assert lines[0].endswith("] running check size") and "edgegate:" not in lines[0]
    assert "(569,597,000 to do)" in lines[1]


def test_left_dense_is_judged_against_the_dense_models_own_zeros() -> None:
    """gemma's "claimed 50%": o_proj 0.0% and down_proj 1.5% — the dense (Q4_K_M-rounded) model's
    own 1.5% — were read as "kinds left dense: o_proj" only."""
    from edgegate.forensics.sparsity import Aggregate, explain

    n = 1000
    comp = {
        "q_proj": Aggregate(500, n),
        "o_proj": Aggregate(0, n),
        "down_proj": Aggregate(15, n),
        "up_proj": Aggregate(500, n),
    }
    dense = {
        "q_proj": Aggregate(15, n),
        "o_proj": Aggregate(0, n),
        "down_proj": Aggregate(15, n),
        "up_proj": Aggregate(15, n),
    }
    prunable = Aggregate(sum(a.zeros for a in comp.values()), 4 * n)
    layers = {0: prunable}
    assert "kinds left dense: o_proj;" in explain(
        0.5, prunable, comp, layers
    )  # no reference: 1.5% reads as pruned
    said = explain(0.5, prunable, comp, layers, 0.02, (dense, {0: Aggregate(60, 4 * n)}))
    assert (
        "kinds left dense: o_proj, down_proj;" in said
        and "pruned kinds at q_proj 50.0%, up_proj 50.0%" in said
    )
