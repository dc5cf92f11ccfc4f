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
_REQUIRED_MODULES = (
    "llama_cpp",
    "llama_cpp.server",
    "mlx.core",
    "mlx_lm",
    "onnxruntime",
    "onnx",
    "torch",
    "sentencepiece",
)  # torch: the transformers runtime (issue 12)
_REQUIRED_ON_LINUX = ("atheris",)  # the brief fuzz run of the header parsers (issue 7)


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
            "EDGEGATE_REQUIRE_RUNTIMES=1 but these are missing: "
            + ", ".join(missing)
            + " (install with: pip install -e '.[all,dev]')"
        )


@pytest.fixture()
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A dense folder and a compressed file for gate tests whose fake checks never read them."""
    dense = tmp_path / "dense"
    dense.mkdir()
    (dense / "model.safetensors").write_bytes(b"dense-bytes")
    comp = tmp_path / "comp.gguf"
    comp.write_bytes(b"compressed")
    return dense, comp
