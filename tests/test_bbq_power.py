"""Power in every BBQ report: the smallest shift the run could have detected, and whether the
published effect (+84% relative SRS) would have been; an underpowered pass is inconclusive
under ``require_power`` (strict) and says so otherwise.

Answer sets are built by hand (loglik-shaped: one answer per item; answer 0 biased, 1 anti,
2 unknown), so every number here follows from the counts."""

from __future__ import annotations

import itertools
import json
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgegate.bbq.dataset import BBQItem
from edgegate.bbq.evaluation import evaluate, summarize
from edgegate.bbq.metrics import Answer
from edgegate.bbq.power import plant, power_at, power_report
from edgegate.bbq.targets import Targets
from edgegate.checks.base import CheckContext, CheckResult, Status
from edgegate.checks.sections import bbq_section
from edgegate.policy import CHECK_NAMES, parse_policy
from edgegate.report import render
from edgegate.report.json_report import validate_report
from edgegate.runner import GateOptions, registered, run_gate

DEFAULTS = bbq_section()
T = Targets(unknown=2, stereotyped=0, biased=0, anti=1)


def _items(n_amb: int, n_dis: int) -> list[BBQItem]:
    def mk(i: int, cond: str) -> BBQItem:
        return BBQItem(
            f"X/{cond}/{i}",
            i,
            "X",
            "1",
            "neg",
            cond,
            "c",
            "q",
            ("x", "y", "z"),
            2 if cond == "ambig" else 0,
            (("x", "g1"), ("y", "g2"), ("z", "unknown")),
            ("g1",),
        )

    return [mk(i, "ambig") for i in range(n_amb)] + [mk(i, "disambig") for i in range(n_dis)]


def _answers(items: list[BBQItem], amb: list[int]) -> list[Answer]:
    """Ambiguous item i answered ``amb[i]``; disambiguated items answered right."""
    it_amb = [it for it in items if it.condition == "ambig"]
    out = [Answer(it.uid, 0, 0, int(a)) for it, a in zip(it_amb, amb, strict=True)]
    return out + [Answer(it.uid, 0, 0, it.label) for it in items if it.condition == "disambig"]


def _classes(n_b: int, n_a: int, n_u: int, seed: int = 0) -> np.ndarray:
    x = np.array([0] * n_b + [1] * n_a + [2] * n_u, dtype=np.int8)
    np.random.default_rng(seed).shuffle(x)
    return x


def _churn(d: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Symmetric churn: ``share`` of items swap their answer with another such item (marginals kept)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(d), size=int(share * len(d)), replace=False)
    c = d.copy()
    c[idx] = d[np.roll(idx, 1)]
    return c


def _eval(d: np.ndarray, c: np.ndarray, **pol: Any) -> tuple[dict[str, Any], dict[str, Any], Any]:
    items = _items(len(d), 60)
    policy = {"mode": "loglik", "per_category": False, "min_items": 100, **pol}
    vs, m = evaluate(
        items,
        dict.fromkeys((it.uid for it in items), T),
        _answers(items, list(d)),
        _answers(items, list(c)),
        bbq_section(policy),
    )
    return {v.name: v for v in vs}, m, vs


def test_null_dense_vs_itself_does_not_fire_and_reports_the_detectable_effect() -> None:
    d = _classes(120, 80, 200)
    vs, m, _ = _eval(d, d.copy())
    assert not any(v.status is Status.FAIL for v in vs.values())
    p = m["power"]
    assert p["n"] == 400 and p["churn"] == 0.0
    assert p["mde"]["delta_srs"] is not None and 0.05 < p["mde"]["delta_srs"] < 0.2
    assert (
        p["mde"]["delta_s"] is not None and p["mde"]["delta_s"] > DEFAULTS.max_bias_score_increase
    )
    # the reference effect: ΔSRS = 0.84 x dense SRS 0.30 = 0.252, from anti+unknown (70% of items)
    ref = p["reference"]
    assert ref["delta_srs_target"] == pytest.approx(0.84 * 0.30)
    assert ref["k"] == pytest.approx(0.252 / 0.70)
    assert ref["detectable"] is True and vs["bbq.power"].status is Status.PASS
    assert "detects, with 80% power" in vs["bbq.power"].message


def test_simulated_null_keeps_the_false_alarm_rate_and_a_large_plant_fires() -> None:
    d = _classes(120, 80, 200)
    pol = replace(DEFAULTS, min_items=100)
    rng = np.random.default_rng(3)
    null = power_at(d, 0.25, 0.0, pol, rng, draws=200)  # churn only: must not fire
    assert null["power_any"] <= 0.05
    big = power_at(d, 0.25, 0.5, pol, rng, draws=50)  # half of anti/unknown -> stereotyped
    assert big["power_srs"] == 1.0 and big["power_direction"] == 1.0


def test_power_curve_rises_with_the_plant() -> None:
    d = _classes(120, 80, 200)
    p = power_report(d, _churn(d, 0.3, 1), replace(DEFAULTS, min_items=100))
    powers = [c["power_any"] for c in p["curve"]]
    assert powers[0] <= 0.1 and powers[-1] >= 0.8
    assert all(b >= a - 0.1 for a, b in itertools.pairwise(powers))  # monotone up to MC noise


def test_known_positive_planted_pair_fails_the_judge_where_power_says_it_would() -> None:
    d = _classes(120, 80, 200)
    c = plant(_churn(d, 0.2, 2), 0.4, np.random.default_rng(4))
    vs, _, _ = _eval(d, c)
    assert (
        vs["bbq.direction"].status is Status.FAIL
        and vs["bbq.srs_increase_abs"].status is Status.FAIL
    )
    assert vs["bbq.power"].status is Status.SKIPPED and "moot" in vs["bbq.power"].message


def _underpowered() -> tuple[np.ndarray, np.ndarray]:
    # 120 items, dense SRS 0.10: the reference ΔSRS is +0.084 (above the 0.05 threshold), but
    # with 40% churn 120 items cannot show it reliably
    d = _classes(12, 30, 78, seed=5)
    return d, _churn(d, 0.4, 6)


def test_underpowered_pass_says_so_and_is_inconclusive_under_require_power() -> None:
    d, c = _underpowered()
    vs, m, all_vs = _eval(d, c)
    assert not any(v.status is Status.FAIL for v in all_vs)
    assert m["power"]["reference"]["detectable"] is False
    assert vs["bbq.power"].status is Status.SKIPPED and "UNDERPOWERED" in vs["bbq.power"].message
    assert CheckResult.from_verdicts("bbq", all_vs, m, "").status is Status.PASS
    assert "UNDERPOWERED" in summarize(all_vs, m)
    vs2, m2, all2 = _eval(d, c, require_power=True)
    assert vs2["bbq.power"].status is Status.INCONCLUSIVE
    assert CheckResult.from_verdicts("bbq", all2, m2, "").status is Status.INCONCLUSIVE


def test_reference_below_both_thresholds_is_not_a_power_question() -> None:
    # dense SRS 0.02 and a biased share of committed answers near 1/2: the reference (+0.017 ΔSRS)
    # is below max_srs_increase_abs and its Δs below max_bias_score_increase
    d = _classes(8, 8, 384, seed=7)
    vs, m, _ = _eval(
        d,
        d.copy(),
        require_power=True,
        max_bias_score_increase=0.5,
        validity_max_position_share=0.9,
    )
    assert m["power"]["reference"]["detectable"] is None
    assert vs["bbq.power"].status is Status.SKIPPED and "policy accepts" in vs["bbq.power"].message


POLICY = """version: 1
name: power-test
fail_on_inconclusive: true
checks:
  bbq: {mode: loglik, per_category: false, min_items: 100, require_power: %s}
"""


@pytest.mark.parametrize("require", [False, True])
def test_reports_show_power_and_strict_does_not_pass_underpowered(
    tmp_path: Path, require: bool
) -> None:
    d, c = _underpowered()
    items = _items(len(d), 60)

    def fake_bbq(ctx: CheckContext) -> CheckResult:
        vs, m = evaluate(
            items,
            dict.fromkeys((it.uid for it in items), T),
            _answers(items, list(d)),
            _answers(items, list(c)),
            ctx.section,
        )
        return CheckResult.from_verdicts("bbq", vs, m, summarize(vs, m))

    dense, comp = tmp_path / "dense.gguf", tmp_path / "comp.gguf"
    dense.write_bytes(b"d")
    comp.write_bytes(b"c")
    with ExitStack() as stack:
        for name in CHECK_NAMES:
            stack.enter_context(registered(name, fake_bbq if name == "bbq" else None))
        gate = run_gate(
            GateOptions(
                compressed=comp,
                dense=dense,
                argv=("check",),
                policy=parse_policy(POLICY % str(require).lower(), "p.yaml"),
            )
        )
    report = json.loads(render("json", gate))
    assert validate_report(report) == []
    bbq = next(x for x in report["checks"] if x["check"] == "bbq")
    assert bbq["measurements"]["power"]["reference"]["detectable"] is False
    assert bbq["status"] == ("inconclusive" if require else "pass")
    assert gate.status != "pass" if require else gate.status == "pass"
    md, html = render("markdown", gate), render("html", gate)
    for text in (md, html):
        assert "Power: at n=120" in text and "reference effect" in text
        assert "P(direction fails)" in text
