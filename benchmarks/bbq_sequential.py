"""Does stopping BBQ early keep the fixed-n design's error rates? Simulation on real answers.

    python benchmarks/bbq_sequential.py [--draws 2000] [--out docs/bbq-sequential.md]

The stored gemma-3-270m loglik answer set (tests/data/bbq_answers, real llama.cpp answers of
the dense model and a 20%-magnitude-pruned copy) is the population; every draw takes strict's
900 ambiguous + 250 disambiguated items with replacement, injects a known change into the
compressed answers and judges the draw with both designs (src/edgegate/bbq/sequential_sim.py):
fixed n (bbq.judge's rule on all items) and group-sequential (strict's three looks). Null
controls: the dense model against itself and against the real pruned model, nothing injected.

Tolerance stated before the run: at every true effect at or below a threshold the sequential
false-failure rate may exceed fixed-n's by at most 0.02 (the interim alpha spent is 0.016;
Monte Carlo SE of a rate near 0 is under 0.005 at 2,000 draws); above the thresholds its power
may not be lower (by construction it never is, on the same draws).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgegate.bbq.sequential_sim import simulate
from edgegate.bbq.spikein import AnswerSet
from edgegate.checks.sections import bbq_section

REPO = Path(__file__).resolve().parents[1]
SET = REPO / "tests" / "data" / "bbq_answers" / "gemma3-270m-loglik.json"
# (injection, k, compressed role): k moves the effect across strict's thresholds (0.05 each)
GRID = (
    [("none", 0.0, "dense"), ("none", 0.0, "compressed")]
    + [("direction", k, "compressed") for k in (0.03, 0.06, 0.08, 0.1, 0.15, 0.3)]
    + [("accuracy", k, "compressed") for k in (0.05, 0.1, 0.15, 0.2, 0.3, 0.6)]
)
TOLERANCE = 0.02


def run(draws: int, looks: int) -> dict[str, Any]:
    s = AnswerSet.load(SET)
    pol = bbq_section(min_items=300, looks=looks)
    rows = []
    for i, (kind, k, comp) in enumerate(GRID):
        t0 = time.perf_counter()
        r = simulate(
            s,
            "direction" if kind == "none" else kind,
            k,
            pol,
            n_ambig=900,
            n_disambig=250,
            looks=looks,
            draws=draws,
            seed=100 + i,
            comp=comp,
        )
        effect_name = "ΔSRS" if kind in ("none", "direction") else "accuracy drop"
        rows.append(
            {
                **asdict(r),
                "injection": kind,
                "compressed": comp,
                "effect_name": effect_name,
                "excess": r.fail_sequential - r.fail_fixed,
                "seconds": time.perf_counter() - t0,
            }
        )
        print(
            f"{kind:9s} k={k:<5} {comp:10s} effect {r.mean_effect:+.4f}: fixed {r.fail_fixed:.3f} "
            f"sequential {r.fail_sequential:.3f} stopped {r.stopped_early:.3f} items {r.mean_items_share:.3f}",
            flush=True,
        )
    null_rows = [x for x in rows if x["mean_effect"] <= 0.05]
    return {
        "set": SET.name,
        "meta": dict(s.meta),
        "draws": draws,
        "looks": looks,
        "n_ambig": 900,
        "n_disambig": 250,
        "policy": {
            k: getattr(pol, k)
            for k in (
                "alpha",
                "max_srs_increase_abs",
                "max_unknown_rate_drop",
                "max_accuracy_drop",
                "min_items",
            )
        },
        "tolerance": TOLERANCE,
        "rows": rows,
        "max_excess_at_or_below_threshold": max(x["excess"] for x in null_rows),
        "within_tolerance": all(x["excess"] <= TOLERANCE for x in null_rows),
        "power_never_lower": all(x["fail_sequential"] >= x["fail_fixed"] for x in rows),
    }


def markdown(res: dict[str, Any], command: str) -> str:
    out = [
        "# Group-sequential BBQ: error rates against fixed n (simulation on real answers)",
        "",
        f"Made by `{command}` (benchmarks/bbq_sequential.py; the design: src/edgegate/bbq/sequential.py).",
        f"Population: `{res['set']}` (gemma-3-270m f16 vs a 20%-magnitude-pruned copy, llama.cpp, loglik). "
        f"Each of {res['draws']} draws per row: {res['n_ambig']} ambiguous + {res['n_disambig']} disambiguated items "
        f"with replacement, {res['looks']} looks, strict's thresholds (0.05) and alpha {res['policy']['alpha']}.",
        "",
        "| injection | k | compressed answers | mean effect | P(fail) fixed n | P(fail) sequential | excess | stopped early | items scored |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        out.append(
            f"| {r['injection']} | {r['k']} | {r['compressed']} | {r['effect_name']} {r['mean_effect']:+.4f} | "
            f"{r['fail_fixed']:.3f} | {r['fail_sequential']:.3f} | {r['excess']:+.3f} | {r['stopped_early']:.3f} | "
            f"{r['mean_items_share']:.1%} |"
        )
    out += [
        "",
        f"Rows whose mean effect is at or below the threshold (0.05): the largest excess false-failure rate is "
        f"**{res['max_excess_at_or_below_threshold']:+.3f}** (tolerance +{res['tolerance']}: "
        f"{'met' if res['within_tolerance'] else 'NOT met'}). Power is never lower than fixed n's on the same draws: "
        f"{'yes' if res['power_never_lower'] else 'NO'}.",
        "",
        "Reading it: 'P(fail)' counts a draw that fails any of the three stopping verdicts (ΔSRS, abstention, "
        "disambiguated accuracy); the other BBQ verdicts are judged at the full n only and are not simulated. "
        "'items scored' is the sequential design's mean share of the planned items (the saving). The fixed-n rule "
        "itself fails pairs near the threshold often (effect above 0.05 in the sample and McNemar significant): "
        "that is the fixed design's property, kept unchanged at the last look.",
        "",
    ]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--looks", type=int, default=3)
    ap.add_argument(
        "--out", type=Path, default=None, help="Markdown table; the JSON goes beside it"
    )
    a = ap.parse_args()
    res = run(a.draws, a.looks)
    if a.out:
        cmd = (
            f"python benchmarks/bbq_sequential.py --draws {a.draws} --looks {a.looks} --out {a.out}"
        )
        a.out.write_text(markdown(res, cmd), encoding="utf-8")
        a.out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(
        f"max excess at or below the threshold {res['max_excess_at_or_below_threshold']:+.3f} "
        f"(tolerance {TOLERANCE}); power never lower: {res['power_never_lower']}"
    )


if __name__ == "__main__":
    main()
