"""The layout of one decode that scores a context and all its continuations together.

The fewest positions any scorer evaluates for a context and k continuations is the context
once plus every distinct prefix of the continuations once, without their last tokens (a last
token is scored by the row before it, never evaluated itself). This module plans that decode
as a token trie: the context's tokens belong to every branch, each continuation gets its own
branch (a KV-cache sequence id in llama.cpp, so its rows attend to the context and to its own
path only) and a trie node shared by several continuations is evaluated once for all of them.

Pure bookkeeping, no runtime: ``llamacpp`` turns a plan into one batch with sequence ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CONTEXT_ROW = -1  # the context's last row: it predicts every continuation's first token


@dataclass(frozen=True)
class BranchPlan:
    """Tail rows after the context, parents before children."""

    tokens: tuple[int, ...]  # the token each tail row evaluates
    depth: tuple[int, ...]  # its position after the context's end (0 = first token after it)
    branches: tuple[tuple[int, ...], ...]  # the branches (1..n_branches) whose path holds the row
    rows: tuple[tuple[int, ...], ...]  # per continuation: the row predicting each of its tokens
    n_branches: int


def plan(conts: Sequence[Sequence[int]]) -> BranchPlan:
    """Trie of the continuations without their last tokens. Identical continuations share a
    branch; every continuation needs at least one token. The layout depends only on the set
    of continuations, never on their order (branches and rows in sorted order): a runtime's
    result for a row depends on where it sits in the batch, and a request's score must not
    depend on how the caller ordered the others."""
    keys = [tuple(int(t) for t in cont) for cont in conts]
    if not all(keys):
        raise ValueError("a continuation needs at least one token")
    branch_of = {key: i + 1 for i, key in enumerate(sorted(set(keys)))}
    node_of: dict[tuple[int, ...], int] = {}  # a continuation prefix -> its tail row
    tokens: list[int] = []
    depth: list[int] = []
    members: list[set[int]] = []
    for key in sorted(branch_of):
        branch = branch_of[key]
        for d in range(len(key) - 1):
            prefix = key[: d + 1]
            row = node_of.get(prefix)
            if row is None:
                row = node_of[prefix] = len(tokens)
                tokens.append(key[d])
                depth.append(d)
                members.append(set())
            members[row].add(branch)
    rows = tuple(
        (CONTEXT_ROW, *(node_of[key[: d + 1]] for d in range(len(key) - 1))) for key in keys
    )
    return BranchPlan(
        tokens=tuple(tokens),
        depth=tuple(depth),
        branches=tuple(tuple(sorted(m)) for m in members),
        rows=rows,
        n_branches=len(branch_of),
    )


def split(conts: Sequence[Sequence[int]], max_branches: int) -> list[list[int]]:
    """Indices of ``conts`` in groups of at most ``max_branches`` distinct continuations
    (identical ones stay together); which group a continuation joins depends only on the set
    of continuations, as in ``plan``."""
    keys = [tuple(int(t) for t in cont) for cont in conts]
    distinct = sorted(set(keys))
    group_of = {key: j // max_branches for j, key in enumerate(distinct)}
    groups: list[list[int]] = [[] for _ in range(-(-len(distinct) // max_branches))]
    for i, key in enumerate(keys):
        groups[group_of[key]].append(i)
    return groups
