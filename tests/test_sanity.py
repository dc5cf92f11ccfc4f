"""Input sanity: identical inputs, two different models, swapped arguments (pure functions;
the gate-level behaviour is tested through `edgegate check` in test_runner_cli.py)."""

from __future__ import annotations

from pathlib import Path

from edgegate.checkpoint import open_checkpoint
from edgegate.environment import describe_input
from edgegate.sanity import identical_inputs, probably_swapped, shape_mismatches

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def test_identical_by_path_and_by_bytes(tmp_path: Path) -> None:
    d = describe_input("dense", MODELS / "dense")
    assert identical_inputs(d, d) is not None
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in (MODELS / "dense").iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    found = identical_inputs(d, describe_input("compressed", copy))
    assert found is not None and found.severity == "invalid" and "byte-identical" in found.message
    assert identical_inputs(d, describe_input("compressed", MODELS / "wanda50")) is None


def test_unhashed_inputs_are_not_called_identical(tmp_path: Path) -> None:
    d = describe_input("dense", MODELS / "dense", hash_files=False)
    c = describe_input("compressed", MODELS / "wanda50", hash_files=False)
    assert identical_inputs(d, c) is None


def test_different_models_by_config() -> None:
    with (
        open_checkpoint(MODELS / "dense") as a,
        open_checkpoint(MODELS / "gguf" / "dense-f16.gguf") as b,
    ):
        assert shape_mismatches(a.config, b.config) is None  # same model across formats
        other = {**dict(a.config or {}), "hidden_size": 2 * int((a.config or {})["hidden_size"])}
        found = shape_mismatches(a.config, other)
    assert found is not None and "hidden_size" in found.message


def test_swapped_needs_a_clear_margin() -> None:
    assert probably_swapped(0.5, 0.0) is not None
    assert probably_swapped(0.0, 0.5) is None
    assert probably_swapped(0.52, 0.5) is None  # within noise of the same model
    assert probably_swapped(None, 0.5) is None
