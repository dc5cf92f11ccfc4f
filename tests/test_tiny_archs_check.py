"""`edgegate check` on dense/pruned pairs of six architectures (Llama, Mistral, Gemma 2, Gemma 3,
Qwen 3, Phi-3; random weights, built here by benchmarks/_tiny_arch.py): sparsity, size, perplexity and
BBQ run to a measurement and a verdict through `runtime: auto` (-> transformers) and through
llama.cpp (the HF directory converted by llama.cpp's own converter).

Random-weight models are no better than chance on text, so the tests assert that every check
ran and decided (pass, fail or inconclusive: never error, skipped or exit 2/3), not that it
passed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("sentencepiece")

import _tiny_arch as T
from _support import run_cli

from edgegate.backends import available
from edgegate.backends.hf_to_gguf import find_converter

REPO = Path(__file__).resolve().parents[1]
BBQ = REPO.parent / "shared" / "bbq" / "data"
TEXT = (REPO / "src" / "edgegate" / "data" / "eval_text.txt").read_text(encoding="utf-8")
CHECKS = ("sparsity", "size", "perplexity", "bbq")
DECIDED = {"pass", "fail", "inconclusive"}
POLICY = """version: 1
name: tiny-archs
checks:
  sparsity: {{required: true}}
  size: {{required: true}}
  perplexity: {{required: true, runtime: {rt}, n_ctx: 128, min_chunks: 2, text: {text}}}
  bbq: {{required: true, runtime: {rt}, items: 12, min_items: 6, min_items_per_category: 1}}
"""


def _converter_or_skip() -> None:
    if find_converter() is None:
        if os.environ.get("EDGEGATE_REQUIRE_RUNTIMES") == "1":
            pytest.fail(
                "llama.cpp's converter is required (make test sets EDGEGATE_GGUF_CONVERTER)"
            )
        pytest.skip("llama.cpp's HF->GGUF converter is not installed (set EDGEGATE_GGUF_CONVERTER)")
    if not available("llamacpp"):
        pytest.skip("llama-cpp-python is not installed")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("archs")
    toks = T.build_tokenizers(root, TEXT)
    return {
        a: T.build_pair(a, root, T.tokenizer_for(a, toks), seed=i) for i, a in enumerate(T.ARCHS)
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("archs-run")
    (d / "text.txt").write_text(TEXT[:3000], encoding="utf-8")
    return d


def _check(pair: tuple[Path, Path], runtime: str, workdir: Path, tag: str) -> dict[str, Any]:
    if not BBQ.is_dir():
        pytest.skip(f"BBQ data not found at {BBQ}")
    pol = workdir / f"policy-{runtime}.yaml"
    pol.write_text(POLICY.format(rt=runtime, text=workdir / "text.txt"))
    out = workdir / f"{tag}-{runtime}.json"
    code, text = run_cli(
        "check",
        str(pair[0]),
        str(pair[1]),
        "--policy",
        str(pol),
        "--only",
        ",".join(CHECKS),
        "--bbq-data",
        str(BBQ),
        "--cache-dir",
        str(workdir / "cache"),
        "--threads",
        "1",
        "-q",
        "--json-out",
        str(out),
        "--md-out",
        str(out.with_suffix(".md")),
    )
    assert code in (0, 1), text[-2000:]
    report = json.loads(out.read_text())
    by = {c["check"]: c for c in report["checks"]}
    for name in CHECKS:
        assert by[name]["status"] in DECIDED, (name, by[name])
    assert by["sparsity"]["measurements"], by["sparsity"]
    return by


@pytest.mark.parametrize("arch", list(T.ARCHS))
def test_check_with_runtime_auto(arch: str, pairs: Any, workdir: Path) -> None:
    by = _check(pairs[arch], "auto", workdir, arch)
    for name in ("perplexity", "bbq"):
        choice = by[name]["measurements"]["runtime_choice"]
        assert choice["requested"] == "auto" and choice["runtime"] == "transformers", choice
        assert "HF safetensors" in choice["reason"]
    # the Markdown summary (GitHub's job summary) names the runtime auto chose, and why
    md = (workdir / f"{arch}-auto.md").read_text()
    assert "perplexity on **transformers** (" in md and "bbq on **transformers** (" in md, md[:1500]
    ppl = by["perplexity"]["measurements"]
    assert ppl["extra"]["dense_model"]["runtime"] == "transformers" and ppl["dense"]["ppl"] > 1
    # magnitude pruning at 50% of every decoder linear layer is found by the scan
    assert "50" in by["sparsity"]["summary"] or "49" in by["sparsity"]["summary"], by["sparsity"][
        "summary"
    ]


@pytest.mark.parametrize("arch", list(T.ARCHS))
def test_check_on_llamacpp_via_llama_cpp_converter(arch: str, pairs: Any, workdir: Path) -> None:
    _converter_or_skip()
    by = _check(pairs[arch], "llamacpp", workdir, arch)
    ppl = by["perplexity"]["measurements"]
    for role in ("dense_model", "compressed_model"):
        info = ppl["extra"][role]
        assert info["runtime"] == "llamacpp" and info["converted_from"], info
        # the GGUF came from llama.cpp's converter, and the report names it and its version
        assert info["converter"]["name"].startswith("llama.cpp"), info["converter"]
        assert info["converter"]["version"] and info["converter"]["outtype"] == "f16"
