"""The result types every check returns and the policy/reporters consume.

A check measures (``measurements``: raw, JSON-able numbers kept in the report) and then
evaluates the thresholds of its policy section into ``Verdict``s. The overall status of a
check is the worst of its verdicts (see ``Status.worst``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any


class Status(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"  # measured, but too little data to decide (never a pass)
    SKIPPED = "skipped"  # not run: runtime missing, deselected, no threshold set
    ERROR = "error"  # the check itself failed (runtime crashed, input unreadable)

    @staticmethod
    def worst(statuses: Iterable[Status]) -> Status:
        order = [Status.ERROR, Status.FAIL, Status.INCONCLUSIVE, Status.SKIPPED, Status.PASS]
        seen = set(statuses)
        for s in order:
            if s in seen:
                return s
        return Status.SKIPPED


@dataclass(frozen=True)
class Interval:
    """A confidence interval: ``[low, high]`` at ``level`` computed by ``method``."""

    low: float
    high: float
    level: float = 0.95
    method: str = ""


@dataclass(frozen=True)
class Verdict:
    """One threshold evaluated against one observed value.

    ``comparator`` reads "observed <comparator> threshold must hold to pass", e.g. "<=".
    For statistical verdicts ``n``, ``ci``, ``effect_size`` and ``test`` are filled in.
    """

    name: str
    status: Status
    message: str
    observed: float | None = None
    threshold: float | None = None
    comparator: str | None = None
    unit: str = ""
    n: int | None = None
    ci: Interval | None = None
    effect_size: float | None = None
    effect_size_name: str | None = None
    test: str | None = None
    p_value: float | None = None
    scope: str | None = None  # e.g. a category, a runtime, a format


@dataclass(frozen=True)
class CheckResult:
    check: str
    status: Status
    summary: str
    verdicts: tuple[Verdict, ...] = ()
    measurements: Mapping[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    error: Mapping[str, Any] | None = None  # EdgegateError.to_dict() when status is ERROR

    @staticmethod
    def from_verdicts(
        check: str,
        verdicts: Iterable[Verdict],
        measurements: Mapping[str, Any],
        summary: str,
        duration_s: float = 0.0,
    ) -> CheckResult:
        vs = tuple(verdicts)
        # A skipped verdict (no threshold or claim to compare) says nothing about the
        # others; the check is skipped only when every verdict is.
        decided = [v.status for v in vs if v.status is not Status.SKIPPED]
        status = Status.worst(decided) if decided else Status.SKIPPED
        return CheckResult(check, status, summary, vs, measurements, duration_s)

    @staticmethod
    def skipped(check: str, reason: str) -> CheckResult:
        return CheckResult(check, Status.SKIPPED, reason)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def compare(
    name: str,
    observed: float | None,
    comparator: str,
    threshold: float,
    *,
    unit: str = "",
    what: str = "",
    **extra: Any,
) -> Verdict:
    """Evaluate ``observed <comparator> threshold``; a missing/NaN observation is inconclusive."""
    label = what or name
    if observed is None or (isinstance(observed, float) and math.isnan(observed)):
        return Verdict(
            name,
            Status.INCONCLUSIVE,
            f"{label}: no measurement",
            None,
            threshold,
            comparator,
            unit,
            **extra,
        )
    ok = {
        "<=": observed <= threshold,
        "<": observed < threshold,
        ">=": observed >= threshold,
        ">": observed > threshold,
    }[comparator]
    status = Status.PASS if ok else Status.FAIL
    msg = f"{label}: {_fmt(observed)}{unit} {'within' if ok else 'violates'} {comparator} {_fmt(threshold)}{unit}"
    return Verdict(name, status, msg, float(observed), float(threshold), comparator, unit, **extra)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _jsonable(obj.item())
    return obj


@dataclass
class CheckContext:
    """Everything a check may use. Built by the runner from the CLI flags and the policy.

    ``section`` is this check's block of the validated policy (``policy.checks.<name>``);
    ``claims`` merges CLI ``--claim`` > policy ``claims:`` > checkpoint metadata;
    ``shared`` lets checks reuse work (e.g. the sparsity scan feeds the size check).
    """

    compressed_path: Path
    dense_path: Path | None = None
    section: Mapping[str, Any] = field(default_factory=dict)
    claims: Mapping[str, float] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    progress: Any = None  # edgegate.progress.Progress or None (quiet)
