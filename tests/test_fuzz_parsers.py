"""The parser fuzz targets (fuzz/fuzz_parsers.py) run briefly: with hypothesis always
(structure-aware mutations of valid documents: deep nesting, huge strings, NaN, YAML tags,
truncation), and with atheris/libFuzzer when it is installed. Contract for any bytes: the
parser accepts them, or exits 2 with the file named in at most a few hundred bytes.

Longer runs with their count of inputs: ``python benchmarks/fuzz_long.py``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "fuzz"))
import fuzz_parsers  # noqa: E402

sys.path.remove(str(REPO / "fuzz"))

TARGETS = sorted(fuzz_parsers.TARGETS)
_ops = st.lists(
    st.tuples(
        st.integers(0, fuzz_parsers.N_OPS - 1), st.integers(0, 1 << 20), st.integers(0, 1 << 20)
    ),
    min_size=1,
    max_size=4,
)


@pytest.mark.parametrize("target", TARGETS)
def test_seeds_are_accepted_or_refused_cleanly(target: str, tmp_path: Path) -> None:
    outcomes = [fuzz_parsers.check_one(target, s, tmp_path) for s in fuzz_parsers.seeds(target)]
    assert "ok" in outcomes, outcomes


# Inputs that broke a parser before issue 15 (or nearly did): each must be refused cleanly.
HOSTILE = [
    b"[" * 200_000 + b"]" * 200_000,
    b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"version": NaN, "weight_map": {"w": Infinity}}',
    b'{"x": "' + b"y" * 3_000_000 + b'"}',
    b"\xff\xfe\x00garbage",
    b"1" * 10_000,
    b"",
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", range(len(HOSTILE)))
def test_known_hostile_inputs(target: str, case: int, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    assert fuzz_parsers.check_one(target, HOSTILE[case], tmp_path) in ("ok", "refused")
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize("target", TARGETS)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10), ops=_ops)
def test_mutations_keep_the_contract(
    target: str, seed: int, ops: list[tuple[int, int, int]], tmp_path: Path
) -> None:
    seeds = fuzz_parsers.seeds(target)
    data = fuzz_parsers.mutate(seeds[seed % len(seeds)], ops)
    t0 = time.perf_counter()
    assert fuzz_parsers.check_one(target, data, tmp_path) in ("ok", "refused")
    assert time.perf_counter() - t0 < 10, "a parser took too long on a small input"


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris not installed (pip install atheris); the hypothesis tests above drive the same targets",
)
@pytest.mark.parametrize("target", TARGETS)
def test_atheris_brief_run(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, s in enumerate(fuzz_parsers.seeds(target)):
        (corpus / f"seed{i}").write_bytes(s)
    p = subprocess.run(
        [sys.executable, str(REPO / "fuzz" / "fuzz_parsers.py"), target, "-runs=300", "-max_len=4096",
         "-timeout=20", "-seed=1", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-4000:]
    assert "Done 300 runs" in p.stderr


@pytest.mark.parametrize("name", ["m" * 300 + ".safetensors", "a\u0000b.safetensors"])
def test_fuzz_found_unopenable_shard_names(name: str, tmp_path: Path) -> None:
    """benchmarks/fuzz_long.py found these: Path.is_file() raised OSError (name too long) or
    ValueError (embedded NUL) out of the shard-index check."""
    import json

    data = json.dumps({"weight_map": {"model.layers.0.self_attn.q_proj.weight": name}}).encode()
    assert fuzz_parsers.check_one("shard_index", data, tmp_path) == "refused"


def test_fuzz_found_unhashable_policy_key(tmp_path: Path) -> None:
    """benchmarks/fuzz_long.py found this: a flow mapping as a key made the duplicate-key
    check raise TypeError (unhashable type: 'dict')."""
    data = b"version: 1\nchecks:\n  size: {min_saving: ,{gguf: 0.3}}\n"
    assert fuzz_parsers.check_one("policy", data, tmp_path) == "refused"


def test_fuzz_found_missing_shard_names_the_file(tmp_path: Path) -> None:
    """atheris found this: "shard(s) 2/2 missing (have 1/2)" named no file."""
    seed = fuzz_parsers.seeds("partial")[0].replace(b'"count": 1', b'"count": 2')
    assert fuzz_parsers.check_one("partial", seed, tmp_path) == "refused"
