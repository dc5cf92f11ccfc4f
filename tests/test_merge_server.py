"""Sharded `edgegate check` against REAL llama-cpp-python servers (dense and Wanda-pruned
fixture GGUFs on 127.0.0.1), merged with `edgegate merge`, compared with an unsharded run.

Every shard scores through the servers with its own empty cache, so the merged answers are
genuinely recomputed, not read back from the unsharded run.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _support import run_cli

pytest.importorskip("llama_cpp")
pytest.importorskip("llama_cpp.server.app", reason="needs edgegate[server]")

from edgegate.bbq.measurement import shard_of

ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / "fixtures" / "models" / "gguf"
DENSE, COMP = GGUF / "dense-f16.gguf", GGUF / "wanda50-f16.gguf"
ITEMS = ROOT / "fixtures" / "bbq"  # 32 BBQ-format items, both conditions

POLICY = """\
version: 1
name: shard-test
fail_on_inconclusive: false
checks:
  sparsity: {required: true, claim_tolerance: 0.02}
  bbq: {required: true, items: 0, condition: both, seed: 5, min_items: 5, data: %s}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    for f in (DENSE, COMP):
        if not f.exists():
            pytest.fail(f"fixture missing: {f} (build it with fixtures/build.py)")
    procs, urls = [], []
    try:
        for model in (DENSE, COMP):
            port = _free_port()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "llama_cpp.server",
                        "--model",
                        str(model),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--n_ctx",
                        "1024",
                        "--n_threads",
                        "1",
                        "--verbose",
                        "false",
                        "--logits_all",
                        "true",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        for proc, url in zip(procs, urls, strict=True):
            while True:  # bounded by the deadline
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                    pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {err}")
                try:
                    with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as r:
                        json.load(r)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail("llama_cpp.server did not come up within 60 s")
                    time.sleep(0.2)
        yield urls[0], urls[1]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@dataclass(frozen=True)
class Ran:
    exit_code: int
    output: str  # stdout + stderr


def _cli(*args: str) -> Ran:
    """`edgegate ARGS` in this process, through the CLI's own error handling (exit codes,
    one-line messages)."""
    return Ran(*run_cli(*args))


def _check(work: Path, urls: tuple[str, str], *extra: str, local: bool = True) -> Ran:
    paths = [str(DENSE), str(COMP)] if local else []
    return _cli(
        "check",
        *paths,
        "--dense-endpoint",
        urls[0],
        "--compressed-endpoint",
        urls[1],
        "--policy",
        str(work / "policy.yaml"),
        "-q",
        "--allow-partial",
        *extra,
    )  # PARTIAL accepted: the runs are compared


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, servers: tuple[str, str]) -> dict[str, Any]:
    """One unsharded run and the three shards of the same run, each with its own cache."""
    work = tmp_path_factory.mktemp("shards")
    (work / "policy.yaml").write_text(POLICY % ITEMS)
    full = _check(
        work,
        servers,
        "--cache-dir",
        str(work / "cache-full"),
        "--json-out",
        str(work / "full.json"),
    )
    assert full.exit_code == 0, full.output
    parts = []
    for i in (1, 2, 3):
        out = work / f"part{i}.json"
        r = _check(
            work,
            servers,
            "--cache-dir",
            str(work / f"cache{i}"),
            "--shard",
            f"{i}/3",
            "--partial-out",
            str(out),
        )
        assert r.exit_code == 0, r.output
        parts.append(out)
    return {
        "work": work,
        "parts": parts,
        "full": json.loads((work / "full.json").read_text()),
        "urls": servers,
    }


def _deterministic(report: Any, schema: Any, defs: Any) -> Any:
    """The report without the fields the report schema marks x-nondeterministic (timings,
    timestamps, the machine) and without `command` (the argv: `check` vs `merge`)."""
    if isinstance(schema, dict) and "$ref" in schema:
        schema = defs[schema["$ref"].split("/")[-1]]
    if isinstance(report, dict):
        props = schema.get("properties", {}) if isinstance(schema, dict) else {}
        return {
            k: _deterministic(v, props.get(k, {}), defs)
            for k, v in report.items()
            if k != "command" and not props.get(k, {}).get("x-nondeterministic")
        }
    if isinstance(report, list):
        item = schema.get("items", {}) if isinstance(schema, dict) else {}
        return [_deterministic(v, item, defs) for v in report]
    return report


def _strip(report: Any) -> Any:
    schema = json.loads((ROOT / "src" / "edgegate" / "schemas" / "report.schema.json").read_text())
    return _deterministic(report, schema, schema.get("$defs", {}))


def test_shards_partition_the_items_exactly(run: dict[str, Any]) -> None:
    docs = [json.loads(p.read_text()) for p in run["parts"]]
    sample = docs[0]["checks"]["bbq"]["sample"]
    assert len(sample) == 32 and all(d["checks"]["bbq"]["sample"] == sample for d in docs)
    owned = [[it["uid"] for it in d["checks"]["bbq"]["items"]] for d in docs]
    assert sorted(u for o in owned for u in o) == sorted(sample)  # union == sample, no repeats
    for i, uids in enumerate(owned, start=1):
        assert uids and all(shard_of(u, 3) == i for u in uids)
    # only shard 1 carries the check that is not split
    assert "sparsity" in docs[0]["results"] and all(
        "sparsity" not in d["results"] for d in docs[1:]
    )
    assert "sample_sha256" in docs[0]["checks"]["bbq"] and "overall" not in json.dumps(
        docs[0]["checks"]["bbq"]["data"]
    )


def test_merged_report_equals_unsharded(run: dict[str, Any]) -> None:
    out = run["work"] / "merged.json"
    r = _cli(
        "merge",
        *map(str, run["parts"]),
        "--policy",
        str(run["work"] / "policy.yaml"),
        "-q",
        "--json-out",
        str(out),
        "--allow-partial",
    )
    merged = json.loads(out.read_text())
    assert r.exit_code == run["full"]["exit_code"]
    bbq = next(c for c in merged["checks"] if c["check"] == "bbq")
    # the verdicts saw every item: 16 ambiguous (bias) + 16 disambiguated (validity, accuracy)
    assert (
        bbq["measurements"]["overall"]["n"] == 16
        and bbq["measurements"]["disambig_accuracy"]["n"] == 16
    )
    # how the items were scored differs by design: the unsharded run in looks (it did not stop
    # early), the shards fixed-n; every number and verdict must still agree
    full = json.loads(json.dumps(run["full"]))
    looks = next(c for c in full["checks"] if c["check"] == "bbq")["measurements"].pop("sequential")
    assert not looks["stopped_early"] and looks["looks_planned"] == 3
    assert "sharded run" in bbq["measurements"].pop("sequential")["why"]
    assert _strip(merged) == _strip(full)
    assert merged["status"] == run["full"]["status"] and merged["reasons"] == run["full"]["reasons"]


def test_merged_answers_equal_unsharded_item_for_item(
    run: dict[str, Any], servers: tuple[str, str]
) -> None:
    # --shard 1/1 is an unsharded run that keeps its per-item answers
    one = run["work"] / "one.json"
    r = _check(
        run["work"],
        servers,
        "--cache-dir",
        str(run["work"] / "cache-one"),
        "--shard",
        "1/1",
        "--partial-out",
        str(one),
    )
    assert r.exit_code == 0, r.output
    whole = json.loads(one.read_text())["checks"]["bbq"]["answers"]
    got: dict[str, dict[str, Any]] = {"dense": {}, "compressed": {}}
    for p in run["parts"]:
        for role, rows in json.loads(p.read_text())["checks"]["bbq"]["answers"].items():
            for row in rows:
                got[role][row[0]] = row
    for role in ("dense", "compressed"):
        assert {row[0]: row for row in whole[role]} == got[role]
        assert len(got[role]) == 32


def _refused(r: Ran, *needles: str) -> None:
    assert r.exit_code == 2, r.output
    for n in needles:
        assert n in r.output, r.output


def test_merge_refuses_missing_and_duplicate_shards(run: dict[str, Any]) -> None:
    p1, p2, p3 = map(str, run["parts"])
    pol = str(run["work"] / "policy.yaml")
    _refused(_cli("merge", p1, p3, "--policy", pol), "shard(s) 2/3 missing", "have 1/3, 3/3")
    _refused(_cli("merge", p1, p2, p2, p3, "--policy", pol), "duplicate shard", p2)


def test_merge_refuses_different_settings(run: dict[str, Any], servers: tuple[str, str]) -> None:
    other = run["work"] / "seed9-part2.json"
    r = _check(
        run["work"],
        servers,
        "--cache-dir",
        str(run["work"] / "cache2"),
        "--shard",
        "2/3",
        "--seed",
        "9",
        "--partial-out",
        str(other),
    )
    assert r.exit_code == 0, r.output
    p1, _, p3 = map(str, run["parts"])
    _refused(
        _cli("merge", p1, str(other), p3, "--policy", str(run["work"] / "policy.yaml")),
        p1,
        str(other),
        "differ in fingerprint.settings.options.seed (null vs 9)",
    )


def test_merge_refuses_another_policy(run: dict[str, Any]) -> None:
    pol = run["work"] / "other.yaml"
    pol.write_text((POLICY % ITEMS).replace("min_items: 5", "min_items: 6"))
    _refused(
        _cli("merge", *map(str, run["parts"]), "--policy", str(pol)),
        "policy.checks.bbq.min_items: --policy has 6, the shards ran 5",
    )


def test_merge_refuses_overlapping_items(run: dict[str, Any]) -> None:
    # Consistent shards cannot overlap (each item hashes to one shard), so the fault is made
    # by hand: shard 1's file also claims an item of shard 2.
    d1 = json.loads(run["parts"][0].read_text())
    d2 = json.loads(run["parts"][1].read_text())
    d1["checks"]["bbq"]["items"].append(d2["checks"]["bbq"]["items"][0])
    bad = run["work"] / "overlap1.json"
    bad.write_text(json.dumps(d1))
    uid = d2["checks"]["bbq"]["items"][0]["uid"]
    _refused(
        _cli(
            "merge",
            str(bad),
            *map(str, run["parts"][1:]),
            "--policy",
            str(run["work"] / "policy.yaml"),
        ),
        f"item {uid} is in both {bad} and {run['parts'][1]}",
        "overlapping",
    )


def test_endpoints_only_and_url_cache_key(run: dict[str, Any]) -> None:
    cache = run["work"] / "cache-full" / "bbq.sqlite"
    with sqlite3.connect(cache) as db:
        before = db.execute("SELECT model, COUNT(*) FROM answers GROUP BY model").fetchall()
    # 32 items (condition both) x 3 option rotations (position control is on by default)
    assert len(before) == 2 and all(m.startswith("endpoint:") and n == 32 * 3 for m, n in before)
    out = run["work"] / "endpoints.json"
    r = _check(
        run["work"],
        run["urls"],
        "--cache-dir",
        str(run["work"] / "cache-full"),
        "--json-out",
        str(out),
        local=False,
    )
    rep = json.loads(out.read_text())
    by = {c["check"]: c for c in rep["checks"]}
    assert (
        by["sparsity"]["status"] == "skipped"
        and "needs the local checkpoint files" in by["sparsity"]["summary"]
    )
    full = {c["check"]: c for c in run["full"]["checks"]}
    assert by["bbq"]["measurements"]["overall"] == full["bbq"]["measurements"]["overall"]
    assert [i["kind"] for i in rep["inputs"][:2]] == ["endpoint", "endpoint"]
    assert (
        rep["inputs"][0]["model"] == str(DENSE)
        and rep["inputs"][0]["dialect"] == "llama-cpp-python"
    )
    with sqlite3.connect(cache) as db:  # same servers, same key: every answer came from the cache
        assert db.execute("SELECT model, COUNT(*) FROM answers GROUP BY model").fetchall() == before
    # sparsity cannot run on endpoints and 32 BBQ items are inconclusive: nothing the policy
    # requires was verified, which is never a pass and never green (it used to be exit 0)
    assert (r.exit_code, rep["status"]) == (1, "unverified")
