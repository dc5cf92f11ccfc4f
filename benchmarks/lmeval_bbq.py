"""BBQ items/s: edgegate's transformers runtime against lm-evaluation-harness's ``hf`` model.

Same checkpoint, same items, same (context, continuation) pairs, same run, one CPU thread
each (by default). Both score BBQ the lm-eval way: each answer's summed log-likelihood as a
continuation of the context, answer = argmax (edgegate ``--mode loglik``, lm-eval ``acc``).

Items: a seeded sample of ``--items`` ambiguous and ``--disambig-items`` disambiguated rows
of the BBQ jsonl files (picked by category/example_id). edgegate reads those rows, unchanged,
from per-category files in a temp folder; lm-eval reads the same rows' fields from one temp
jsonl through the task benchmarks/lmeval/bbq_local.yaml, whose prompt is edgegate's loglik
prompt. Identity is checked, not assumed: every pair lm-eval logs (``log_samples``) must equal
edgegate's ``loglik_context`` / ``loglik_continuation`` text for the same item, else exit 1.

Timing (wall clock, model load excluded on both sides and reported apart):
  edgegate  ``Scorer.score`` over all items: tokenizing, forward passes, argmax, and the
            writes to a fresh, empty result cache (so nothing is served from a cache).
  lm-eval   its ``loglikelihood`` calls (tokenizing + forward passes), measured inside
            ``simple_evaluate`` in lm-eval's own venv (a subprocess); the whole evaluation
            (dataset, requests, metrics) is reported too.

    python3 -m venv /work/venvs/lmeval
    /work/venvs/lmeval/bin/pip install torch==2.13.0     # first: the CPU wheel
    /work/venvs/lmeval/bin/pip install -r benchmarks/lmeval-requirements.txt
    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 5 python benchmarks/lmeval_bbq.py \\
        [--model DIR] [--data DIR] [--items 60 --disambig-items 60] [--threads 1] [--batch-size 16] \\
        [--dtype bfloat16|float32]

Prints a JSON summary on stdout and one line with the ratio on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHILD = REPO / "benchmarks" / "lmeval" / "run_lmeval.py"
GOAL = 3.0


def pick_rows(data: Path, n_ambig: int, n_disambig: int, seed: int) -> list[tuple[dict, str]]:
    """A seeded sample of raw rows (each with its original line), in (category, id) order."""
    by_cond: dict[str, list[tuple[dict, str]]] = defaultdict(list)
    for f in sorted(data.glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                by_cond[row["context_condition"]].append((row, line))
    rng = random.Random(seed)
    picked = []
    for cond, n in (("ambig", n_ambig), ("disambig", n_disambig)):
        pool = by_cond[cond]
        if n > len(pool):
            raise SystemExit(f"asked for {n} {cond} items, the data has {len(pool)}")
        picked += rng.sample(pool, n)
    picked.sort(key=lambda rl: (rl[0]["category"], int(rl[0]["example_id"])))
    return picked


def write_inputs(rows: list[tuple[dict, str]], work: Path) -> tuple[Path, Path]:
    """edgegate's folder (the original lines, one file per category) and lm-eval's jsonl."""
    eg = work / "edgegate_data"
    eg.mkdir()
    per_cat: dict[str, list[str]] = defaultdict(list)
    for row, line in rows:
        per_cat[row["category"]].append(line)
    for cat, lines in per_cat.items():
        (eg / f"{cat}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    lm = work / "lmeval_items.jsonl"
    keep = ("context", "question", "ans0", "ans1", "ans2", "label")
    with lm.open("w", encoding="utf-8") as fh:
        for row, _ in rows:
            doc = {
                "uid": f"{row['category']}/{int(row['example_id'])}",
                **{k: row[k] for k in keep},
            }
            fh.write(json.dumps(doc) + "\n")
    return eg, lm


def run_lmeval(args: argparse.Namespace, items: Path, work: Path) -> dict:
    out = work / "lmeval_out.json"
    cmd = [
        str(args.lmeval_python),
        str(CHILD),
        "--model",
        str(args.model),
        "--items",
        str(items),
        "--out",
        str(out),
        "--threads",
        str(args.threads),
        "--batch-size",
        str(args.batch_size),
        "--dtype",
        args.dtype,
    ]
    if args.lmeval_softmax_dtype:
        cmd += ["--softmax-dtype", args.lmeval_softmax_dtype]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(work / "hf_datasets"),
        "PYTHONPATH": "",
    }
    log = work / "lmeval.log"
    with log.open("w", encoding="utf-8") as fh:
        rc = subprocess.run(
            cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False
        ).returncode
    if rc != 0 or not out.is_file():
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise SystemExit(f"lm-eval run failed (exit {rc}):\n{tail}")
    return json.loads(out.read_text(encoding="utf-8"))


def run_edgegate(args: argparse.Namespace, data: Path, work: Path) -> tuple[dict, list]:
    import edgegate
    from edgegate.backends import open_backend
    from edgegate.bbq.cache import ResultCache
    from edgegate.bbq.dataset import load_dir
    from edgegate.bbq.scoring import ScoreConfig, Scorer

    items = load_dir(data, condition="both")
    t0 = time.perf_counter()
    backend = open_backend("transformers", args.model, threads=args.threads)
    load_s = time.perf_counter() - t0
    backend.batch_size = args.batch_size  # type: ignore[attr-defined]  # rows per forward pass
    cache = ResultCache.in_dir(
        work / "edgegate_cache"
    )  # fresh and empty: nothing is served from it
    model_key = cache.model_hash(
        args.model
    )  # hashing the weights is not scoring: done before the clock
    scorer = Scorer(backend, ScoreConfig(mode="loglik"), cache=cache, model_key=model_key)
    t0 = time.perf_counter()
    answers = scorer.score(items)
    secs = time.perf_counter() - t0
    info = backend.info()
    backend.close()
    cache.close()
    if scorer.n_scored != len(items):
        raise SystemExit(f"edgegate scored {scorer.n_scored} of {len(items)} items (a cache hit?)")
    rec = {
        "load_s": load_s,
        "seconds": secs,
        "versions": {"edgegate": edgegate.__version__, **info.get("versions", {})},  # type: ignore[dict-item]
        "dtype": info.get("dtype"),
        "device": info.get("device"),
        "acc": sum(a.choice == it.label for a, it in zip(answers, items, strict=True)) / len(items),
    }
    return rec, list(zip(items, answers, strict=True))


def compare(scored: list, samples: list[dict]) -> dict:
    """Identity of the scored pairs (must hold) and agreement of the answers."""
    from edgegate.bbq import prompts

    by_uid = {s["uid"]: s for s in samples}
    if sorted(by_uid) != sorted(it.uid for it, _ in scored):
        raise SystemExit("lm-eval and edgegate did not score the same item set")
    same = 0
    diffs: list[float] = []
    disagree = []
    for it, ans in scored:
        s = by_uid[it.uid]
        ours = [[prompts.loglik_context(it), prompts.loglik_continuation(it, i)] for i in range(3)]
        if s["pairs"] != ours:
            raise SystemExit(f"{it.uid}: lm-eval scored {s['pairs']!r}, edgegate {ours!r}")
        lm_choice = max(range(3), key=lambda i: s["lp"][i])
        ours_lp = json.loads(ans.detail)["lp"]
        diffs += [abs(a - b) for a, b in zip(ours_lp, s["lp"], strict=True)]
        if ans.choice == lm_choice:
            same += 1
        else:
            disagree.append({"uid": it.uid, "edgegate_lp": ours_lp, "lmeval_lp": s["lp"]})
    return {
        "agreement": same / len(scored),
        "disagreements": disagree,
        "logprob_abs_diff_max": max(diffs),
        "logprob_abs_diff_mean": sum(diffs) / len(diffs),
    }


# how each side was timed and what it computes, for the record
METHOD = {
    "timed": "scoring only, model load excluded on both sides (reported as load_s)",
    "edgegate": "Scorer.score, loglik mode, 16 items (48 requests) per backend call; the backend "
    "sorts rows so neighbours share prefixes, batches --batch-size rows (8192-token "
    "budget), splits each batch into groups sharing a prefix (a context and its "
    "answers), computes each group's prefix once and copies its KV cache to the "
    "group's rows, left-pads with an attention mask and position ids, keeps logits "
    "only for the continuation positions and log-softmaxes those in float64; "
    "results committed to a fresh sqlite cache per batch",
    "lm_eval": "HFLM.loglikelihood: requests sorted longest first, --batch-size rows per "
    "forward pass, right-padded without an attention mask, every row recomputes its "
    "whole context (once per answer), logits for every position over the full "
    "vocabulary, log_softmax in the model dtype unless softmax_dtype; its "
    "one-token-continuation logits cache only helps single-token answers",
}


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model",
        type=Path,
        default=Path(os.environ.get("EDGEGATE_MODELS", "/work/models")) / "gemma3-270m-hf",
    )
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "bbq" / "data")
    ap.add_argument("--items", type=int, default=60, help="ambiguous items")
    ap.add_argument("--disambig-items", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16, help="rows per forward pass, both sides")
    ap.add_argument(
        "--dtype",
        default="bfloat16",
        choices=("bfloat16", "float32"),
        help="model dtype on both sides (the checkpoint's is bfloat16; float32 separates "
        "bf16 rounding from method differences in the agreement)",
    )
    ap.add_argument("--lmeval-python", type=Path, default=Path("/work/venvs/lmeval/bin/python"))
    ap.add_argument(
        "--lmeval-softmax-dtype",
        default=None,
        help="lm-eval's softmax_dtype (default: lm-eval's own, the model dtype)",
    )
    ap.add_argument(
        "--keep", type=Path, default=None, help="keep the temp files (inputs, lm-eval log) here"
    )
    return ap.parse_args()


def _summary(args: argparse.Namespace, n: int, eg: dict, lm: dict, agree: dict) -> dict[str, Any]:
    """The result document: both sides' rates, their ratio against the goal, the agreement."""
    eg_rate = n / eg["seconds"]
    lm_rate = n / lm["loglik_s"]
    summary = {
        "model": str(args.model),
        "items": {
            "n": n,
            "ambig": args.items,
            "disambig": args.disambig_items,
            "seed": args.seed,
            "requests": 3 * n,
            "selection": "random.Random(seed).sample per condition over all rows of "
            "--data/*.jsonl, by category/example_id; identical (context, continuation) text checked",
        },
        "threads": args.threads,
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "edgegate": {
            "seconds": round(eg["seconds"], 3),
            "items_per_s": round(eg_rate, 3),
            "load_s": round(eg["load_s"], 2),
            "acc": round(eg["acc"], 4),
            "versions": eg["versions"],
            "dtype": eg["dtype"],
            "device": eg["device"],
        },
        "lm_eval": {
            "seconds": round(lm["loglik_s"], 3),
            "items_per_s": round(lm_rate, 3),
            "load_s": round(lm["load_s"], 2),
            "evaluate_seconds": round(lm["evaluate_s"], 3),
            "evaluate_items_per_s": round(n / lm["evaluate_s"], 3),
            "requests": lm["requests"],
            "acc": lm["acc"],
            "versions": lm["versions"],
            "batch_size": lm["batch_size"],
            "softmax_dtype": lm["softmax_dtype"],
            "threads": lm["threads"],
            "model": f"hf (HFLM), dtype={lm['dtype']}, device=cpu, trust_remote_code=False",
        },
        "ratio": round(eg_rate / lm_rate, 2),
        "ratio_vs_whole_evaluate": round(eg_rate * lm["evaluate_s"] / n, 2),
        "goal": f">= {GOAL:g}x",
        "goal_met": eg_rate / lm_rate >= GOAL,
        "agreement": round(agree["agreement"], 4),
        "disagreements": agree["disagreements"],
        "logprob_abs_diff": {
            "max": round(agree["logprob_abs_diff_max"], 4),
            "mean": round(agree["logprob_abs_diff_mean"], 4),
        },
        "parent_versions": {
            "torch": metadata.version("torch"),
            "transformers": metadata.version("transformers"),
        },
        "method": METHOD,
    }
    return summary


def main() -> None:
    args = _parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch is imported here
    os.environ["EDGEGATE_TORCH_DTYPE"] = args.dtype
    args.model = args.model.resolve()

    with tempfile.TemporaryDirectory(prefix="lmeval_bbq_") as tmp:
        work = Path(tmp)
        if args.keep:
            if args.keep.exists() and any(args.keep.iterdir()):
                raise SystemExit(f"--keep {args.keep}: give a new or empty folder")
            args.keep.mkdir(parents=True, exist_ok=True)
            work = args.keep.resolve()
        rows = pick_rows(args.data, args.items, args.disambig_items, args.seed)
        eg_data, lm_items = write_inputs(rows, work)
        n = len(rows)
        # lm-eval first, while this process has not loaded torch; then edgegate
        lm = run_lmeval(args, lm_items, work)
        eg, scored = run_edgegate(args, eg_data, work)
        agree = compare(scored, lm["samples"])

    summary = _summary(args, n, eg, lm, agree)
    eg_rate = n / eg["seconds"]
    lm_rate = n / lm["loglik_s"]
    print(json.dumps(summary, indent=2))
    print(
        f"edgegate {eg_rate:.2f} items/s vs lm-eval hf {lm_rate:.2f} items/s: {eg_rate / lm_rate:.2f}x "
        f"(goal >= {GOAL:g}x), agreement {agree['agreement']:.1%} on {n} items",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
