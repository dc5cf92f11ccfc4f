"""Special files where a policy, BBQ data, a perplexity text or a study spec is expected
(issue 22): a FIFO blocked ``open``/``read`` forever, ``/dev/zero`` was read until
MemoryError (the 256 KiB policy cap was applied after reading everything). Each is refused
before anything is read: exit 2 naming the file and what it is.

The FIFOs are real (``os.mkfifo``) and nothing ever writes to them, so reading one would
block: the subprocess timeout is the hang detector, far above the fraction of a second a
refusal takes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GGUF = REPO / "fixtures" / "models" / "gguf"
DENSE = REPO / "fixtures" / "models" / "dense"
HANG_S = 120  # a refusal takes well under a second; only a blocked read gets near this

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")


def _cli(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    try:
        r = subprocess.run(
            [sys.executable, "-m", "edgegate.cli", *args],
            capture_output=True,
            text=True,
            timeout=HANG_S,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"edgegate {' '.join(args)} hung (no answer in {HANG_S} s)")
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-2000:]
    return r.returncode, r.stdout + r.stderr


@pytest.fixture()
def fifo(tmp_path: Path) -> Path:
    p = tmp_path / "input.yaml"
    os.mkfifo(p)
    return p


@pytest.mark.parametrize(
    "argv",
    [
        ["policy", "validate", "{f}"],
        ["check", str(DENSE), str(DENSE), "--policy", "{f}", "-q"],
        ["policy", "show", "{f}"],
    ],
)
def test_fifo_policy_is_refused(argv: list[str], fifo: Path) -> None:
    code, out = _cli(*(a.replace("{f}", str(fifo)) for a in argv))
    assert code == 2, out
    assert "FIFO" in out and str(fifo) in out, out


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_endless_device_as_policy_is_refused(device: str, tmp_path: Path) -> None:
    if not Path(device).exists():
        pytest.skip(f"no {device}")
    link = tmp_path / "policy.yaml"  # a symlink: the name looks right, the target is endless
    link.symlink_to(device)
    for target in (device, str(link)):
        code, out = _cli("policy", "validate", target)
        assert code == 2 and "character device" in out, out


def test_fifo_among_bbq_files_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "bbq"
    data.mkdir()
    os.mkfifo(data / "Age.jsonl")
    code, out = _cli(
        "bbq",
        "run",
        str(GGUF / "dense-f16.gguf"),
        str(GGUF / "wanda50-f16.gguf"),
        "--runtime",
        "llamacpp",
        "--data",
        str(data),
        "--items",
        "8",
    )
    assert code == 2, out
    assert "Age.jsonl" in out and "FIFO" in out, out


def test_dev_zero_among_bbq_files_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "bbq"
    data.mkdir()
    (data / "Age.jsonl").symlink_to("/dev/zero")
    code, out = _cli(
        "bbq",
        "run",
        str(GGUF / "dense-f16.gguf"),
        str(GGUF / "wanda50-f16.gguf"),
        "--runtime",
        "llamacpp",
        "--data",
        str(data),
        "--items",
        "8",
    )
    assert code == 2, out
    assert "Age.jsonl" in out and "character device" in out, out


def test_fifo_as_perplexity_text_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "eval.txt"
    os.mkfifo(text)
    code, out = _cli(
        "ppl",
        str(GGUF / "dense-f16.gguf"),
        str(GGUF / "wanda50-f16.gguf"),
        "--runtime",
        "llamacpp",
        "--text",
        str(text),
    )
    assert code == 2, out
    assert "eval.txt" in out and "FIFO" in out, out
    # the same text named by a policy: refused in the preflight, before any measurement
    pol = tmp_path / "p.yaml"
    pol.write_text(
        "version: 1\nname: t\nchecks:\n  perplexity: {runtime: llamacpp, text: eval.txt}\n", "utf-8"
    )
    code, out = _cli(
        "check",
        str(GGUF / "dense-f16.gguf"),
        str(GGUF / "wanda50-f16.gguf"),
        "--policy",
        str(pol),
        "-q",
    )
    assert code == 2 and "is not a regular file" in out and "eval.txt" in out, out


def test_fifo_and_device_as_study_spec_are_refused(tmp_path: Path, fifo: Path) -> None:
    code, out = _cli("study", str(fifo), "--table-only")
    assert code == 2 and "FIFO" in out, out
    code, out = _cli("study", "/dev/zero", "--table-only")
    assert code == 2 and "character device" in out, out
