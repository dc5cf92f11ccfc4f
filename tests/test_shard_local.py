"""Sharded runs on the real llama.cpp runtime (fixture GGUFs, fixture BBQ items, a slice of
the fixture evaluation text): perplexity chunks and BBQ items split over shards, merged, and
compared with the unsharded run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _support import run_cli

pytest.importorskip("llama_cpp")


ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / "fixtures" / "models" / "gguf"
DENSE, COMP = GGUF / "dense-f16.gguf", GGUF / "wanda50-f16.gguf"
ITEMS = ROOT / "fixtures" / "bbq"
# Timings inside the perplexity measurements (not marked in the report schema, which marks
# only the top-level and per-check timings).
# what a run cost, not what it measured: timings, and how much of the BBQ scoring came from the
# answer cache (the shards reuse the whole run's answers) with the work it did (the report
# schema's x-nondeterministic-keys)
TIMING = {
    "seconds",
    "tokens_per_s",
    "load_s",
    "duration_s",
    "started_at",
    "finished_at",
    "environment",
    "command",
    "result_cache",
    "work",
}


_cli = run_cli


def _untimed(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if k not in TIMING}
    if isinstance(x, list):
        return [_untimed(v) for v in x]
    return x


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = tmp_path_factory.mktemp("local-shards")
    text = (ROOT / "fixtures" / "text" / "eval.txt").read_text(encoding="utf-8")[:5000]
    (w / "eval.txt").write_text(text, encoding="utf-8")
    (w / "policy.yaml").write_text(
        "version: 1\nname: local-shards\nfail_on_inconclusive: false\nchecks:\n"
        "  sparsity: {required: true, claim_tolerance: 0.02}\n"
        f"  perplexity: {{required: true, runtime: llamacpp, n_ctx: 128, min_chunks: 4, text: {w / 'eval.txt'}}}\n"
        f"  bbq: {{required: true, runtime: llamacpp, items: 12, condition: both, seed: 2, min_items: 5, data: {ITEMS}}}\n"
    )
    return w


def _check(w: Path, *extra: str) -> tuple[int, str]:
    return _cli(
        "check",
        str(DENSE),
        str(COMP),
        "--policy",
        str(w / "policy.yaml"),
        "--threads",
        "1",
        "-q",
        "--allow-partial",
        *extra,
    )


def test_check_shards_merge_to_the_unsharded_report(work: Path) -> None:
    code, out = _check(work, "--cache-dir", str(work / "c0"), "--json-out", str(work / "full.json"))
    assert code == 0, out
    parts = []
    for i in (1, 2):
        p = work / f"p{i}.json"
        code, out = _check(
            work, "--cache-dir", str(work / f"c{i}"), "--shard", f"{i}/2", "--partial-out", str(p)
        )
        assert code == 0, out
        parts.append(p)
    docs = [json.loads(p.read_text()) for p in parts]
    idx = [d["checks"]["perplexity"]["indices"] for d in docs]
    n_chunks = docs[0]["checks"]["perplexity"]["chunking"]["n_chunks"]
    assert n_chunks >= 4 and sorted(idx[0] + idx[1]) == list(range(n_chunks)) and idx[0] and idx[1]
    assert "ppl" not in json.dumps(docs[0]["checks"]["perplexity"])  # per-token NLLs, no aggregate
    code, out = _cli(
        "merge",
        *map(str, parts),
        "--policy",
        str(work / "policy.yaml"),
        "-q",
        "--allow-partial",
        "--json-out",
        str(work / "merged.json"),
    )
    full = json.loads((work / "full.json").read_text())
    merged = json.loads((work / "merged.json").read_text())
    assert code == full["exit_code"], out
    by = {c["check"]: c for c in merged["checks"]}
    assert by["perplexity"]["measurements"]["n"] == n_chunks and (
        by["bbq"]["measurements"]["overall"]["n"]
        + by["bbq"]["measurements"]["disambig_accuracy"]["n"]
        == 12
    )
    # how the items were scored differs by design (unsharded: in looks, shards: fixed n)
    for doc in (full, merged):
        next(c for c in doc["checks"] if c["check"] == "bbq")["measurements"].pop("sequential")
    assert _untimed(merged) == _untimed(full)  # bit-identical statistics, verdicts, reasons


def test_merge_refuses_a_missing_perplexity_chunk(work: Path) -> None:
    parts = [work / "p1.json", work / "p2.json"]
    if not all(p.exists() for p in parts):
        pytest.skip("needs the shards of the previous test")
    # Consistent shards always cover every chunk; the fault is made by hand (a tampered file).
    doc = json.loads(parts[1].read_text())
    ppl = doc["checks"]["perplexity"]
    lost = ppl["indices"].pop()
    for role in ppl["nll"]:
        ppl["nll"][role].pop()
    bad = work / "p2-lost.json"
    bad.write_text(json.dumps(doc))
    code, out = _cli("merge", str(parts[0]), str(bad), "--policy", str(work / "policy.yaml"), "-q")
    assert code == 2 and f"perplexity chunk(s) [{lost}] scored by no shard" in out


def test_bbq_run_shards_merge_without_policy(work: Path) -> None:
    common = [
        "bbq",
        "run",
        str(DENSE),
        str(COMP),
        "--data",
        str(ITEMS),
        "--items",
        "9",
        "--condition",
        "ambig",
        "--seed",
        "4",
        "--min-items",
        "3",
        "--threads",
        "1",
    ]
    code, out = _cli(*common, "--cache-dir", str(work / "b0"), "--json")
    assert code in (0, 1), out
    whole = json.loads(out[out.index("{") :])
    parts = []
    for i in (1, 2, 3):
        p = work / f"b{i}.json"
        code, out = _cli(
            *common,
            "--cache-dir",
            str(work / f"b{i}"),
            "--shard",
            f"{i}/3",
            "--partial-out",
            str(p),
        )
        assert code == 0 and p.exists(), out
        parts.append(str(p))
    code, out = _cli("merge", *parts, "--json")
    merged = json.loads(out[out.index("{") :])
    assert code == (0 if whole["status"] == "pass" else 1)
    for doc in (whole, merged):  # scored in looks vs by shards: differs by design
        doc["measurements"].pop("sequential")
    assert _untimed(merged) == _untimed(whole)
    assert merged["measurements"]["transitions"]["n_items"] == 9
    # a `bbq run` shard and a `check` shard do not mix
    code, out = _cli("merge", parts[0], parts[1], str(work / "p2.json"))
    assert code == 2 and "differ in" in out


def test_merge_reports_a_malformed_payload(work: Path) -> None:
    parts = [work / "p1.json", work / "p2.json"]
    if not all(p.exists() for p in parts):
        pytest.skip("needs the shards of the first test")
    doc = json.loads(parts[0].read_text())
    del doc["checks"]["bbq"]["answers"]
    bad = work / "p1-cut.json"
    bad.write_text(json.dumps(doc))
    code, out = _cli("merge", str(bad), str(parts[1]), "--policy", str(work / "policy.yaml"), "-q")
    assert code == 2 and "malformed partial file" in out and "answers" in out, out
