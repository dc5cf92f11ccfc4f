"""A longer fuzzing run of every parser target (fuzz/fuzz_parsers.py); prints the count of
inputs per target and engine, and exits 1 if any input broke the contract (exit 2 with the
file named and a bounded message, nothing else escaping).

    python benchmarks/fuzz_long.py                      # 30 s per target, every engine available
    python benchmarks/fuzz_long.py --seconds 300 --engine atheris --target policy

Engines: ``atheris`` (libFuzzer with coverage feedback, in a subprocess per target; needs
``pip install atheris``) and ``mutate`` (the structure-aware mutator of fuzz_parsers.py in
this process: deep nesting, huge strings, NaN, YAML tags, truncation; always available).
Findings of the mutate engine are written to --out (default fuzz-findings/) for replay.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "fuzz"))
import fuzz_parsers  # noqa: E402


def run_mutate(target: str, seconds: float, seed: int, out: Path) -> tuple[int, int, int, int]:
    """(inputs, accepted, refused, contract failures) from the in-process mutator."""
    rng = random.Random(seed)
    seeds = fuzz_parsers.seeds(target)
    work = Path(tempfile.mkdtemp(prefix=f"fuzzlong-{target}-"))
    n = ok = refused = bad = 0
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        # flips, tokens, deletions and truncations mostly; deep nesting and huge strings (slow to
        # build and parse) in about 1 input in 20, so the count measures parsing, not memcpy
        kinds = rng.choices(
            range(fuzz_parsers.N_OPS), weights=[30, 40, 15, 1, 1, 8], k=rng.randrange(1, 6)
        )
        ops = [(k, rng.randrange(1 << 30), rng.randrange(1 << 30)) for k in kinds]
        data = fuzz_parsers.mutate(rng.choice(seeds), ops)
        n += 1
        try:
            if fuzz_parsers.check_one(target, data, work) == "ok":
                ok += 1
            else:
                refused += 1
        except Exception as exc:  # the contract broke: keep the input for replay
            bad += 1
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{target}-{n}.bin").write_bytes(data)
            print(
                f"  {target}: {type(exc).__name__}: {str(exc)[:200]} -> {out / f'{target}-{n}.bin'}"
            )
    return n, ok, refused, bad


def run_atheris(target: str, seconds: float, seed: int, out: Path) -> tuple[int, int]:
    """(inputs, crashes) from libFuzzer; crash inputs land in ``out``."""
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzzlong-corpus-{target}-"))
    for i, s in enumerate(fuzz_parsers.seeds(target)):
        (corpus / f"seed{i}").write_bytes(s)
    out.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(
        [sys.executable, str(REPO / "fuzz" / "fuzz_parsers.py"), target, f"-max_total_time={int(seconds)}",
         "-max_len=8192", "-timeout=20", f"-seed={seed}", f"-artifact_prefix={out}/{target}-", str(corpus)],
        capture_output=True, text=True, timeout=seconds + 300,
    )  # fmt: skip
    done = re.findall(r"Done (\d+) runs", p.stderr)
    stats = re.findall(r"#(\d+)\s", p.stderr)
    runs = int(done[-1]) if done else int(stats[-1]) if stats else 0
    crashed = p.returncode != 0
    if crashed:
        print(f"  {target}: libFuzzer exit {p.returncode}:\n{p.stderr[-2000:]}")
    return runs, int(crashed)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=30.0, help="per target and engine")
    ap.add_argument("--engine", choices=["all", "atheris", "mutate"], default="all")
    ap.add_argument("--target", action="append", choices=sorted(fuzz_parsers.TARGETS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("fuzz-findings"))
    args = ap.parse_args()
    targets = args.target or sorted(fuzz_parsers.TARGETS)
    has_atheris = importlib.util.find_spec("atheris") is not None
    engines = ["mutate", "atheris"] if args.engine == "all" else [args.engine]
    if "atheris" in engines and not has_atheris:
        print("atheris is not installed: skipping that engine (pip install atheris)")
        engines.remove("atheris")
    failures = 0
    rows = []
    for target in targets:
        for engine in engines:
            t0 = time.perf_counter()
            if engine == "mutate":
                n, ok, refused, bad = run_mutate(target, args.seconds, args.seed, args.out)
                detail = f"{ok} accepted, {refused} refused"
            else:
                n, bad = run_atheris(target, args.seconds, args.seed, args.out)
                detail = "coverage-guided"
            took = time.perf_counter() - t0
            failures += bad
            rows.append((target, engine, n, n / took if took else 0.0, bad, detail))
            print(
                f"{target:17s} {engine:8s} {n:8d} inputs  {n / took:8.1f}/s  {bad} contract failure(s)  ({detail})",
                flush=True,
            )
    print(
        f"\ntotal: {sum(r[2] for r in rows)} inputs over {len(targets)} targets, {failures} contract failure(s)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
