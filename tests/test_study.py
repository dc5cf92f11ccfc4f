"""`edgegate study`: spec validation, a real run over the bundled fixtures (static checks, so
it is fast), resuming, the table and the plot. The full-gate study on gemma-3-270m is a
benchmark (studies/gemma3-270m.yaml), not a unit test."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _support import run_cli

from edgegate.errors import InputError
from edgegate.study import load_spec

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"

STATIC_POLICY = """\
version: 1
name: study-static
fail_on_inconclusive: true
fail_on_skipped: true
checks:
  sparsity: {required: true, claim_tolerance: 0.02}
  size: {required: true, min_saving: 0.0}
"""


def _spec(tmp: Path, variants: str, extra: str = "") -> Path:
    (tmp / "policy.yaml").write_text(STATIC_POLICY)
    spec = tmp / "study.yaml"
    spec.write_text(
        f"version: 1\nname: fixtures\npolicy: policy.yaml\nmodels_dir: {MODELS}\nout: out\n{extra}"
        f"dense: {{path: dense, label: dense}}\nvariants:\n{variants}"
    )
    return spec


_ONE = "variants:\n  - {name: a, path: x}\n"
VARIANTS = """\
  - {name: wanda50, path: wanda50, label: Wanda 50%}
  - {name: claimed50, path: claimed50, label: claimed 50%}
  - {name: sparsegpt50, path: not-built-yet, label: SparseGPT 50%}
"""


def test_study_runs_resumes_and_tabulates(tmp_path: Path) -> None:
    spec = _spec(tmp_path, VARIANTS)
    code, out = run_cli("study", str(spec), "-q")
    assert code == 0, out
    assert (
        "2 to run, 1 missing on disk (sparsegpt50)" in out and "estimate:" in out and "ETA" in out
    )
    table = json.loads((tmp_path / "out" / "table.json").read_text())
    rows = {r["variant"]: r for r in table["rows"]}
    assert table["missing"] == ["sparsegpt50"]
    # the honest checkpoint passes; the one that skipped o_proj/down_proj but claims 50% fails
    assert rows["wanda50"]["status"] == "pass" and rows["claimed50"]["status"] == "fail"
    assert rows["wanda50"]["prunable_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert rows["claimed50"]["prunable_sparsity"] == pytest.approx(1 / 3, abs=0.02)
    assert rows["claimed50"]["claimed_sparsity"] == 0.5
    assert (
        rows["wanda50"]["disk_bytes"] == rows["wanda50"]["dense_disk_bytes"]
    )  # zeros stored dense: 0 bytes saved
    assert rows["wanda50"]["delta_ppl"] is None  # not measured under this policy: n/a, never 0
    md = (tmp_path / "out" / "table.md").read_text()
    assert (
        "| Wanda 50% | 50.0% (50%) |" in md
        and "**FAIL** (sparsity)" in md
        and "Not measured yet: sparsegpt50" in md
    )
    ET.fromstring((tmp_path / "out" / "paradox.svg").read_text())

    # resume: nothing changed, nothing runs; the table is rebuilt from the reports on disk
    code, out = run_cli("study", str(spec), "-q")
    assert code == 0 and "2 up to date, 0 to run" in out
    # a changed model file makes its variant stale again
    report = tmp_path / "out" / "variants" / "wanda50.report.json"
    before = report.stat().st_mtime_ns
    code, out = run_cli("study", str(spec), "-q", "--only", "wanda50", "--force")
    assert code == 0 and "1 to run" in out and report.stat().st_mtime_ns != before
    (tmp_path / "out" / "table.md").unlink()
    code, out = run_cli("study", str(spec), "--table-only")
    assert code == 0 and (tmp_path / "out" / "table.md").is_file()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("variants: []\n", "variants"),
        ("variants:\n  - {name: 'bad name', path: x}\n", "variants[0].name"),
        ("variants:\n  - {name: a, path: x}\n  - {name: a, path: y}\n", "variants"),
        ("variants:\n  - {name: a, path: x, claims: {sparsity: 2}}\n", "--claim"),
        ("variants:\n  - {name: a, path: x, colour: red}\n", "variants[0]"),
        (f"{_ONE}passes: [a]\n", "passes"),
        (f"{_ONE}passes: {{fid: {{policy: p.yaml}}}}\n", "passes.fid"),
        (f"{_ONE}passes: {{fid: {{policy: p.yaml, out: o, colour: red}}}}\n", "passes.fid"),
        (f"{_ONE}passes: {{'bad name': {{policy: p.yaml, out: o}}}}\n", "passes"),
    ],
)
def test_bad_specs_name_the_field(tmp_path: Path, body: str, field: str) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(f"version: 1\npolicy: strict\ndense: d\n{body}")
    with pytest.raises(InputError) as e:
        load_spec(spec)
    assert e.value.field == field


def test_study_cli_errors_are_input_errors(tmp_path: Path) -> None:
    code, out = run_cli("study", str(tmp_path / "nope.yaml"))
    assert code == 2 and "study spec not found" in out
    spec = _spec(tmp_path, VARIANTS)
    code, out = run_cli("study", str(spec), "--only", "wanda99")
    assert code == 2 and "no variant named 'wanda99'" in out
    (tmp_path / "s2.yaml").write_text(
        spec.read_text().replace("path: dense,", "path: missing-dense,")
    )
    code, out = run_cli("study", str(tmp_path / "s2.yaml"))
    assert code == 2 and "dense model not found" in out


FULL_POLICY = """\
version: 1
name: study-runtime
fail_on_inconclusive: false
fail_on_skipped: true
checks:
  sparsity: {required: true, claim_tolerance: 0.02}
  size: {required: true, min_saving: 0.0}
  perplexity: {required: true, runtime: llamacpp, max_relative_increase: 0.05, n_ctx: 256, min_chunks: 4}
  bbq: {required: true, runtime: llamacpp, items: 120, min_items: 20, min_items_per_category: 5}
"""


@pytest.mark.slow
def test_study_with_runtime_checks_fills_every_quality_column(tmp_path: Path) -> None:
    """Perplexity and BBQ (llama.cpp, the fixture BBQ items) through the study: the table gets
    Δperplexity and ΔSRS with CIs, flips, s_AMB and disambiguated accuracy, and the plot a point."""
    spec = _spec(
        tmp_path,
        "  - {name: wanda50, path: wanda50, label: Wanda 50%}\n",
        extra=f"bbq_data: {ROOT / 'fixtures' / 'bbq'}\ndisambig_items: 60\nthreads: 1\n",
    )
    (tmp_path / "policy.yaml").write_text(FULL_POLICY)
    code, out = run_cli("study", str(spec), "-q")
    assert code == 0, out
    r = json.loads((tmp_path / "out" / "table.json").read_text())["rows"][0]
    assert r["delta_ppl"] is not None and r["delta_ppl_ci"] is not None and r["ppl_limit"] == 0.05
    assert r["delta_srs"] is not None and r["delta_srs_ci"] is not None and r["bbq_n"] > 0
    assert r["unbiased_to_biased"] is not None and r["s_amb_compressed"] is not None
    assert r["disambig_accuracy"] is not None and r["disambig_n"] > 0
    assert (tmp_path / "out" / "paradox.svg").read_text().count("<circle") == 1


def test_identical_variant_is_refused_unless_marked_a_null_run(tmp_path: Path) -> None:
    """As `edgegate check` refuses identical inputs (exit 2) unless --allow-identical, a study
    refuses a "variant" that is the dense model, naming it, unless the spec marks it."""
    spec = _spec(tmp_path, "  - {name: same, path: dense, label: dense again}\n")
    code, out = run_cli("study", str(spec), "-q")
    assert (
        code == 2
        and "variant same: the dense and compressed inputs are" in out
        and "allow_identical" in out
    )
    spec = _spec(
        tmp_path, "  - {name: same, path: dense, label: dense again, allow_identical: true}\n"
    )
    code, out = run_cli("study", str(spec), "-q")
    assert code == 0, out
    report = json.loads((tmp_path / "out" / "variants" / "same.report.json").read_text())
    assert any(f["code"] == "identical-inputs" for f in report["findings"])


def test_table_reads_disambiguated_accuracy_from_the_gate_when_the_policy_scored_it() -> None:
    """A policy with `bbq.disambig_items` measures disambiguated accuracy inside the BBQ check;
    the study then skips its own scoring and the table takes the gate's numbers (n, dense and
    compressed accuracy, s_DIS) instead of showing n/a."""
    from edgegate.study.table import row

    bbq = {
        "check": "bbq",
        "status": "pass",
        "verdicts": [],
        "measurements": {
            "overall": {
                "n": 300,
                "srs_dense": 0.5,
                "srs_compressed": 0.4,
                "delta_srs": -0.1,
                "ci": [-0.2, 0.0],
                "unbiased_to_biased": 7,
            },
            "dense": {"overall": {"s_amb": 0.1, "s_dis": 0.05}},
            "compressed": {"overall": {"s_amb": 0.02, "s_dis": -0.07}},
            "disambig_accuracy": {"n": 150, "accuracy": [0.45, 0.52], "lost": 15, "gained": 25},
        },
    }
    r = row({"status": "pass", "checks": [bbq]}, {"variant": "v", "label": "v", "disambig": None})
    assert (r["disambig_n"], r["disambig_accuracy_dense"], r["disambig_accuracy"]) == (
        150,
        0.45,
        0.52,
    )
    assert (r["s_dis_dense"], r["s_dis_compressed"]) == (0.05, -0.07)
    # the study's own scoring, when present, still wins (older reports, policies without it)
    own = {
        "dense": {"overall": {"n_items": 60, "accuracy": 0.3}},
        "compressed": {"overall": {"n_items": 60, "accuracy": 0.2}},
    }
    r2 = row({"status": "pass", "checks": [bbq]}, {"variant": "v", "label": "v", "disambig": own})
    assert (r2["disambig_n"], r2["disambig_accuracy"]) == (60, 0.2)


def test_a_variant_run_meanwhile_by_another_process_is_not_run_again(tmp_path: Path) -> None:
    """Two `study --only` processes over overlapping variants (researchers split a grid over
    machines or cores): a variant whose current report appears while a run is under way is
    skipped when that run reaches it, not measured twice. The other process is played here
    by a nested run started from the progress callback, before variant 2 is reached."""
    from edgegate.study.run import run_study

    spec = load_spec(_spec(tmp_path, VARIANTS))
    said: list[str] = []

    def echo(line: str) -> None:
        said.append(line)
        if line.startswith("[1/2] wanda50") and "running" in line:
            run_study(spec, only=("claimed50",), echo=lambda _s: None)

    records = run_study(spec, only=("wanda50", "claimed50"), echo=echo)
    assert [r["variant"] for r in records] == ["wanda50"]
    assert any(s.startswith("[2/2] claimed50: up to date") for s in said), said
    assert (spec.out / "variants" / "claimed50.report.json").is_file()


FIDELITY_POLICY = f"""\
version: 1
name: study-fidelity
checks:
  perplexity: {{required: true, runtime: llamacpp, max_relative_increase: 0.05, n_ctx: 128,
               text: {ROOT / "fixtures" / "text" / "eval.txt"}, min_chunks: 4}}
  fidelity: {{required: true, max_mean_kl: 0.01, min_top1_agreement: 0.95, min_chunks: 8}}
"""


def test_a_pass_adds_its_columns_to_the_main_table_without_rerunning_the_gate(
    tmp_path: Path,
) -> None:
    """A spec's extra pass (fidelity, added after the main study was measured) runs only its
    own policy into its own folder; the main table gains KL and top-1 columns from it, with the
    verdicts, and the main reports are not touched. Known positive: the tiny Wanda 50% GGUF
    fails both fidelity bounds; a variant without a pass report shows n/a."""
    from edgegate.backends import available

    if not available("llamacpp"):
        pytest.skip("llama-cpp-python is not installed")
    spec = _spec(
        tmp_path,
        "  - {name: wanda50, path: gguf/wanda50-f16.gguf, label: Wanda 50%}\n"
        "  - {name: dense-copy, path: dense, label: HF dense (no pass report)}\n",
        extra="threads: 1\npasses:\n  fidelity: {policy: fid.yaml, out: out/fidelity}\n",
    )
    spec.write_text(
        spec.read_text().replace("dense: {path: dense,", "dense: {path: gguf/dense-f16.gguf,")
    )
    (tmp_path / "fid.yaml").write_text(FIDELITY_POLICY)
    code, out = run_cli("study", str(spec), "-q", "--only", "wanda50")
    assert code == 0, out
    main_report = tmp_path / "out" / "variants" / "wanda50.report.json"
    before = main_report.stat().st_mtime_ns
    md = (tmp_path / "out" / "table.md").read_text()
    assert "mean KL" not in md  # no fidelity measured yet: no empty columns

    code, out = run_cli("study", str(spec), "-q", "--pass", "fidelity", "--only", "wanda50")
    assert code == 0, out
    assert main_report.stat().st_mtime_ns == before  # the main gate did not run again
    assert (tmp_path / "out" / "fidelity" / "variants" / "wanda50.report.json").is_file()
    r = json.loads((tmp_path / "out" / "table.json").read_text())["rows"][0]
    assert r["fidelity_source"] == "fidelity" and r["fidelity_chunks"] >= 8
    assert r["mean_kl"] > 0.01 and r["mean_kl_ci"][0] > 0.01 and r["mean_kl_verdict"] == "fail"
    assert r["top1_agreement"] < 0.95 and r["top1_verdict"] in ("fail", "inconclusive")
    assert r["status"] == "pass"  # the main gate's verdict is the main policy's, not the pass's
    md = (tmp_path / "out" / "table.md").read_text()
    assert "| mean KL, nats/token [95% CI] | top-1 agreement [95% CI] |" in md and "**fail**" in md
    assert "from the spec's pass fidelity" in md

    # the same pass again: up to date, nothing runs; a bad pass name is an input error
    code, out = run_cli("study", str(spec), "-q", "--pass", "fidelity", "--only", "wanda50")
    assert code == 0 and "1 up to date, 0 to run" in out
    code, out = run_cli("study", str(spec), "--pass", "nope")
    assert code == 2 and "no pass named 'nope'" in out and "known: fidelity" in out
    code, out = run_cli("study", str(spec), "--pass", "fidelity", "--out", str(tmp_path / "x"))
    assert code == 2 and "--pass takes its policy and folder from the spec" in out
