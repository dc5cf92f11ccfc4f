"""Runtime faults become BackendError, and missing runtimes BackendUnavailable.

The hang and the crash are real: the child process really sleeps past its deadline or really
dies of SIGSEGV/abort. The misbehaving "runtimes" below are registered test backends (the only
way to make a runtime hang or segfault on demand); the NaN case uses a real checkpoint whose
weights really contain NaN.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgegate.backends import RUNTIMES, RuntimeSpec, available, open_backend, register_runtime
from edgegate.errors import BackendError, BackendUnavailable, InputError

ROOT = Path(__file__).resolve().parents[1]
DENSE = ROOT / "fixtures" / "models" / "dense"


class FaultyBackend:
    """Loads instantly; ``tokenize`` misbehaves according to the text it is given."""

    runtime = "faulty"

    def __init__(self, path: Path, **_: object) -> None:
        self.model_path = path
        self.n_ctx = 64
        self.n_vocab = 10
        self.load_s = 0.0

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        if text == "hang":
            time.sleep(60)
        if text == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if text == "raise":
            raise RuntimeError("native library said no")
        return [len(text)]

    def token_logprobs(self, tokens: list[int]) -> np.ndarray:
        return -np.arange(len(tokens) - 1, dtype=np.float64)

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _faulty_runtime():
    register_runtime(RuntimeSpec("faulty", f"{__name__}:FaultyBackend", (), "faulty"))
    yield
    RUNTIMES.pop("faulty", None)


def test_hang_is_killed_after_timeout(tmp_path: Path) -> None:
    b = open_backend("faulty", tmp_path, timeout=60)  # child start-up may be slow on a busy box
    b.timeout = 1.5
    assert b.tokenize("ok") == [2]
    np.testing.assert_array_equal(b.token_logprobs([1, 2, 3]), [0.0, -1.0])
    t0 = time.monotonic()
    with pytest.raises(BackendError, match=r"did not answer 'tokenize' within 1.5s \(hung\)"):
        b.tokenize("hang")
    assert time.monotonic() - t0 < 30
    assert b._proc.poll() is not None  # the hung child is gone
    with pytest.raises(BackendError, match="process is gone"):
        b.tokenize("ok")
    b.close()


def test_segfault_becomes_backend_error(tmp_path: Path) -> None:
    b = open_backend("faulty", tmp_path, timeout=30)
    with pytest.raises(BackendError, match="crashed during 'tokenize' \\(signal SIGSEGV\\)"):
        b.tokenize("segv")
    b.close()


def test_runtime_exception_is_reported_and_child_keeps_serving(tmp_path: Path) -> None:
    b = open_backend("faulty", tmp_path, timeout=30)
    with pytest.raises(BackendError, match="RuntimeError: native library said no"):
        b.tokenize("raise")
    assert b.tokenize("abc") == [3]
    b.close()


def test_missing_runtime_is_unavailable_with_install_hint(tmp_path: Path) -> None:
    register_runtime(
        RuntimeSpec("faulty", f"{__name__}:FaultyBackend", ("edgegate_no_such_module",), "faulty")
    )
    assert not available("faulty")
    with pytest.raises(BackendUnavailable) as exc:
        open_backend("faulty", tmp_path)
    assert "pip install 'edgegate[faulty]'" in exc.value.one_line()


def test_unknown_runtime_and_missing_path() -> None:
    with pytest.raises(InputError, match="unknown runtime 'tpu'"):
        open_backend("tpu", DENSE)
    with pytest.raises(InputError, match="does not exist"):
        open_backend("mlx", DENSE / "nope")


def _poison_bf16(src: Path, dst: Path, tensor: str) -> None:
    """Copy an HF dir and overwrite ``tensor`` (bf16) with NaN bytes in place."""
    shutil.copytree(src, dst)
    f = dst / "model.safetensors"
    raw = bytearray(f.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    meta = header[tensor]
    assert meta["dtype"] == "BF16"
    start, end = (8 + n + o for o in meta["data_offsets"])
    raw[start:end] = b"\xc0\x7f" * ((end - start) // 2)  # bf16 quiet NaN, little endian
    f.write_bytes(bytes(raw))


@pytest.mark.skipif(not available("mlx"), reason="mlx is not installed")
def test_nan_weights_give_backend_error(tmp_path: Path) -> None:
    bad = tmp_path / "nan"
    _poison_bf16(DENSE, bad, "model.norm.weight")
    b = open_backend("mlx", bad, n_ctx=64)
    with pytest.raises(BackendError, match="non-finite logits"):
        b.token_logprobs([0, 5, 6, 7])
    with pytest.raises(BackendError, match="non-finite logits"):
        b.generate([0, 5], 3)


@pytest.mark.skipif(not available("mlx"), reason="mlx is not installed")
def test_isolated_real_runtime_matches_in_process() -> None:
    ids = [0, 40, 41, 42, 43, 44, 45]
    local = open_backend("mlx", DENSE, n_ctx=64)
    iso = open_backend("mlx", DENSE, n_ctx=64, timeout=120)
    try:
        np.testing.assert_allclose(iso.token_logprobs(ids), local.token_logprobs(ids), atol=1e-6)
        assert iso.generate(ids, 5) == local.generate(ids, 5)
        assert iso.info()["isolated"] is True and iso.n_vocab == local.n_vocab
        with pytest.raises(InputError, match="context holds 64"):  # typed errors cross the pipe
            iso.token_logprobs([1] * 65)
    finally:
        iso.close()
        local.close()


def test_wire_frames_carry_arrays_as_their_own_bytes() -> None:
    """Arrays of every dtype the backends return cross a real pipe unchanged (values, dtype,
    shape, writable), including empty ones and several in one message, next to JSON fields."""
    from edgegate.backends._subprocess import _recv, _send
    from edgegate.backends.base import LoglikResult

    rng = np.random.default_rng(0)
    msg = {
        "ok": {
            "logits": rng.standard_normal((16, 1000)).astype(np.float32),
            "lp": rng.standard_normal(7),
            "agree": np.array([True, False, True]),
            "empty": np.zeros((0, 5), dtype=np.float32),
            "ids": np.arange(5, dtype=np.int64),
            "res": [LoglikResult(-1.5, 2, True)],
            "text": "ok \u2713",
        }
    }
    r, w = os.pipe()
    try:
        import threading

        writer = threading.Thread(target=_send, args=(w, msg))  # 64 KB pipe: read while it writes
        writer.start()
        got = _recv(r, time.monotonic() + 60)["ok"]
        writer.join()
    finally:
        os.close(r)
        os.close(w)
    for key in ("logits", "lp", "agree", "empty", "ids"):
        want = msg["ok"][key]
        assert got[key].dtype == want.dtype and got[key].shape == want.shape
        assert np.array_equal(got[key], want)
    assert got["logits"].flags.writeable
    assert got["res"] == [LoglikResult(-1.5, 2, True)] and got["text"] == "ok \u2713"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
