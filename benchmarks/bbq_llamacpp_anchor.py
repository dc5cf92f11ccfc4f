"""BBQ loglik items/s: edgegate's scorer against llama.cpp's own multiple-choice scorer
(``llama-perplexity --multiple-choice``), same model file, same items, same prompt text, same
threads, measured in the same run (issue 21's anchor). ``--processes 2 --threads 2``: edgegate
as `check` runs it on two cores (two processes of one thread) against llama.cpp on two threads.

    bash benchmarks/build_llama_tools.sh          # llama-perplexity from the llama-cpp-python sdist
    python benchmarks/bbq_llamacpp_anchor.py --llama-perplexity build/llama.cpp/bin/llama-perplexity \\
        --model /work/models/gguf/gemma3-270m-f16.gguf --items 100 [--no-repack]

Items: the seeded stratified sample of ambiguous items ``edgegate bbq run`` draws (seed 0).
Prompt: edgegate's loglik context (``context\\nQuestion: q\\nAnswer:``) as llama.cpp's
"question" and each answer text as an "ending": llama.cpp tokenizes ``question + " " + ending``
with BOS, which is edgegate's context + continuation (" answer") exactly. Both score every
answer's tokens after the shared context; they differ in the rule that picks an answer
(llama.cpp: mean log-prob per token; edgegate: the sum) and in batching (llama.cpp packs
several items' sequences into one decode with a shared-prefix batch; edgegate decodes one
item per call, its context once and its answers as KV branches, so an item's scores never
depend on which items share its decode). Printed: wall seconds and items/s of each,
their ratio (goal: edgegate >= 1.0x), and both tools' positions evaluated per item where
known. Each side runs --reps times, alternating; the best round counts. No result cache.
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgegate.backends import open_backend
from edgegate.bbq import prompts
from edgegate.bbq.dataset import BBQItem
from edgegate.bbq.scoring import Pool, ScoreConfig, Scorer, tokens_evaluated
from edgegate.checks.bbq import prepare_items


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<I", len(raw)) + raw


def task_file(items: list[BBQItem]) -> bytes:
    """llama.cpp's multiple-choice binary format (tools/perplexity): n tasks, their byte
    offsets, then per task the question, the single-answer endings with 0/1 labels, and an
    empty multi-answer set."""
    bodies = []
    for it in items:
        question = prompts.loglik_context(it)
        endings = [
            prompts.loglik_continuation(it, i)[1:] for i in range(3)
        ]  # llama.cpp adds the space
        body = _string(question) + struct.pack("<I", 3) + b"".join(_string(e) for e in endings)
        body += struct.pack("<3i", *[int(i == it.label) for i in range(3)]) + struct.pack("<I", 0)
        bodies.append(body)
    head_len = 4 + 4 * len(bodies)
    offsets, pos = [], head_len
    for b in bodies:
        offsets.append(pos)
        pos += len(b)
    return (
        struct.pack("<I", len(bodies))
        + struct.pack(f"<{len(bodies)}I", *offsets)
        + b"".join(bodies)
    )


def run_llama(
    binary: Path, model: Path, tasks: Path, threads: int, n_ctx: int, no_repack: bool
) -> float:
    cmd = [
        str(binary),
        "-m",
        str(model),
        "-bf",
        str(tasks),
        "--multiple-choice",
        "-t",
        str(threads),
        "-c",
        str(n_ctx),
        "-b",
        str(n_ctx),
    ]
    if no_repack:
        cmd.append("--no-repack")
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0 or "Final result" not in p.stdout + p.stderr:
        sys.stderr.write((p.stdout + p.stderr)[-3000:])
        raise SystemExit(f"llama-perplexity exited {p.returncode}")
    return wall


def run_edgegate(
    model: Path, items: list[BBQItem], threads: int, n_ctx: int, processes: int = 1
) -> tuple[float, int | None]:
    """edgegate's scorer on ``threads`` CPU threads in all: one process, or ``processes``
    processes of the model with ``threads // processes`` each (what `check` does by default)."""
    t0 = time.perf_counter()
    per = max(1, threads // processes)

    def open_one(ctx: int = n_ctx) -> Any:
        # several processes: each in its own child process, as `edgegate check` opens them
        return open_backend(
            "llamacpp", model, n_ctx=ctx, threads=per, timeout=3600 if processes > 1 else None
        )

    backend = open_one()
    try:
        before = tokens_evaluated(backend)
        scorer = Scorer(
            backend, ScoreConfig(mode="loglik", permute=False), pool=Pool(processes, open_one)
        )
        scorer.score(items)
        after = tokens_evaluated(backend)
    finally:
        backend.close()
    return time.perf_counter() - t0, (
        after - before + scorer.peer_tokens
    ) if before is not None and after is not None else None


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--llama-perplexity", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "bbq" / "data"
    )
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of each side, in all")
    ap.add_argument(
        "--processes",
        type=int,
        default=1,
        help="edgegate's processes of the model (threads split among them; `check` runs as "
        "many as the CPUs hold at llama-cpp-python's default threads)",
    )
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument(
        "--no-repack",
        action="store_true",
        help="llama-perplexity --no-repack (SIGILL on some AMX CPUs)",
    )
    args = ap.parse_args()

    items, _, _ = prepare_items(args.data, condition="ambig", n=args.items, seed=0)
    best = {"llama.cpp": float("inf"), "edgegate": float("inf")}
    evaluated = None
    with tempfile.TemporaryDirectory() as tmp:
        tasks = Path(tmp) / "bbq-tasks.bin"
        tasks.write_bytes(task_file(items))
        for r in range(args.reps):
            order = ("llama.cpp", "edgegate") if r % 2 == 0 else ("edgegate", "llama.cpp")
            for side in order:
                if side == "llama.cpp":
                    wall = run_llama(
                        args.llama_perplexity,
                        args.model,
                        tasks,
                        args.threads,
                        args.n_ctx,
                        args.no_repack,
                    )
                else:
                    wall, evaluated = run_edgegate(
                        args.model, items, args.threads, args.n_ctx, args.processes
                    )
                best[side] = min(best[side], wall)
                print(f"round {r + 1}: {side} {wall:.1f} s", file=sys.stderr, flush=True)
    n = len(items)
    for side, wall in best.items():
        print(
            f"{side:10s} {wall:7.1f} s  {n / wall:6.2f} items/s (best of {args.reps}, model load included)"
        )
    print(
        f"edgegate / llama.cpp items/s: {best['llama.cpp'] / best['edgegate']:.2f}x "
        f"({args.threads} threads each; edgegate on {args.processes} process(es))"
    )
    if evaluated is not None:
        print(f"edgegate positions evaluated per item: {evaluated / n:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
