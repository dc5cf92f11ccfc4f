"""JUnit XML: one testcase per verdict (a check without verdicts is one testcase), so CI
systems show each threshold as a test. fail/inconclusive/error -> failure, skipped -> skipped.
A check the policy makes advisory (not required) never gates, so its fail/inconclusive verdicts
are passing testcases whose output says "advisory": a red dashboard for a check that did not
block the release would teach people to ignore red."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from edgegate.checks.base import Status, Verdict
from edgegate.escape import xml
from edgegate.report.common import ci, num, threshold
from edgegate.results import GateResult


def render(gate: GateResult) -> str:
    suites = ET.Element(
        "testsuites",
        name=f"edgegate ({gate.policy.name}): {gate.status}",
        time=f"{gate.duration_s:.3f}",
    )
    for o in gate.outcomes:
        r = o.result
        suite = ET.SubElement(
            suites, "testsuite", name=f"edgegate.{o.name}", time=f"{r.duration_s:.3f}"
        )
        cases = 0
        counts = {"failures": 0, "errors": 0, "skipped": 0}
        items: list[tuple[str, Status, str, Verdict | None]] = [
            (v.name + (f"[{v.scope}]" if v.scope else ""), v.status, v.message, v)
            for v in r.verdicts
        ]
        if not items:
            items = [(o.name, r.status, r.summary, None)]
        for name, status, message, v in items:
            cases += 1
            case = ET.SubElement(
                suite, "testcase", classname=f"edgegate.{o.name}", name=name, time="0"
            )
            detail = message
            if v is not None:
                detail = (
                    f"{message}\nobserved={num(v.observed, v.unit)} threshold={threshold(v)} "
                    f"n={v.n if v.n is not None else '-'} ci={ci(v)}"
                )
            if not o.selected:
                ET.SubElement(case, "skipped", message=o.reason)
                counts["skipped"] += 1
            elif status is Status.SKIPPED:
                ET.SubElement(case, "skipped", message=message)
                counts["skipped"] += 1
            elif status is Status.ERROR:
                el = ET.SubElement(case, "error", message=message, type="error")
                el.text = str((r.error.hint if r.error is not None else None) or detail)
                counts["errors"] += 1
            elif status in (Status.FAIL, Status.INCONCLUSIVE) and not o.required:
                out = ET.SubElement(case, "system-out")
                out.text = f"advisory {status.value} (this check does not gate): {detail}"
            elif status in (Status.FAIL, Status.INCONCLUSIVE):
                el = ET.SubElement(
                    case, "failure", message=f"{status.value}: {message}", type=status.value
                )
                el.text = detail
                counts["failures"] += 1
            else:
                out = ET.SubElement(case, "system-out")
                out.text = detail
        suite.set("tests", str(cases))
        for k, n in counts.items():
            suite.set(k, str(n))
    _only_xml_chars(suites)
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )


def _only_xml_chars(root: ET.Element) -> None:
    """Every name, message and detail passes through edgegate.escape.xml: ElementTree escapes
    markup but writes control characters as they are, and one of them makes the whole file
    ill-formed (the CI then shows no verdict at all)."""
    for el in root.iter():
        for k, v in el.attrib.items():
            el.set(k, xml(v))
        if el.text is not None:
            el.text = xml(el.text, multiline=True)
