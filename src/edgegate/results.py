"""What a gate run produces: check results, their verdicts, the gate's outcome, and the one
JSON conversion every report and partial file uses.

Reporters import this module, never the runner that builds these values. A check's overall
status is the worst of its verdicts (see ``Status.worst``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Required, TypedDict

from edgegate.errors import ErrorEntry, ErrorRecord, ExitCode

if TYPE_CHECKING:
    from edgegate.environment import EnvironmentInfo, InputDescription
    from edgegate.policy import Policy


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


class IntervalEntry(TypedDict):
    """A verdict's confidence interval (results.Interval)."""

    low: float
    high: float
    level: float
    method: str


class VerdictEntry(TypedDict, total=False):
    """One verdict of a check (results.Verdict); reports of older versions may lack keys."""

    name: str
    status: str
    message: str
    observed: float | None
    threshold: float | None
    comparator: str | None
    unit: str
    n: int | None
    ci: IntervalEntry | None
    effect_size: float | None
    effect_size_name: str | None
    test: str | None
    p_value: float | None
    scope: str | None


class CheckEntry(TypedDict, total=False):
    """One check: its result (results.CheckResult) and how it counted in the gate. Every
    check edgegate writes names itself and its status; a hand-made one may lack the rest."""

    check: Required[str]
    status: Required[str]  # results.Status
    summary: str
    verdicts: list[VerdictEntry]
    # each check's own JSON, whatever it measured (the bbq check's: bbq.record)
    measurements: dict[str, Any]
    duration_s: float
    error: ErrorEntry | None
    required: bool
    selected: bool
    gate: str  # results.CheckDecision
    gate_reason: str


@dataclass(frozen=True)
class CheckResult:
    check: str
    status: Status
    summary: str
    verdicts: tuple[Verdict, ...] = ()
    measurements: Mapping[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    # why it errored, or why it was skipped (missing runtime, fail-fast)
    error: ErrorRecord | None = None

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

    @property
    def error_code(self) -> ExitCode:
        """The exit code this result's error means (a runtime error when it has no record)."""
        return ExitCode.RUNTIME_ERROR if self.error is None else self.error.code

    def to_dict(self) -> CheckEntry:
        d: CheckEntry = jsonable(asdict(self))
        # the record writes its own keys: one without an exit code has no "exit_code" key
        d["error"] = None if self.error is None else self.error.to_dict()
        return d


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
    u = unit if unit in ("", "x", "%") else f" {unit}"  # "1.5x", "3%", but "0.17 gap |...|"
    msg = f"{label}: {_fmt(observed)}{u} {'within' if ok else 'violates'} {comparator} {_fmt(threshold)}{u}"
    return Verdict(name, status, msg, float(observed), float(threshold), comparator, unit, **extra)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: enums by value, paths as strings, NaN/inf as null,
    numpy scalars as Python numbers (every report and partial file goes through this)."""
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return jsonable(obj.item())
    return obj


def check_result_from_dict(
    d: Mapping[str, Any], *, path: str | Path | None = None, where: str = "results"
) -> CheckResult:
    """Inverse of ``CheckResult.to_dict`` (results read back from a partial file, ``path``;
    ``where`` names the result in it)."""
    err = d.get("error")
    error = None if err is None else ErrorRecord.from_dict(err, path=path, field=f"{where}.error")
    verdicts = []
    for v in d.get("verdicts", []):
        ci = Interval(**v["ci"]) if v.get("ci") else None
        verdicts.append(Verdict(**{**v, "status": Status(v["status"]), "ci": ci}))
    return CheckResult(
        check=d["check"],
        status=Status(d["status"]),
        summary=d["summary"],
        verdicts=tuple(verdicts),
        measurements=d.get("measurements", {}),
        duration_s=float(d.get("duration_s", 0.0)),
        error=error,
    )


class _Word(str, Enum):
    """A status word: compares, hashes, prints and serialises as its text."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class GateStatus(_Word):
    """The verdict of a whole run (edgegate.gate)."""

    PASS = "pass"
    FAIL = "fail"
    PARTIAL = "partial"  # passed what it verified; some required checks not verified (allowed)
    UNVERIFIED = "unverified"  # nothing required was verified: never a pass
    ERROR = "error"


class CheckDecision(_Word):
    """How one check affected the gate."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    NOT_VERIFIED = "not-verified"  # required, but skipped or inconclusive
    ADVISORY = "advisory"  # an optional check that did not pass: reported, does not gate
    SKIPPED = "skipped"  # an optional check that did not run
    DESELECTED = "deselected"  # --only/--skip
    DISABLED = "disabled"  # enabled: false
    NOT_IN_POLICY = "not-in-policy"
    NOT_RUN = "not-run"  # fail-fast stopped the run before it


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    required: bool
    selected: bool
    result: CheckResult
    gate: CheckDecision
    reason: str


@dataclass(frozen=True)
class GateResult:
    status: GateStatus
    exit_code: int
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    outcomes: tuple[CheckOutcome, ...]
    policy: Policy
    strict: bool
    claims: Mapping[str, float]
    claim_sources: Mapping[str, str]
    inputs: tuple[InputDescription, ...]
    environment: EnvironmentInfo
    started_at: str
    finished_at: str
    duration_s: float
    argv: tuple[str, ...] = ()
    # Problems with the inputs themselves (edgegate.sanity.Finding.to_dict()), and caveats on
    # the whole run such as a quick --bbq-items run: said in every report.
    findings: tuple[Mapping[str, str], ...] = ()
    caveats: tuple[str, ...] = ()

    def result(self, name: str) -> CheckResult | None:
        return next((o.result for o in self.outcomes if o.name == name), None)
