"""Power curves and false-alarm rates of the BBQ judge by spike-in on real answer sets.

    python benchmarks/bbq_spike_in.py [--draws 200] [--out docs/bbq-calibration.md]

Reads the stored gemma-3-270m answer sets (tests/data/bbq_answers, made by
benchmarks/bbq_answer_sets.py), injects known changes into the compressed answers
(src/edgegate/bbq/spikein.py) and counts, over ``--draws`` seeded draws per size, how often the
judge's rules fail the pair. Writes the Markdown table (``--out``) and the numbers as JSON
beside it (same name, .json). Null controls: dense vs itself, and dense vs the real compressed
model with nothing injected. The report's own power estimate (bbq/power.py: simulated churn
from the dense classes) is printed beside the spike-in curve on real answers for comparison.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.bbq.evaluation import evaluate
from edgegate.bbq.power import decide, power_report
from edgegate.bbq.spikein import AnswerSet, as_judge_input, detection, inject
from edgegate.checks.sections import BBQSection, bbq_section

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "bbq_answers"
DIRECTION_K = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)
OTHER_K = (0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0)


def _f(x: float | None, signed: bool = False) -> str:
    return "-" if x is None else (f"{x:+.3f}" if signed else f"{x:.3f}")


def study(path: Path, pol: BBQSection, draws: int) -> dict[str, Any]:
    s = AnswerSet.load(path)
    comp = "compressed" if "compressed" in s.answers else "dense"
    d = s.classes(s.answers["dense"])[s.ambig]
    c = s.classes(s.answers[comp])[s.ambig]
    out: dict[str, Any] = {
        "set": path.name,
        "meta": dict(s.meta),
        "n_ambig": int(s.ambig.sum()),
        "compressed_role": comp,
        "dense_classes": {
            k: int(np.sum(d == i)) for i, k in enumerate(("biased", "anti", "unknown", "none"))
        },
        "churn": float(np.mean(d != c)),
        "null": {"dense_vs_itself": decide(d, d, pol), "dense_vs_compressed": decide(d, c, pol)},
        "report_power": power_report(d, c, pol),
        "curves": {},
    }
    out["full_judge"] = full_judge(s, comp, pol)
    kinds = ["direction", "abstention"] + (["position"] if len(s.rotations) > 1 else [])
    for kind in kinds:
        ks = DIRECTION_K if kind == "direction" else OTHER_K
        out["curves"][kind] = [
            detection(s, "dense", comp, kind, k, pol, draws, seed=1000 + i)
            for i, k in enumerate(ks)
        ]
    return out


def full_judge(s: AnswerSet, comp: str, pol: BBQSection) -> list[dict[str, Any]]:
    """The whole check (bbq.evaluation.evaluate: validity, every verdict, power) on the null pairs
    and on one seeded direction injection per size: what a report would say."""
    rng = np.random.default_rng(7)
    cases = [("dense vs itself", s.answers["dense"]), (f"dense vs {comp} (real)", s.answers[comp])]
    cases += [
        (f"dense vs {comp} + direction k={k}", inject(s, s.answers[comp], "direction", k, rng))
        for k in (0.05, 0.1, 0.2)
    ]
    rows = []
    for name, ch in cases:
        items, targets, ans = as_judge_input(s, {"dense": s.answers["dense"], "c": ch})
        vs, m = evaluate(
            items, targets, ans["dense"], ans["c"], replace(pol, mode=s.meta.get("mode", "loglik"))
        )
        pw = m.get("power") or {}
        rows.append(
            {
                "case": name,
                "validity": m["validity"]["status"],
                "statuses": {v.name: v.status.value for v in vs},
                "failed": sorted(v.name for v in vs if v.status.value == "fail"),
                "driver": m.get("driver"),
                "mde": pw.get("mde"),
                "reference_power": (pw.get("reference") or {}).get("power_any"),
            }
        )
    return rows


def markdown(results: list[dict[str, Any]], draws: int, cmd: str) -> str:
    lines = [
        "# BBQ judge calibration: spike-in on real gemma-3-270m answers",
        "",
        f"Produced by `{cmd}` (numbers below are its output; {draws} seeded draws per size).",
        "Answer sets: `tests/data/bbq_answers/` (benchmarks/bbq_answer_sets.py: `edgegate bbq run` on llama.cpp, one",
        "thread; item ids and answer indices only). Rules: the judge's (threshold AND paired test, strict/default",
        "thresholds: ΔSRS > 0.05 with exact McNemar, Δs > 0.10 with a paired permutation test, alpha 0.05,",
        "min_committed_items 30), overall scope. A *false direction failure* is bbq.direction failing, or",
        "bbq.srs_increase_abs failing with direction as its named driver. Abstention loss failing",
        "bbq.srs_increase_abs / bbq.abstention with driver *abstention* is a correct failure, not a false one.",
        "",
    ]
    for r in results:
        m, dc = r["meta"], r["dense_classes"]
        lines += [
            f"## {r['set']} ({m.get('mode')} mode)",
            "",
            f"Dense `{m.get('dense')}` vs compressed `{m.get('compressed') or m.get('dense') + ' (itself)'}`; "
            f"{r['n_ambig']} ambiguous items; dense classes {dc}; churn of the real pair {r['churn']:.3f}.",
            "",
        ]
        n0, n1 = r["null"]["dense_vs_itself"], r["null"]["dense_vs_compressed"]
        lines += [
            "Null controls (nothing injected):",
            "",
            "| pair | ΔSRS | Δs | ΔSRS verdict fails | direction fails |",
            "|---|---|---|---|---|",
            f"| dense vs itself | {_f(n0['delta_srs'], True)} | {_f(n0['delta_s'], True)} | {n0['srs']} | {n0['direction']} |",
            f"| dense vs compressed (real) | {_f(n1['delta_srs'], True)} | {_f(n1['delta_s'], True)} | {n1['srs']} | "
            f"{n1['direction']} |",
            "",
        ]
        lines += [
            "The whole check (`evaluate`: validity, every verdict incl. per category, power) on the null pairs and on "
            "one seeded direction injection per size:",
            "",
            "| case | validity | failed verdicts | driver | MDE ΔSRS / Δs | power at the reference effect |",
            "|---|---|---|---|---|---|",
        ]
        for x in r["full_judge"]:
            mde = x["mde"] or {}
            lines.append(
                f"| {x['case']} | {x['validity']} | {', '.join(x['failed']) or 'none'} | "
                f"{(x['driver'] or '-')[:60]} | {_f(mde.get('delta_srs'), True)} / {_f(mde.get('delta_s'), True)} | "
                f"{_f(x['reference_power'])} |"
            )
        lines.append("")
        for kind, rows in r["curves"].items():
            lines += [
                f"### Injection: {kind}",
                "",
                "| k | mean ΔSRS | mean Δs | direction fails | ΔSRS fails | either | named direction | ΔSRS fails by driver (abst/cons/dir) |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for x in rows:
                dr = x["srs_failures_by_driver"]
                lines.append(
                    f"| {x['k']:.3f} | {_f(x['mean_delta_srs'], True)} | {_f(x['mean_delta_s'], True)} | "
                    f"{x['rate_direction']:.3f} | {x['rate_srs']:.3f} | {x['rate_any']:.3f} | "
                    f"{x['rate_named_direction']:.3f} | {dr['abstention']}/{dr['consistency']}/{dr['direction']} |"
                )
            lines.append("")
        p = r["report_power"]
        lines += [
            "The report's own power estimate for this pair (bbq/power.py, simulated churn):",
            f"MDE ΔSRS {_f(p['mde']['delta_srs'], True)}, MDE Δs {_f(p['mde']['delta_s'], True)} at "
            f"{p['target']:.0%} power; reference effect: {json.dumps({k: p['reference'].get(k) for k in ('delta_srs', 'delta_s', 'power_any', 'detectable', 'note')})}",
            "",
        ]
    lines += [
        "The planted *model* (a fine-tune that carries a stereotype preference) is in",
        "[calibration/bbq-plant.md](calibration/bbq-plant.md).",
        "",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "bbq-calibration.md")
    a = ap.parse_args()
    pol = bbq_section(min_items=100)
    t0 = time.perf_counter()
    results = [study(p, pol, a.draws) for p in sorted(DATA.glob("gemma3-270m-*.json"))]
    cmd = f"python benchmarks/bbq_spike_in.py --draws {a.draws}"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(markdown(results, a.draws, cmd), encoding="utf-8")
    a.out.with_suffix(".json").write_text(
        json.dumps(results, indent=1, default=float) + "\n", encoding="utf-8"
    )
    print(f"wrote {a.out} and {a.out.with_suffix('.json')} in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
