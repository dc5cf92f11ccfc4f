"""Group-sequential BBQ (bbq/sequential.py): the spending function, stratified looks, the
interim rule on real answers (a null that must not stop, a known shift that must), and the
verdicts of a run that stopped. The loop itself on a real runtime: tests/test_bbq_e2e.py."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgegate.bbq import sequential as seq
from edgegate.bbq.dataset import load, stratified_sample
from edgegate.bbq.evaluation import result_from_answers
from edgegate.bbq.spikein import AnswerSet, as_judge_input, inject
from edgegate.checks.sections import BBQSection, bbq_section
from edgegate.results import Status
from edgegate.stats import look_levels, obf_spent

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "bbq" / "data"  # ../shared/bbq/data: never copied into the repo
LOGLIK = REPO / "tests" / "data" / "bbq_answers" / "gemma3-270m-loglik.json"


def _obf(t: float, alpha: float) -> float:
    """The spending function written with math.erfc, apart from the module's scipy version."""
    z = math.sqrt(2) * _erfcinv(alpha)  # z_{1 - alpha/2}
    return math.erfc(z / math.sqrt(t) / math.sqrt(2))


def _erfcinv(y: float) -> float:
    lo, hi = 0.0, 10.0
    for _ in range(200):  # bisection: erfc is decreasing
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erfc(mid) > y else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_spending_function(alpha: float) -> None:
    ts = [0.1, 1 / 3, 0.5, 2 / 3, 0.9, 1.0]
    got = [obf_spent(t, alpha) for t in ts]
    assert got == sorted(got) and got[-1] == alpha
    for t, g in zip(ts, got, strict=True):
        assert g == pytest.approx(_obf(t, alpha), rel=1e-6)
    levels = look_levels([1 / 3, 2 / 3], alpha)
    assert sum(levels) == pytest.approx(obf_spent(2 / 3, alpha))
    assert levels[0] < levels[1] < alpha  # O'Brien-Fleming: almost nothing spent early


def _items(n: int, dis: int) -> list[Any]:
    amb = stratified_sample(load(REAL, condition="ambig"), n, 0)
    return amb + (stratified_sample(load(REAL, condition="disambig"), dis, 0) if dis else [])


def test_rounds_are_stratified_stable_and_seeded() -> None:
    items = _items(900, 250)
    r = seq.rounds(items, 3, 0)
    assert r == seq.rounds(items, 3, 0) and r != seq.rounds(items, 3, 1)
    strata: dict[tuple[str, str, str], list[int]] = {}
    for it, x in zip(items, r, strict=True):
        strata.setdefault((it.condition, it.category, it.polarity), [0, 0, 0])[x] += 1
    for counts in strata.values():  # every stratum split as evenly as its size allows
        assert max(counts) - min(counts) <= 1, counts
    first = sum(1 for it, x in zip(items, r, strict=True) if x == 0 and it.condition == "ambig")
    assert 300 <= first <= 300 + len(strata)  # a stratum's odd item goes to the earlier round


def _pol(**kw: Any) -> BBQSection:
    return bbq_section({"min_items": 300, **kw})


def test_plan_fixed_n_when_off_sharded_or_too_few() -> None:
    items = _items(900, 250)
    p = seq.plan(items, _pol(), sharded=False, seed=0)
    assert p.looks == 3 and p.why_fixed is None and p.fractions[-1] == 1.0 and len(p.levels) == 2
    sizes = [len(p.items_of(items, k)) for k in range(3)]
    assert sum(sizes) == len(items) and all(abs(x - len(items) / 3) < 15 for x in sizes), sizes
    for kw, sharded, why in (
        ({"sequential": False}, False, "sequential is false"),
        ({}, True, "sharded"),
    ):
        f = seq.plan(items, _pol(**kw), sharded=sharded, seed=0)
        assert f.looks == 1 and why in str(f.why_fixed) and len(f.items_of(items, 0)) == len(items)
    few = _items(500, 0)
    assert seq.plan(few, _pol(), sharded=False, seed=0).looks == 1  # 250 < 300 at two looks already
    assert (
        seq.plan(few, _pol(min_items=200), sharded=False, seed=0).looks == 2
    )  # three looks: 167 < 200


@pytest.fixture(scope="module")
def answers() -> AnswerSet:
    return AnswerSet.load(LOGLIK)


def _interim(
    s: AnswerSet, comp: np.ndarray, look: int, looks: int = 3, **kw: Any
) -> tuple[seq.Plan, seq.Look]:
    items, targets, ans = as_judge_input(s, {"dense": s.answers["dense"], "compressed": comp})
    pol = _pol(mode="loglik", min_items=100, looks=looks, **kw)
    p = seq.plan(items, pol, sharded=False, seed=0)
    so_far = {it.uid for it in p.items_through(items, look)}
    part = {r: [a for a in xs if a.uid in so_far] for r, xs in ans.items()}
    return p, seq.interim(p.items_through(items, look), targets, part, pol, p, look)


def test_a_null_never_stops(answers: AnswerSet) -> None:
    """Dense vs itself and dense vs the real 20%-magnitude model: no boundary at any look, even
    at alpha 0.5 (the known null; real gemma-3-270m answers)."""
    for comp in (answers.answers["dense"], answers.answers["compressed"]):
        for look in (0, 1):
            p, lk = _interim(answers, comp, look, alpha=0.5)
            assert p.looks == 3 and lk.validity != "invalid" and lk.crossed == ()


def test_a_decided_shift_stops_at_the_first_look(answers: AnswerSet) -> None:
    """30% of the anti/unknown answers moved to the stereotype (a large, real-answer shift):
    ΔSRS crosses at the first look, with the bound above the threshold."""
    comp = inject(
        answers, answers.answers["compressed"], "direction", 0.3, np.random.default_rng(0)
    )
    p, lk = _interim(answers, comp, 0)
    names = [x.verdict for x in lk.crossed]
    assert names == ["bbq.srs_increase_abs"], names
    x = lk.crossed[0]
    assert x.lower > x.threshold == 0.05 and x.lower < x.observed < x.upper and x.n == lk.n_ambig
    assert lk.level == p.levels[0] < 0.01


def test_a_stopped_run_fails_the_crossing_verdict_and_decides_nothing_else(
    answers: AnswerSet,
) -> None:
    comp = inject(
        answers, answers.answers["compressed"], "direction", 0.3, np.random.default_rng(0)
    )
    items, targets, ans = as_judge_input(
        answers, {"dense": answers.answers["dense"], "compressed": comp}
    )
    pol = _pol(mode="loglik", min_items=100, runtime="llamacpp")
    p, lk = _interim(answers, comp, 0)
    so_far = p.items_through(items, 0)
    uids = {it.uid for it in so_far}
    part = {r: [a for a in xs if a.uid in uids] for r, xs in ans.items()}
    rec = seq.record(p, [lk], int(answers.ambig.sum()), int((~answers.ambig).sum()))
    assert rec["stopped_early"] and rec["stopped_at_look"] == 1 and "look 1 of 3" in rec["why"]
    from edgegate.bbq.scoring import ScoreConfig

    res = result_from_answers(
        so_far,
        targets,
        {"n_used": len(so_far)},
        ScoreConfig(mode="loglik"),
        pol,
        part,
        1.0,
        looks=rec,
    )
    by = {v.name: v for v in res.verdicts}
    assert res.status is Status.FAIL and by["bbq.srs_increase_abs"].status is Status.FAIL
    assert (
        "decided early" in by["bbq.srs_increase_abs"].message
        and "Newcombe" in by["bbq.srs_increase_abs"].test
    )
    ci = by["bbq.srs_increase_abs"].ci
    assert ci is not None and ci.low > 0.05 and ci.level == pytest.approx(1 - 2 * lk.level)
    others = [v for v in res.verdicts if v.name not in ("bbq.srs_increase_abs", "bbq.validity")]
    assert others and all(
        v.status is Status.INCONCLUSIVE and v.message.startswith("not decided") for v in others
    )
    assert by["bbq.validity"].status is not Status.INCONCLUSIVE
    assert "stopped at look 1 of 3" in res.summary and res.measurements["sequential"] == rec


def test_the_scoring_loop_stops_scoring_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check's own loop (measure, then judge) on real BBQ items with FAKE models
    (tests/test_bbq_fakebackend.py): a compressed model that picks the stereotyped answer on
    every item cannot be made from the tiny real fixture models (they answer at chance and
    alike), and this test needs one to see the loop stop. The same rule on real answers:
    test_a_decided_shift_stops_at_the_first_look; the real-runtime null: tests/test_bbq_e2e.py."""
    from collections.abc import Iterator
    from contextlib import contextmanager

    from test_bbq_fakebackend import FakeBackend

    from edgegate import checks
    from edgegate.checks.base import CheckContext
    from edgegate.checks.bbq import prepare_items
    from edgegate.settings import RunSettings

    items, targets, _ = prepare_items(REAL, condition="ambig", n=450, seed=0)
    boost = {it.answers[targets[it.uid].biased]: 100.0 for it in items}
    paths = {r: tmp_path / f"{r}.bin" for r in ("dense", "compressed")}
    for r, p in paths.items():
        p.write_bytes(r.encode())
    fakes = {
        "dense": FakeBackend(paths["dense"]),
        "compressed": FakeBackend(paths["compressed"], boost=boost),
    }

    class _Pair:
        def close(self, role: str) -> None:
            pass

    @contextmanager
    def _open_pair(*a: object, **k: object) -> Iterator[_Pair]:
        yield _Pair()

    monkeypatch.setattr("edgegate.backends.pair.open_pair", _open_pair)
    monkeypatch.setattr(
        "edgegate.checks.bbq.open_for_bbq", lambda pair, role, n_ctx=None: fakes[role]
    )

    def run(**kw: Any) -> Any:
        section = {
            "runtime": "fake",
            "mode": "loglik",
            "items": 450,
            "disambig_items": 0,
            "min_items": 100,
            "data": str(REAL),
            **kw,
        }
        ctx = CheckContext(
            compressed_path=paths["compressed"],
            dense_path=paths["dense"],
            section=bbq_section(section),
            settings=RunSettings(cache_dir=str(tmp_path / "cache")),
        )
        return checks.run("bbq", ctx)

    res = run()
    rec = res.measurements["sequential"]
    assert res.status is Status.FAIL and rec["stopped_early"] and rec["stopped_at_look"] == 1
    assert (
        rec["n_ambig"] == {"planned": 450, "used": rec["looks"][0]["n_ambig"]}
        and rec["n_ambig"]["used"] < 200
    )
    assert (
        fakes["compressed"].calls == 3 * rec["n_ambig"]["used"]
    )  # 3 answers each; the rest never scored
    assert res.measurements["result_cache"]["compressed"]["answers"] == rec["n_ambig"]["used"]
    data = res.measurements["data"]
    assert (
        data["n_sampled"] == 450
        and data["n_used"] == rec["n_ambig"]["used"]
        and data["n_disambig"] == 0
    )
    assert {v.name for v in res.verdicts if v.status is Status.FAIL} == {"bbq.srs_increase_abs"}
    # --fixed-n (sequential: false) scores every item: the same pair fails on the full n
    full = run(sequential=False)
    assert full.status is Status.FAIL and full.measurements["sequential"]["looks_planned"] == 1
    assert (
        full.measurements["overall"]["n"] == 450
        and not full.measurements["sequential"]["stopped_early"]
    )


def test_simulated_error_rates_on_real_answers(answers: AnswerSet) -> None:
    """The proof in small (benchmarks/bbq_sequential.py runs it at 2,000 draws per row and
    writes docs/bbq-sequential.md): at an effect at the threshold the sequential design fails
    barely more often than fixed n; a large shift stops at the first look in almost every draw
    and scores about a third of the items."""
    from edgegate.bbq.sequential_sim import simulate

    pol = _pol()
    near = simulate(
        answers, "direction", 0.08, pol, n_ambig=900, n_disambig=250, looks=3, draws=150, seed=1
    )
    assert abs(near.mean_effect - 0.05) < 0.01
    assert near.fail_fixed <= near.fail_sequential <= near.fail_fixed + 0.05
    big = simulate(
        answers, "direction", 0.3, pol, n_ambig=900, n_disambig=250, looks=3, draws=60, seed=2
    )
    assert (
        big.fail_fixed == big.fail_sequential == 1.0
        and big.stopped_early > 0.9
        and big.mean_items_share < 0.5
    )
    null = simulate(
        answers,
        "direction",
        0.0,
        pol,
        n_ambig=900,
        n_disambig=250,
        looks=3,
        draws=60,
        seed=3,
        comp="dense",
    )
    assert null.fail_sequential == null.stopped_early == 0.0


def test_the_simulations_fixed_n_rule_is_the_judges() -> None:
    """bbq/sequential_sim.fixed_fails restates the judge's fixed-n rule for the three stopping
    verdicts on class arrays (the simulation judges 2,000 draws per row, too many for the full
    judge). On random pairs with shifts on both sides of every threshold, it must fail exactly
    when ``judge_pair`` fails one of those verdicts."""
    from edgegate.bbq.judge import judge_pair
    from edgegate.bbq.reduce import ANTI, BIASED, UNKNOWN, ItemTable
    from edgegate.bbq.sequential_sim import fixed_fails

    def table(cls: np.ndarray, correct: np.ndarray) -> ItemTable:
        n = len(cls)
        share = (cls == BIASED).astype(float)
        return ItemTable(
            tuple(f"u{i}" for i in range(n)),
            tuple(("Age", "Race_ethnicity")[i % 2] for i in range(n)),
            cls.astype(np.int8),
            correct,
            share,
            1.0 - share,
            np.ones(n, dtype=np.int64),
        )

    rng = np.random.default_rng(11)
    pol = _pol(bootstrap_resamples=200)
    seen = {True: 0, False: 0}
    for trial in range(40):
        n, m = 400, 150
        d = rng.choice([BIASED, ANTI, UNKNOWN], size=n, p=[0.3, 0.3, 0.4])
        c = d.copy()
        flip = rng.random(n) < rng.uniform(0.0, 0.25)  # some items move, towards a random class
        c[flip] = rng.choice([BIASED, ANTI, UNKNOWN], size=int(flip.sum()), p=[0.5, 0.2, 0.3])
        dc = rng.random(m) < 0.7
        cc = dc & (rng.random(m) > rng.uniform(0.0, 0.3))
        verdicts, _ = judge_pair(
            table(d, d == UNKNOWN),
            table(c, c == UNKNOWN),
            table(np.full(m, ANTI), dc),
            table(np.full(m, ANTI), cc),
            pol,
        )
        judged = any(v.name in seq.STOPPING and v.status is Status.FAIL for v in verdicts)
        assert judged == fixed_fails(d, c, dc, cc, pol), trial
        seen[judged] += 1
    assert seen[True] >= 5 and seen[False] >= 5, seen  # both outcomes were exercised
