"""lm-evaluation-harness side of benchmarks/lmeval_bbq.py (runs in lm-eval's own venv).

Loads the checkpoint as lm-eval's ``hf`` model (HFLM, CPU, bfloat16 by default, no remote code), runs
the local BBQ task (bbq_local.yaml, its data file substituted in) with ``simple_evaluate``
and writes one JSON: versions, seconds (model load, the loglikelihood calls alone, the whole
evaluation) and, per item, the (context, continuation) pairs lm-eval scored with their
log-likelihoods. The parent process compares those with edgegate's.

    python benchmarks/lmeval/run_lmeval.py --model DIR --items FILE.jsonl --out OUT.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any

TASK = "edgegate_bbq_local"
HERE = Path(__file__).resolve().parent


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument(
        "--items", required=True, type=Path, help="jsonl: uid, context, question, ans0..2, label"
    )
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", default="16", help="rows per forward pass, or auto")
    ap.add_argument("--dtype", default="bfloat16", help="model dtype (the checkpoint's: bfloat16)")
    ap.add_argument(
        "--softmax-dtype", default=None, help="lm-eval's softmax_dtype (default: the model's)"
    )
    return ap.parse_args()


def _write_task(task_dir: Path, items: Path) -> Path:
    """The local BBQ task's YAML with ``items`` as its data file, in ``task_dir``."""
    task_dir.mkdir(parents=True, exist_ok=True)
    template = (HERE / "bbq_local.yaml").read_text(encoding="utf-8")
    (task_dir / "bbq_local.yaml").write_text(
        template.replace("__DATA_FILE__", json.dumps(str(items.resolve()))), encoding="utf-8"
    )
    return task_dir


def _samples(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Per item, in document order: the (context, continuation) pairs lm-eval scored and their log-likelihoods."""
    samples: list[dict[str, Any]] = []
    for s in sorted(res["samples"][TASK], key=lambda s: s["doc_id"]):
        samples.append(
            {
                "uid": s["doc"]["uid"],
                "pairs": [list(a) for a in s["arguments"]],
                "lp": [float(r[0]) for r in s["filtered_resps"]],
                "acc": float(s["acc"]),
            }
        )
    return samples


def main() -> None:
    args = _parse_args()

    # nothing leaves this machine: the data is a local file, the model a local folder
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    import transformers
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    task_dir = _write_task(args.out.parent / "lmeval_tasks", args.items)

    bs: int | str = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    t0 = time.perf_counter()
    extra = {"softmax_dtype": args.softmax_dtype} if args.softmax_dtype else {}
    lm = HFLM(
        pretrained=str(args.model),
        dtype=args.dtype,
        device="cpu",
        batch_size=bs,
        trust_remote_code=False,
        **extra,
    )
    load_s = time.perf_counter() - t0

    # time the scoring calls alone (tokenizing + forward passes), as edgegate's side is timed
    spent = {"loglik_s": 0.0, "requests": 0}
    scorer = lm.loglikelihood

    def timed(requests, disable_tqdm: bool = False):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        res = scorer(requests, disable_tqdm=disable_tqdm)
        spent["loglik_s"] += time.perf_counter() - t
        spent["requests"] += len(requests)
        return res

    lm.loglikelihood = timed  # type: ignore[method-assign]
    tm = TaskManager(include_path=str(task_dir), include_defaults=False)
    t0 = time.perf_counter()
    res = simple_evaluate(
        model=lm, tasks=[TASK], num_fewshot=0, log_samples=True, task_manager=tm, bootstrap_iters=0
    )
    eval_s = time.perf_counter() - t0
    if res is None:
        raise SystemExit("simple_evaluate returned nothing")
    out = {
        "versions": {
            "lm_eval": metadata.version("lm_eval"),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "batch_size": bs,
        "dtype": args.dtype,
        "softmax_dtype": args.softmax_dtype or "model dtype (lm-eval default)",
        "threads": torch.get_num_threads(),
        "load_s": load_s,
        "loglik_s": spent["loglik_s"],
        "requests": spent["requests"],
        "evaluate_s": eval_s,
        "acc": res["results"][TASK].get("acc,none"),
        "samples": _samples(res),
    }
    args.out.write_text(json.dumps(out), encoding="utf-8")


if __name__ == "__main__":
    main()
