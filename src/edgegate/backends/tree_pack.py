"""Token trees for a padded-batch runtime (transformers): the rows of one scoring call that share
prefixes are merged into one tree, each distinct prefix evaluated once, and the trees go through
the model as the rows of one padded forward pass with a tree attention mask.

A scoring call hands over sequences, each with the number ``keep`` of its last positions whose
logits are scored (a loglik context with each of its answers; a letter prompt with each option
rotation). Sorted lexicographically, rows sharing a prefix sit side by side, and a contiguous
range of them forms a trie whose node count is ``len(first) + sum(len(row) - lcp(previous,
row))``. ``plan`` cuts the sorted rows into ranges (the fewest nodes in all, no tree longer than
``max_len``), lays each tree out as one row, and packs rows of similar length into forward passes
within a token budget.

A tree's row holds every node once: its unscored nodes first, then its scored ones, so one
``logits_to_keep`` (the most scored nodes of any row, right-aligned by left padding) covers
every scored position. A node attends to itself and its ancestors only, at the position of its
depth, so it computes what it would in its own sequence alone (up to float summation order).

llama.cpp needs no such packing for one context and its answers: KV-cache sequence ids branch
them in one decode (``branching``). This module serves a runtime without sequence ids, over a
whole call's prompts, with any scored positions.

Pure planning over token ids (numpy only): no runtime is imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

_MAX_PADDING = 0.1


@dataclass(frozen=True)
class Tree:
    """One packed row: ``tokens[c]`` at position ``depth[c]``, attending to ``ancestors[c]``
    (a boolean row over the columns); ``scored[r]`` the columns holding sequence r's scored
    positions, in order."""

    tokens: tuple[int, ...]
    depth: tuple[int, ...]
    ancestors: np.ndarray  # (len, len) bool, a node's own column included
    scored: dict[int, tuple[int, ...]]

    @property
    def n_scored(self) -> int:
        return len({c for cols in self.scored.values() for c in cols})


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    m = min(len(a), len(b))
    i = 0
    while i < m and a[i] == b[i]:
        i += 1
    return i


def build(seqs: Sequence[Sequence[int]], keep: Sequence[int], rows: Sequence[int]) -> Tree:
    """The trie of ``seqs[r]`` for r in ``rows``, laid out unscored nodes first."""
    token: list[int] = []
    parent: list[int] = []
    children: list[dict[int, int]] = [{}]  # node 0 is the root (no token)
    paths: dict[int, list[int]] = {}
    for r in rows:
        node, path = 0, []
        for t in seqs[r]:
            nxt = children[node].get(t)
            if nxt is None:
                nxt = len(token) + 1
                children[node][t] = nxt
                children.append({})
                token.append(int(t))
                parent.append(node)
            node = nxt
            path.append(nxt)
        paths[r] = path
    n = len(token)
    is_scored = np.zeros(n + 1, dtype=bool)
    for r in rows:
        for node in paths[r][len(paths[r]) - keep[r] :]:
            is_scored[node] = True
    nodes = list(range(1, n + 1))
    order = [v for v in nodes if not is_scored[v]] + [v for v in nodes if is_scored[v]]
    col = {v: c for c, v in enumerate(order)}
    depth = [0] * (n + 1)
    anc = np.zeros((n + 1, n + 1), dtype=bool)  # by node id; parents precede children
    for v in nodes:
        depth[v] = depth[parent[v - 1]] + 1
        anc[v] = anc[parent[v - 1]]
        anc[v, v] = True
    idx = np.asarray(order)
    return Tree(
        tokens=tuple(token[v - 1] for v in order),
        depth=tuple(depth[v] - 1 for v in order),
        ancestors=anc[np.ix_(idx, idx)],
        scored={r: tuple(col[v] for v in paths[r][len(paths[r]) - keep[r] :]) for r in rows},
    )


@dataclass(frozen=True)
class Limits:
    max_rows: int  # trees per forward pass
    token_budget: int  # trees x longest tree per forward pass (activation memory)
    max_len: int  # the longest tree: attention over a row grows with its square


def _ranges(seqs: Sequence[Sequence[int]], order: list[int], max_len: int) -> list[list[int]]:
    """Contiguous ranges of the sorted rows with the fewest trie nodes in all, no range over
    ``max_len`` nodes (a row longer than that stays alone)."""
    rows = [seqs[i] for i in order]
    n = len(rows)
    adj = [_lcp(a, b) for a, b in pairwise(rows)]
    best = [0] * (n + 1)
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        nodes = len(rows[j - 1])
        best[j], cut[j] = best[j - 1] + nodes, j - 1
        for i in range(j - 2, -1, -1):
            nodes += len(rows[i]) - adj[i]  # rows[i] joins; rows[i+1] now shares adj[i] with it
            if nodes > max_len:
                break
            if best[i] + nodes < best[j]:
                best[j], cut[j] = best[i] + nodes, i
    out: list[list[int]] = []
    j = n
    while j > 0:
        out.append(order[cut[j] : j])
        j = cut[j]
    out.reverse()
    return out


def plan(
    seqs: Sequence[Sequence[int]],
    keep: Sequence[int],
    lim: Limits,
    rows: Sequence[int] | None = None,
) -> list[list[Tree]]:
    """Forward passes covering every sequence (or those in ``rows``) once, each a list of trees
    of similar length."""
    order = sorted(range(len(seqs)) if rows is None else rows, key=lambda i: list(seqs[i]))
    trees = [build(seqs, keep, r) for r in _ranges(seqs, order, lim.max_len)]
    trees.sort(key=lambda t: (len(t.tokens), t.n_scored))
    passes: list[list[Tree]] = []
    cur: list[Tree] = []
    for t in trees:  # sorted by length: the tree joining a pass is its longest
        padded = len(t.tokens) * (len(cur) + 1)
        real = sum(len(c.tokens) for c in cur) + len(t.tokens)
        if cur and (
            len(cur) >= max(1, lim.max_rows)
            or padded > lim.token_budget
            # a pass of its own costs one more forward's fixed overhead; padding more than
            # this share of a pass costs more than that (transformers on CPU: ~55 ms against
            # ~1.3 ms a position for gemma-3-270m)
            or padded - real > _MAX_PADDING * padded
        ):
            passes.append(cur)
            cur = []
        cur.append(t)
    if cur:
        passes.append(cur)
    return passes


def evaluated(trees: Sequence[Tree]) -> int:
    """Positions one forward pass over ``trees`` evaluates, padding included."""
    return len(trees) * max(len(t.tokens) for t in trees)
