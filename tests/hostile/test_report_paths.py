"""Report paths that would lose data or fail late are refused before anything is measured
(issue 22; the report-path item of issue 23).

Refused with exit 2: the same file for two reports (one report silently lost), a report path
equal to or inside an input (``--json-out`` on the compressed weights overwrote the file the
gate had just judged, exit 0), a report whose folder is a regular file, a report under /proc.
"Before measuring" is visible in the log: the gate prints ``running check …`` to stderr (not a
terminal) for each check it starts, and none may appear. Symlinks and ``..`` spellings of an
input collide too. A report next to the inputs, not in them, is fine (the null control).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DENSE = REPO / "fixtures" / "models" / "dense"
COMP = REPO / "fixtures" / "models" / "magnitude50"
POLICY = "version: 1\nname: t\nchecks:\n  sparsity: {required: false}\n  size: {}\n"


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    shutil.copytree(DENSE, tmp_path / "dense")
    shutil.copytree(COMP, tmp_path / "comp")
    (tmp_path / "policy.yaml").write_text(POLICY, "utf-8")
    (tmp_path / "notes.txt").write_text("a regular file\n", "utf-8")
    return tmp_path


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _check(work: Path, *flags: str) -> tuple[int, str]:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgegate.cli",
            "check",
            "dense",
            "comp",
            "--policy",
            "policy.yaml",
            "--no-hash",
            *flags,
        ],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=300,
    )
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    return r.returncode, r.stderr


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--json-out", "r.out", "--html-out", "r.out"], "is also the path of --json-out"),
        (["--md-out", "./r.md", "--junit-out", "comp/../r.md"], "is also the path of --md-out"),
        (["--json-out", "comp/model.safetensors"], "is inside the compressed input"),
        (["--json-out", "comp/report.json"], "is inside the compressed input"),
        (["--html-out", "dense/config.json"], "is inside the dense input"),
        (["--md-out", "policy.yaml"], "is the policy input"),
        (["--junit-out", "link.xml"], "is inside the compressed input"),  # a symlink to the weights
        (["--json-out", "notes.txt/report.json"], "is a regular file, not a folder"),
        (["--json-out", "/proc/edgegate-report.json"], "kernel pseudo-filesystem"),
        (["--samples-out", "comp/samples.jsonl"], "is inside the compressed input"),
        (
            ["--shard", "1/2", "--partial-out", "comp/model.safetensors"],
            "is inside the compressed input",
        ),
    ],
)
def test_refused_before_measuring(flags: list[str], fragment: str, work: Path) -> None:
    (work / "link.xml").symlink_to(work / "comp" / "model.safetensors")
    before = {
        "comp": _digest(work / "comp"),
        "dense": _digest(work / "dense"),
        "policy": (work / "policy.yaml").read_text(),
    }
    code, err = _check(work, *flags)
    assert code == 2, err
    assert fragment in err, err
    assert "running check" not in err, f"checks ran before the refusal:\n{err}"
    after = {
        "comp": _digest(work / "comp"),
        "dense": _digest(work / "dense"),
        "policy": (work / "policy.yaml").read_text(),
    }
    assert after == before, "an input was changed"
    assert not (work / "r.out").exists() and not (work / "r.md").exists()


def test_reports_next_to_the_inputs_are_written(work: Path) -> None:
    code, err = _check(
        work,
        "--json-out",
        "out/r.json",
        "--html-out",
        "out/r.html",
        "--md-out",
        "r.md",
        "--junit-out",
        "r.xml",
    )
    assert code == 0, err
    assert all((work / p).stat().st_size > 0 for p in ("out/r.json", "out/r.html", "r.md", "r.xml"))


def test_dev_stdout_and_dev_null_stay_allowed(work: Path) -> None:
    """/dev/stdout resolves into /proc (/proc/self/fd/1): still a fine report path."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgegate.cli",
            "check",
            "dense",
            "comp",
            "--policy",
            "policy.yaml",
            "--no-hash",
            "-q",
            "--json-out",
            "/dev/stdout",
            "--md-out",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert '"schema_version"' in r.stdout


def test_merge_refuses_a_report_over_its_partial_file(work: Path) -> None:
    code, err = _check(work, "--shard", "1/1", "--partial-out", "part.json", "-q")
    assert code == 0, err
    part = (work / "part.json").read_bytes()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgegate.cli",
            "merge",
            "part.json",
            "--policy",
            "policy.yaml",
            "--json-out",
            "part.json",
        ],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=300,
    )
    assert r.returncode == 2 and "is the partial file 1 input" in r.stderr, r.stderr
    assert (work / "part.json").read_bytes() == part
