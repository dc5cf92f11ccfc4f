"""Sequential speed timing: the plan of looks, the bench stopping on the judge's rule (real
llama.cpp runs of the fixtures; the rules given to the bench here do not read the timings, so
no assertion depends on how fast anything ran), and the judge's rule on interim intervals
(benchmark results built from given samples: the judge is pure)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _support import synthetic_bench

from edgegate import checks
from edgegate.backends import available
from edgegate.checks import speed
from edgegate.checks.base import CheckContext, Status
from edgegate.speed import sequential as seq
from edgegate.speed.bench import BenchConfig, RuntimeBench, bench_runtime
from edgegate.speed.load import MachineLoad
from edgegate.speed.mechanism import Mechanism
from edgegate.stats import obf_spent

GGUF = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "gguf"
DENSE, Q8 = GGUF / "dense-f16.gguf", GGUF / "dense-q8_0.gguf"
needs_llama = pytest.mark.skipif(
    not available("llamacpp"), reason="llama-cpp-python is not installed"
)
SMALL = BenchConfig(
    prompt_tokens=16, gen_tokens=4, repetitions=6, warmup=0, threads=1, timeout=120, sequential=True
)
DIFFERENT = Mechanism(True, "10 of 10 tensors stored differently (e.g. F16 -> Q8_0)", 10, 10)
QUIET = MachineLoad(10.0, 0.01, 0.005, 0.1, 0.1, 2)
BUSY = MachineLoad(10.0, 0.9, 0.45, 1.9, 2.1, 2)


def test_the_plan_spends_alpha_obrien_fleming_style_over_whole_abba_pairs() -> None:
    assert seq.plan(4, 0.95) == () and seq.plan(2, 0.95) == ()  # the first look would be the last
    (only,) = seq.plan(6, 0.95)  # strict
    assert only.repetitions == 4 and only.level == pytest.approx(1 - obf_spent(4 / 6, 0.05))
    assert 0.98 < only.level < 0.99
    ten = seq.plan(10, 0.95)
    assert [lp.repetitions for lp in ten] == [4, 6, 8]
    # the levels' alphas add up to what the spending function spent by the last interim look
    assert sum(1 - lp.level for lp in ten) == pytest.approx(obf_spent(0.8, 0.05))
    assert ten[0].level > ten[1].level > ten[2].level > 0.95  # almost nothing spent early


def _run(rule_says: bool, repetitions: int = 6) -> tuple[RuntimeBench, list[int]]:
    seen: list[int] = []

    def rule(res: RuntimeBench) -> bool:
        seen.append(res.decode.n)
        return rule_says

    cfg = BenchConfig(**{**SMALL.__dict__, "repetitions": repetitions})
    return bench_runtime("llamacpp", DENSE, Q8, cfg, decided=rule), seen


@needs_llama
def test_the_bench_stops_at_the_first_look_the_rule_calls_decided() -> None:
    res, seen = _run(True)
    assert seen == [4]  # asked once, after two whole ABBA pairs
    assert len(res.samples) == 8 and {s.repetition for s in res.samples} == {0, 1, 2, 3}
    s = res.sequential
    assert s is not None and s.stopped_early and s.repetitions_run == 4
    assert s.planned_repetitions == 6 and len(s.looks) == 1 and s.looks[0].decided
    (lp,) = s.looks_planned
    # the run reports the interval it stopped on, at the look's level
    assert res.decode.level == lp.level == s.looks[0].level and res.decode.n == 4
    assert res.decode.ci_low == s.looks[0].ci_low
    assert any("stopped early" in n for n in res.notes)


@needs_llama
def test_an_undecided_look_runs_the_full_count_and_judges_it_at_the_fixed_level() -> None:
    res, seen = _run(False)
    assert seen == [4] and len(res.samples) == 12
    s = res.sequential
    assert s is not None and not s.stopped_early and s.repetitions_run == 6
    assert len(s.looks) == 1 and not s.looks[0].decided
    assert res.decode.level == 0.95 and res.decode.n == 6
    assert "fixed-n rule" in s.why


@needs_llama
def test_without_sequential_or_a_rule_there_is_no_look() -> None:
    res, seen = _run(True, repetitions=4)  # 4 repetitions: no interim look
    assert seen == [] and len(res.samples) == 8 and res.sequential is not None
    assert not res.sequential.stopped_early and "fixed n" in res.sequential.why
    plain = bench_runtime(
        "llamacpp", DENSE, Q8, BenchConfig(**{**SMALL.__dict__, "sequential": False})
    )
    assert len(plain.samples) == 12 and plain.sequential is None


def _bench(ratios: list[float], level: float, load: MachineLoad = QUIET) -> RuntimeBench:
    """Repetition i ran the compressed model ratios[i] times as fast; intervals at ``level``."""
    return synthetic_bench(ratios, load, level=level, repetitions=6)


LOOK = seq.plan(6, 0.95)[0].level
SECTION = speed.SECTION.from_policy({"min_speedup": 1.0})  # bar 1.15 (min_effect 0.15)


def _decided(
    ratios: list[float],
    mech: Mechanism = DIFFERENT,
    *,
    claim: float | None = None,
    load: MachineLoad = QUIET,
) -> bool:
    return speed._stopping_rule("llamacpp", mech, SECTION, claim)(_bench(ratios, LOOK, load))


def test_the_rule_is_the_judges_rule_on_the_wider_interval() -> None:
    clear = [1.50, 1.52, 1.49, 1.51]
    assert _decided(clear)  # far above the bar: PASS at the look
    assert _decided([1.00, 1.01, 0.99, 1.00])  # far below: FAIL at the look
    # near the bar: the 95% interval of the same numbers might decide, the look's does not
    near = [1.22, 1.30, 1.20, 1.28]
    assert not _decided(near)
    fixed = _bench(near, 0.95).decode
    look = _bench(near, LOOK).decode
    assert look.ci_low < fixed.ci_low and look.ci_high > fixed.ci_high and look.n == 4
    # a claim must be decided too: inside the interval it is not
    assert not _decided(clear, claim=1.5)
    assert _decided(clear, claim=1.2) and _decided(clear, claim=2.0)
    # under contention an endpoint's timing cannot carry a pass: the look does not stop on it
    endpoint = Mechanism(None, "a model behind an endpoint")
    assert not _decided(clear, endpoint, load=BUSY) and _decided(clear, endpoint)
    # no mechanism in the files (time_when_decided: true): the timing is judged on its own
    same = Mechanism(False, "no mechanism for a speedup: same format", 10, 0)
    assert not _decided(near, same) and _decided(clear, same)


def test_a_stopped_run_says_so_in_the_verdict_with_its_level_and_n() -> None:
    sp = seq.SpeedLook(4, LOOK, 1.5, 1.4, 1.6, True)
    rec = seq.record(6, seq.plan(6, 0.95), [sp], 4)
    bench = _bench([1.50, 1.52, 1.49, 1.51], LOOK)
    bench = RuntimeBench(**{**bench.__dict__, "sequential": rec})
    m = speed.SpeedMeasurement(
        {"llamacpp": bench}, {}, {}, ("llamacpp",), None, None, None, {"llamacpp": DIFFERENT}
    )
    res = speed.judge([("this run", m)], SECTION)
    (v,) = res.verdicts
    assert v.status is Status.PASS and v.n == 4 and v.ci is not None
    assert v.ci.level == pytest.approx(LOOK)
    assert f"{LOOK * 100:.4g}% CI" in v.message and "stopped at look 1 of 2" in v.message
    assert "4 of 6 repetitions" in v.message
    rec_out = res.measurements["llamacpp"]["sequential"]
    assert rec_out["stopped_early"] is True and rec_out["repetitions_run"] == 4
    assert math.isclose(rec_out["looks"][0]["level"], LOOK)


@needs_llama
def test_the_speed_check_times_sequentially_by_default() -> None:
    """Strict's count on the fixtures, real llama.cpp: whether the look decides depends on the
    machine, so only what must hold either way is asserted."""
    sec = {
        "runtimes": ["llamacpp"],
        "repetitions": 6,
        "warmup": 0,
        "prompt_tokens": 16,
        "gen_tokens": 4,
        "threads": 1,
        "min_speedup": 1.0,
    }
    res = checks.run("speed", CheckContext(Q8, DENSE, speed.SECTION.from_policy(sec)))
    rec = res.measurements["llamacpp"]["sequential"]
    (v,) = [x for x in res.verdicts if x.name == "min_speedup"]
    assert len(rec["looks"]) == 1 and rec["looks"][0]["repetitions"] == 4
    if rec["stopped_early"]:
        assert rec["repetitions_run"] == 4 and v.n == 4 and v.status in (Status.PASS, Status.FAIL)
        assert "stopped at look 1 of 2" in v.message
    else:
        assert rec["repetitions_run"] == 6 and v.n == 6 and v.ci is not None
        assert v.ci.level == 0.95
