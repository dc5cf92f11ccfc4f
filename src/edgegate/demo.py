"""`python -m edgegate.demo` (`make demo`): the gate's main job on a real model, every check
(see ``edgegate.demo_gemma``). ``--offline`` (`make demo-offline`), for machines without
registry access: the gate on the bundled toy fixtures, static checks only.

The offline demo: two runs of the real CLI under policies/strict.yaml:

1. ``claimed50``: a checkpoint whose metadata claims 50% sparsity but that left o_proj and
   down_proj dense (33.3% real). The gate must FAIL, naming the gap and the skipped kinds.
2. ``wanda50``: an honestly Wanda-pruned checkpoint with truthful metadata. Its static checks
   must pass; the run reads PARTIAL (2 of the 4 required checks verified), never PASS.

Both runs use ``--only`` with the static checks this build has (sparsity, size): the runtime
checks (speed, fidelity, perplexity, BBQ) need llama.cpp/MLX/ONNX and minutes of compute, and on a
2-layer toy model their numbers would say nothing. The demo prints that, and each report
lists them as "deselected", so nothing is passed on missing data. Exit 0 when both runs did
what they must, 1 otherwise. Reports go to out/demo/<case>/ ($EDGEGATE_DEMO_OUT overrides).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

STATIC_CHECKS = ("sparsity", "size")


@dataclass(frozen=True)
class Case:
    name: str
    compressed: str
    expect_exit: int
    story: str


CASES = (
    Case(
        "claimed50",
        "claimed50",
        1,
        "metadata claims 50% sparsity; o_proj and down_proj were never pruned (33.3% real)",
    ),
    Case("wanda50", "wanda50", 0, "honest Wanda 50% unstructured pruning, truthful metadata"),
)


def repo_root() -> Path:
    """The checkout holding fixtures/ and policies/: $EDGEGATE_REPO, the working directory,
    or the source tree this module lives in."""
    candidates = [
        os.environ.get("EDGEGATE_REPO"),
        os.getcwd(),
        str(Path(__file__).resolve().parents[2]),
    ]
    for c in candidates:
        if (
            c
            and (Path(c) / "fixtures" / "models" / "dense").is_dir()
            and (Path(c) / "policies").is_dir()
        ):
            return Path(c)
    raise SystemExit(
        "edgegate demo: error: fixtures/models/dense not found; run from a source checkout "
        "(make demo) or set EDGEGATE_REPO to one"
    )


def available_checks(wanted: tuple[str, ...]) -> list[str]:
    from edgegate.runner import resolve_check

    return [c for c in wanted if resolve_check(c) is not None]


def run_case(root: Path, case: Case, checks: list[str], out_dir: Path) -> tuple[bool, str]:
    dest = out_dir / case.name
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "edgegate.cli", "check",
        "fixtures/models/dense", f"fixtures/models/{case.compressed}",
        "--policy", "policies/strict.yaml",
        "--only", ",".join(checks),
        "--allow-partial",  # static checks only, said out loud: PARTIAL is accepted, never PASS
        "--json-out", str(dest / "edgegate.json"),
        "--md-out", str(dest / "edgegate.md"),
        "--html-out", str(dest / "edgegate.html"),
        "--junit-out", str(dest / "edgegate-junit.xml"),
    ]  # fmt: skip
    shown = (
        " ".join(["edgegate", *cmd[3:10]])
        + f" --json-out/--md-out/--html-out/--junit-out {dest}/..."
    )
    print(f"\n=== {case.name}: {case.story}\n$ {shown}", flush=True)
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    sys.stdout.flush()
    # The gate's stderr (its summary table) joins the demo's stdout so the story reads in order.
    proc = subprocess.run(cmd, cwd=root, env=env, check=False, stderr=sys.stdout)
    report_path = dest / "edgegate.json"
    if not report_path.exists():
        return False, f"{case.name}: no report written (exit {proc.returncode})"
    report = json.loads(report_path.read_text("utf-8"))
    ok = proc.returncode == case.expect_exit
    verdict = "as expected" if ok else f"UNEXPECTED (wanted exit {case.expect_exit})"
    line = f"{case.name}: {report['status'].upper()} (exit {proc.returncode}) {verdict}"
    for reason in report["reasons"] if report["status"] != "pass" else []:
        line += f"\n    - {reason}"
    line += f"\n    reports: {dest}/edgegate.{{json,md,html}}, edgegate-junit.xml"
    return ok, line


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m edgegate.demo", description=__doc__.splitlines()[0]
    )
    ap.add_argument(
        "--offline",
        action="store_true",
        help="toy fixtures, static checks only (no registry access needed)",
    )
    args = ap.parse_args(argv)
    root = repo_root()
    out_dir = Path(os.environ.get("EDGEGATE_DEMO_OUT") or root / "out" / "demo")
    if not args.offline:
        from edgegate.demo_gemma import run

        return run(root, out_dir)
    return offline(root, out_dir)


def offline(root: Path, out_dir: Path) -> int:
    missing = [
        c.compressed for c in CASES if not (root / "fixtures" / "models" / c.compressed).is_dir()
    ]
    if missing:
        print(
            f"edgegate demo: error: fixtures missing: {', '.join(missing)} (build them: python fixtures/build.py)",
            file=sys.stderr,
        )
        return 2
    checks = available_checks(STATIC_CHECKS)
    if not checks:
        print(
            "edgegate demo: error: this build has neither the sparsity nor the size check",
            file=sys.stderr,
        )
        return 2
    print(
        "edgegate demo (offline): gating two compressed toy fixtures against policies/strict.yaml\n"
        f"  checks run: {', '.join(checks)} (static, exact)\n"
        "  not run: speed, fidelity, perplexity, bbq (runtime checks; on a 164k-parameter toy their numbers\n"
        "  say nothing; the reports list them as deselected, never as passed)\n"
        "  what this does NOT show: the bias and quality checks on a real model; `make demo` does"
    )
    results = [run_case(root, case, checks, out_dir) for case in CASES]
    print("\n=== summary")
    for _, line in results:
        print(line)
    all_ok = all(ok for ok, _ in results)
    print(
        "\ndemo "
        + (
            "OK: the false claim was caught and the honest model passed its static checks (PARTIAL: the runtime checks were not run)."
            if all_ok
            else "FAILED: see above."
        )
    )
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
