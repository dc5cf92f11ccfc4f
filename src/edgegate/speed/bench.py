"""Latency/throughput of a dense vs a compressed model on one runtime.

Method (llama-bench's pp/tg tests and mlx_lm.benchmark, tightened for a comparison):
- the prompt is ``prompt_tokens`` random token ids from a fixed seed, identical for both
  models (no tokenizer or text effects); decode is ``gen_tokens`` greedy steps ignoring EOS;
- each model runs in its own process (its peak RSS is its own), pinned to the same CPUs with
  the same thread count; load time is the runtime's model load (GGUF conversion excluded);
- every repetition starts BOTH models in fresh processes, in ABBA order (dense first, then
  compressed first, ...), warms each up (``warmup`` runs of the full prompt and a short decode)
  and measures each once, in the order they were started. Why fresh: on a VM a model process
  keeps whatever speed its memory placement gave it; with two long-lived processes that is a
  fixed bias no interval over repetitions can see (measured: a byte-identical copy read
  1.08x faster when started second, 0.92x when started first). Fresh processes turn it into
  variance the interval covers, and ABBA cancels start- and run-order effects in the mean;
- per metric: medians, and the speedup as the geometric mean of per-repetition ratios with
  a paired t interval on the log ratios (pairs = the two runs of one repetition);
- with ``sequential`` and a ``decided`` rule, the timings are judged after every ABBA pair
  from the 4th repetition on, and the run stops once the rule says every verdict is decided
  on an interval at that look's stricter level (``edgegate.speed.sequential``);
- the machine's load over the whole benchmark (other processes' CPU, CPU pressure) is kept,
  so a reading taken under contention is marked as such.
Raw samples are kept in the result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.backends.pair import OpenSettings, open_pair
from edgegate.errors import InputError
from edgegate.progress import NullProgress, Progress
from edgegate.speed.load import MachineLoad, between, snapshot
from edgegate.speed.sequential import SpeedLook, SpeedSequential, plan, record
from edgegate.stats import PairedRatio, paired_ratio


@dataclass(frozen=True)
class BenchConfig:
    prompt_tokens: int = 512
    gen_tokens: int = 128
    repetitions: int = 5
    warmup: int = 1
    threads: int | None = None
    seed: int = 0
    pin: bool = True  # pin both model processes to CPUs 0..threads-1
    timeout: float = 1800.0  # seconds per runtime call before the child is killed
    cache_dir: str | None = None
    level: float = 0.95
    sequential: bool = False  # interim looks (edgegate.speed.sequential) when a rule is given

    def validate(self) -> None:
        for name in ("prompt_tokens", "gen_tokens", "repetitions"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}", field=name)
        if self.warmup < 0:
            raise InputError("warmup must be >= 0", field="warmup")
        if self.threads is not None and self.threads < 1:
            raise InputError("threads must be >= 1", field="threads")


@dataclass(frozen=True)
class Sample:
    model: str  # "dense" | "compressed"
    repetition: int
    order: int  # position in the interleaved sequence (= start order within its repetition)
    prefill_s: float
    decode_s: float
    ttft_s: float
    prefill_tps: float
    decode_tps: float
    peak_rss_bytes: int | None
    loadavg1: float | None = None  # 1-minute load average when the sample was taken
    process: int | None = None  # pid of the model's process (None for an in-process/HTTP model)


@dataclass(frozen=True)
class Speedup:
    metric: str  # "decode_tps" | "prefill_tps" | "ttft"
    point: float  # compressed over dense (for ttft: dense over compressed): > 1 is faster
    ci_low: float  # NaN when fewer than 2 repetitions
    ci_high: float
    n: int
    level: float
    method: str = PairedRatio.METHOD
    log_sd: float = float("nan")  # SD of the per-repetition log ratios: the run's noise


@dataclass(frozen=True)
class RuntimeBench:
    runtime: str
    config: BenchConfig
    dense: dict[str, Any]  # what was loaded (path, converted_from, threads, load_s, ...)
    compressed: dict[str, Any]
    samples: tuple[Sample, ...]
    medians: dict[str, dict[str, float]]  # model -> metric -> median
    speedups: dict[str, Speedup]
    peak_rss_bytes: dict[str, int | None]
    cpus: tuple[int, ...] | None
    wall_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    load: MachineLoad | None = None  # the machine's load over the benchmark
    sequential: SpeedSequential | None = None  # looks taken, when timed sequentially

    @property
    def decode(self) -> Speedup:
        return self.speedups["decode_tps"]


WARMUP_GEN_TOKENS = 8
# recorded with every calibration row: readings taken before fresh processes are kept apart
PROCESS_DESIGN = "fresh processes per repetition, ABBA start order, even repetition count"


def random_prompt(n: int, n_vocab: int, seed: int) -> list[int]:
    """Uniform random ids like llama-bench; the same seed gives both models the same prompt."""
    return [int(t) for t in np.random.default_rng(seed).integers(0, n_vocab, size=n)]


def _cpus(threads: int | None, pin: bool) -> tuple[int, ...] | None:
    if not pin or not threads or not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return tuple(allowed[:threads]) if threads <= len(allowed) else None


def even_repetitions(repetitions: int) -> int:
    """ABBA cancels order effects only over whole pairs: with 3 repetitions the dense model
    starts first in 2 of them, and the one started (and timed) second read ~3% faster here.
    An odd count (but 1: nothing to judge anyway) is rounded up; the report says so."""
    return repetitions + 1 if repetitions > 1 and repetitions % 2 else repetitions


def abba_order(repetitions: int) -> list[tuple[int, str]]:
    """(repetition, model) in ABBA order: D C, C D, D C, ..."""
    out: list[tuple[int, str]] = []
    for r in range(repetitions):
        pair = ["dense", "compressed"] if r % 2 == 0 else ["compressed", "dense"]
        out.extend((r, m) for m in pair)
    return out


def bench_runtime(
    runtime: str,
    dense_path: str | Path,
    compressed_path: str | Path,
    cfg: BenchConfig,
    *,
    progress: Progress | None = None,
    decided: Callable[[RuntimeBench], bool] | None = None,
) -> RuntimeBench:
    """Time both models. ``decided``: the judge's rule, asked at each interim look (with
    ``cfg.sequential``) whether every verdict is decided on the timing so far."""
    cfg.validate()
    prog = progress or NullProgress()
    cpus = _cpus(cfg.threads, cfg.pin)
    n_ctx = cfg.prompt_tokens + cfg.gen_tokens + 1
    t_start = time.perf_counter()
    load_start = snapshot()
    settings = OpenSettings(
        n_ctx=n_ctx,
        threads=cfg.threads,
        seed=cfg.seed,
        cache_dir=cfg.cache_dir,
        timeout=cfg.timeout,
        cpus=cpus,
    )
    order = abba_order(even_repetitions(cfg.repetitions))  # (repetition, model), two per repetition
    planned = len(order) // 2
    judged = cfg.sequential and decided is not None
    looks_planned = plan(planned, cfg.level) if judged else ()
    due = {lp.repetitions: lp for lp in looks_planned}
    looks: list[SpeedLook] = []
    level = cfg.level
    samples: list[Sample] = []
    infos: dict[str, dict[str, Any]] = {}
    prompt: list[int] | None = None
    with prog.task(f"bench {runtime}", total=len(order)) as advance:
        for rep in range(len(order) // 2):
            roles = [m for _, m in order[2 * rep : 2 * rep + 2]]
            infos, prompt = _repetition(
                runtime, (dense_path, compressed_path), settings, cfg, rep, roles, prompt, samples
            )
            advance(2)
            look = due.get(rep + 1)
            if look is None or decided is None:
                continue
            # after the pair closed: its processes are reaped, so their CPU time counts as ours
            so_far = summarize(
                runtime, cfg, samples, infos, cpus, time.perf_counter() - t_start,
                between(load_start, snapshot(), cfg.threads), level=look.level,
            )  # fmt: skip
            sp, stop = so_far.decode, decided(so_far)
            looks.append(
                SpeedLook(look.repetitions, look.level, sp.point, sp.ci_low, sp.ci_high, stop)
            )
            if stop:
                level = look.level
                break
    load = between(load_start, snapshot(), cfg.threads)
    seq = record(planned, looks_planned, looks, len(samples) // 2) if judged else None
    wall = time.perf_counter() - t_start
    return summarize(runtime, cfg, samples, infos, cpus, wall, load, level=level, sequential=seq)


def _repetition(
    runtime: str,
    paths: tuple[str | Path, str | Path],
    settings: OpenSettings,
    cfg: BenchConfig,
    rep: int,
    roles: list[str],
    prompt: list[int] | None,
    samples: list[Sample],
) -> tuple[dict[str, dict[str, Any]], list[int]]:
    """One repetition: both models started fresh in ``roles`` order, each warmed up and then
    timed once (its sample appended to ``samples``). Returns what was loaded, and the prompt
    (drawn from the first repetition's vocabulary when ``prompt`` is None)."""
    with open_pair(runtime, paths, settings) as pair:
        opened = {name: pair.open(name) for name in roles}  # started in run order
        if prompt is None:
            vocab = min(int(b.n_vocab) for b in opened.values())
            prompt = random_prompt(cfg.prompt_tokens, vocab, cfg.seed)
        for name in roles:
            for _ in range(cfg.warmup):
                # the whole prompt (every prefill buffer) and a short decode: a fresh
                # process's first pass faults in its weights; more decode adds nothing
                opened[name].time_run(prompt, min(cfg.gen_tokens, WARMUP_GEN_TOKENS))
        for name in roles:
            t = opened[name].time_run(prompt, cfg.gen_tokens)
            samples.append(
                Sample(
                    name,
                    rep,
                    len(samples),
                    t.prefill_s,
                    t.decode_s,
                    t.ttft_s,
                    t.prompt_tokens / t.prefill_s,
                    t.gen_tokens / t.decode_s,
                    t.peak_rss_bytes,
                    _loadavg1(),
                    getattr(opened[name], "pid", None),
                )
            )
        return {name: b.info() for name, b in opened.items()}, prompt


def _loadavg1() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _series(samples: Sequence[Sample], model: str, metric: str) -> np.ndarray:
    rows = sorted((s for s in samples if s.model == model), key=lambda s: s.repetition)
    return np.asarray([getattr(s, metric) for s in rows], dtype=np.float64)


def summarize(
    runtime: str,
    cfg: BenchConfig,
    samples: Sequence[Sample],
    infos: dict[str, dict[str, Any]],
    cpus: tuple[int, ...] | None,
    wall_s: float,
    load: MachineLoad | None = None,
    *,
    level: float | None = None,
    sequential: SpeedSequential | None = None,
) -> RuntimeBench:
    """Medians and speedups of the samples; intervals at ``level`` (default ``cfg.level``: a
    run stopped at an interim look reports the interval it stopped on)."""
    level = cfg.level if level is None else level
    medians = {
        m: {
            k: float(np.median(_series(samples, m, k)))
            for k in ("prefill_tps", "decode_tps", "ttft_s")
        }
        for m in ("dense", "compressed")
    }
    speedups: dict[str, Speedup] = {}
    for metric, attr, invert in (
        ("decode_tps", "decode_tps", False),
        ("prefill_tps", "prefill_tps", False),
        ("ttft", "ttft_s", True),
    ):
        d, c = _series(samples, "dense", attr), _series(samples, "compressed", attr)
        num, den = (d, c) if invert else (c, d)
        r = paired_ratio(num, den, level=level)
        speedups[metric] = Speedup(
            metric, r.point, r.ci_low, r.ci_high, r.n, level, log_sd=r.log_sd
        )
    rss = {
        m: max(
            (s.peak_rss_bytes for s in samples if s.model == m and s.peak_rss_bytes), default=None
        )
        for m in ("dense", "compressed")
    }
    notes = []
    if runtime == "mlx":
        notes.append("MLX has no thread-count setting; CPU pinning (if any) still applies")
    if cfg.repetitions < 2:
        notes.append("one repetition: no interval can be formed, the speedup cannot be judged")
    elif even_repetitions(cfg.repetitions) != cfg.repetitions:
        notes.append(
            f"{cfg.repetitions} repetitions asked, {even_repetitions(cfg.repetitions)} run: ABBA order "
            "cancels start- and run-order effects only over whole pairs"
        )
    if load is not None and load.contended:
        notes.append(f"measured under contention: {load.describe()}")
    if sequential is not None and sequential.stopped_early:
        notes.append(f"stopped early: {sequential.why}")
    return RuntimeBench(
        runtime,
        cfg,
        infos["dense"],
        infos["compressed"],
        tuple(samples),
        medians,
        speedups,
        rss,
        cpus,
        wall_s,
        tuple(notes),
        load,
        sequential,
    )
