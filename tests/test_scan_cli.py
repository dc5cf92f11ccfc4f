"""`edgegate scan` end to end on real files: the fixture models (numbers must equal
fixtures/MANIFEST.json, computed there independently) and tiny files written here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file

from edgegate.cli import cli
from edgegate.forensics.scan import scan_paths

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "fixtures" / "MANIFEST.json"
needs_fixtures = pytest.mark.skipif(
    not MANIFEST.exists(), reason="fixtures not built (python fixtures/build.py)"
)


def manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text())["fixtures"] if MANIFEST.exists() else {}


def scan(*args: str) -> Any:
    res = CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["scan", *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


@needs_fixtures
def test_claimed50_says_33_percent_and_why() -> None:
    out = flat(scan(str(ROOT / "fixtures/models/claimed50"), "-q").output)
    assert "claim: sparsity 50.0% (from pruning_meta.json) vs actual 33.3% (n=98,304)" in out
    assert (
        "why: o_proj and down_proj 0.0% -> prunable-linear sparsity 33.3% vs claimed 50.0% "
        "(kinds left dense: o_proj, down_proj" in out
    )
    assert "0 bytes saved" in out
    assert (
        "(claimed: unstructured)" in out
    )  # pruning_meta.json's structure beside the measured pattern


def _fixture_params() -> list[Any]:
    return sorted(n for n, f in manifest().items() if "expected" in f)


@needs_fixtures
@pytest.mark.parametrize("name", _fixture_params())
def test_fixture_numbers_equal_manifest(name: str) -> None:
    fx = manifest()[name]
    exp = fx["expected"]
    doc = json.loads(scan(str(ROOT / fx["path"]), "--json", "--per-tensor", "-q").output)
    got = {t["canonical"]: t for t in doc["tensors"]}
    assert set(got) == set(exp["tensors"])
    for cname, e in exp["tensors"].items():
        g = got[cname]
        assert (g["kind"], g["layer"], g["shape"], g["numel"], g["zeros"]) == (
            e["kind"], e["layer"], e["shape"], e["numel"], e["zeros"]
        ), cname  # fmt: skip
        s = g["structure"]
        if s is not None and "zero_rows" in e:
            assert s["zero_rows"] == e["zero_rows"], cname
            groups = e["nm24_groups"]
            assert round(s["nm_conformance"]["2:4"] * groups) == e["nm24_conformant_groups"], cname
    sp = doc["sparsity"]
    assert (sp["prunable"]["zeros"], sp["prunable"]["numel"]) == (
        exp["prunable"]["zeros"],
        exp["prunable"]["numel"],
    )
    assert (sp["overall"]["zeros"], sp["overall"]["numel"]) == (
        exp["all"]["zeros"],
        exp["all"]["numel"],
    )
    for kind, e in exp["by_kind"].items():
        assert (sp["by_kind"][kind]["zeros"], sp["by_kind"][kind]["tensors"]) == (
            e["zeros"],
            e["n_tensors"],
        ), kind
    nm = exp.get("nm24_prunable")
    if nm and nm["all_prunable_conformant"]:
        assert (
            doc["structure"]["pattern"] == "2:4"
            and doc["structure"]["nm_conformance"]["2:4"] == 1.0
        )
    files = {f["path"]: f["bytes"] for f in fx["files"]}
    for f in doc["size"]["files"]:
        rel = str(Path(f["path"]).resolve().relative_to(ROOT))
        assert files[rel] == f["bytes"], rel


@needs_fixtures
@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("magnitude50", "magnitude (per-tensor)"),
        ("random50", "random"),
        ("nm24", "magnitude (per 4-group, N:M)"),
        ("wanda50", "activation-aware-like (row-uniform, not magnitude-ranked)"),
    ],
)
def test_fingerprint_of_fixtures(name: str, method: str) -> None:
    res, dense = scan_paths(ROOT / "fixtures/models" / name, ROOT / "fixtures/models/dense")
    assert res.comparison is not None and dense is not None
    assert (
        res.claimed_text["method"]
        == json.loads((ROOT / "fixtures/models" / name / "pruning_meta.json").read_text())["method"]
    )
    assert res.comparison.fingerprint.method == method
    assert res.comparison.fingerprint.totals.changed == 0  # pruning only, no weight updates
    assert res.comparison.to_dict(res.size.disk_bytes)["disk_saving_vs_dense"] == pytest.approx(
        1 - res.size.disk_bytes / dense.size.disk_bytes
    )


def _write_model(d: Path) -> None:
    rng = np.random.default_rng(0)
    up = rng.standard_normal((16, 32)).astype(np.float32)
    up[:, :16] = 0.0
    up[0, :16] = -0.0
    t = {
        "model.layers.0.mlp.up_proj.weight": up,
        "model.layers.0.mlp.down_proj.weight": rng.standard_normal((32, 16)),
    }
    d.mkdir()
    save_file(
        {k: np.asarray(v).astype(ml_dtypes.bfloat16) for k, v in t.items()},
        str(d / "model.safetensors"),
    )
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32}))


def test_json_document_and_cli_claim(tmp_path: Path) -> None:
    _write_model(tmp_path / "m")
    doc = json.loads(scan(str(tmp_path / "m"), "--json", "-q", "--claim", "sparsity=50%").output)
    assert doc["schema"] == "edgegate.scan/1"
    assert doc["sparsity"]["prunable"] == {
        "zeros": 256,
        "numel": 1024,
        "tensors": 2,
        "sparsity": 0.25,
    }
    assert doc["sparsity_claim"]["claimed"] == 0.5 and doc["sparsity_claim"]["source"] == "cli"
    assert (
        "down_proj 0.0% -> prunable-linear sparsity 25.0% vs claimed 50.0%"
        in doc["sparsity_claim"]["reason"]
    )
    assert "tensors" not in doc and doc["comparison"] is None
    assert doc["size"]["saving_as_shipped"] == 0.0


def test_tables_and_per_tensor(tmp_path: Path) -> None:
    _write_model(tmp_path / "m")
    out = flat(scan(str(tmp_path / "m"), "--per-tensor", "-q").output)
    assert "no sparsity claim" in out and "model.layers.0.mlp.up_proj.weight" in out
    assert "50.0%" in out and "25.0%" in out


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgegate.cli", "scan", *args], capture_output=True, text=True
    )


def test_missing_path_and_bad_claim_exit_2(tmp_path: Path) -> None:
    r = _run(str(tmp_path / "nope"), "-q")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("edgegate: error:") and len(r.stderr.strip().splitlines()) == 1
    _write_model(tmp_path / "m")
    r = _run(str(tmp_path / "m"), "--claim", "sparsity=lots", "-q")
    assert r.returncode == 2 and "sparsity" in r.stderr and "Traceback" not in r.stderr
    # the same parser as `edgegate check`: a claim scan cannot use is refused, not dropped
    r = _run(str(tmp_path / "m"), "--claim", "method=wanda", "-q")
    assert r.returncode == 2 and "unknown claim 'method'" in r.stderr
    r = _run(str(tmp_path / "m"), "--claim", "sparsity=0.4", "--claim", "sparsity=0.6", "-q")
    assert r.returncode == 2 and "given twice with different values" in r.stderr


@needs_fixtures
@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("compressed-tensors/wanda50-bitmask", "sparse-bitmask"),
        ("compressed-tensors/nm24-24bitmask", "2:4"),
    ],
)
def test_projection_equals_real_compressed_tensors_bytes(name: str, layout: str) -> None:
    """The projected layout of the dense-stored tensors equals what llm-compressor wrote."""
    path = ROOT / "fixtures/models" / name
    if not path.exists():
        pytest.skip(f"{name} not built")
    doc = json.loads(scan(str(path), "--json", "-q").output)
    assert doc["size"]["projected"][layout] == doc["size"]["tensor_bytes"]
    assert doc["size"]["saving_as_shipped"] > 0.2
    assert doc["sparsity_claim"]["source"] == "config.json sparsity_config"
