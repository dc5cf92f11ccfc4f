"""Fuzz targets for the text parsers a user feeds edgegate (issue 15): the policy loader, the
shard-index loader, config.json / tokenizer_config.json reading, the BBQ row parser and the
partial-result loader (what `edgegate merge` does with a partial file).

Contract for ANY bytes: the parser accepts them, or raises an ``EdgegateError`` with exit
code 2 whose one-line message names the file and is at most ``MAX_MESSAGE`` bytes, within a
few seconds. Any other exception (RecursionError, KeyError, AttributeError...) is a bug.

    pip install atheris        # or: pip install 'edgegate[dev]' on Linux
    python fuzz/fuzz_parsers.py policy -runs=20000 -max_len=4096 [SEEDS_DIR]
    # targets: policy, shard_index, config, tokenizer_config, bbq_rows, partial

Without atheris, tests/test_fuzz_parsers.py drives the same ``check_one`` with hypothesis,
and benchmarks/fuzz_long.py runs each target longer and prints the count of inputs.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:  # coverage feedback for libFuzzer: instrument edgegate when atheris is there
    import atheris

    _instrument = atheris.instrument_imports(include=["edgegate"])
except ImportError:
    import contextlib

    _instrument = contextlib.nullcontext()

with _instrument:  # the parsers are imported here so libFuzzer sees their branches
    import numpy as np

    from edgegate.errors import EdgegateError, ExitCode

MAX_MESSAGE = 1200  # bytes of the one-line error (path, field, message and hint, each capped)
_WORK = Path(tempfile.mkdtemp(prefix="edgegate-fuzzp-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))


class ContractBroken(AssertionError):
    """An EdgegateError that breaks the contract: wrong exit code, file not named, too long."""


def _tiny_safetensors(path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"model.layers.0.self_attn.q_proj.weight": np.arange(16, dtype=np.float32).reshape(4, 4)}, str(path))


# ---------------------------------------------------------------- one function per parser


def _policy(data: bytes, work: Path) -> Path:
    from edgegate.policy import load_policy

    p = work / "policy.yaml"
    p.write_bytes(data)
    load_policy(p)
    return p


def _shard_index(data: bytes, work: Path) -> Path:
    from edgegate.checkpoint import open_checkpoint

    d = work / "sharded"
    d.mkdir(exist_ok=True)
    shard = d / "model-00001-of-00001.safetensors"
    if not shard.exists():
        _tiny_safetensors(shard)
    (d / "model.safetensors.index.json").write_bytes(data)
    with open_checkpoint(d) as ck:
        for info in ck.tensors():
            ck.read(info)
    return d


def _config(data: bytes, work: Path) -> Path:
    from edgegate.checkpoint import open_checkpoint
    from edgegate.checkpoint.claims import from_checkpoint_dir

    d = work / "hf"
    d.mkdir(exist_ok=True)
    if not (d / "model.safetensors").exists():
        _tiny_safetensors(d / "model.safetensors")
    (d / "config.json").write_bytes(data)
    with open_checkpoint(d) as ck:
        list(ck.tensors())
        from_checkpoint_dir(d, ck.config)
    return d


def _tokenizer_config(data: bytes, work: Path) -> Path:
    from edgegate.backends._common import hf_chat_template

    d = work / "tok"
    d.mkdir(exist_ok=True)
    (d / "tokenizer_config.json").write_bytes(data)
    hf_chat_template(d)
    return d


def _bbq_rows(data: bytes, work: Path) -> Path:
    from edgegate.bbq.predictions import load_predictions

    p = work / "preds.jsonl"
    p.write_bytes(data)
    load_predictions(p, "pred")
    return p


def _partial(data: bytes, work: Path) -> Path:
    """What `edgegate merge PART --policy P` does with one partial file."""
    from edgegate.checks import bbq
    from edgegate.commands.merge import _malformed
    from edgegate.merge import merge_gate
    from edgegate.partial import load_parts

    p = work / "part.json"
    p.write_bytes(data)
    loaded = load_parts([p])
    with _malformed(loaded.names):
        if loaded.first.get("command") == "bbq":
            bbq.judge([(n, d["checks"]["bbq"]) for n, d in zip(loaded.names, loaded.docs, strict=True)], {})
        else:
            merge_gate(loaded, _merge_policy())
    return p


def _merge_policy() -> Any:
    from edgegate.policy import parse_policy

    return parse_policy("version: 1\nname: fuzz\nchecks:\n  sparsity: {required: true}\n", source="fuzz")


TARGETS: dict[str, Callable[[bytes, Path], Path]] = {
    "policy": _policy,
    "shard_index": _shard_index,
    "config": _config,
    "tokenizer_config": _tokenizer_config,
    "bbq_rows": _bbq_rows,
    "partial": _partial,
}


def check_one(target: str, data: bytes, workdir: Path = _WORK) -> str:
    """Run ``target`` on ``data``: "ok" or "refused"; raises ContractBroken or whatever else
    escaped the parser (a bug either way)."""
    work = workdir / target
    work.mkdir(parents=True, exist_ok=True)
    try:
        TARGETS[target](data, work)
    except EdgegateError as exc:
        line = exc.one_line()
        if exc.exit_code != ExitCode.INPUT_ERROR:
            raise ContractBroken(f"{target}: exit {int(exc.exit_code)} for bad input: {line[:300]}") from exc
        if str(work) not in line:
            raise ContractBroken(f"{target}: the message does not name the file: {line[:300]}") from exc
        if len(line.encode()) > MAX_MESSAGE:
            raise ContractBroken(f"{target}: {len(line.encode())}-byte message: {line[:300]}") from exc
        return "refused"
    return "ok"


# ---------------------------------------------------------------- seeds (valid documents)


def seeds(target: str) -> list[bytes]:
    """Valid (or nearly valid) inputs to mutate, one family per target."""
    row = {
        "example_id": 0, "question_index": "1", "question_polarity": "neg", "context_condition": "ambig",
        "category": "Age", "answer_info": {"ans0": ["teenager", "nonOld"], "ans1": ["Unknown", "unknown"],
                                           "ans2": ["retiree", "old"]},
        "additional_metadata": {"subcategory": "None", "stereotyped_groups": ["old"]},
        "context": "A retiree and a teenager waited.", "question": "Who was confused?",
        "ans0": "The teenager", "ans1": "Unknown", "ans2": "The retiree", "label": 1, "pred": "ans2",
    }  # fmt: skip
    from edgegate.checks.base import CheckResult

    fp = {"policy": _merge_policy().to_dict(), "inputs": [], "settings": {"strict": False, "only": [], "skip": [], "claims": {}, "options": {}},
          "software": {}}
    out: dict[str, list[bytes]] = {
        "policy": [
            b"version: 1\nname: fuzz\nchecks:\n  sparsity: {required: true, claim_tolerance: 0.02}\n",
            b"version: 1\nclaims: {sparsity: 0.5}\nchecks:\n  size: {min_saving: {gguf: 0.3}}\n"
            b"  perplexity: {runtime: llamacpp, n_ctx: 128, text: eval.txt}\n",
            b"version: 1\nchecks:\n  bbq: {runtime: openai, items: 8, min_items: 1}\n",
        ],
        "shard_index": [
            json.dumps({"metadata": {"total_size": 64},
                        "weight_map": {"model.layers.0.self_attn.q_proj.weight": "model-00001-of-00001.safetensors"}}).encode(),
        ],
        "config": [
            json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4,
                        "sparsity_config": {"global_sparsity": 0.5, "sparsity_structure": "2:4"}}).encode(),
        ],
        "tokenizer_config": [
            json.dumps({"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}", "bos_token": "<s>",
                        "eos_token": {"content": "</s>"}}).encode(),
        ],
        "bbq_rows": [json.dumps(row).encode() + b"\n" + json.dumps({**row, "example_id": 1}).encode() + b"\n"],
        "partial": [
            json.dumps({"format": "edgegate-partial", "version": 2, "command": "check",
                        "shard": {"index": 1, "count": 1}, "fingerprint": fp, "created_at": "x",
                        "gate": {"claims": {}, "claim_sources": {}, "inputs": [], "environment": {}, "argv": [],
                                 "started_at": "2026-01-01T00:00:00+00:00"},
                        "results": {"sparsity": CheckResult.skipped("sparsity", "fuzz seed").to_dict()},
                        "checks": {}}).encode(),
            json.dumps({"format": "edgegate-partial", "version": 2, "command": "bbq",
                        "shard": {"index": 1, "count": 1}, "fingerprint": {}, "checks": {"bbq": {}}}).encode(),
        ],
    }
    return out[target]


# Tokens that have broken parsers before: nesting, non-finite numbers, YAML tags/aliases,
# control characters, huge numbers, wrong types where objects are expected.
TOKENS: tuple[bytes, ...] = (
    b"[", b"{", b"]", b"}", b'"', b",", b":", b"NaN", b"Infinity", b"-Infinity", b".nan", b".inf", b"1e999",
    b"-1", b"null", b"true", b"[]", b"{}", b'"\\u0000"', b"\x00", b"\xff\xfe", b"*a", b"&a ", b"!!python/object:os.system",
    b"? ", b"- ", b"\n", b"\t", b"'", b"9" * 400, b"\x1b[31m", b"../../etc/passwd", b"weight_map", b"version",
)
N_OPS = 6


def mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    """Apply ``ops`` (kind, position, argument) to ``data``: a small structure-aware mutator
    shared by the hypothesis tests and benchmarks/fuzz_long.py (atheris has its own)."""
    buf = bytearray(data)
    for kind, pos, arg in ops:
        at = pos % (len(buf) + 1)
        if kind == 0:  # flip a byte
            if buf:
                buf[at % len(buf)] = arg % 256
        elif kind == 1:  # insert a token
            buf[at:at] = TOKENS[arg % len(TOKENS)]
        elif kind == 2:  # delete a span
            del buf[at : at + arg % 64]
        elif kind == 3:  # wrap the rest in deep nesting (RecursionError bait)
            depth = 1 + (arg * 997) % 300_000
            buf[at:] = b"[" * depth + bytes(buf[at:]) + b"]" * depth
        elif kind == 4:  # a huge string value
            buf[at:at] = b'"' + b"x" * (1 + (arg * 7919) % 3_000_000) + b'"'
        else:  # truncate
            del buf[at:]
    return bytes(buf)


def _atheris_main() -> None:
    import atheris

    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: fuzz_parsers.py TARGET [libFuzzer flags] [CORPUS_DIR]; targets: {', '.join(TARGETS)}")
    target = sys.argv.pop(1)

    def one_input(data: bytes) -> None:
        check_one(target, data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    _atheris_main()
