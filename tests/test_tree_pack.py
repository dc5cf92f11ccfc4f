"""Token trees for the transformers runtime (``backends/tree_pack.py``): each distinct prefix once,
every node seeing exactly its own sequence's earlier tokens, scored nodes last. Pure token ids;
the model-level equality is in tests/test_backend_transformers.py."""

from __future__ import annotations

import random

import numpy as np
import pytest

from edgegate.backends.tree_pack import Limits, build, evaluated, plan


def loglik_rows(rng: random.Random, n_items: int) -> tuple[list[list[int]], list[int]]:
    """Rows as a BBQ loglik call sends them: a context (some sharing a template opening), then
    an answer without its last token; the answer's tokens are predicted from the context's last
    token on."""
    seqs, keep = [], []
    for _ in range(n_items):
        opening = [1, 2, 3, 4, 5, 6] if rng.random() < 0.5 else [1, 9]
        ctx = opening + [rng.randrange(20, 60) for _ in range(rng.randrange(5, 40))]
        for first in (7, 7, 8):  # two answers share a leading token
            ans = [first] + [rng.randrange(20, 60) for _ in range(rng.randrange(0, 3))]
            seqs.append(ctx + ans[:-1])
            keep.append(len(ans))
    return seqs, keep


def distinct_prefixes(seqs: list[list[int]], rows: list[int]) -> int:
    return len({tuple(seqs[r][:n]) for r in rows for n in range(1, len(seqs[r]) + 1)})


@pytest.mark.parametrize("seed", range(6))
def test_tree_holds_each_sequence_exactly(seed: int) -> None:
    seqs, keep = loglik_rows(random.Random(seed), 6)
    rows = list(range(len(seqs)))
    t = build(seqs, keep, rows)
    n = len(t.tokens)
    assert n == distinct_prefixes(seqs, rows)  # each distinct prefix once
    # scored nodes are the last columns
    scored = {c for cols in t.scored.values() for c in cols}
    assert scored == set(range(n - t.n_scored, n))
    for r in rows:
        cols = t.scored[r]
        assert len(cols) == keep[r]
        last = cols[-1]
        # the last scored node sees exactly the sequence: its ancestors, by depth, spell it
        seen = np.flatnonzero(t.ancestors[last])
        by_depth = sorted(seen, key=lambda c: t.depth[c])
        assert [t.tokens[c] for c in by_depth] == seqs[r]
        assert [t.depth[c] for c in by_depth] == list(range(len(seqs[r])))
        # and the scored columns are the sequence's last keep positions, in order
        assert [t.depth[c] for c in cols] == list(range(len(seqs[r]) - keep[r], len(seqs[r])))
    # a node never sees a column that is not an ancestor (other answers, other contexts)
    for c in range(n):
        for a in np.flatnonzero(t.ancestors[c]):
            assert t.depth[a] <= t.depth[c]
            assert np.all(t.ancestors[c][t.ancestors[a]])  # ancestors are nested


@pytest.mark.parametrize("seed", range(6))
def test_plan_covers_every_sequence_once_within_limits(seed: int) -> None:
    seqs, keep = loglik_rows(random.Random(seed), 12)
    for lim in (Limits(16, 8192, 1024), Limits(4, 600, 120), Limits(2, 8192, 60)):
        passes = plan(seqs, keep, lim)
        covered = sorted(r for trees in passes for t in trees for r in t.scored)
        assert covered == list(range(len(seqs)))
        for trees in passes:
            assert len(trees) <= lim.max_rows
            if len(trees) > 1:
                assert evaluated(trees) <= lim.token_budget
                # padding within a pass stays under the share a pass of its own would cost
                real = sum(len(t.tokens) for t in trees)
                assert evaluated(trees) - real <= 0.1 * evaluated(trees)
            for t in trees:
                # a tree over max_len is one sequence that is longer on its own
                assert len(t.tokens) <= lim.max_len or len(t.scored) == 1


def test_plan_with_room_reaches_the_fewest_positions() -> None:
    seqs, keep = loglik_rows(random.Random(0), 8)
    passes = plan(seqs, keep, Limits(16, 8192, 4096))
    assert sum(evaluated(p) for p in passes) == distinct_prefixes(seqs, list(range(len(seqs))))


def test_plan_takes_only_the_rows_named() -> None:
    seqs, keep = loglik_rows(random.Random(1), 3)
    passes = plan(seqs, keep, Limits(16, 8192, 1024), rows=[0, 4])
    assert sorted(r for p in passes for t in p for r in t.scored) == [0, 4]
