"""Drive the real CLI over every case folder in tests/acceptance/cases (see README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgegate.report.json_report import validate_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CASES = sorted(p for p in (HERE / "cases").iterdir() if (p / "case.yaml").is_file())
KNOWN = {
    "description",
    "dense",
    "compressed",
    "policy",
    "args",
    "exit_code",
    "status",
    "failing_checks",
    "contains",
    "command",
}


def _resolve(case_dir: Path, value: str) -> str:
    local = case_dir / value
    return str(local) if local.exists() else value  # repo-relative (cwd is the repo root)


@pytest.mark.parametrize("case_dir", CASES, ids=[p.name for p in CASES])
def test_case(case_dir: Path, tmp_path: Path) -> None:
    spec: dict[str, Any] = yaml.safe_load((case_dir / "case.yaml").read_text("utf-8"))
    assert set(spec) <= KNOWN, f"unknown keys in {case_dir}/case.yaml: {set(spec) - KNOWN}"
    json_out, md_out = tmp_path / "report.json", tmp_path / "report.md"
    if "command" in spec:
        argv = [str(a) for a in spec["command"]]
    else:
        for key in ("dense", "compressed"):
            target = REPO / spec[key]
            if "missing" not in case_dir.name:
                assert target.exists(), (
                    f"{case_dir.name}: fixture {spec[key]} is missing (build: python fixtures/build.py)"
                )
        argv = [
            "check", spec["dense"], spec["compressed"], "--policy", _resolve(case_dir, spec["policy"]),
            "--json-out", str(json_out), "--md-out", str(md_out), "--no-hash",
            *[str(a) for a in spec.get("args", [])],
        ]  # fmt: skip
    env = {
        k: v for k, v in os.environ.items() if k not in ("GITHUB_STEP_SUMMARY", "EDGEGATE_DEBUG")
    }
    env["COLUMNS"] = "200"  # rich wraps long messages at the terminal width
    proc = subprocess.run(
        [sys.executable, "-m", "edgegate.cli", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == spec["exit_code"], (
        f"{case_dir.name}: exit {proc.returncode}\n{output[-3000:]}"
    )
    assert "Traceback" not in output
    if json_out.exists():
        report = json.loads(json_out.read_text("utf-8"))
        assert validate_report(report) == []
        assert report["exit_code"] == proc.returncode
        if "status" in spec:
            assert report["status"] == spec["status"]
        if "failing_checks" in spec:
            failing = sorted(c["check"] for c in report["checks"] if c["gate"] == "fail")
            assert failing == sorted(spec["failing_checks"])
        output += md_out.read_text("utf-8")
    else:
        assert "status" not in spec and "failing_checks" not in spec, (
            "case expects a report but none was written"
        )
    for fragment in spec.get("contains", []):
        assert fragment in output, f"{case_dir.name}: {fragment!r} not in output:\n{output[-3000:]}"
