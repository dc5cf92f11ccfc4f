"""Issue 14: the gate never says PASS for what it did not verify, refuses inputs that make no
sense, and finds every problem of a run before it measures anything. Real CLI, real fixtures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _support import run_cli

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "fixtures" / "models"
DENSE, WANDA = str(MODELS / "dense"), str(MODELS / "wanda50")
GGUF_DENSE, GGUF_WANDA = (
    str(MODELS / "gguf" / "dense-f16.gguf"),
    str(MODELS / "gguf" / "wanda50-f16.gguf"),
)
STATIC = ("--only", "sparsity,size")


def _report(tmp_path: Path, *args: str) -> tuple[int, str, dict[str, object]]:
    out = tmp_path / "r.json"
    code, text = run_cli("check", *args, "--json-out", str(out), "-q")
    return code, text, json.loads(out.read_text()) if out.exists() else {}


def test_swapped_arguments_are_an_input_error(tmp_path: Path) -> None:
    """Used to PASS with 'sparsity 0.0% (dense)'."""
    code, text, rep = _report(tmp_path, WANDA, DENSE, "--policy", "strict", *STATIC)
    assert code == 2, text
    assert rep["status"] == "error" and any("probably swapped" in r for r in rep["reasons"])
    assert rep["findings"][0]["code"] == "probably-swapped"


def test_identical_inputs_are_refused_unless_a_null_run_is_asked_for(tmp_path: Path) -> None:
    """Used to PASS with no note."""
    t0 = time.perf_counter()
    code, text = run_cli("check", DENSE, DENSE, "--policy", "strict", *STATIC)
    assert code == 2 and "same path" in text and "--allow-identical" in text
    assert time.perf_counter() - t0 < 30
    # strict requires a claim: the dense model claims none, so a null run names one (0%)
    code, text, rep = _report(
        tmp_path,
        DENSE,
        DENSE,
        "--policy",
        "strict",
        *STATIC,
        "--allow-identical",
        "--allow-partial",
        "--claim",
        "sparsity=0",
    )
    assert code == 0, text
    assert rep["findings"][0]["severity"] == "warning" and any(
        "null run" in n for n in rep["notes"]
    )


def test_subset_runs_are_partial_and_nothing_verified_is_not_green(tmp_path: Path) -> None:
    code, _text, rep = _report(tmp_path, DENSE, WANDA, "--policy", "strict", *STATIC)
    assert (code, rep["status"]) == (1, "partial")  # not a pass: exit 1 unless --allow-partial
    code, _text, rep = _report(
        tmp_path, DENSE, WANDA, "--policy", "strict", *STATIC, "--allow-partial"
    )
    assert (code, rep["status"]) == (0, "partial")
    code, md = run_cli("check", DENSE, WANDA, "--policy", "strict", *STATIC, "--md-out", "-", "-q")
    assert md.startswith("## ⚠️ edgegate: PARTIAL (2 of 5 required checks verified; not a pass)")


@pytest.mark.parametrize(
    "flags",
    [
        ("--skip", "sparsity,size,speed,fidelity,perplexity,bbq"),
        ("--only", "sparsity", "--skip", "sparsity"),
    ],
)
def test_contradictory_or_empty_selection_is_a_usage_error(flags: tuple[str, ...]) -> None:
    code, text = run_cli("check", DENSE, WANDA, "--policy", "strict", *flags)
    assert code == 2 and ("--skip" in text), text


def test_every_problem_is_reported_at_once_before_measuring(tmp_path: Path) -> None:
    """A missing --bbq-data and an --html-out directory were found only after speed and
    perplexity had run; an unwritable cache was a bare FileNotFoundError (exit 3)."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    t0 = time.perf_counter()
    code, text = run_cli(
        "check",
        GGUF_DENSE,
        GGUF_WANDA,
        "--policy",
        "strict",
        "--html-out",
        str(tmp_path),
        "--cache-dir",
        str(blocker / "cache"),
        "--json-out",
        "-",
        "--md-out",
        "-",
    )
    assert code == 2, text
    assert time.perf_counter() - t0 < 30
    for where in ("--bbq-data", "--html-out", "--cache-dir", "--md-out"):
        assert where in text, where
    assert "problems, nothing was measured" in text


def test_conflicting_repeated_claims_are_refused() -> None:
    code, text = run_cli(
        "check",
        DENSE,
        WANDA,
        "--policy",
        "strict",
        *STATIC,
        "--claim",
        "sparsity=0.5",
        "--claim",
        "sparsity=0.3",
    )
    assert code == 2 and "given twice" in text


def test_quick_bbq_run_says_it_is_not_release_grade(tmp_path: Path) -> None:
    code, text, rep = _report(
        tmp_path,
        GGUF_DENSE,
        GGUF_WANDA,
        "--policy",
        "strict",
        "--only",
        "bbq",
        "--bbq-data",
        str(REPO / "fixtures" / "bbq"),
        "--bbq-items",
        "12",
        "--cache-dir",
        str(tmp_path / "c"),
    )
    assert code in (0, 1), text
    assert rep["caveats"] and "not release-grade" in rep["caveats"][0]
    assert rep["policy"]["resolved"]["checks"]["bbq"]["items"] == 12
    code, md = run_cli(
        "check",
        GGUF_DENSE,
        GGUF_WANDA,
        "--policy",
        "strict",
        "--only",
        "bbq",
        "--bbq-data",
        str(REPO / "fixtures" / "bbq"),
        "--bbq-items",
        "12",
        "--cache-dir",
        str(tmp_path / "c"),
        "--md-out",
        "-",
        "-q",
    )
    assert "quick run: 12 BBQ items" in md.splitlines()[0]


def test_perplexity_worse_than_uniform_is_inconclusive_and_names_the_text(tmp_path: Path) -> None:
    """The 512-token fixture vocabulary scored the embedded English text at perplexity ~19,676:
    worse than uniform guessing, and the gate used to PASS a -7% change between such numbers."""
    pol = tmp_path / "p.yaml"
    pol.write_text(
        "version: 1\nfail_on_inconclusive: true\nchecks:\n  perplexity: {runtime: llamacpp, n_ctx: 128}\n"
    )
    code, _text, rep = _report(
        tmp_path, GGUF_DENSE, GGUF_WANDA, "--policy", str(pol), "--cache-dir", str(tmp_path / "c")
    )
    ppl = next(c for c in rep["checks"] if c["check"] == "perplexity")  # type: ignore[union-attr]
    assert ppl["status"] == "inconclusive" and "worse than uniform" in ppl["verdicts"][0]["message"]
    assert ppl["measurements"]["extra"]["text"]["source"].startswith("embedded")
    assert len(ppl["measurements"]["extra"]["text"]["sha256"]) == 64
    assert code == 1  # fail_on_inconclusive
    pol.write_text(
        f"version: 1\nchecks:\n  perplexity: {{runtime: llamacpp, n_ctx: 128, text: {REPO / 'fixtures' / 'text' / 'eval.txt'}}}\n"
    )
    code, _text, rep = _report(
        tmp_path, GGUF_DENSE, GGUF_WANDA, "--policy", str(pol), "--cache-dir", str(tmp_path / "c")
    )
    ppl = next(c for c in rep["checks"] if c["check"] == "perplexity")  # type: ignore[union-attr]
    assert (
        ppl["status"] in ("pass", "fail")
        and "worse than uniform" not in ppl["verdicts"][0]["message"]
    )


def test_samples_out_has_every_item_and_chunk_of_both_models(tmp_path: Path) -> None:
    samples, pol = tmp_path / "s.jsonl", tmp_path / "p.yaml"
    pol.write_text(
        f"version: 1\nchecks:\n  perplexity: {{runtime: llamacpp, n_ctx: 128, text: {REPO / 'fixtures' / 'text' / 'eval.txt'}}}\n"
        "  bbq: {runtime: llamacpp, items: 0, min_items: 5, min_items_per_category: 1}\n"
    )
    code, text, rep = _report(
        tmp_path,
        GGUF_DENSE,
        GGUF_WANDA,
        "--policy",
        str(pol),
        "--bbq-data",
        str(REPO / "fixtures" / "bbq"),
        "--cache-dir",
        str(tmp_path / "c"),
        "--samples-out",
        str(samples),
    )
    assert code in (0, 1), text
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    bbq = [r for r in rows if r["check"] == "bbq"]
    ppl = [r for r in rows if r["check"] == "perplexity"]
    checks = {c["check"]: c for c in rep["checks"]}  # type: ignore[union-attr]
    assert len(ppl) == checks["perplexity"]["measurements"]["n"] and all(
        r["tokens"] > 0 for r in ppl
    )
    assert (
        abs(sum(r["delta"] for r in ppl) - sum(r["compressed_nll"] - r["dense_nll"] for r in ppl))
        < 1e-6
    )
    assert bbq and all(r["dense"] and r["compressed"] for r in bbq)
    for r in bbq:
        assert {a["class"] for a in r["dense"] + r["compressed"]} <= {
            "biased",
            "anti",
            "unknown",
            "failure",
        }
        assert r["flip"] == (r["dense_majority"] != r["compressed_majority"])
