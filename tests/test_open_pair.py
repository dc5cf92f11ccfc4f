"""``open_pair``: every check opens its two models the same way, each local model in its own
child process with a deadline on every call (BBQ included), lazily, and closes both.

The hanging runtime is a registered test backend: the only way to make a runtime hang on
demand (the child really sleeps past its deadline and is really killed)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgegate import checks
from edgegate.backends import RUNTIMES, RuntimeSpec, register_runtime
from edgegate.backends._subprocess import IsolatedBackend
from edgegate.backends.pair import OpenSettings, open_pair
from edgegate.checks.base import CheckContext
from edgegate.checks.sections import BBQSection, bbq_section
from edgegate.errors import BackendError
from edgegate.settings import RunSettings

ROOT = Path(__file__).resolve().parents[1]


class HangingBackend:
    """Loads instantly, tokenizes by characters; ``chat_prompt`` (the first thing BBQ asks)
    never answers."""

    runtime = "hanging"

    def __init__(self, path: Path, **_: object) -> None:
        self.model_path = path
        self.n_ctx = 256
        self.n_vocab = 300
        self.load_s = 0.0

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return [min(ord(c), 299) for c in text]

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        time.sleep(120)
        return None

    def info(self) -> dict[str, object]:
        return {"runtime": self.runtime, "model_path": str(self.model_path)}

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _hanging_runtime():  # type: ignore[no-untyped-def]
    register_runtime(RuntimeSpec("hanging", f"{__name__}:HangingBackend", (), "hanging"))
    yield
    RUNTIMES.pop("hanging", None)


def _models(tmp_path: Path) -> tuple[Path, Path]:
    paths = (tmp_path / "dense.bin", tmp_path / "compressed.bin")
    for i, p in enumerate(paths):
        p.write_bytes(bytes([i]) * 16)
    return paths


def test_open_pair_is_lazy_isolated_and_closes_both(tmp_path: Path) -> None:
    with open_pair("hanging", _models(tmp_path), OpenSettings(n_ctx=128, timeout=60)) as pair:
        assert pair._open == {}  # nothing loaded until asked for
        dense = pair.dense
        assert isinstance(dense, IsolatedBackend) and dense.info()["isolated"] is True
        assert dense.tokenize("ab") == [97, 98] and dense.n_ctx == 256
        comp = pair.compressed
        assert isinstance(comp, IsolatedBackend) and comp._proc.pid != dense._proc.pid
        assert pair.dense is dense  # opened once
    assert dense._proc.poll() is not None and comp._proc.poll() is not None  # both children ended
    dense.close()  # closing twice is harmless


def _bbq_context(tmp_path: Path, runtime: str, **settings: object) -> CheckContext[BBQSection]:
    dense, comp = _models(tmp_path)
    section = {
        "runtime": runtime,
        "data": str(ROOT / "fixtures" / "bbq"),
        "items": 12,
        "min_items": 1,
    }
    return CheckContext(
        compressed_path=comp,
        dense_path=dense,
        section=bbq_section(section),
        settings=RunSettings(cache_dir=str(tmp_path / "cache"), **settings),  # type: ignore[arg-type]
    )


def test_bbq_runs_its_models_in_a_child_with_a_deadline(tmp_path: Path) -> None:
    ctx = _bbq_context(tmp_path, "hanging", backend_timeout=3.0)
    t0 = time.monotonic()
    with pytest.raises(BackendError, match=r"did not answer 'chat_prompt' within 3s \(hung\)"):
        checks.run("bbq", ctx)
    assert time.monotonic() - t0 < 60
