"""Suite-wide guard: under `make test` (EDGEGATE_REQUIRE_RUNTIMES=1) every runtime and the
fixtures must be present, so a broken install fails loudly instead of quietly skipping the
real-runtime tests. Plain `pytest` without the variable still lets them skip."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_REQUIRED_MODULES = ("llama_cpp", "llama_cpp.server", "mlx.core", "mlx_lm", "onnxruntime", "onnx", "torch", "sentencepiece")  # torch: the transformers runtime (issue 12)
_REQUIRED_ON_LINUX = ("atheris",)  # the brief fuzz run of the header parsers (issue 7)


def _llama_cpp_has_amx() -> bool:
    try:
        import llama_cpp
    except ImportError:
        return False
    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode(errors="replace")


@pytest.fixture
def tiny_q8_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    """llama-cpp-python 0.3.36 crashes (SIGSEGV in decode) on the tiny Q8_0 fixture when its
    AMX buffers are in use: on such CPUs, tests that run that file load models without
    llama.cpp's extra buffer types (recorded in the model's info as ``extra_buffers``)."""
    if _llama_cpp_has_amx():
        monkeypatch.setenv("EDGEGATE_LLAMACPP_EXTRA_BUFFERS", "0")


def _missing() -> list[str]:
    out = []
    mods = _REQUIRED_MODULES + (_REQUIRED_ON_LINUX if sys.platform.startswith("linux") else ())
    for mod in mods:
        try:
            found = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            out.append(f"python module {mod}")
    if not (ROOT / "fixtures" / "MANIFEST.json").exists():
        out.append("fixtures/MANIFEST.json")
    return out


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("EDGEGATE_REQUIRE_RUNTIMES") == "1" and (missing := _missing()):
        raise pytest.UsageError(
            "EDGEGATE_REQUIRE_RUNTIMES=1 but these are missing: " + ", ".join(missing)
            + " (install with: pip install -e '.[all,dev]')"
        )
