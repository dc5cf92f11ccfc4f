"""SIGINT and SIGTERM sent to the gate's own pid (not its process group) stop the gate and
its runtime child process within seconds, exit 130 / 143, with no traceback (issue 22).

Before: SIGINT was honoured only after the runtime child had finished its batch (the parent
waited for it to close; over 90 s measured mid-BBQ), and SIGTERM, what CI systems send on
cancel or timeout, killed the parent on the spot and left the child computing.

The run is the real CLI (``edgegate check`` with a perplexity check, isolated runtime child
process). The runtime is a registered test runtime whose scoring call never ends
(``_signal_hook.HangingBackend``): a real batch on the tiny fixtures ends in milliseconds, so
only a stand-in can be caught mid-batch. The test waits for the child to report that it is
inside that call (a marker file), then signals: no race.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
GGUF = HERE.parents[1] / "fixtures" / "models" / "gguf"
STOP_S = 20  # the gate needs well under a second; the old one waited 30 s for its child

_MAIN = f"import sys; sys.path.insert(0, {str(HERE)!r}); import _signal_hook; from edgegate.cli import main; main()"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _in_session(sid: int) -> list[int]:
    """The live processes of session ``sid`` (the gate's, started in a session of its own):
    the gate and every runtime child it started."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(d.name))
    return found


def _wait_for(marker: Path, proc: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if marker.exists():
            return int(marker.read_text())
        if proc.poll() is not None:
            pytest.fail(
                f"the gate ended (exit {proc.returncode}) before its runtime was busy: {proc.communicate()[1][-3000:]}"
            )
        time.sleep(0.01)
    pytest.fail("the runtime child never started scoring")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
)
@pytest.mark.parametrize(
    ("check", "extra"),
    [
        ("perplexity", []),
        # both models at once: the gate waits on two threads, each blocked on a model's call
        ("fidelity", ["--workers", "2"]),
    ],
)
def test_signal_to_the_gate_pid_stops_gate_and_child(
    sig: signal.Signals, code: int, said: str, check: str, extra: list[str], tmp_path: Path
) -> None:
    (tmp_path / "policy.yaml").write_text(
        f"version: 1\nname: sig\nchecks:\n  {check}: {{runtime: llamacpp, n_ctx: 64, min_chunks: 2}}\n",
        "utf-8",
    )
    marker = tmp_path / "busy"
    env = {**os.environ, "EDGEGATE_HOOK_HANG_RUNTIME": str(marker)}
    env.pop("GITHUB_STEP_SUMMARY", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _MAIN,
            "check",
            str(GGUF / "dense-f16.gguf"),
            str(GGUF / "wanda50-f16.gguf"),
            "--policy",
            "policy.yaml",
            "--cache-dir",
            "cache",
            "-q",
            *extra,
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child = None
    try:
        child = _wait_for(marker, proc)
        assert child != proc.pid and _alive(child)
        os.kill(proc.pid, sig)  # the gate's pid only, as `kill PID` or a CI runner does
        try:
            _, err = proc.communicate(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the gate did not stop within {STOP_S} s of {sig.name}")
        assert proc.returncode == code, err
        assert f"edgegate: {said}" in err and "Traceback" not in err, err
        assert not _alive(child), f"runtime child {child} still running after the gate exited"
        # fidelity side by side has both models' children busy: neither is left
        assert _in_session(proc.pid) == [], "runtime children still running after the gate exited"
    finally:
        for pid in (proc.pid, child, *_in_session(proc.pid)):
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
