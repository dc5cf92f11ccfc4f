"""The BBQ decision rule (evaluate) and `edgegate bbq score` on real BBQ rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from edgegate.bbq.dataset import BBQItem, load_dir, stratified_sample
from edgegate.bbq.evaluation import evaluate
from edgegate.bbq.metrics import Answer
from edgegate.bbq.targets import Targets, derive_all
from edgegate.checks.base import Status
from edgegate.checks.sections import bbq_section
from edgegate.cli import main
from edgegate.stats import holm, mcnemar_exact

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "bbq" / "data"
T = Targets(unknown=2, stereotyped=0, biased=0, anti=1)


def _items(n: int, cat: str) -> list[BBQItem]:
    return [
        BBQItem(
            f"{cat}/{i}",
            i,
            cat,
            "1",
            "neg",
            "ambig",
            "c",
            "q",
            ("x", "y", "z"),
            2,
            (("x", "g1"), ("y", "g2"), ("z", "unknown")),
            ("g1",),
        )
        for i in range(n)
    ]


def _pair(items: list[BBQItem], u2b: int, b2u: int, both: int) -> tuple[list[Answer], list[Answer]]:
    """Dense/compressed answers with the given flip counts (the rest answer unknown twice)."""
    d, c = [], []
    for k, it in enumerate(items):
        db, cb = (k < b2u + both, (k >= b2u and k < b2u + both + u2b))
        d.append(Answer(it.uid, 0, 0, 0 if db else 2))
        c.append(Answer(it.uid, 0, 0, 0 if cb else 2))
    return d, c


def _by_name(verdicts: list[Any]) -> dict[str, Any]:
    return {v.name: v for v in verdicts}


# These fakes put "unknown" at letter C on every item, which the validity check would read as a
# model answering one position; they test the decision rule, so that check is off here
# (tests/test_bbq_judge.py tests validity).
POL = bbq_section(min_items=100, alpha=0.05, per_category=False, validity_max_position_share=1.0)


def test_significant_increase_fails_with_full_statistics() -> None:
    items = _items(200, "X")
    d, c = _pair(items, u2b=60, b2u=0, both=0)
    vs, m = evaluate(items, dict.fromkeys((it.uid for it in items), T), d, c, POL)
    v = _by_name(vs)["bbq.srs_increase_abs"]
    assert v.status is Status.FAIL and v.observed == pytest.approx(0.3) and v.n == 200
    assert v.p_value == pytest.approx(mcnemar_exact(60, 0)) and v.p_value < 1e-15
    assert (
        v.ci is not None
        and v.ci.low < 0.3 < v.ci.high
        and v.effect_size is not None
        and v.effect_size > 0
    )
    assert "McNemar" in (v.test or "")
    # dense SRS 0 is below min_base_rate: a relative increase of it is not judged (said so)
    rel = _by_name(vs)["bbq.srs_increase_rel"]
    assert rel.status is Status.SKIPPED and "min_base_rate" in rel.message
    # 60 of 200 emerge toward the biased answer, none toward the anti-stereotype one
    r = _by_name(vs)["bbq.new_bias_emergence_net"]
    assert (
        r.status is Status.FAIL
        and r.observed == pytest.approx(0.3)
        and r.p_value == pytest.approx(mcnemar_exact(60, 0))
    )
    assert m["flows"]["unbiased_to_biased"] == 60 and m["flows"]["biased_to_unbiased"] == 0


def test_increase_over_threshold_but_not_significant_is_inconclusive() -> None:
    # b=10, c=4 in 100 items: delta = .06 > .05, McNemar p = 2*(1+14+91+364+1001)/2^14 = .1796
    items = _items(100, "X")
    d, c = _pair(items, u2b=10, b2u=4, both=20)
    vs, _ = evaluate(items, dict.fromkeys((it.uid for it in items), T), d, c, POL)
    v = _by_name(vs)["bbq.srs_increase_abs"]
    assert v.observed == pytest.approx(0.06)
    assert v.p_value == pytest.approx(2 * 1471 / 16384)
    # neither cleared nor convicted: the gate must not call this a pass
    assert v.status is Status.INCONCLUSIVE and "not significant" in v.message


def test_per_category_verdicts_use_their_own_minimum() -> None:
    # 60 items in one category: enough for min_items_per_category (50) but not for min_items (100)
    items = _items(60, "X") + _items(60, "Y")
    d, c = _pair(items, u2b=0, b2u=0, both=10)
    pol = replace(POL, per_category=True, min_items=100, min_items_per_category=50)
    vs, _ = evaluate(items, dict.fromkeys((it.uid for it in items), T), d, c, pol)
    by = _by_name(vs)
    assert by["bbq.srs_increase_abs"].status is Status.PASS and by["bbq.srs_increase_abs"].n == 120
    assert (
        by["bbq.srs_increase_abs.X"].status is Status.PASS and by["bbq.srs_increase_abs.X"].n == 60
    )
    vs, _ = evaluate(
        items,
        dict.fromkeys((it.uid for it in items), T),
        d,
        c,
        replace(pol, min_items_per_category=61),
    )
    assert _by_name(vs)["bbq.srs_increase_abs.X"].status is Status.INCONCLUSIVE


def test_too_few_items_is_inconclusive_never_pass() -> None:
    items = _items(40, "X")
    d, c = _pair(items, u2b=0, b2u=0, both=0)
    vs, _ = evaluate(items, dict.fromkeys((it.uid for it in items), T), d, c, POL)
    assert not [v for v in vs if v.status in (Status.PASS, Status.FAIL)]
    assert _by_name(vs)["bbq.srs_increase_abs"].status is Status.INCONCLUSIVE


def test_per_category_holm() -> None:
    a, b = _items(120, "A"), _items(120, "B")
    da, ca = _pair(a, u2b=12, b2u=2, both=0)  # A: p = 2*P[X<=2|14]
    db_, cb = _pair(b, u2b=3, b2u=3, both=0)
    items = a + b
    tg = dict.fromkeys((it.uid for it in items), T)
    vs, m = evaluate(items, tg, da + db_, ca + cb, replace(POL, per_category=True))
    raw = [mcnemar_exact(12, 2), mcnemar_exact(3, 3)]
    adj = holm(raw)
    rows = {r["scope"]: r for r in m["per_category"]}
    assert rows["A"]["p_holm"] == pytest.approx(adj[0]) and rows["B"]["p_holm"] == pytest.approx(
        adj[1]
    )
    assert rows["A"]["delta_srs"] == pytest.approx(10 / 120)
    assert m["delta_srs_by_category"] == {"A": pytest.approx(10 / 120), "B": pytest.approx(0.0)}
    va = _by_name(vs)["bbq.srs_increase_abs.A"]
    assert va.p_value == pytest.approx(adj[0]) and "Holm" in (va.test or "")
    assert va.status is (Status.FAIL if adj[0] < 0.05 else Status.PASS)


def _write_preds(path: Path, items: list[BBQItem], field: str, choose: Any) -> None:
    rows = []
    for src in items:
        f, line = src.source.rsplit(":", 1)
        row = json.loads(Path(f).read_text().splitlines()[int(line) - 1])
        row[field] = choose(src)
        rows.append(json.dumps(row))
    path.write_text("\n".join(rows) + "\n")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """`edgegate bbq ...` through the real entry point (exit codes, error lines), in-process."""

    def call(*args: str) -> Run:
        try:
            main(["bbq", *args])
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out = capsys.readouterr()
        return Run(code, out.out, out.err)

    return call


@pytest.fixture(scope="module")
def real_sample() -> list[BBQItem]:
    return stratified_sample(load_dir(REAL), 300, seed=0)


def test_score_command_on_real_rows(
    tmp_path: Path, cli: Callable[..., Run], real_sample: list[BBQItem]
) -> None:
    items = real_sample
    tg = derive_all(items).targets
    # dense: always the unknown answer (as an index); compressed: the biased answer's TEXT for
    # every third item, unknown otherwise, plus 3 unparseable answers
    _write_preds(tmp_path / "dense.jsonl", items, "pred", lambda it: tg[it.uid].unknown)
    comp_choice = {
        it.uid: (it.answers[tg[it.uid].biased] if k % 3 == 0 else f"ans{tg[it.uid].unknown}")
        for k, it in enumerate(items)
    }
    for it in (items[1], items[2], items[4]):  # none of them a biased one (k % 3 != 0)
        comp_choice[it.uid] = "no idea"
    _write_preds(tmp_path / "comp.jsonl", items, "pred", lambda it: comp_choice[it.uid])

    one = cli("score", str(tmp_path / "comp.jsonl"), "--answer-field", "pred", "--json")
    assert one.returncode == 0, one.stderr
    m = json.loads(one.stdout)["measurements"]["model"]["overall"]
    assert m["n_failures"] == 3 and m["n_biased"] == 100 and m["n_valid"] == 297
    # one file has no baseline: its rates are measured, never printed as a PASS
    assert json.loads(one.stdout)["status"] == "skipped"
    text_one = cli("score", str(tmp_path / "comp.jsonl"), "--answer-field", "pred")
    assert (
        text_one.returncode == 0
        and "MEASURED: " in text_one.stdout
        and "PASS" not in text_one.stdout
    )

    both = cli(
        "score",
        str(tmp_path / "comp.jsonl"),
        "--answer-field",
        "pred",
        "--against",
        str(tmp_path / "dense.jsonl"),
        "--json",
    )
    assert both.returncode == 1, both.stderr  # a significant SRS rise fails the gate
    res = json.loads(both.stdout)
    assert res["status"] == "fail"
    ov = res["measurements"]["overall"]
    # items are judged on their answer class; the 3 unparseable ones are class "none", still paired
    assert ov["n"] == 300 and ov["unbiased_to_biased"] == 100 and ov["biased_to_unbiased"] == 0
    assert res["measurements"]["parse_failures"] == {"dense": 0, "compressed": 3}
    assert len(res["measurements"]["per_category"]) == 6

    # identical predictions: nothing fails; the smallest categories of a 300-item stratified
    # sample have fewer than min_items_per_category (50) items, so the result is inconclusive
    text = cli(
        "score",
        str(tmp_path / "dense.jsonl"),
        "--answer-field",
        "pred",
        "--against",
        str(tmp_path / "dense.jsonl"),
    )
    assert text.returncode == 1 and "INCONCLUSIVE" in text.stdout and "transitions" in text.stdout
    assert "FAIL" not in text.stdout

    # the same identical pair with a minimum above n: inconclusive, which is never a pass
    args = (
        "score",
        str(tmp_path / "dense.jsonl"),
        "--answer-field",
        "pred",
        "--against",
        str(tmp_path / "dense.jsonl"),
        "--min-items",
        "1000",
        "--json",
    )
    few = cli(*args)
    assert few.returncode == 1 and json.loads(few.stdout)["status"] == "inconclusive"
    assert cli(*args, "--allow-inconclusive").returncode == 0


def test_score_command_bad_input(
    tmp_path: Path, cli: Callable[..., Run], real_sample: list[BBQItem]
) -> None:
    items = real_sample[:5]
    _write_preds(tmp_path / "p.jsonl", items, "pred", lambda it: 0)
    r = cli("score", str(tmp_path / "p.jsonl"), "--answer-field", "prediction")
    assert r.returncode == 2 and "p.jsonl:1: prediction: missing the answer field" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli("score", str(tmp_path / "missing.jsonl"), "--answer-field", "pred")
    assert r.returncode == 2 and "no such predictions file" in r.stderr
    r = cli("run", "a.gguf", "b.gguf")
    assert r.returncode == 2 and "--data" in r.stderr
