"""Where the speed check's A/A bias came from: which model *process* is faster, not which file.

The dense f16 GGUF against a byte-identical copy (A/A), llama.cpp, pp128/tg32, 1 thread pinned,
each model in its own process (as ``edgegate.speed.bench`` runs them). Modes:

- ``long-dense-first``: two long-lived processes, the dense one started first (the old design);
- ``long-compressed-first``: the same, the compressed one started first;
- ``long-restart-dense``: both started, then the dense one closed and started again (last);
- ``fresh``: both started afresh in every repetition, in ABBA order (today's design).

    python benchmarks/speed_process_order.py long-dense-first DENSE COPY
    python benchmarks/speed_process_order.py fresh DENSE COPY --reps 8

Prints the geometric-mean speedup (compressed over dense) and the per-repetition log ratios.
Measured here (docs/calibration/speed.md): 1.080 dense first, 0.920 compressed first, 1.080
with the dense process restarted last; fresh processes 1.011 and, files swapped, 0.994.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.backends import pair as pairmod
from edgegate.speed import bench


def _long_lived(start: tuple[str, ...], restart: str | None) -> Any:
    """open_pair replaced by one that starts the processes in ``start`` order up front."""
    original = pairmod.open_pair

    @contextlib.contextmanager
    def opener(runtime: str, paths: Any, settings: Any) -> Iterator[Any]:
        with original(runtime, paths, settings) as p:
            for role in start:
                p.open(role)
            if restart:
                p.close(restart)
                p.open(restart)
            yield p

    return opener


def long_lived(
    dense: Path, copy: Path, reps: int, start: tuple[str, ...], restart: str | None
) -> dict[str, Any]:
    """The old loop: warm-up, then ABBA repetitions on the same two processes."""
    from edgegate.backends.pair import OpenSettings

    opener = _long_lived(start, restart)
    settings = OpenSettings(n_ctx=161, threads=1, seed=0, cpus=(0,))
    d, c = [], []
    with opener("llamacpp", (dense, copy), settings) as p:
        prompt = bench.random_prompt(128, int(p.dense.n_vocab), 0)
        for name in ("dense", "compressed"):
            p.open(name).time_run(prompt, 32)
        for _, name in bench.abba_order(reps):
            t = p.open(name).time_run(prompt, 32)
            (d if name == "dense" else c).append(t.gen_tokens / t.decode_s)
    return _result(d, c)


def fresh(dense: Path, copy: Path, reps: int) -> dict[str, Any]:
    cfg = bench.BenchConfig(prompt_tokens=128, gen_tokens=32, repetitions=reps, warmup=1, threads=1)
    r = bench.bench_runtime("llamacpp", dense, copy, cfg)
    d = [s.decode_tps for s in sorted(r.samples, key=lambda s: s.repetition) if s.model == "dense"]
    c = [
        s.decode_tps
        for s in sorted(r.samples, key=lambda s: s.repetition)
        if s.model == "compressed"
    ]
    return _result(d, c)


def _result(d: list[float], c: list[float]) -> dict[str, Any]:
    lr = np.log(np.asarray(c) / np.asarray(d))
    return {
        "speedup": float(np.exp(lr.mean())),
        "log_ratios": [round(float(x), 4) for x in lr],
        "dense_tps": [round(x, 2) for x in d],
        "compressed_tps": [round(x, 2) for x in c],
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "mode", choices=("long-dense-first", "long-compressed-first", "long-restart-dense", "fresh")
    )
    ap.add_argument("dense", type=Path)
    ap.add_argument("copy", type=Path)
    ap.add_argument("--reps", type=int, default=6)
    a = ap.parse_args()
    if a.mode == "fresh":
        out = fresh(a.dense, a.copy, a.reps)
    elif a.mode == "long-dense-first":
        out = long_lived(a.dense, a.copy, a.reps, ("dense", "compressed"), None)
    elif a.mode == "long-compressed-first":
        out = long_lived(a.dense, a.copy, a.reps, ("compressed", "dense"), None)
    else:
        out = long_lived(a.dense, a.copy, a.reps, ("dense", "compressed"), "dense")
    print(json.dumps({"mode": a.mode, **out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
