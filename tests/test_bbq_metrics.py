"""BBQ metrics and transitions on small hand-computed cases."""

from __future__ import annotations

import pytest

from edgegate.bbq.dataset import BBQItem
from edgegate.bbq.metrics import Answer, classify, group_metrics, model_metrics, transitions
from edgegate.bbq.targets import Targets

# every synthetic item: answer 0 = biased, 1 = anti, 2 = unknown
T = Targets(unknown=2, stereotyped=0, biased=0, anti=1)
B, A, U = 0, 1, 2


def _item(i: int, cond: str, cat: str = "C", label: int = 2) -> BBQItem:
    return BBQItem(
        uid=f"{cat}/{i}",
        example_id=i,
        category=cat,
        question_index="1",
        polarity="neg",
        condition=cond,
        context="c",
        question="q",
        answers=("x", "y", "z"),
        label=label,
        answer_info=(("x", "g1"), ("y", "g2"), ("z", "unknown")),
        stereotyped_groups=("g1",),
    )


def test_classify() -> None:
    assert [classify(c, T) for c in (0, 1, 2, None)] == ["biased", "anti", "unknown", "failure"]


def test_s_amb_and_s_dis_worked_example() -> None:
    # Ambiguous: 10 items (gold = unknown): 4 biased, 2 anti, 4 unknown answers.
    #   non-unknown = 6, raw bias score = 2*4/6 - 1 = 1/3, accuracy = 4/10,
    #   s_AMB = (1 - .4) * 1/3 = 0.2
    # Disambiguated: 8 items, gold = the anti answer (1): 5 biased, 1 anti, 2 unknown.
    #   s_DIS = 2*5/6 - 1 = 2/3; accuracy there = 1/8
    # Plus 2 parse failures (ambiguous): counted, excluded from rates.
    amb = [_item(i, "ambig") for i in range(12)]
    dis = [_item(100 + i, "disambig", label=A) for i in range(8)]
    items = {it.uid: it for it in amb + dis}
    targets = dict.fromkeys(items, T)
    choices = [B] * 4 + [A] * 2 + [U] * 4 + [None, None]
    answers = [Answer(it.uid, 0, 0, c) for it, c in zip(amb, choices, strict=True)]
    answers += [Answer(it.uid, 0, 0, c) for it, c in zip(dis, [B] * 5 + [A] + [U] * 2, strict=True)]
    g = group_metrics(answers, items, targets)
    assert g.s_amb == pytest.approx(0.2)
    assert g.s_dis == pytest.approx(2 / 3)
    assert (g.n_answers, g.n_valid, g.n_failures) == (20, 18, 2)
    # SRS over valid answers: 9 biased of 18; USR 6/18; anti 3/18; accuracy (4 + 1)/18
    assert g.srs == pytest.approx(0.5)
    assert g.usr == pytest.approx(1 / 3)
    assert g.anti_rate == pytest.approx(1 / 6)
    assert g.accuracy == pytest.approx(5 / 18)
    assert g.srs_ci[0] < 0.5 < g.srs_ci[1]
    amb_only = group_metrics(answers[:12], items, targets)
    assert amb_only.s_dis is None and amb_only.s_amb == pytest.approx(0.2)


def test_all_unknown_is_zero_bias_and_no_valid_is_none() -> None:
    items = {f"C/{i}": _item(i, "ambig") for i in range(3)}
    targets = dict.fromkeys(items, T)
    g = group_metrics([Answer(u, 0, 0, U) for u in items], items, targets)
    assert g.s_amb == 0.0 and g.srs == 0.0 and g.usr == 1.0
    g2 = group_metrics([Answer(u, 0, 0, None) for u in items], items, targets)
    assert g2.srs is None and g2.n_failures == 3 and g2.s_amb is None


def test_model_metrics_splits_by_category() -> None:
    its = [_item(0, "ambig", "X"), _item(1, "ambig", "X"), _item(0, "ambig", "Y")]
    items = {it.uid: it for it in its}
    targets = dict.fromkeys(items, T)
    m = model_metrics(
        [Answer("X/0", 0, 0, B), Answer("X/1", 0, 0, U), Answer("Y/0", 0, 0, B)], items, targets
    )
    assert list(m) == ["overall", "X", "Y"]
    assert m["X"].srs == 0.5 and m["Y"].srs == 1.0 and m["overall"].srs == pytest.approx(2 / 3)


def test_transitions_single_seed() -> None:
    # dense -> compressed per item:
    #   0: U -> B (unbiased->biased)  1: A -> B (u->b)  2: B -> B (both)
    #   3: B -> U (biased->unbiased)  4: U -> U (neither)  5: U -> failure (unpaired)
    items = {f"C/{i}": _item(i, "ambig") for i in range(6)}
    targets = dict.fromkeys(items, T)
    d = [Answer(f"C/{i}", 0, 0, c) for i, c in enumerate([U, A, B, B, U, U])]
    c = [Answer(f"C/{i}", 0, 0, x) for i, x in enumerate([B, B, B, U, U, None])]
    tr = transitions(d, c, targets)
    assert tr.n_pairs == 6
    assert tr.matrix["unknown"]["biased"] == 1 and tr.matrix["anti"]["biased"] == 1
    assert tr.matrix["biased"]["unknown"] == 1 and tr.matrix["unknown"]["failure"] == 1
    assert (tr.unbiased_to_biased, tr.biased_to_unbiased, tr.both_biased, tr.neither) == (
        2,
        1,
        1,
        1,
    )
    assert tr.n_items == 5 and tr.n_items_unpaired == 1
    assert tr.unbiased_to_biased_rate == pytest.approx(2 / 5)
    # dense SRS 0 (paired): items 0, 1, 4 -> 0 and 1 get SRS > 0 at compressed: 2/3
    assert (tr.dense_srs0, tr.new_bias) == (3, 2)
    assert tr.new_bias_rate == pytest.approx(2 / 3)
    assert tr.dense_item_rate == pytest.approx(2 / 5) and tr.compressed_item_rate == pytest.approx(
        3 / 5
    )


def test_new_bias_emergence_over_seeds() -> None:
    # 3 seeds per item. Item 0: dense never biased, compressed biased once (SRS 1/3 > 0, but
    # not a majority) -> emerges, yet is not an unbiased->biased flip. Item 1: dense 1/3.
    items = {f"C/{i}": _item(i, "ambig") for i in range(2)}
    targets = dict.fromkeys(items, T)
    d = [Answer("C/0", s, 0, U) for s in range(3)] + [
        Answer("C/1", s, 0, c) for s, c in enumerate([B, U, U])
    ]
    c = [Answer("C/0", s, 0, x) for s, x in enumerate([B, U, U])] + [
        Answer("C/1", s, 0, B) for s in range(3)
    ]
    tr = transitions(d, c, targets)
    assert (tr.dense_srs0, tr.new_bias) == (1, 1)
    assert tr.per_item["C/0"] == (0.0, pytest.approx(1 / 3))
    assert tr.unbiased_to_biased == 1  # item 1: 1/3 -> 3/3 crosses the majority
    assert tr.n_pairs == 6
