"""Re-judge the committed study's speed verdicts from the timings it stored, with today's method.

The study's reports keep every raw timing sample (dense and compressed, per repetition). The
speed verdict they carry came from a percentile bootstrap of 3 repetitions with no mechanism
check, and passed "speedups" of f16 files holding exactly the dense bytes. This script feeds
the same samples to the current method (``edgegate.speed.bench.summarize``: paired t interval
on per-repetition log ratios; ``edgegate.checks.speed.judge``: min_effect and the mechanism
check) and rewrites only the speed check of each report, with a note saying so. The mechanism
is read from what each report's size check recorded (format and tensor bytes of both models:
the GGUF files themselves are not kept), which is the same test on the same numbers.

    python benchmarks/rejudge_study_speed.py studies/results/gemma3-270m
    edgegate study studies/gemma3-270m.yaml --table-only
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgegate.checks import speed
from edgegate.speed.bench import BenchConfig, Sample, summarize
from edgegate.speed.mechanism import Mechanism

NOTE = (
    "speed re-judged from the stored timing samples with the paired-t method, min_effect and the "
    "mechanism check (benchmarks/rejudge_study_speed.py); the timings themselves are unchanged"
)


def _check(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["check"] == name)


def _mechanism(report: dict[str, Any], runtime: str) -> Mechanism:
    m = _check(report, "size")["measurements"]
    c, d = m["size"], m.get("dense_size")
    if d is None:
        return Mechanism(None, "the report holds no dense size")
    if c["format"] != d["format"]:
        return Mechanism(True, f"formats differ ({d['format']} vs {c['format']})")
    if c["tensor_bytes"] != d["tensor_bytes"]:
        return Mechanism(
            True, f"{d['tensor_bytes'] - c['tensor_bytes']:,} bytes of weights fewer to read"
        )
    return Mechanism(
        False,
        f"no mechanism for a speedup: same format ({c['format']}) and the same "
        f"{c['tensor_bytes']:,} bytes of tensors, and {runtime} runs dense kernels",
    )


def rejudge(report: dict[str, Any], section: dict[str, Any]) -> dict[str, Any]:
    entry = _check(report, "speed")
    benches, mechs = {}, {}
    for rt, m in entry["measurements"].items():
        if not isinstance(m, dict) or "samples" not in m:
            continue
        cfg = BenchConfig(
            **{k: v for k, v in m["config"].items() if k in BenchConfig.__dataclass_fields__}
        )
        samples = [
            Sample(**{k: v for k, v in s.items() if k in Sample.__dataclass_fields__})
            for s in m["samples"]
        ]
        benches[rt] = summarize(
            rt,
            cfg,
            samples,
            {"dense": m["dense"], "compressed": m["compressed"]},
            tuple(m["cpus"]) if m.get("cpus") else None,
            m["wall_s"],
            None,
        )
        mechs[rt] = _mechanism(report, rt)
    meas = speed.SpeedMeasurement(
        benches,
        {},
        {},
        tuple(benches),
        report.get("claims", {}).get("speedup"),
        entry["measurements"].get("context_note"),
        None,
        mechs,
    )
    res = speed.judge([("stored samples", meas)], speed.SECTION.from_policy(section)).to_dict()
    res["duration_s"] = entry["duration_s"]
    gate = (
        "pass"
        if res["status"] == "pass"
        else "skipped"
        if res["status"] == "skipped"
        else "advisory"
    )
    assert not entry["required"], "only advisory speed checks are re-judged (the gate status stays)"
    res.update(
        required=False,
        selected=entry["selected"],
        gate=gate,
        gate_reason="passed" if gate == "pass" else "optional check: reported, does not gate",
    )
    report["checks"] = [res if c["check"] == "speed" else c for c in report["checks"]]
    if NOTE not in report["notes"]:
        report["notes"].append(NOTE)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    args = ap.parse_args()
    for path in sorted((args.results / "variants").glob("*.report.json")):
        report = json.loads(path.read_text())
        section = dict(report["policy"]["resolved"]["checks"]["speed"])
        before = _check(report, "speed")["summary"]
        report = rejudge(report, section)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"{path.stem}: {before}\n  -> {_check(report, 'speed')['summary']}")


if __name__ == "__main__":
    main()
