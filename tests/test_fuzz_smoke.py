"""The header fuzz target (fuzz/fuzz_headers.py) run briefly: with hypothesis always (byte
mutations of the generated valid and hostile files), and with atheris/libFuzzer when it is
installed (``pip install atheris``). Contract: any bytes either open or raise EdgegateError.

Longer runs: ``python fuzz/fuzz_headers.py -max_total_time=600 -max_len=4096 SEEDS`` with
SEEDS from ``python tests/hostile/make_corpus.py SEEDS``.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "fuzz"))
sys.path.insert(0, str(REPO / "tests" / "hostile"))
import fuzz_headers  # noqa: E402
import make_corpus  # noqa: E402

sys.path.remove(str(REPO / "fuzz"))
sys.path.remove(str(REPO / "tests" / "hostile"))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = make_corpus.build(tmp_path_factory.mktemp("corpus"))
    out = tmp_path_factory.mktemp("seeds")
    for name, p in corpus.items():
        if p.is_file() and p.suffix in (".safetensors", ".gguf"):
            shutil.copy(p, out / name.replace("/", "_"))
    return out


@pytest.fixture(scope="module")
def seed_bytes(seeds: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(seeds.iterdir())]


def test_seeds_cover_both_outcomes(seed_bytes: list[bytes], tmp_path: Path) -> None:
    outcomes = [fuzz_headers.check_one(b, tmp_path) for b in seed_bytes]
    assert "ok" in outcomes and "refused" in outcomes


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_mutated_headers_open_or_refuse(
    seed_bytes: list[bytes], tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    buf = bytearray(data.draw(st.sampled_from(seed_bytes)))
    n_head = min(len(buf), 512)  # mutate where the headers live
    for _ in range(data.draw(st.integers(0, 8))):
        if n_head:
            buf[data.draw(st.integers(0, n_head - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        buf = buf[: data.draw(st.integers(0, len(buf)))]
    work = tmp_path_factory.mktemp("fz", numbered=True)
    t0 = time.perf_counter()
    assert fuzz_headers.check_one(bytes(buf), work) in ("ok", "refused")
    assert time.perf_counter() - t0 < 20, "a few KB of header took too long to parse"


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=256), magic=st.sampled_from([b"", b"GGUF", b"GGUF\x03\x00\x00\x00"]))
def test_random_bytes_open_or_refuse(
    raw: bytes, magic: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("rb", numbered=True)
    assert fuzz_headers.check_one(magic + raw, work) in ("ok", "refused")


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris not installed (pip install atheris); the hypothesis tests above drive the same target",
)
def test_atheris_brief_run(seeds: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(seeds, corpus)
    p = subprocess.run(
        [sys.executable, str(REPO / "fuzz" / "fuzz_headers.py"), "-runs=600", "-max_len=4096",
         "-timeout=20", "-seed=1", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-4000:]
    assert "Done 600 runs" in p.stderr


# inputs libFuzzer found that once escaped as non-edgegate exceptions (kept as regressions)
REGRESSIONS = {
    # safetensors dtype given as a JSON list -> TypeError: unhashable type
    "st_list_dtype": "iAAAAAAAAAB7ImEiOiB7ImR0eXBlIjogIkYzMiIsICJzaGFwZSI6IFs0LCA0XSwgImRhdGFfb2Zmc2V0cyI6IFswLCA2NF19LCAiYiI6IHsiZHR5cGUiOiAgWzQsIDRdLCAiZHBlIjogWzQsIDRdLCAiZGF0YV9vZmZzKWV0cyI6IFswLCA2NF19fSAgICAgIAAAgD8AAIA/APaAPwAAgD8AAIA/AACAPwAAgD8AAIA/AACAPwAAgD8AAIA/AACAPwAAgD8AAIA/AACAPwAAgD8=",
    # GGUF tensor with a zero dim next to a 2**63-sized one -> numpy ValueError
    "gguf_zero_and_huge_dim": "R0dVRgMAAAABAAAAAAAAAAIAAAAAAAAAFAAAAAAAAABnZW5lcmFsLmFyY2hpdGVjdHVyZQgAAAAFAAAAAAAAAGxsYW1hEQAAAAAAAABsbGFtYS5ibG9ja19jb3VudAQAAAABAAAAEwAAAAAAAABibBFrMS5hdHRuX3Eud2VpZ2h0AgAAABAAAAAAAAD/AAAAAAAAAAAAAAAAAAAAAAAAAAAA6Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6PRrcT86O/k+AX8WvQ==",
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_fuzz_regressions(name: str, tmp_path: Path) -> None:
    import base64

    assert fuzz_headers.check_one(base64.b64decode(REGRESSIONS[name]), tmp_path) == "refused"


def test_lying_block_count_opens_fast(seeds: Path, tmp_path: Path) -> None:
    """block_count = 10**9 with one block of tensors: opening must not build 10**9 names."""
    t0 = time.perf_counter()
    assert fuzz_headers.check_one((seeds / "g_lying_blocks.gguf").read_bytes(), tmp_path) == "ok"
    assert time.perf_counter() - t0 < 10
