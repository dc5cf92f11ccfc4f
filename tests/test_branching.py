"""The plan of one decode for a context and its continuations (backends/branching.py): every
distinct continuation prefix once, last tokens never, the same layout for any request order."""

from __future__ import annotations

import itertools

import pytest

from edgegate.backends.branching import CONTEXT_ROW, BranchPlan, plan, split


def _paths(p: BranchPlan) -> list[list[int]]:
    """The tokens each continuation's rows evaluate, read back from the plan."""
    return [[p.tokens[r] for r in rows if r != CONTEXT_ROW] for rows in p.rows]


def test_shared_prefixes_are_evaluated_once_and_last_tokens_never() -> None:
    conts = [[5, 6, 7], [5, 6, 9], [5, 8], [4]]
    p = plan(conts)
    # distinct prefixes without the last token: (5), (5,6), -- (5) again, -- nothing for [4]
    assert sorted(zip(p.depth, p.tokens, strict=True)) == [(0, 5), (1, 6)]
    assert p.n_branches == 4
    for cont, rows in zip(conts, p.rows, strict=True):
        assert len(rows) == len(cont)  # one row predicts each token
        assert rows[0] == CONTEXT_ROW  # the first token is predicted by the context's last row
    assert _paths(p) == [c[:-1] for c in conts]
    node5 = p.tokens.index(5)
    assert (
        len(p.branches[node5]) == 3
    )  # the row for 5 is on the paths of the three that start with it


def test_layout_does_not_depend_on_request_order() -> None:
    conts = [[3, 1, 4], [3, 1, 5], [9, 2], [3, 7]]
    base = plan(conts)
    for perm in itertools.permutations(range(len(conts))):
        p = plan([conts[i] for i in perm])
        assert (p.tokens, p.depth, p.branches, p.n_branches) == (
            base.tokens,
            base.depth,
            base.branches,
            base.n_branches,
        )
        assert [p.rows[perm.index(i)] for i in range(len(conts))] == list(base.rows)


def test_identical_continuations_share_a_branch() -> None:
    p = plan([[1, 2, 3], [1, 2, 3], [1, 4]])
    assert p.n_branches == 2
    assert p.rows[0] == p.rows[1]


def test_a_parent_row_comes_before_its_children() -> None:
    p = plan([[7, 8, 9, 10], [7, 8, 1, 2], [6, 5, 4]])
    for rows in p.rows:
        real = [r for r in rows if r != CONTEXT_ROW]
        assert real == sorted(real)
        assert [p.depth[r] for r in real] == list(range(len(real)))


def test_empty_continuation_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        plan([[1], []])


def test_split_keeps_identical_continuations_together_and_is_order_free() -> None:
    conts = [[i % 5, 1] for i in range(12)]  # five distinct, each repeated
    groups = split(conts, 2)
    assert len(groups) == 3
    for g in groups:
        assert len({tuple(conts[i]) for i in g}) <= 2
    assert sorted(i for g in groups for i in g) == list(range(12))
    again = split(conts[::-1], 2)
    as_sets = lambda gs, cs: sorted(sorted({tuple(cs[i]) for i in g}) for g in gs)  # noqa: E731
    assert as_sets(groups, conts) == as_sets(again, conts[::-1])
