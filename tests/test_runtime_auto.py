"""`runtime: auto` (issue 12): each artifact is measured where it ships, the pair runs on the
compressed artifact's runtime, an explicit runtime wins, and the presets default to auto."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgegate.backends import supports
from edgegate.backends.auto import resolve_pair, resolve_runtime
from edgegate.errors import InputError
from edgegate.policy import load_policy

REPO = Path(__file__).resolve().parents[1]
M = REPO / "fixtures" / "models"


@pytest.mark.parametrize(
    ("path", "runtime", "why"),
    [
        (M / "dense", "transformers", "HF safetensors"),
        (M / "compressed-tensors" / "wanda50-bitmask", "transformers", "compressed-tensors"),
        (M / "gguf" / "dense-q8_0.gguf", "llamacpp", "GGUF"),
        (M / "mlx" / "dense-q4", "mlx", "mlx-lm"),
        (M / "onnx" / "dense", "onnx", "ONNX"),
    ],
)
def test_each_format_goes_where_it_ships(path: Path, runtime: str, why: str) -> None:
    c = resolve_runtime(path)
    assert (c.runtime, c.requested) == (runtime, "auto")
    assert why in c.reason
    assert supports(c.runtime, path) is None  # the chosen runtime can load it


def test_explicit_runtime_wins() -> None:
    c = resolve_runtime(M / "dense", "llamacpp")
    assert (c.runtime, c.requested) == ("llamacpp", "llamacpp") and "explicitly" in c.reason
    assert resolve_pair(M / "dense", M / "gguf" / "dense-f16.gguf", "mlx").runtime == "mlx"


def test_a_pair_runs_on_the_compressed_artifacts_runtime() -> None:
    c = resolve_pair(M / "dense", M / "gguf" / "wanda50-f16.gguf")
    assert c.runtime == "llamacpp" and "both are measured on one runtime" in c.reason
    assert resolve_pair(M / "dense", M / "wanda50").runtime == "transformers"
    assert resolve_runtime("http://127.0.0.1:8080/v1").runtime == "openai"


def test_unreadable_input_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        resolve_runtime(tmp_path / "missing")
    (tmp_path / "model.bin").write_bytes(b"\x80\x02 pickle")
    with pytest.raises(InputError, match="pickle"):
        resolve_runtime(tmp_path / "model.bin")


@pytest.mark.parametrize("preset", ["default", "strict", "edge-iot"])
def test_presets_default_to_auto(preset: str) -> None:
    raw = yaml.safe_load((REPO / "policies" / f"{preset}.yaml").read_text())
    assert raw["checks"]["perplexity"]["runtime"] == "auto"
    assert raw["checks"]["bbq"]["runtime"] == "auto"
    load_policy(str(REPO / "policies" / f"{preset}.yaml"))  # valid against the schema


def test_policy_schema_accepts_the_new_runtimes(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(
        "version: 1\nchecks:\n  perplexity: {runtime: transformers}\n  speed: {runtimes: [auto, transformers]}\n"
    )
    load_policy(str(p))
    p.write_text("version: 1\nchecks:\n  perplexity: {runtime: torch}\n")
    with pytest.raises(InputError):
        load_policy(str(p))
