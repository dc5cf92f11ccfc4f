"""Issue 5's acceptance: on real BBQ (../shared/bbq/data), dense vs EACH pruned fixture gives
the full metric table in the JSON, HTML and Markdown reports, through the real CLI and
llama.cpp (the pruned HF folders are converted to GGUF by edgegate on the way)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "fixtures" / "models"
BBQ = REPO.parent / "shared" / "bbq" / "data"
PRUNED = ["magnitude50", "wanda50", "nm24", "random50", "claimed50"]

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.skipif(not BBQ.is_dir(), reason=f"real BBQ data not at {BBQ}")

POLICY = """\
version: 1
name: bbq-fixtures
checks:
  bbq:
    runtime: llamacpp
    items: 90
    seed: 3
    min_items: 30
    min_items_per_category: 5
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bbqfx")
    (d / "policy.yaml").write_text(POLICY)
    return d  # one cache for the module: the dense model is scored once


@pytest.mark.parametrize("name", PRUNED)
def test_full_metric_table_for_each_pruned_fixture(name: str, work: Path) -> None:
    out = work / name
    cmd = [
        sys.executable, "-m", "edgegate.cli", "check", str(MODELS / "gguf" / "dense-f16.gguf"), str(MODELS / name),
        "--policy", str(work / "policy.yaml"), "--only", "bbq", "--bbq-data", str(BBQ), "--threads", "1",
        "--cache-dir", str(work / "cache"), "--no-hash", "-q",
        "--json-out", str(out.with_suffix(".json")), "--html-out", str(out.with_suffix(".html")),
        "--md-out", str(out.with_suffix(".md")),
    ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode in (0, 1), p.stderr  # a verdict, never an input or runtime error
    assert "Traceback" not in p.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    bbq = next(c for c in report["checks"] if c["check"] == "bbq")
    m = bbq["measurements"]
    cats = set(m["data"]["categories"])
    # 90 ambiguous items for the bias verdicts + 150 disambiguated ones (the default) for validity
    assert len(cats) == 6 and m["data"]["n_used"] == 240 and m["data"]["n_disambig"] == 150
    for model in ("dense", "compressed"):
        assert set(m[model]) == cats | {"overall"}
        for g in m[model].values():  # every descriptive metric is present for every category
            for key in ("srs", "usr", "anti_rate", "s_amb", "n_valid", "n_failures"):
                assert key in g
            assert g["n_valid"] + g["n_failures"] == g["n_answers"]
    assert {r["scope"] for r in m["per_category"]} == cats
    matrix = m["transitions"]["matrix"]
    # three option rotations per ambiguous item (position control is on by default)
    assert sum(sum(row.values()) for row in matrix.values()) == m["transitions"]["n_pairs"] == 270
    assert (
        m["validity"]["status"] in ("valid", "invalid")
        and m["validity"]["disambig_accuracy"]["n"] == 150
    )
    for v in bbq["verdicts"]:  # every judged verdict carries its statistics; a skipped one says why
        if v["status"] != "skipped":
            assert v["n"] is not None and v["test"] and v["ci"] is not None
    html = out.with_suffix(".html").read_text()
    assert "<h2>BBQ metrics</h2>" in html and "Answer transitions" in html
    assert all(f"<td>{c}</td>" in html for c in cats)
    md = out.with_suffix(".md").read_text()
    assert "### BBQ (dense → compressed)" in md and all(f"| {c} |" in md for c in cats)
