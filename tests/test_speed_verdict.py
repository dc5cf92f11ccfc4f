"""The speed verdict cannot pass on noise: no mechanism, no pass; an interval valid at the n
used; a minimum effect; contention named. Judged on real llama.cpp runs of the fixtures and,
for the decision table, on benchmark results built from given samples (the judge is pure)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _support import synthetic_bench

from edgegate import checks
from edgegate.backends import available
from edgegate.checks import speed
from edgegate.checks.base import CheckContext, Status
from edgegate.policy import check_default, parse_policy, policy_schema
from edgegate.speed.bench import RuntimeBench
from edgegate.speed.load import MachineLoad, _Snapshot, between
from edgegate.speed.mechanism import Mechanism, speed_mechanism

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"
GGUF = MODELS / "gguf"
needs_llama = pytest.mark.skipif(
    not available("llamacpp"), reason="llama-cpp-python is not installed"
)

SAME = Mechanism(
    False, "no mechanism for a speedup: same format (gguf), same storage type and bytes", 10, 0
)
DIFFERENT = Mechanism(True, "10 of 10 tensors stored differently (e.g. F16 -> Q8_0)", 10, 10)
QUIET = MachineLoad(10.0, 0.01, 0.005, 0.1, 0.1, 2)
BUSY = MachineLoad(10.0, 0.9, 0.45, 1.9, 2.1, 2)


def _bench(ratios: list[float], load: MachineLoad | None = QUIET) -> RuntimeBench:
    """A benchmark whose repetition i ran the compressed model ratios[i] times as fast."""
    return synthetic_bench(ratios, load)


def _judge(
    bench: RuntimeBench,
    mech: Mechanism,
    section: dict[str, object] | None = None,
    claim: float | None = None,
) -> dict[str, speed.Verdict]:
    m = speed.SpeedMeasurement(
        {"llamacpp": bench}, {}, {}, ("llamacpp",), claim, None, None, {"llamacpp": mech}
    )
    res = speed.judge(
        [("this run", m)], speed.SECTION.from_policy({"min_speedup": 1.0, **(section or {})})
    )
    assert res.measurements["llamacpp"]["mechanism"]["possible"] is mech.possible
    return {v.name: v for v in res.verdicts}


def test_same_bytes_never_pass_however_fast_the_timing_reads() -> None:
    """The committed study's SparseGPT 2:4 f16 read 1.17x [1.16, 1.18]: same bytes, dense kernels."""
    v = _judge(_bench([1.16, 1.17, 1.18, 1.17, 1.16]), SAME, claim=1.5)
    assert v["min_speedup"].status is Status.FAIL and "no mechanism" in v["min_speedup"].message
    assert (
        v["claimed_speedup"].status is Status.FAIL
        and "no mechanism" in v["claimed_speedup"].message
    )
    # the same timing with a mechanism is a demonstrated speedup of >= 1.15x
    assert (
        _judge(_bench([1.16, 1.17, 1.18, 1.17, 1.16]), DIFFERENT)["min_speedup"].status
        is Status.PASS
    )


def test_a_non_inferiority_bar_may_pass_without_a_mechanism() -> None:
    """min_speedup below 1 asks "at most this much slower", not for a speedup."""
    v = _judge(_bench([1.0, 0.99, 1.01, 1.0, 1.0]), SAME, {"min_speedup": 0.9})
    assert v["min_speedup"].status is Status.PASS and v["min_speedup"].threshold == 0.9


def test_min_effect_raises_the_bar_and_the_interval_decides_three_ways() -> None:
    tight_small = _judge(_bench([1.05, 1.04, 1.06, 1.05, 1.05]), DIFFERENT)["min_speedup"]
    assert tight_small.status is Status.FAIL and tight_small.threshold == pytest.approx(1.15)
    assert "rules out >= 1.15x" in tight_small.message
    wide = _judge(_bench([1.6, 0.9, 1.3]), DIFFERENT)["min_speedup"]
    assert (
        wide.status is Status.INCONCLUSIVE and "neither demonstrates nor rules out" in wide.message
    )
    assert wide.ci is not None and wide.ci.low < 1.15 < wide.ci.high and wide.n == 3
    no_effect_floor = _judge(
        _bench([1.05, 1.04, 1.06, 1.05, 1.05]), DIFFERENT, {"min_effect": 0.0}
    )["min_speedup"]
    assert no_effect_floor.status is Status.PASS


def test_one_repetition_is_inconclusive_not_a_verdict() -> None:
    v = _judge(_bench([1.9]), DIFFERENT, claim=1.5)
    assert v["min_speedup"].status is Status.INCONCLUSIVE and v["min_speedup"].ci is None
    assert v["claimed_speedup"].status is Status.INCONCLUSIVE


def test_contention_is_named_in_the_verdict_and_kept_in_the_report() -> None:
    v = _judge(_bench([1.8, 1.82, 1.79], load=BUSY), DIFFERENT)["min_speedup"]
    assert "measured under contention" in v.message and "0.90 of 2 cores" in v.message
    quiet = _judge(_bench([1.8, 1.82, 1.79]), DIFFERENT)["min_speedup"]
    assert "contention" not in quiet.message
    # an endpoint's bytes cannot be read: under contention its timing cannot carry a pass
    unknown = Mechanism(None, "a model behind an endpoint")
    assert (
        _judge(_bench([1.8, 1.82, 1.79], load=BUSY), unknown)["min_speedup"].status
        is Status.INCONCLUSIVE
    )
    assert _judge(_bench([1.8, 1.82, 1.79]), unknown)["min_speedup"].status is Status.PASS


def test_machine_load_arithmetic() -> None:
    a = _Snapshot(wall=100.0, busy_s=50.0, own_s=10.0, psi_us=1_000_000, loadavg1=0.5)
    b = _Snapshot(wall=110.0, busy_s=70.0, own_s=25.0, psi_us=3_000_000, loadavg1=1.5)
    load = between(a, b)
    assert load.other_cores == pytest.approx(0.5)  # 20 s busy, 15 s our own, over 10 s
    assert load.cpu_pressure == pytest.approx(0.2) and load.contended is True
    # without the kernel's pressure figure: others must use more cores than the benchmark left free
    no_psi = between(
        _Snapshot(0.0, 0.0, 0.0, None, None), _Snapshot(10.0, 10.0, 0.0, None, None), threads=1
    )
    assert no_psi.other_cores == pytest.approx(1.0)
    assert (no_psi.contended is True) is ((no_psi.cpus - 1) <= 1.0)
    unknown = between(_Snapshot(1.0, None, 0.0, None, None), _Snapshot(2.0, None, 0.0, None, None))

    assert unknown.contended is None and unknown.to_dict()["contended"] is None


def test_mechanism_reads_the_headers(tmp_path: Path) -> None:
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(GGUF / "dense-f16.gguf", copy)
    assert speed_mechanism(GGUF / "dense-f16.gguf", copy, "llamacpp").possible is False
    pruned = speed_mechanism(GGUF / "dense-f16.gguf", GGUF / "wanda50-f16.gguf", "llamacpp")
    assert pruned.possible is False and "dense kernels" in pruned.reason  # zeros stored as F16
    q8 = speed_mechanism(GGUF / "dense-f16.gguf", GGUF / "dense-q8_0.gguf", "llamacpp")
    assert q8.possible is True and "Q8_0" in q8.reason and q8.differing > 0
    hf = speed_mechanism(MODELS / "dense", MODELS / "wanda50", "transformers")
    assert hf.possible is False
    assert speed_mechanism(MODELS / "dense", GGUF / "dense-q8_0.gguf", "llamacpp").possible is True
    assert (
        speed_mechanism("http://127.0.0.1:1/v1", GGUF / "dense-q8_0.gguf", "openai").possible
        is None
    )


@needs_llama
def test_a_byte_copy_fails_the_speed_check_for_real(tmp_path: Path) -> None:
    """A/A on llama.cpp: whatever the timing reads, the report says there is no mechanism."""
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(GGUF / "dense-f16.gguf", copy)
    sec = {
        "runtimes": ["llamacpp"],
        "repetitions": 3,
        "warmup": 0,
        "prompt_tokens": 16,
        "gen_tokens": 4,
        "threads": 1,
        "min_speedup": 1.0,
    }
    # the files decide it (no mechanism, the bar and the claim ask for a speedup): not timed
    res = checks.run(
        "speed",
        CheckContext(
            copy, GGUF / "dense-f16.gguf", speed.SECTION.from_policy(sec), claims={"speedup": 1.2}
        ),
    )
    v = {x.name: x for x in res.verdicts}
    assert v["min_speedup"].status is Status.FAIL and "no mechanism" in v["min_speedup"].message
    assert (
        v["claimed_speedup"].status is Status.FAIL and "not timed" in v["claimed_speedup"].message
    )
    m = res.measurements["llamacpp"]
    assert m["timed"] is False and "load" not in m and m["mechanism"]["possible"] is False
    n = m["mechanism"]["tensors"]
    assert (
        n > 0
        and v["min_speedup"].n == n
        and v["min_speedup"].ci is not None
        and v["min_speedup"].ci.level == 1.0
    )
    # time_when_decided: true times it anyway; the verdicts are the same
    res = checks.run(
        "speed",
        CheckContext(
            copy,
            GGUF / "dense-f16.gguf",
            speed.SECTION.from_policy({**sec, "time_when_decided": True}),
            claims={"speedup": 1.2},
        ),
    )
    timed = {x.name: x.status for x in res.verdicts}
    assert timed == {"min_speedup": Status.FAIL, "claimed_speedup": Status.FAIL}
    load = res.measurements["llamacpp"]["load"]
    assert load["wall_s"] > 0 and "description" in load


def test_only_a_verdict_the_files_decide_goes_untimed() -> None:
    from edgegate.checks.speed import decided_by_files

    same = speed_mechanism(GGUF / "dense-f16.gguf", GGUF / "wanda50-f16.gguf", "llamacpp")
    q8 = speed_mechanism(GGUF / "dense-f16.gguf", GGUF / "dense-q8_0.gguf", "llamacpp")
    assert same.possible is False and q8.possible is True
    assert decided_by_files(same, 1.0, 0.15, None) and decided_by_files(same, None, 0.15, 1.5)
    assert not decided_by_files(q8, 1.0, 0.15, None)  # a real mechanism: the timing decides
    assert not decided_by_files(same, 0.9, 0.15, None)  # "at most 10% slower": the timing decides
    assert not decided_by_files(same, 1.0, 0.15, 1.0)  # a claim of 1x may hold
    assert not decided_by_files(same, None, 0.15, None)  # nothing asked


def test_policy_defaults_live_in_the_schema() -> None:
    """`perplexity: {}` and `bbq: {}` get runtime auto (the schema said llamacpp while the code
    and README said auto), speed gets [auto] and min_effect from one place."""
    p = parse_policy("version: 1\nname: t\nchecks: {perplexity: {}, bbq: {}, speed: {}}\n")
    assert p.checks["perplexity"].section["runtime"] == "auto"
    assert p.checks["bbq"].section["runtime"] == "auto"
    assert list(p.checks["speed"].section["runtimes"]) == ["auto"]
    assert p.checks["speed"].section["min_effect"] == check_default("speed", "min_effect") == 0.15
    schema = policy_schema()["$defs"]
    for check in ("perplexity", "bbq"):
        assert schema[check]["properties"]["runtime"]["default"] == "auto"


def test_an_empty_perplexity_section_runs_an_hf_pair_on_transformers() -> None:
    from edgegate.backends.auto import resolve_pair

    p = parse_policy("version: 1\nname: t\nchecks: {perplexity: {}}\n")
    choice = resolve_pair(
        MODELS / "dense", MODELS / "wanda50", p.checks["perplexity"].section["runtime"]
    )
    assert choice.runtime == "transformers"


def test_llama_cpp_extra_buffers_choice_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """On AMX CPUs llama-cpp-python 0.3.36 crashes on Q8_0 weights with its extra buffer
    types: such models load without them, a forced setting wins, and the choice is said."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from edgegate.backends.llamacpp_load import EXTRA_BUFFERS_ENV, extra_buffers_for

    amx = "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode()
    monkeypatch.delenv(EXTRA_BUFFERS_ENV, raising=False)
    on, why = extra_buffers_for(llama_cpp, GGUF / "dense-q8_0.gguf")
    assert on is (not amx) and (("AMX" in why) is amx)
    assert extra_buffers_for(llama_cpp, GGUF / "dense-f16.gguf")[0] is True
    monkeypatch.setenv(EXTRA_BUFFERS_ENV, "0")
    assert extra_buffers_for(llama_cpp, GGUF / "dense-f16.gguf") == (
        False,
        f"{EXTRA_BUFFERS_ENV}=0",
    )
