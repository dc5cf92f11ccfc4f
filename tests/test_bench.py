"""Benchmark method, its statistics and the speed check, on real llama.cpp runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgegate import checks
from edgegate.backends import RUNTIMES, RuntimeSpec, available, register_runtime
from edgegate.checks.base import CheckContext, Status
from edgegate.checks.sections import SpeedSection
from edgegate.speed.bench import BenchConfig, abba_order, bench_runtime, random_prompt
from edgegate.stats import paired_ratio

ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / "fixtures" / "models" / "gguf"
DENSE, Q8 = GGUF / "dense-f16.gguf", GGUF / "dense-q8_0.gguf"
needs_llama = pytest.mark.skipif(
    not available("llamacpp"), reason="llama-cpp-python is not installed"
)
SMALL = BenchConfig(prompt_tokens=32, gen_tokens=8, repetitions=4, warmup=1, threads=1, timeout=120)


def test_odd_repetitions_are_rounded_up_to_whole_abba_pairs() -> None:
    from edgegate.speed.bench import even_repetitions

    assert [even_repetitions(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 4, 6]


def test_abba_interleaving() -> None:
    assert abba_order(3) == [
        (0, "dense"),
        (0, "compressed"),
        (1, "compressed"),
        (1, "dense"),
        (2, "dense"),
        (2, "compressed"),
    ]


def test_prompt_is_seeded_and_shared() -> None:
    a = random_prompt(64, 512, 7)
    assert a == random_prompt(64, 512, 7) and a != random_prompt(64, 512, 8)
    assert all(0 <= t < 512 for t in a)


def test_paired_ratio_is_a_geometric_mean_with_a_t_interval() -> None:
    dense = [100.0, 102.0, 98.0, 101.0, 99.0]
    comp = [150.0, 153.0, 147.0, 151.5, 148.5]  # exactly 1.5x each pair
    r = paired_ratio(comp, dense)
    assert (
        r.point == pytest.approx(1.5)
        and r.ci_low == pytest.approx(1.5)
        and r.ci_high == pytest.approx(1.5)
    )
    # one repetition: no interval
    one = paired_ratio([2.0], [1.0])
    assert one.point == 2.0 and np.isnan(one.ci_low) and np.isnan(one.ci_high) and one.n == 1
    with pytest.raises(ValueError):
        paired_ratio([1.0, 0.0], [1.0, 1.0])


def test_paired_ratio_widens_at_three_repetitions_where_a_bootstrap_could_not() -> None:
    """Three A/A pairs that all lean one way: a percentile bootstrap of ratios can return at
    most the largest sampled ratio as its bound; the t interval (df = 2) reaches past it."""
    comp, dense = [106.0, 103.0, 101.0], [100.0, 100.0, 100.0]
    r = paired_ratio(comp, dense)
    assert r.ci_low < 1.0 < r.ci_high  # includes "no difference"
    assert r.ci_high > max(c / d for c, d in zip(comp, dense, strict=True))


def test_paired_ratio_covers_the_truth_at_the_nominal_rate() -> None:
    """Null control by simulation: true speedup 1.0, log-normal run-to-run noise and a shared
    drift per pair; at n = 3 and n = 5 the 95% interval excludes 1.0 in about 5% of runs
    (binomial 99.9% band around 5% for 4,000 runs: 3.9%..6.2%)."""
    rng = np.random.default_rng(1234)
    for n in (3, 5):
        misses = 0
        for _ in range(4000):
            drift = rng.normal(0, 0.2, size=n)  # a busy machine slows both runs of a pair
            d = 50 * np.exp(drift + rng.normal(0, 0.05, size=n))
            c = 50 * np.exp(drift + rng.normal(0, 0.05, size=n))
            r = paired_ratio(c, d)
            misses += not (r.ci_low <= 1.0 <= r.ci_high)
        assert 0.039 <= misses / 4000 <= 0.062, (n, misses)


@needs_llama
def test_bench_runtime_interleaves_and_keeps_samples() -> None:
    r = bench_runtime("llamacpp", DENSE, Q8, SMALL)
    assert [(s.repetition, s.model) for s in r.samples] == abba_order(4)
    assert [s.order for s in r.samples] == list(range(8))
    # every repetition starts both models afresh: a process's own speed cannot become a bias
    pids = [s.process for s in r.samples]
    assert None not in pids and len(set(pids)) == len(pids)
    for s in r.samples:
        assert s.prefill_tps > 0 and s.decode_tps > 0 and s.ttft_s >= s.prefill_s > 0
        assert s.decode_tps == pytest.approx(8 / s.decode_s)
    for key in ("decode_tps", "prefill_tps", "ttft"):
        sp = r.speedups[key]
        assert sp.n == 4 and 0 < sp.ci_low <= sp.ci_high and np.isfinite(sp.point)
    assert r.peak_rss_bytes["dense"] and r.peak_rss_bytes["compressed"]
    assert r.dense["threads"] == 1 and r.cpus is not None and len(r.cpus) == 1
    assert r.dense["load_s"] > 0 and r.compressed["model_path"].endswith("dense-q8_0.gguf")


@needs_llama
def test_speed_check_decides_on_the_ci_lower_bound() -> None:

    sec = {
        "runtimes": ["llamacpp"],
        "repetitions": 3,
        "warmup": 0,
        "prompt_tokens": 16,
        "gen_tokens": 4,
        "threads": 1,
    }
    strict = checks.run(
        "speed",
        CheckContext(
            Q8,
            DENSE,
            SpeedSection.from_policy({**sec, "min_speedup": 50.0}),
            claims={"speedup": 50.0},
        ),
    )
    assert strict.status is Status.FAIL
    names = {v.name: v for v in strict.verdicts}
    # 3 asked, 4 run: ABBA cancels order effects only over whole pairs, and the report says so
    assert names["min_speedup"].ci is not None and names["min_speedup"].n == 4
    assert any("3 repetitions asked, 4 run" in n for n in strict.measurements["llamacpp"]["notes"])
    assert "ruled out" in names["claimed_speedup"].message
    lax = checks.run(
        "speed",
        CheckContext(
            Q8, DENSE, SpeedSection.from_policy({**sec, "min_speedup": {"llamacpp": 0.01}})
        ),
    )
    assert lax.status is Status.PASS
    assert lax.measurements["llamacpp"]["samples"]  # raw samples in the report


def test_speed_check_skips_missing_runtime() -> None:

    register_runtime(
        RuntimeSpec("ghost", "edgegate_ghost:Backend", ("edgegate_ghost_runtime",), "ghost")
    )
    try:
        res = checks.run(
            "speed",
            CheckContext(
                DENSE, DENSE, SpeedSection.from_policy({"runtimes": ["ghost"], "min_speedup": 1.0})
            ),
        )
    finally:
        RUNTIMES.pop("ghost", None)
    assert res.status is Status.SKIPPED
    assert "pip install 'edgegate[ghost]'" in res.verdicts[0].message


@needs_llama
def test_bench_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    from edgegate.cli import main

    with pytest.raises(SystemExit) as exc:
        main(
            [
                "bench",
                str(DENSE),
                str(Q8),
                "--runtime",
                "llamacpp,onnx",
                "--threads",
                "1",
                "--repetitions",
                "2",
                "--prompt-tokens",
                "16",
                "--gen-tokens",
                "4",
                "--warmup",
                "0",
                "--json",
                "-q",
            ]
        )
        raise SystemExit(0)
    assert exc.value.code in (0, None)
    data = json.loads(capsys.readouterr().out)
    assert "cannot load these paths" in data["runtimes"]["onnx"]["skipped"]
    ll = data["runtimes"]["llamacpp"]
    assert len(ll["samples"]) == 4 and ll["speedups"]["decode_tps"]["n"] == 2


def test_fit_to_context_shrinks_to_the_trained_context() -> None:
    from edgegate.checks.speed import fit_to_context

    assert fit_to_context(512, 128, 4096) == (512, 128, None)
    assert fit_to_context(512, 128, None) == (512, 128, None)
    p, g, note = fit_to_context(512, 128, 512)
    assert p + g + 1 <= 512 and g == 102 and p == 409  # 511 * 128 // 640 = 102
    assert note is not None and "trained context of 512" in note


MODELS = ROOT / "fixtures" / "models"


@pytest.mark.parametrize(
    ("runtime", "dense", "compressed"),
    [
        ("mlx", MODELS / "dense", MODELS / "wanda50"),
        ("onnx", MODELS / "onnx" / "dense", MODELS / "onnx" / "wanda50"),
    ],
)
def test_bench_runs_for_real_on_mlx_and_onnx(runtime: str, dense: Path, compressed: Path) -> None:
    """The same interleaved method on the other two runtimes, each on the format it loads."""
    if not available(runtime):
        pytest.skip(f"{runtime} is not installed")
    cfg = BenchConfig(
        prompt_tokens=16, gen_tokens=4, repetitions=2, warmup=1, threads=1, timeout=300
    )
    r = bench_runtime(runtime, dense, compressed, cfg)
    assert [(s.model, s.repetition) for s in r.samples] == [
        ("dense", 0),
        ("compressed", 0),
        ("compressed", 1),
        ("dense", 1),
    ]
    for s in r.samples:
        assert s.prefill_s > 0 and s.decode_s > 0 and s.prefill_tps > 0 and s.decode_tps > 0
    sp = r.speedups["decode_tps"]
    assert sp.n == 2 and sp.ci_low <= sp.point <= sp.ci_high
