"""How many processes may score one model at once.

The threads of one llama.cpp decode wait on each other at every layer, so a decode slows to
its slowest thread: on a busy machine (a CI runner with another job on one of two cores) a
two-thread decode collapses, while two one-thread processes, sharing nothing, each lose only
their own share. Measured on this project's 2-core machine, gemma-3-270m F16 vs Q8_0, BBQ
loglik: idle, 200 items per model, one process (llama-cpp-python's default: every CPU for
batches) 64.6 s, two one-thread processes 64.1 s; with another job coming and going on one
core (shared/tools/contend), 100 items per model, 57.1 s vs 38.4 s (1.49x). So a model's BBQ
items are split over several processes of it where the cores and the free memory allow.
Answers do not depend on the split: an item's scores are the same bits whatever else a
process scored before or with it (tests/test_scoring_workers.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Runtimes whose processes can be multiplied: in-process CPU runtimes with a thread setting
# below the machine's cores. transformers (torch) already uses every core; servers and
# accelerators are not ours to multiply.
PARALLEL_RUNTIMES = frozenset({"llamacpp"})
# A process beyond its model's file size: runtime, context (KV for 8 branches) and Python.
_OVERHEAD_BYTES = 512 << 20


@dataclass(frozen=True)
class PoolSize:
    """The processes one model is scored with, why (said on stderr), and the threads each
    is opened with when there are several (None: the runtime's own default)."""

    processes: int
    reason: str
    threads: int | None = None


def usable_cpus(cpus: Sequence[int] | None = None) -> int:
    if cpus:
        return len(cpus)
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else (os.cpu_count() or 1)


def default_threads() -> int:
    """Threads per process when several share the CPUs: half the machine's CPUs, as
    llama-cpp-python's default for single-token decoding (its default for batches, which
    scoring is, is every CPU: two processes with that would wait on each other's cores)."""
    return max((os.cpu_count() or 1) // 2, 1)


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def model_bytes(path: str | Path) -> int | None:
    """Bytes a model's files hold (a folder: its weight files), None for what is not a file."""
    p = Path(path)
    try:
        if p.is_file():
            return p.stat().st_size
        if p.is_dir():
            return sum(
                f.stat().st_size
                for f in p.iterdir()
                if f.is_file() and f.suffix in (".safetensors", ".gguf", ".bin")
            )
    except OSError:
        return None
    return None


def cpu_processes(
    runtime: str,
    *,
    threads: int | None,
    requested: int | None = None,
    cpus: Sequence[int] | None = None,
) -> PoolSize:
    """Processes of ``runtime`` the CPUs hold at once: ``requested`` (``--workers``) when
    given, else the usable CPUs over the threads per process (``--threads``, else
    ``default_threads``). Several processes are opened with those threads explicitly."""
    have = usable_cpus(cpus)
    if requested is not None:
        n = max(1, requested)
        per = threads or max(1, have // n)
        return PoolSize(n, "--workers", per if n > 1 else threads)
    if runtime not in PARALLEL_RUNTIMES:
        return PoolSize(1, f"{runtime} runs one process per model")
    per = threads or default_threads()
    n = max(1, have // per)
    return PoolSize(
        n, f"{have} usable CPUs at {per} threads per process", per if n > 1 else threads
    )


def scoring_processes(
    runtime: str,
    model: str | Path,
    *,
    threads: int | None,
    requested: int | None = None,
    cpus: Sequence[int] | None = None,
) -> PoolSize:
    """Processes to score one model on: what the CPUs hold (``cpu_processes``), within the
    free memory (one copy of the model per process: repacked weights are not shared)."""
    by_cpu = cpu_processes(runtime, threads=threads, requested=requested, cpus=cpus)
    if by_cpu.processes == 1 or requested is not None:
        return by_cpu
    size, free = model_bytes(model), available_memory()
    if size is None or free is None:
        return PoolSize(1, "free memory or model size unknown")
    # the first process is loaded anyway; each further one needs its own copy
    by_mem = 1 + int(free * 0.8 // (size + _OVERHEAD_BYTES))
    if by_mem >= by_cpu.processes:
        return PoolSize(
            by_cpu.processes,
            f"{by_cpu.reason}; {free / 2**30:.1f} GiB free for a {size / 2**30:.2f} GiB model",
            by_cpu.threads,
        )
    return PoolSize(
        by_mem,
        f"bound by free memory: {free / 2**30:.1f} GiB for a {size / 2**30:.2f} GiB model "
        f"({by_cpu.reason})",
        by_cpu.threads if by_mem > 1 else threads,
    )
