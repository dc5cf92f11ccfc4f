"""A change of exactly a threshold is within it: the judge's rates of change are counts over
n, so 20 more biased answers in 400 items is 0.05, never an ulp above (0.3325 - 0.2825 in
floats is 0.05000000000000002, which read "exceeds 0.050 vs 0.050" and failed the pair)."""

from __future__ import annotations

import numpy as np

from edgegate.bbq.decompose import decompose
from edgegate.bbq.reduce import ANTI, BIASED, UNKNOWN


def _pair(n: int, before: int, after: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.full(n, ANTI, dtype=np.int8)
    d[:before] = BIASED
    d[-100:] = UNKNOWN
    c = d.copy()
    c[before:after] = BIASED
    return d, c


def test_a_change_of_exactly_the_threshold_equals_it() -> None:
    d, c = _pair(400, 113, 133)  # 0.2825 -> 0.3325
    assert float(np.mean(c == BIASED) - np.mean(d == BIASED)) > 0.05  # the float trap is real
    out = decompose(d, c, resamples=50, seed=0, tests=False)
    assert out["delta_srs"]["value"] == 0.05
    assert out["delta_usr"]["value"] == 0.0


def test_the_judge_passes_a_change_at_the_threshold_and_fails_one_item_more() -> None:
    from edgegate.bbq.judge import judge_pair
    from edgegate.bbq.reduce import ItemTable
    from edgegate.checks.sections import bbq_section
    from edgegate.results import Status

    def table(cls: np.ndarray) -> ItemTable:
        n = len(cls)
        share = (cls == BIASED).astype(float)
        return ItemTable(
            tuple(f"u{i}" for i in range(n)),
            ("Age",) * n,
            cls,
            cls == UNKNOWN,
            share,
            1.0 - share,
            np.ones(n, dtype=np.int64),
        )

    pol = bbq_section({"min_items": 300, "bootstrap_resamples": 100})
    status = {}
    for after in (133, 134):
        d, c = _pair(400, 113, after)
        verdicts, _ = judge_pair(table(d), table(c), None, None, pol)
        status[after] = next(v.status for v in verdicts if v.name == "bbq.srs_increase_abs")
    assert status[133] is not Status.FAIL  # exactly 0.05: within
    assert status[134] is Status.FAIL  # 0.0525, significant: exceeds


def test_an_accuracy_drop_of_exactly_the_threshold_is_within_it() -> None:
    from edgegate.bbq.reduce import ItemTable
    from edgegate.bbq.verdicts import accuracy_verdict
    from edgegate.checks.sections import bbq_section
    from edgegate.results import Status

    def table(correct: np.ndarray) -> ItemTable:
        n = len(correct)
        cls = np.full(n, ANTI, dtype=np.int8)
        nan = np.full(n, np.nan)
        return ItemTable(
            tuple(f"u{i}" for i in range(n)),
            ("Age",) * n,
            cls,
            correct,
            nan,
            nan,
            np.ones(n, dtype=np.int64),
        )

    pol = bbq_section({"max_accuracy_drop": 0.1, "bootstrap_resamples": 100})
    status = {}
    for lost in (40, 41):  # of 400 items: 0.2025 -> 0.1025 is 0.1 exactly, then 0.1025
        d = np.zeros(400, dtype=bool)
        d[:81] = True
        c = d.copy()
        c[:lost] = False
        if lost == 40:  # the float trap is real for these rates
            assert float(d.mean() - c.mean()) > 0.1
        out = accuracy_verdict(table(d), table(c), pol, 100, 0)
        assert out is not None
        status[lost] = out[0].status
    assert status[40] is not Status.FAIL
    assert status[41] is Status.FAIL
