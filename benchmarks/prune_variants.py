"""Pruned variants of the dense gemma-3-270m HF checkpoint, made with llm-compressor.

Run with the study venv's python (llm-compressor pins its own transformers; see
benchmarks/study-requirements.txt):

    /work/venvs/study/bin/python benchmarks/prune_variants.py --dense /work/models/gemma3-270m-hf \\
        --out /work/models wanda50 sparsegpt50 ...      # or: all

Each variant is written to ``OUT/gemma3-270m-<name>`` through a temporary directory, then
``OUT/gemma3-270m-<name>.done`` is touched; a variant whose ``.done`` exists is skipped, so
the command is resumable. One JSON line per built variant goes to ``OUT/prune-log.jsonl``
(seconds, measured sparsity of the pruned projections).

What is pruned: the seven linear projections of every decoder block (q/k/v/o_proj,
gate/up/down_proj). Embeddings, norms and the (tied) lm_head are never pruned.

- ``wanda*`` / ``sparsegpt*``: llm-compressor's ``WandaPruningModifier`` /
  ``SparseGPTModifier`` through ``oneshot`` (unstructured, or 2:4 for ``sparsegpt24``).
- ``magnitude50``: llm-compressor's ``MagnitudePruningModifier`` is a training-time,
  scheduled modifier, so the one-shot definitional baseline is done here: the 50% smallest
  |w| of each projection matrix are zeroed (per tensor).
- ``random50``: 50% of each projection's weights, chosen uniformly at random (seed 0).
- ``claimed50``: Wanda 50% with o_proj and down_proj left dense, and metadata that still
  claims 50% (the published failure the gate must catch: about 33% real).

Calibration (Wanda, SparseGPT): English prose from the docstrings of a fixed list of Python
standard-library modules (``calibration_text``): offline, reproducible with the same Python,
and neither BBQ nor edgegate's perplexity text. Default 32 samples x 256 tokens (8,192 tokens; sized for 2 shared CPU cores), each
starting with <bos>; the text's sha256 and the sample counts are recorded in each variant's
``pruning_meta.json`` and ``edgegate_build.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BUILD_FILE = "edgegate_build.json"


@dataclass(frozen=True)
class Variant:
    name: str
    method: str  # wanda | sparsegpt | magnitude | random
    sparsity: float
    structure: str = "unstructured"  # or "2:4"
    skip: tuple[str, ...] = ()  # projections left dense
    claimed: float | None = None  # sparsity written into the metadata when it differs


VARIANTS = {
    v.name: v
    for v in (
        Variant("wanda50", "wanda", 0.5),
        Variant("wanda10", "wanda", 0.1),
        Variant("wanda30", "wanda", 0.3),
        Variant("sparsegpt50", "sparsegpt", 0.5),
        Variant("claimed50", "wanda", 0.5, skip=("o_proj", "down_proj"), claimed=0.5),
        Variant("magnitude50", "magnitude", 0.5),
        Variant("random50", "random", 0.5),
        Variant("sparsegpt24", "sparsegpt", 0.5, structure="2:4"),
        Variant("sparsegpt10", "sparsegpt", 0.1),
        Variant("sparsegpt30", "sparsegpt", 0.3),
        Variant("wanda70", "wanda", 0.7),
        Variant("sparsegpt70", "sparsegpt", 0.7),
    )
}

# Modules whose documentation is mostly prose; a fixed list keeps the text reproducible.
CALIB_MODULES = (
    "argparse",
    "asyncio",
    "bisect",
    "calendar",
    "codecs",
    "collections",
    "concurrent.futures",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "doctest",
    "email.message",
    "enum",
    "fractions",
    "ftplib",
    "functools",
    "gettext",
    "glob",
    "gzip",
    "heapq",
    "hmac",
    "http.client",
    "http.cookiejar",
    "imaplib",
    "inspect",
    "ipaddress",
    "json",
    "locale",
    "logging",
    "mailbox",
    "multiprocessing",
    "numbers",
    "operator",
    "optparse",
    "os",
    "pathlib",
    "pdb",
    "pickle",
    "pkgutil",
    "poplib",
    "pprint",
    "queue",
    "random",
    "re",
    "sched",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "smtplib",
    "socket",
    "socketserver",
    "sqlite3",
    "ssl",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "trace",
    "traceback",
    "typing",
    "unittest",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "weakref",
    "xml.dom.minidom",
    "zipfile",
)


def calibration_text() -> str:
    """Prose paragraphs from the docstrings of CALIB_MODULES, their public classes,
    functions and methods (code examples and short fragments dropped)."""
    import importlib

    seen: set[str] = set()
    paras: list[str] = []

    def take(doc: str | None) -> None:
        for para in re.split(r"\n\s*\n", doc or ""):
            text = " ".join(para.split())
            if len(text) < 120 or ">>>" in para or text in seen:
                continue
            letters = sum(c.isalpha() or c == " " for c in text)
            if letters / len(text) < 0.85:  # tables, signatures, code
                continue
            seen.add(text)
            paras.append(text)

    for name in CALIB_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        take(inspect.getdoc(mod))
        for attr in sorted(vars(mod)):
            obj = getattr(mod, attr, None)
            if attr.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            take(inspect.getdoc(obj))
            if inspect.isclass(obj):
                for meth in sorted(vars(obj)):
                    if not meth.startswith("_"):
                        take(inspect.getdoc(getattr(obj, meth, None)))
    return "\n\n".join(paras)


def calibration_samples(
    tokenizer: Any, n: int, length: int
) -> tuple[list[list[int]], dict[str, Any]]:
    """n windows of ``length`` tokens (the first is <bos>) cut consecutively from the text."""
    text = calibration_text()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    per = length - 1
    if len(ids) < n * per:
        raise SystemExit(
            f"calibration text has {len(ids)} tokens, need {n * per}: lower --samples/--seq-len"
        )
    bos = tokenizer.bos_token_id
    samples = [[bos, *ids[i * per : (i + 1) * per]] for i in range(n)]
    info = {
        "source": "docstrings of a fixed list of Python standard-library modules (benchmarks/prune_variants.py)",
        "python": sys.version.split()[0],
        "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "text_tokens": len(ids),
        "samples": n,
        "seq_len": length,
    }
    return samples, info


def _projections(model: Any) -> list[tuple[str, Any]]:
    import torch

    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in PROJ and ".layers." in n
    ]


def measured_sparsity(model: Any) -> dict[str, float]:
    zeros: dict[str, int] = {}
    total: dict[str, int] = {}
    for name, mod in _projections(model):
        kind = name.rsplit(".", 1)[-1]
        w = mod.weight
        zeros[kind] = zeros.get(kind, 0) + int((w == 0).sum())
        total[kind] = total.get(kind, 0) + w.numel()
    out = {k: zeros[k] / total[k] for k in PROJ if k in total}
    out["all"] = sum(zeros.values()) / sum(total.values())
    return out


def verify(v: Variant, measured: dict[str, float], dense: dict[str, float]) -> None:
    """Refuse to write a variant that is not what it says: pruned kinds at the target (no
    more than the dense model's own zeros above it), skipped kinds untouched."""
    bad = []
    for kind in PROJ:
        got = measured[kind]
        if kind in v.skip:
            if abs(got - dense[kind]) > 1e-6:
                bad.append(
                    f"{kind} should be left dense ({dense[kind]:.2%} zeros) but has {got:.2%}"
                )
        elif not v.sparsity - 0.005 <= got <= max(v.sparsity, dense[kind]) + dense[kind] + 0.005:
            bad.append(f"{kind} sparsity {got:.2%}, target {v.sparsity:.0%}")
    if bad:
        raise SystemExit(f"{v.name}: pruning did not do what the variant says: " + "; ".join(bad))


def _torch_prune(model: Any, v: Variant) -> None:
    """The two definitional baselines: per-tensor magnitude, and uniform random (seed 0)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, mod in _projections(model):
            if name.rsplit(".", 1)[-1] in v.skip:
                continue
            w = mod.weight
            k = round(w.numel() * v.sparsity)
            if v.method == "magnitude":
                idx = torch.argsort(w.detach().abs().float().flatten(), stable=True)[:k]
            else:
                idx = torch.randperm(w.numel(), generator=gen)[:k]
            flat = w.data.view(-1)
            flat[idx] = 0


def _llmc_prune(model: Any, tokenizer: Any, v: Variant, samples: list[list[int]]) -> None:
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier

    # No "$" anchors: with targets=["Linear"] llm-compressor 0.14 matches ignore patterns
    # against "<module name>." (a trailing dot), so "re:.*o_proj$" silently ignores nothing.
    # verify() below catches any such slip: a variant is only marked done when measured.
    ignore = ["re:.*lm_head", *(f"re:.*\\.{s}\\b" for s in v.skip)]
    mask = "0:0" if v.structure == "unstructured" else v.structure
    cls = WandaPruningModifier if v.method == "wanda" else SparseGPTModifier
    recipe = cls(sparsity=v.sparsity, mask_structure=mask, targets=["Linear"], ignore=ignore)
    ds = Dataset.from_dict(
        {"input_ids": samples, "attention_mask": [[1] * len(s) for s in samples]}
    )
    oneshot(
        model=model,
        tokenizer=tokenizer,
        dataset=ds,
        recipe=recipe,
        num_calibration_samples=len(samples),
        max_seq_length=len(samples[0]),
        shuffle_calibration_samples=False,
        pipeline="sequential",
    )


def build(v: Variant, dense: Path, out_root: Path, n_samples: int, seq_len: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(dense)
    model = AutoModelForCausalLM.from_pretrained(dense, dtype=torch.float32)
    dense_zeros = measured_sparsity(model)  # Q4_K_M rounding leaves ~4.5% exact zeros already
    calib: dict[str, Any] | None = None
    if v.method in ("wanda", "sparsegpt"):
        samples, calib = calibration_samples(tokenizer, n_samples, seq_len)
        _llmc_prune(model, tokenizer, v, samples)
    else:
        _torch_prune(model, v)
    seconds = time.perf_counter() - t0
    model = model.to(torch.bfloat16)
    measured = measured_sparsity(model)
    verify(v, measured, dense_zeros)

    final = out_root / f"gemma3-270m-{v.name}"
    tmp = final.with_name(final.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    # Plain transformers serialization: the dense safetensors layout people ship (zeros stored
    # as zeros), no compressed-tensors config. The claim lives in pruning_meta.json.
    # (llm-compressor replaces the instance's save_pretrained; the class's is the original.)
    type(model).save_pretrained(model, tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    for extra in ("tokenizer.model",):
        if (dense / extra).is_file():
            shutil.copy2(dense / extra, tmp / extra)
    targets = [p for p in PROJ if p not in v.skip]
    meta = {
        "method": v.method,
        "sparsity": v.claimed if v.claimed is not None else v.sparsity,
        "structure": v.structure,
        "targets": list(PROJ) if v.claimed is not None else targets,  # claimed50 claims all seven
    }
    if calib:
        meta["calibration"] = calib["source"]
    (tmp / "pruning_meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    info = {
        "variant": v.name,
        "method": v.method,
        "target_sparsity": v.sparsity,
        "structure": v.structure,
        "pruned": targets,
        "left_dense": list(v.skip),
        "claimed_sparsity": meta["sparsity"],
        "measured_sparsity": {k: round(x, 6) for k, x in measured.items()},
        "library": _library(v),
        "calibration": calib,
        "build_seconds": round(seconds, 1),
        "dense": str(dense),
    }
    (tmp / BUILD_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    Path(str(final) + ".done").touch()
    return info


def _library(v: Variant) -> str:
    if v.method in ("wanda", "sparsegpt"):
        from importlib.metadata import version

        return f"llmcompressor {version('llmcompressor')}"
    return "torch (definitional baseline)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="build pruned gemma-3-270m variants with llm-compressor"
    )
    ap.add_argument("variants", nargs="+", help=f"names ({', '.join(VARIANTS)}) or 'all'")
    ap.add_argument("--dense", type=Path, default=Path("/work/models/gemma3-270m-hf"))
    ap.add_argument("--out", type=Path, default=Path("/work/models"))
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    names = list(VARIANTS) if args.variants == ["all"] else args.variants
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if not (args.dense / "config.json").is_file():
        ap.error(
            f"{args.dense}: no HF checkpoint (build it: python benchmarks/_gemma.py {args.dense})"
        )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for name in names:
        done = args.out / f"gemma3-270m-{name}.done"
        if done.exists():
            print(f"{name}: already built ({done})", file=sys.stderr, flush=True)
            continue
        print(f"{name}: building ...", file=sys.stderr, flush=True)
        info = build(VARIANTS[name], args.dense, args.out, args.samples, args.seq_len)
        with (args.out / "prune-log.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(info) + "\n")
        print(
            f"{name}: built in {info['build_seconds']:.0f}s, measured sparsity "
            f"{info['measured_sparsity']['all']:.2%} of projections",
            file=sys.stderr,
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
