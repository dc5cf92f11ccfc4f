"""Calibration of the speed verdict on gemma-3-270m: a known null and known positives.

Null (A/A): the dense f16 GGUF against a byte-identical copy of itself. No mechanism can make
one faster; the verdict must never read "speedup demonstrated", and the 95% CI of the speedup
should exclude 1.0 in about 5% of runs. Positives: the Q8_0 and Q4_K_M quantizations of the
same f16 (fewer bytes per weight), which must pass.

Settings: strict's speed section (policies/strict.yaml) and the study's quick one
(studies/policy-quick.yaml). Each run is one `edgegate` speed check (llama.cpp), and records
three readings: the verdict as shipped, the verdict on timing alone (mechanism withheld: does
the statistic itself stay quiet?), and the machine's load. ``--load`` runs a time-varying CPU
load beside each benchmark (one busy process switching on and off at random 0.2-2 s periods).

    python benchmarks/calibrate_speed.py --plan aa-strict --runs 5 --load      # resumable
    python benchmarks/calibrate_speed.py --plan aa-strict --runs 5
    python benchmarks/calibrate_speed.py --plan pos-strict --runs 2
    python benchmarks/calibrate_speed.py --summary     # -> docs/calibration/speed.md

Results append to ``studies/results/calibration/speed.jsonl`` (one line per run, keyed by
plan, condition and run index: an interrupted calibration resumes where it stopped).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import random
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from edgegate.speed.bench import PROCESS_DESIGN

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "studies" / "results" / "calibration" / "speed.jsonl"
DOC = ROOT / "docs" / "calibration" / "speed.md"
SETTINGS = {
    "strict": ROOT / "policies" / "strict.yaml",
    "quick": ROOT / "studies" / "policy-quick.yaml",
}
PLANS = {  # plan -> (settings, compressed file name or None for a byte copy of the dense)
    "aa-strict": ("strict", None),
    "aa-quick": ("quick", None),
    "pos-strict": ("strict", ("gemma3-270m-q8_0.gguf", "gemma3-270m-q4_k_m.gguf")),
}


def _section(which: str) -> dict[str, Any]:
    sec = dict(yaml.safe_load(SETTINGS[which].read_text())["checks"]["speed"])
    sec["runtimes"] = ["llamacpp"]  # the artifact is GGUF: auto would choose llama.cpp too
    return sec


def _busy(stop: Any, seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        end = time.monotonic() + rng.uniform(0.2, 2.0)
        while time.monotonic() < end and not stop.is_set():
            sum(i * i for i in range(10_000))
        stop.wait(rng.uniform(0.2, 2.0))


def _one(dense: Path, compressed: Path, section: dict[str, Any]) -> dict[str, Any]:
    from edgegate.checks import speed
    from edgegate.checks.base import CheckContext, Status
    from edgegate.speed.mechanism import Mechanism

    sec = speed.SECTION.from_policy(section)
    ctx = CheckContext(compressed, dense, sec)
    m = speed.measure(ctx)
    assert m is not None
    shipped = speed.judge([("run", m)], sec)
    withheld = replace(
        m, mechanisms={rt: Mechanism(None, "withheld for calibration") for rt in m.mechanisms}
    )
    timing_only = speed.judge([("run", withheld)], sec)
    bench = m.benches["llamacpp"]
    sp = bench.decode
    v = next(x for x in shipped.verdicts if x.name == "min_speedup")
    t = next(x for x in timing_only.verdicts if x.name == "min_speedup")
    return {
        "point": sp.point,
        "ci_low": sp.ci_low,
        "ci_high": sp.ci_high,
        "n": sp.n,
        "log_sd": sp.log_sd,
        "excludes_1": bool(sp.ci_low > 1.0 or sp.ci_high < 1.0),
        "verdict": v.status.value,
        "message": v.message,
        "timing_only_verdict": t.status.value,
        "demonstrated": v.status is Status.PASS and (sp.point > 1.0),
        "timing_only_demonstrated": t.status is Status.PASS and (sp.point > 1.0),
        "mechanism": m.mechanisms["llamacpp"].to_dict(),
        "load": bench.load.to_dict() if bench.load else None,
        "wall_s": bench.wall_s,
    }


OLD_DESIGN = "two long-lived processes"  # rows taken before the design was recorded


def _design(row: dict[str, Any]) -> str:
    return str(row.get("design", OLD_DESIGN))


def _done(rows: list[dict[str, Any]]) -> set[tuple[str, str, str, str, int]]:
    return {(_design(r), r["plan"], r["condition"], r["compressed"], r["run"]) for r in rows}


def _rows() -> list[dict[str, Any]]:
    if not OUT.is_file():
        return []
    return [json.loads(line) for line in OUT.read_text().splitlines() if line.strip()]


def run(plan: str, runs: int, load: bool, models: Path, condition: str | None = None) -> None:
    which, targets = PLANS[plan]
    section = _section(which)
    dense = models / "gguf" / "gemma3-270m-f16.gguf"
    if not dense.is_file():
        raise SystemExit(
            f"missing {dense}: build it with benchmarks/_gemma.py and benchmarks/study_gguf.py"
        )
    if targets is None:
        copy = models / "gguf" / "gemma3-270m-f16-copy.gguf"
        if not copy.is_file() or copy.stat().st_size != dense.stat().st_size:
            shutil.copyfile(dense, copy)
        compressed = [copy]
    else:
        compressed = [models / "gguf" / t for t in targets]
    condition = condition or ("load" if load else "as-found")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    done = _done(_rows())
    for c in compressed:
        for i in range(runs):
            if (PROCESS_DESIGN, plan, condition, c.name, i) in done:
                continue
            stop = mp.Event()
            proc = mp.Process(target=_busy, args=(stop, i), daemon=True) if load else None
            if proc:
                proc.start()
            try:
                row = _one(dense, c, section)
            finally:
                if proc:
                    stop.set()
                    proc.join(5)
            row.update(
                design=PROCESS_DESIGN,
                plan=plan,
                condition=condition,
                compressed=c.name,
                run=i,
                settings=which,
                time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            with OUT.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"{plan} {condition} {c.name} #{i}: {row['point']:.3f}x [{row['ci_low']:.3f}, {row['ci_high']:.3f}] "
                f"{row['verdict']} (timing only: {row['timing_only_verdict']}); {row['load']['description']}",
                file=sys.stderr,
            )


def _contended(row: dict[str, Any]) -> bool:
    """Today's rule (edgegate.speed.load) on the stored readings: CPU pressure >= 10%."""
    from edgegate.speed.load import PRESSURE_CONTENDED

    p = (row.get("load") or {}).get("cpu_pressure")
    return p is not None and p >= PRESSURE_CONTENDED


def summary() -> str:
    rows = _rows()
    lines = [
        "| processes | plan | compressed | condition | runs | contended (CPU pressure >= 10%) | speedup demonstrated "
        "| timing-only demonstrated | CI excludes 1.0 | point range | median log-ratio SD |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    keys = sorted(
        {(_design(r), r["plan"], r["compressed"], r["condition"]) for r in rows},
        key=lambda k: (k[0] != PROCESS_DESIGN, k),
    )
    for design, plan, comp, cond in keys:
        sel = [
            r
            for r in rows
            if (_design(r), r["plan"], r["compressed"], r["condition"])
            == (design, plan, comp, cond)
        ]
        pts = [r["point"] for r in sel]
        sds = sorted(r["log_sd"] for r in sel if r["log_sd"] == r["log_sd"])
        label = {
            "load": "busy loop beside it",
            "as-found": "as found",
            "contend": "`contend` on the other core",
            "compile": "a llama.cpp compile beside it",
            "tests": "the test suite (`.ci/run`) beside it",
        }.get(cond, cond)
        lines.append(
            f"| {design} | {plan} | {comp} | {label} | {len(sel)} | {sum(_contended(r) for r in sel)} | "
            f"{sum(r['demonstrated'] for r in sel)} | {sum(r['timing_only_demonstrated'] for r in sel)} | "
            f"{sum(r['excludes_1'] for r in sel)} | {min(pts):.3f}..{max(pts):.3f} | "
            f"{sds[len(sds) // 2] if sds else math.nan:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", choices=sorted(PLANS))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--load", action="store_true", help="a time-varying CPU load beside each run")
    ap.add_argument("--models", type=Path, default=Path("/work/models"))
    ap.add_argument(
        "--condition",
        help="label of the runs (default: load with --load, else as-found), e.g. "
        "contend when run under ../shared/tools/contend",
    )
    ap.add_argument("--summary", action="store_true", help="print the table of all runs so far")
    args = ap.parse_args()
    if args.plan:
        run(args.plan, args.runs, args.load, args.models, args.condition)
    if args.summary or not args.plan:
        print(summary())


if __name__ == "__main__":
    main()
