"""Sparsity aggregates (per kind, per layer, prunable, whole model) and claim-vs-actual.

The reason attached to a claim comparison is generated from the measured data, so a
report says *why* a "50%" checkpoint is 33.3% (which kinds or layers were left dense).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypedDict

from edgegate.checkpoint.base import ModuleKind

DENSE_BELOW = 0.01  # a kind/layer with < 1% zeros was not pruned


class AggregateDict(TypedDict):
    """``Aggregate.to_dict()``."""

    zeros: int
    numel: int
    tensors: int
    sparsity: float


class ClaimComparisonDict(TypedDict):
    """``ClaimComparison.to_dict()``."""

    claimed: float
    actual: float
    delta: float
    source: str
    scope: str
    n: int
    reason: str


@dataclass(frozen=True)
class Aggregate:
    zeros: int
    numel: int
    tensors: int = 0

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0

    def to_dict(self) -> AggregateDict:
        return {
            "zeros": self.zeros,
            "numel": self.numel,
            "tensors": self.tensors,
            "sparsity": self.sparsity,
        }


@dataclass(frozen=True)
class TensorCount:
    """The minimum each tensor contributes to aggregates."""

    kind: ModuleKind
    layer: int | None
    zeros: int
    numel: int


def aggregate(items: Iterable[TensorCount]) -> Aggregate:
    z = n = t = 0
    for it in items:
        z += it.zeros
        n += it.numel
        t += 1
    return Aggregate(z, n, t)


def by_kind(items: list[TensorCount]) -> dict[str, Aggregate]:
    out: dict[str, Aggregate] = {}
    for kind in ModuleKind:
        sel = [i for i in items if i.kind is kind]
        if sel:
            out[kind.value] = aggregate(sel)
    return out


def by_layer(items: list[TensorCount], prunable_only: bool = True) -> dict[int, Aggregate]:
    layers = sorted({i.layer for i in items if i.layer is not None})
    return {
        lay: aggregate(
            i for i in items if i.layer == lay and (i.kind.prunable or not prunable_only)
        )
        for lay in layers
    }


@dataclass(frozen=True)
class ClaimComparison:
    claimed: float
    actual: float
    source: str  # "cli", "pruning_meta.json", "compressed-tensors sparsity_config", ...
    scope: str  # what ``actual`` measures, e.g. "prunable linears"
    n: int  # weights considered
    reason: str

    @property
    def delta(self) -> float:
        return self.actual - self.claimed

    def to_dict(self) -> ClaimComparisonDict:
        return {
            "claimed": self.claimed,
            "actual": self.actual,
            "delta": self.delta,
            "source": self.source,
            "scope": self.scope,
            "n": self.n,
            "reason": self.reason,
        }


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def explain(
    claimed: float,
    prunable: Aggregate,
    kinds: Mapping[str, Aggregate],
    layers: Mapping[int, Aggregate],
    tolerance: float = 0.02,
    reference: tuple[Mapping[str, Aggregate], Mapping[int, Aggregate]] | None = None,
) -> str:
    """One sentence: where the gap between claimed and actual sparsity comes from.

    ``reference`` (the dense model's kinds and layers): a kind is "left dense" when it holds
    no more zeros than the dense model's own. A quantized dense model has a few percent exact
    zeros everywhere; without it a down_proj left at its dense 1.5% read as "pruned"."""
    actual = prunable.sparsity
    head = f"prunable-linear sparsity {pct(actual)} vs claimed {pct(claimed)}"
    if prunable.numel == 0:
        return "no prunable linear weights found (nothing named q/k/v/o/gate/up/down_proj)"
    if abs(actual - claimed) <= tolerance:
        return f"{head}: matches within {pct(tolerance)}"
    prunable_kinds = {k: a for k, a in kinds.items() if ModuleKind(k).prunable}
    ref_kinds, ref_layers = reference or ({}, {})

    def unpruned(a: Aggregate, ref: Aggregate | None) -> bool:
        return a.sparsity - (ref.sparsity if ref is not None else 0.0) < DENSE_BELOW

    dense_kinds = [k for k, a in prunable_kinds.items() if unpruned(a, ref_kinds.get(k))]
    dense_layers = [lay for lay, a in layers.items() if unpruned(a, ref_layers.get(lay))]
    parts: list[str] = []
    if dense_kinds:
        vals = {pct(prunable_kinds[k].sparsity) for k in dense_kinds}
        if len(vals) == 1:
            lead = f"{_join(dense_kinds)} {vals.pop()}"
        else:
            lead = ", ".join(f"{k} {pct(prunable_kinds[k].sparsity)}" for k in dense_kinds)
        pruned = [k for k in prunable_kinds if k not in dense_kinds]
        others = ""
        if pruned:
            others = "; pruned kinds at " + ", ".join(
                f"{k} {pct(prunable_kinds[k].sparsity)}" for k in pruned
            )
        return f"{lead} -> {head} (kinds left dense: {', '.join(dense_kinds)}{others})"
    if dense_layers and len(dense_layers) < len(layers):
        parts.append(f"layers left dense: {', '.join(map(str, dense_layers))}")
    direction = "below" if actual < claimed else "above"
    off = [k for k, a in prunable_kinds.items() if abs(a.sparsity - claimed) > tolerance]
    if off:
        lead = "every kind is" if len(off) == len(prunable_kinds) else "kinds"
        parts.append(
            f"{lead} {direction} the claim: "
            + ", ".join(f"{k} {pct(prunable_kinds[k].sparsity)}" for k in off)
        )
    else:
        parts.append(f"every kind is {direction} the claim by more than {pct(tolerance)}")
    return f"{head} ({'; '.join(parts)})"


def compare_claim(
    claimed: float,
    source: str,
    prunable: Aggregate,
    kinds: Mapping[str, Aggregate],
    layers: Mapping[int, Aggregate],
    tolerance: float = 0.02,
    reference: tuple[Mapping[str, Aggregate], Mapping[int, Aggregate]] | None = None,
) -> ClaimComparison:
    return ClaimComparison(
        claimed=claimed,
        actual=prunable.sparsity,
        source=source,
        scope="prunable linears (q/k/v/o/gate/up/down_proj)",
        n=prunable.numel,
        reason=explain(claimed, prunable, kinds, layers, tolerance, reference),
    )
