"""action.yml's results cache: the key step hashes the dense model as edgegate's answer cache
does (or a given key), never pastes workflow text into the key, and the gate step points
EDGEGATE_CACHE at the restored folder. The steps' own bash runs here; actions/cache itself
needs GitHub (a warm run scoring only the compressed side: tests/test_bbq_e2e.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from edgegate.bbq.cache import ResultCache

REPO = Path(__file__).resolve().parents[1]
DENSE = REPO / "fixtures" / "models" / "dense"


def _step(step_id: str) -> dict[str, Any]:
    action = yaml.safe_load((REPO / "action.yml").read_text())
    return next(s for s in action["runs"]["steps"] if s.get("id") == step_id)


def _run_key_step(tmp_path: Path, **env_extra: str) -> dict[str, str]:
    out = tmp_path / "out"
    out.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_OUTPUT", "GIVEN_KEY")}
    env.update(
        RUNNER_OS="Linux",
        RUNNER_TEMP=str(tmp_path),
        GITHUB_OUTPUT=str(out),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        **env_extra,
    )
    r = subprocess.run(
        ["bash", "-c", _step("resultskey")["run"]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return dict(line.split("=", 1) for line in out.read_text().splitlines())


def test_the_key_is_the_dense_models_hash(tmp_path: Path) -> None:
    step = _step("resultskey")
    assert step["env"] == {
        "DENSE": "${{ inputs.dense }}",
        "GIVEN_KEY": "${{ inputs.results-cache-key }}",
    }
    out = _run_key_step(tmp_path, DENSE=str(DENSE))
    memo = ResultCache(tmp_path / "memo.sqlite")
    want = memo.model_hash(DENSE)[:32]
    memo.close()
    assert out["prefix"] == f"edgegate-results-v1-Linux-{want}-"
    assert out["dir"] == f"{tmp_path}/edgegate-cache"
    # another model, another key: its answers are never restored for this one (and would not
    # be served anyway: answers are stored per model hash)
    other = _run_key_step(tmp_path, DENSE=str(REPO / "fixtures" / "models" / "wanda50"))
    assert other["prefix"] != out["prefix"]


def test_a_given_key_is_hashed_not_pasted(tmp_path: Path) -> None:
    hostile = 'rev1"; echo pwned; #\n$(id)'
    out = _run_key_step(tmp_path, DENSE="/nonexistent", GIVEN_KEY=hostile)
    digest = hashlib.sha256(hostile.encode()).hexdigest()[:32]
    assert out["prefix"] == f"edgegate-results-v1-Linux-{digest}-"


def test_the_gate_step_uses_the_restored_folder() -> None:
    action = yaml.safe_load((REPO / "action.yml").read_text())
    assert action["inputs"]["results-cache"]["default"] == "true"
    cache_step = next(
        s
        for s in action["runs"]["steps"]
        if s.get("uses", "").startswith("actions/cache") and "resultskey" in str(s.get("with"))
    )
    assert cache_step["with"]["path"].endswith("/bbq.sqlite")
    assert cache_step["with"]["restore-keys"] == "${{ steps.resultskey.outputs.prefix }}"
    run = _step("run")
    assert run["env"]["RESULTS_DIR"] == "${{ steps.resultskey.outputs.dir }}"
    assert 'export EDGEGATE_CACHE="${RESULTS_DIR}"' in run["run"]
