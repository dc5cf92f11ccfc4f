"""Formatting shared by the human-readable reports."""

from __future__ import annotations

from edgegate.checks.base import Verdict
from edgegate.gate import verification
from edgegate.results import CheckDecision, CheckOutcome, GateResult, GateStatus

STATUS_ICON = {
    "pass": "✅",
    "fail": "❌",
    "error": "💥",
    "inconclusive": "❔",
    "skipped": "⏭️",
    "partial": "⚠️",
    "unverified": "⛔",
}

STATUS_TITLE = {
    "pass": "PASS",
    "fail": "FAIL",
    "error": "ERROR",
    "partial": "PARTIAL",
    "unverified": "UNVERIFIED (nothing the policy requires was verified)",
}


def headline(gate: GateResult) -> str:
    """The one-line verdict every report leads with; never "PASS" for less than everything."""
    title = STATUS_TITLE.get(gate.status, gate.status.upper())
    if gate.status is GateStatus.PARTIAL:
        v = verification(gate.outcomes)
        title = f"PARTIAL ({v.headline()}; not a pass)"
    caveats = [str(c) for c in getattr(gate, "caveats", ())]
    return title + (f" — {'; '.join(caveats)}" if caveats else "")


def shown_status(o: CheckOutcome) -> str:
    """The status word of a check's row: its result's status when it ran, else how the gate
    treated it — deselected, disabled, not-in-policy, or not-run (fail-fast stopped the run
    before it; its summary says after which check)."""
    return (
        o.result.status.value if o.selected and o.gate is not CheckDecision.NOT_RUN else str(o.gate)
    )


def num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    text = f"{x:.4g}"
    if not unit:
        return text
    return f"{text}{unit}" if unit in ("x", "%") else f"{text} {unit}"


def threshold(v: Verdict) -> str:
    if v.threshold is None:
        return "—"
    return f"{v.comparator or ''} {num(v.threshold, v.unit)}".strip()


def ci(v: Verdict) -> str:
    if v.ci is None:
        return "—"
    level = f"{v.ci.level:.0%}"
    return f"[{num(v.ci.low, v.unit)}, {num(v.ci.high, v.unit)}] {level}"


def extras(v: Verdict) -> str:
    parts = []
    if v.effect_size is not None:
        parts.append(f"{v.effect_size_name or 'effect'}={v.effect_size:.3g}")
    if v.p_value is not None:
        parts.append(f"p={v.p_value:.3g}")
    if v.test:
        parts.append(v.test)
    return ", ".join(parts) or "—"


def human_bytes(n: float | None) -> str:
    """Binary units, as the size check writes them: one file is one number in every report
    (it once read 551.04 MB under inputs and 525.51 MiB under size)."""
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024.0
    return f"{n:.2f} TiB"
