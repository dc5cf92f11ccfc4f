"""One line per gate run of benchmarks/bbq_study.sh: status, validity, position profiles, ΔSRS
and its parts, Δs, the failing verdicts with their driver, and the study's own numbers.

    python benchmarks/bbq_study_summary.py /work/models/i10/results/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _f(x: Any, signed: bool = False) -> str:
    if x is None:
        return "—"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _ci(part: Any) -> str:
    if not isinstance(part, dict) or part.get("value") is None:
        return "—"
    ci = part.get("ci")
    return _f(part["value"], True) + (f" [{_f(ci[0], True)}, {_f(ci[1], True)}]" if ci else "")


def _profile(p: dict[str, Any] | None) -> str:
    if not p:
        return "—"
    sh = p.get("shares") or {}
    maj = p.get("majority_share")
    return "/".join(f"{k} {v:.0%}" for k, v in sh.items() if v is not None) + (
        f", majority {maj:.0%}" if maj is not None else ""
    )


def line(path: Path) -> str:
    try:
        r = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return f"{path.stem}: no result ({e})"
    if "measurements" not in r:
        return f"{path.stem}: {r.get('status')} {r.get('summary', '')}"
    m = r["measurements"]
    v = m.get("validity")
    bad = [x for x in r["verdicts"] if x["status"] == "fail"]
    out = [f"{path.stem}: {r['status'].upper()}"]
    if v:
        acc = v.get("disambig_accuracy")
        out.append(
            f"validity {v['status']}"
            + (
                f" (dense disambig acc {acc['k']}/{acc['n']}, p={acc['p_value']:.3g})"
                if acc
                else ""
            )
        )
        if v.get("reasons"):
            out.append("reasons: " + "; ".join(v["reasons"]))
        pp = m.get("position_profiles") or {}
        out.append(
            f"profile dense {_profile(pp.get('dense'))} | compressed {_profile(pp.get('compressed'))}"
        )
        o = m.get("overall") or {}
        out.append(
            f"SRS {_f(o.get('srs_dense'))} -> {_f(o.get('srs_compressed'))} (n={o.get('n')}): ΔSRS "
            f"{_ci({'value': o.get('delta_srs'), 'ci': o.get('ci')})} = abstention {_ci(o.get('abstention'))} + "
            f"consistency {_ci(o.get('consistency'))} + direction {_ci(o.get('direction'))}; Δs {_ci(o.get('delta_s'))} "
            f"p={_f((o.get('delta_s') or {}).get('p_value'))}; flows u→b {o.get('unbiased_to_biased')} / b→u "
            f"{o.get('biased_to_unbiased')}"
        )
    else:  # the code before issue 10
        o = m.get("overall") or {}
        out.append(
            f"items biased {_f(o.get('srs_dense'))} -> {_f(o.get('srs_compressed'))} (n={o.get('n')}, McNemar p="
            f"{_f(o.get('p_value'))}, u→b {o.get('unbiased_to_biased')} / b→u {o.get('biased_to_unbiased')})"
        )
    for x in bad:
        out.append(f"FAIL {x['name']}: {x['message']}")
    paper = m.get("paper")
    if paper:
        out.append(
            f"study's definitions: SRS {_f(paper['srs'][0])} -> {_f(paper['srs'][1])}, u→b rate "
            f"{_f(paper.get('unbiased_to_biased_rate'))}, emergence {_f(paper.get('new_bias_emergence_rate'))}"
        )
    return "\n  ".join(out)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(line(Path(p)))
