"""One `--runtime` vocabulary for every command (issue 14, extended by issue 12's `auto` and
`transformers`): `check`, `bench` and `ppl` take the runtimes that load local files, `bbq run`
also takes `openai`; `check` and `bench` accept comma-separated lists; a wrong name is exit 2
naming the flag, before anything is measured."""

from __future__ import annotations

from pathlib import Path

import pytest
from _support import run_cli

from edgegate.backends import LOCAL_RUNTIME_CHOICES, RUNTIME_CHOICES, RUNTIMES, parse_runtimes
from edgegate.errors import InputError

REPO = Path(__file__).resolve().parents[1]
M = REPO / "fixtures" / "models"
DENSE, GGUF = str(M / "dense"), str(M / "gguf" / "wanda50-f16.gguf")


def test_the_lists_come_from_the_registry() -> None:
    assert RUNTIME_CHOICES[0] == LOCAL_RUNTIME_CHOICES[0] == "auto"
    assert set(RUNTIME_CHOICES) == {"auto", *RUNTIMES}
    assert "transformers" in LOCAL_RUNTIME_CHOICES and "openai" not in LOCAL_RUNTIME_CHOICES
    assert "openai" in RUNTIME_CHOICES


def test_parse_runtimes_splits_commas_and_repeats_and_dedupes() -> None:
    assert parse_runtimes(["auto,llamacpp", "onnx", "llamacpp"]) == ("auto", "llamacpp", "onnx")
    assert parse_runtimes([]) == ()
    with pytest.raises(InputError, match="unknown runtime 'tpu'") as e:
        parse_runtimes(["llamacpp,tpu"])
    assert e.value.field == "--runtime"
    with pytest.raises(InputError, match="runtime 'openai' does not apply here"):
        parse_runtimes(["openai"])
    assert parse_runtimes(["openai"], RUNTIME_CHOICES) == ("openai",)


@pytest.mark.parametrize(
    "argv", [["check", "--help"], ["bench", "--help"], ["ppl", "--help"], ["bbq", "run", "--help"]]
)
def test_every_command_lists_auto_and_transformers(argv: list[str]) -> None:
    code, text = run_cli(*argv)
    assert code == 0, text
    flat = " ".join(text.split())
    assert "auto" in flat and "transformers" in flat and "llamacpp" in flat, flat


def test_check_takes_a_comma_separated_list_and_refuses_an_unknown_name(tmp_path: Path) -> None:
    code, text = run_cli(
        "check",
        DENSE,
        GGUF,
        "--policy",
        "default",
        "--only",
        "sparsity",
        "--runtime",
        "auto,nosuch",
        "-q",
        "--json-out",
        str(tmp_path / "r.json"),
    )
    assert code == 2 and "unknown runtime 'nosuch'" in text and "--runtime" in text, text
    code, text = run_cli(
        "check",
        DENSE,
        GGUF,
        "--policy",
        "default",
        "--only",
        "size",
        "--runtime",
        "auto,llamacpp",
        "--runtime",
        "onnx",
        "-q",
        "--no-hash",
        "--json-out",
        str(tmp_path / "r.json"),
    )
    assert code in (0, 1), text  # accepted: the size check ran to a verdict


def test_bench_refuses_a_server_and_bbq_run_takes_one_runtime() -> None:
    code, text = run_cli("bench", DENSE, GGUF, "--runtime", "llamacpp,openai", "-q")
    assert code == 2 and "runtime 'openai' does not apply here" in text, text
    code, text = run_cli("bbq", "run", DENSE, GGUF, "--runtime", "llamacpp,mlx", "--data", "x")
    assert code == 2 and "one runtime scores both models" in text, text
