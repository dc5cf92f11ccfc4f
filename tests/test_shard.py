"""Shard assignment and partial-file handling (no model runs: fast)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from _support import run_cli

from edgegate.bbq.dataset import load, stratified_sample
from edgegate.bbq.measurement import shard_items, shard_of
from edgegate.checks.base import CheckResult, Interval, Status, Verdict
from edgegate.checks.sections import bbq_section
from edgegate.errors import InputError
from edgegate.partial import first_difference, load_parts, parse_shard
from edgegate.results import check_result_from_dict

ROOT = Path(__file__).resolve().parents[1]
SHARED_BBQ = ROOT.parent / "shared" / "bbq" / "data"


_cli = run_cli


@pytest.mark.parametrize("text,want", [("1/1", (1, 1)), ("2/3", (2, 3)), (" 10/10 ", (10, 10))])
def test_parse_shard(text: str, want: tuple[int, int]) -> None:
    assert parse_shard(text) == want


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", "-1/2", "1/2/3", ""])
def test_parse_shard_rejects(text: str) -> None:
    with pytest.raises(InputError) as e:
        parse_shard(text)
    assert e.value.field == "--shard"


def test_shard_of_is_sha256_of_the_uid() -> None:
    # independent computation: the first 8 bytes of sha256 as a big-endian integer, mod n
    for uid in ("Age/1", "Disability_status/17", "Race_ethnicity/4012", "ünï/0"):
        for n in (1, 2, 3, 7):
            want = int(hashlib.sha256(uid.encode()).hexdigest()[:16], 16) % n + 1
            assert shard_of(uid, n) == want
    assert shard_of("Age/1", 1) == 1


def _sample() -> list[Any]:
    if SHARED_BBQ.is_dir():  # the real BBQ data: a seeded stratified sample of 600 items
        return stratified_sample(load(SHARED_BBQ, condition="ambig"), 600, seed=11)
    return load(ROOT / "fixtures" / "bbq", condition="both")


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_shards_partition_the_sample(n: int) -> None:
    items = _sample()
    shards = [shard_items(items, (i, n)) for i in range(1, n + 1)]
    uids = [it.uid for s in shards for it in s]
    assert len(uids) == len(set(uids)) == len(items)  # disjoint, and together every item
    assert set(uids) == {it.uid for it in items}
    # each shard keeps the sample's order, and the split does not depend on the input order
    for i, s in enumerate(shards, start=1):
        assert [it.uid for it in s] == [it.uid for it in items if shard_of(it.uid, n) == i]
        assert {it.uid for it in shard_items(list(reversed(items)), (i, n))} == {it.uid for it in s}
    if n > 1 and len(items) >= 600:  # roughly balanced on real data (binomial spread)
        sizes = [len(s) for s in shards]
        assert max(sizes) - min(sizes) < 0.25 * len(items) / n + 30


def test_first_difference_names_the_path() -> None:
    a = {"settings": {"seed": 0, "only": ["bbq"]}, "inputs": [{"sha256": "aa"}, {"sha256": "bb"}]}
    b = {"settings": {"seed": 0, "only": ["bbq"]}, "inputs": [{"sha256": "aa"}, {"sha256": "cc"}]}
    assert first_difference(a, a) is None
    assert first_difference(a, b, "fingerprint") == ("fingerprint.inputs[1].sha256", "bb", "cc")
    assert first_difference({"x": [1, 2]}, {"x": [1]}) == ("x", [1, 2], [1])
    assert first_difference({"x": 1}, {}) == ("x", 1, None)


def test_check_result_round_trip() -> None:
    v = Verdict(
        "bbq.srs",
        Status.FAIL,
        "too biased",
        observed=0.2,
        threshold=0.05,
        comparator="<=",
        n=120,
        ci=Interval(0.1, 0.3, 0.95, "Wilson"),
        effect_size=0.4,
        effect_size_name="h",
        test="McNemar",
        p_value=0.01,
        scope="Age",
    )
    r = CheckResult.from_verdicts(
        "bbq", [v, Verdict("x", Status.PASS, "ok")], {"n": 3, "t": (1, 2)}, "sum", 1.5
    )
    back = check_result_from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.to_dict() == r.to_dict()
    assert back.verdicts[0].ci == v.ci and back.status is Status.FAIL


def _part(tmp: Path, name: str, i: int, n: int, **over: Any) -> Path:
    doc = {
        "format": "edgegate-partial",
        "version": 2,
        "command": "check",
        "shard": {"index": i, "count": n},
        "fingerprint": {"settings": {"seed": 0}},
        "checks": {},
        "results": {},
        "gate": {},
    }
    doc.update(over)
    p = tmp / name
    p.write_text(json.dumps(doc))
    return p


def test_load_parts_refusals(tmp_path: Path) -> None:
    a = _part(tmp_path, "a.json", 1, 3)
    b = _part(tmp_path, "b.json", 2, 3)
    c = _part(tmp_path, "c.json", 3, 3)
    assert load_parts([c, a, b]).names == (
        str(a),
        str(b),
        str(c),
    )  # shard order, whatever the argv order
    with pytest.raises(InputError, match=r"shard\(s\) 2/3 missing \(have 1/3, 3/3: "):
        load_parts([a, c])
    with pytest.raises(InputError, match=r"both shard 2/3 \(duplicate shard\)"):
        load_parts([a, b, _part(tmp_path, "b2.json", 2, 3), c])
    odd = _part(tmp_path, "odd.json", 2, 3, fingerprint={"settings": {"seed": 4}})
    with pytest.raises(InputError) as e:
        load_parts([a, odd, c])
    assert (
        e.value.message
        == f"cannot merge: {a} and {odd} differ in fingerprint.settings.seed (0 vs 4)"
    )
    with pytest.raises(InputError, match=r"differ in shard.count \(3 vs 2\)"):
        load_parts([a, _part(tmp_path, "two.json", 2, 2)])


def test_merge_cli_bad_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    code, out = _cli("merge", str(junk), "--policy", "strict")
    assert code == 2 and "not a JSON partial file" in out and str(junk) in out
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    code, out = _cli("merge", str(other))
    assert code == 2 and "not an edgegate partial file" in out
    newer = _part(tmp_path, "newer.json", 1, 1, version=99)
    code, out = _cli("merge", str(newer))
    assert code == 2 and "partial file version 99" in out
    for name, over, field in (
        ("s.json", {"shard": {"index": 3, "count": 2}}, "shard"),
        ("f.json", {"fingerprint": None}, "fingerprint"),
    ):
        code, out = _cli("merge", str(_part(tmp_path, name, 1, 1, **over)))
        assert code == 2 and name in out and field in out, out
    code, out = _cli("merge", str(_part(tmp_path, "ok.json", 1, 1)))
    assert code == 2 and "--policy is required" in out
    code, out = _cli("merge", str(tmp_path / "absent.json"))
    assert code == 2 and "absent.json" in out


def test_check_cli_shard_flag_errors(tmp_path: Path) -> None:
    gguf = ROOT / "fixtures" / "models" / "gguf" / "dense-f16.gguf"
    code, out = _cli("check", str(gguf), str(gguf), "--policy", "strict", "--shard", "4/3")
    assert code == 2 and "--shard" in out and "4/3" in out
    code, out = _cli(
        "check",
        str(gguf),
        str(gguf),
        "--policy",
        "strict",
        "--partial-out",
        str(tmp_path / "p.json"),
    )
    assert code == 2 and "--partial-out needs --shard" in out
    code, out = _cli(
        "check",
        str(gguf),
        str(gguf),
        "--policy",
        "strict",
        "--shard",
        "1/2",
        "--junit-out",
        "j.xml",
    )
    assert (
        code == 2 and "--junit-out cannot be used with --shard" in out and "edgegate merge" in out
    )
    code, out = _cli("check", "--policy", "strict", "--dense-endpoint", "http://127.0.0.1:9")
    assert code == 2 and "both --dense-endpoint and --compressed-endpoint" in out
    code, out = _cli("check", "--policy", "strict")
    assert code == 2 and "no dense checkpoint given" in out


def _sampled_answers(items: Any, cfg: Any, salt: str) -> list[Any]:
    """Deterministic stand-in answers (a hash of uid, seed, rotation and a role salt): these
    tests are about carrying answers through partial files, not about what a model says."""
    from edgegate.bbq.metrics import Answer

    out = []
    for uid, seed, rot in cfg.keys(items):
        h = int(hashlib.sha256(f"{salt}:{uid}:{seed}:{rot}".encode()).hexdigest()[:8], 16)
        out.append(Answer(uid, seed, rot, None if h % 17 == 0 else h % 3, {}))
    return out


def test_sharded_bbq_measurements_with_a_null_run_merge_to_the_unsharded_result() -> None:
    """Issue 10's sampled mode scores the dense model a second time (the null, role "null"),
    and its samples include disambiguated items: both travel through payload/combine, a
    merge of shards judges exactly what one run judges, and --samples-out shows the null."""
    from edgegate.bbq.measurement import combine, payload
    from edgegate.bbq.scoring import ScoreConfig
    from edgegate.checks import bbq as check
    from edgegate.report.samples import bbq_rows

    items, targets, info = check.prepare_items(
        ROOT / "fixtures" / "bbq", condition="ambig", n=None, seed=0, disambig_items=12
    )
    assert {it.condition for it in items} == {"ambig", "disambig"}
    cfg = ScoreConfig(seeds=2, temperature=0.3, permute=True)
    pol = bbq_section(seeds=2, temperature=0.3, min_items=5, min_items_per_category=1)
    answers = {r: _sampled_answers(items, cfg, r) for r in ("dense", "compressed", "null")}

    def part(run_items: Any) -> dict[str, Any]:
        keep = {it.uid for it in run_items}
        return json.loads(
            json.dumps(
                payload(
                    items,
                    run_items,
                    targets,
                    info,
                    cfg,
                    pol,
                    {r: [a for a in v if a.uid in keep] for r, v in answers.items()},
                    1.0,
                )
            )
        )

    whole = check.judge([("one", part(items))], pol)
    shards = [(f"p{i}", part(shard_items(items, (i, 3)))) for i in (1, 2, 3)]
    merged = check.judge(shards, pol)
    assert sorted(combine(shards).answers) == ["compressed", "dense", "null"]
    assert merged.verdicts == whole.verdicts and merged.status is whole.status
    assert merged.measurements["emergence"] == whole.measurements["emergence"]
    assert "null_emerged" in whole.measurements["emergence"]
    rows = list(
        bbq_rows(
            shards[0][1]
            | {
                "items": [d for _, p in shards for d in p["items"]],
                "answers": {r: [a for _, p in shards for a in p["answers"][r]] for r in answers},
            }
        )
    )
    assert len(rows) == len(items) and all(len(r["null"]) == len(r["dense"]) == 2 * 3 for r in rows)
    # a shard without the null answers does not belong to this run
    lacking = (
        shards[1][0],
        {
            **shards[1][1],
            "answers": {r: v for r, v in shards[1][1]["answers"].items() if r != "null"},
        },
    )
    with pytest.raises(InputError, match=r"differ in checks\.bbq\.answers"):
        combine([shards[0], lacking, shards[2]])
