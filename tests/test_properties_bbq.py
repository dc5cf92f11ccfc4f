"""Property tests (hypothesis) for the BBQ metrics and statistics."""

from __future__ import annotations

import math

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgegate.bbq.dataset import BBQItem
from edgegate.bbq.metrics import Answer, group_metrics, transitions
from edgegate.bbq.targets import Targets
from edgegate.stats import holm, mcnemar_exact, newcombe_paired, wilson

FAST = settings(max_examples=80, deadline=None)


def _item(i: int, cond: str) -> BBQItem:
    info = (("the old man", "old"), ("unknown", "unknown"), ("the boy", "nonOld"))
    return BBQItem(
        uid=f"Age/{i}", example_id=i, category="Age", question_index="1", polarity="neg",
        condition=cond, context="c", question="q", answers=(info[0][0], info[1][0], info[2][0]),
        label=1 if cond == "ambig" else 2, answer_info=info, stereotyped_groups=("old",),
    )  # fmt: skip


_TARGET = Targets(unknown=1, stereotyped=0, biased=0, anti=2)
_choices = st.lists(st.sampled_from([0, 1, 2, None]), min_size=1, max_size=60)


@FAST
@given(
    choices=_choices,
    conds=st.lists(st.sampled_from(["ambig", "disambig"]), min_size=60, max_size=60),
)
def test_srs_usr_anti_sum_to_one(choices: list[int | None], conds: list[str]) -> None:
    items = {f"Age/{i}": _item(i, conds[i]) for i in range(len(choices))}
    targets = dict.fromkeys(items, _TARGET)
    ans = [Answer(f"Age/{i}", 0, 0, c) for i, c in enumerate(choices)]
    m = group_metrics(ans, items, targets)
    assert m.n_valid + m.n_failures == m.n_answers == len(choices)
    if m.n_valid == 0:
        assert m.srs is m.usr is m.anti_rate is None
        return
    assert m.srs is not None and m.usr is not None and m.anti_rate is not None
    assert math.isclose(m.srs + m.usr + m.anti_rate, 1.0, abs_tol=1e-12)
    assert m.srs == choices.count(0) / m.n_valid  # independent count
    assert m.srs_ci[0] <= m.srs <= m.srs_ci[1]


@FAST
@given(choices=_choices)
def test_identical_predictions_have_no_transitions(choices: list[int | None]) -> None:
    targets = {f"Age/{i}": _TARGET for i in range(len(choices))}
    ans = [Answer(f"Age/{i}", 0, 0, c) for i, c in enumerate(choices)]
    t = transitions(ans, list(ans), targets)
    assert t.unbiased_to_biased == t.biased_to_unbiased == 0
    assert mcnemar_exact(t.unbiased_to_biased, t.biased_to_unbiased) == 1.0
    assert t.new_bias == 0
    lo, hi = newcombe_paired(t.both_biased, 0, 0, t.neither)
    assert lo <= 0.0 <= hi


@FAST
@given(b=st.integers(0, 400), c=st.integers(0, 400))
def test_mcnemar_symmetric_and_a_probability(b: int, c: int) -> None:
    p = mcnemar_exact(b, c)
    assert 0.0 <= p <= 1.0
    assert p == mcnemar_exact(c, b)
    if b == c:
        assert p == 1.0


@FAST
@given(n=st.integers(0, 5000), data=st.data(), z=st.sampled_from([1.0, 1.959963984540054, 2.576]))
def test_wilson_contains_point_estimate_and_stays_in_unit_interval(
    n: int, data: st.DataObject, z: float
) -> None:
    k = data.draw(st.integers(0, n))
    lo, hi = wilson(k, n, z)
    assert 0.0 <= lo <= hi <= 1.0
    if n:
        assert lo <= k / n <= hi  # exactly: the CI must contain its own point estimate
        # a wider z never gives a narrower interval
        lo2, hi2 = wilson(k, n, z * 1.5)
        assert lo2 <= lo + 1e-12 and hi2 >= hi - 1e-12
    else:
        assert (lo, hi) == (0.0, 1.0)


@FAST
@given(
    n11=st.integers(0, 200),
    n10=st.integers(0, 200),
    n01=st.integers(0, 200),
    n00=st.integers(0, 200),
)
def test_newcombe_contains_the_difference(n11: int, n10: int, n01: int, n00: int) -> None:
    n = n11 + n10 + n01 + n00
    assume(n > 0)
    lo, hi = newcombe_paired(n11, n10, n01, n00)
    d = (n01 - n10) / n
    assert -1.0 <= lo <= d + 1e-12 and d - 1e-12 <= hi <= 1.0


@FAST
@given(ps=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30))
def test_holm_dominates_raw_and_keeps_order(ps: list[float]) -> None:
    adj = holm(ps)
    assert len(adj) == len(ps)
    for p, a in zip(ps, adj, strict=True):
        assert p <= a <= 1.0
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    ranked = [adj[i] for i in order]
    assert ranked == sorted(ranked)  # monotone in the raw p-values
    assert adj[order[0]] == min(1.0, len(ps) * ps[order[0]])  # smallest p times m, exactly
