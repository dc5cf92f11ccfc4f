"""Cross-runtime agreement (issue 12): one checkpoint through transformers and through llama.cpp
(converted by llama.cpp's own converter at f16 and at bf16) gives perplexity within 1% and
letter-mode BBQ answers that agree on at least 97% of real BBQ items.

The checkpoint is a tiny random-weight Gemma 3 (bf16 weights, sliding-window attention, tied
embeddings). transformers computes in float32 here (EDGEGATE_TORCH_DTYPE): on bf16 weights that
is exact, so the comparison isolates conversion and runtime. A random model's letter
log-probabilities are close together, so with bf16 *activations* (transformers' default for a
bf16 checkpoint on CPU) rounding alone can flip answers, which says nothing about the
conversion; benchmarks/runtime_agreement.py measures both settings for any checkpoint.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("sentencepiece")

import _tiny_arch as T

from edgegate.backends import available, open_backend
from edgegate.backends.hf_to_gguf import find_converter
from edgegate.bbq.dataset import load, stratified_sample
from edgegate.bbq.scoring import ScoreConfig, Scorer

REPO = Path(__file__).resolve().parents[1]
BBQ = REPO.parent / "shared" / "bbq" / "data"
TEXT = (REPO / "src" / "edgegate" / "data" / "eval_text.txt").read_text(encoding="utf-8")
N_CTX = 128  # perplexity chunks; BBQ prompts need the 512-token context


def _ppl(backend: Any, chunks: list[list[int]]) -> float:
    nll = [-float(backend.token_logprobs(c).sum()) for c in chunks]
    return math.exp(sum(nll) / sum(len(c) - 1 for c in chunks))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if find_converter() is None or not available("llamacpp"):
        if os.environ.get("EDGEGATE_REQUIRE_RUNTIMES") == "1":
            pytest.fail(
                "llama.cpp and its converter are required (make test sets EDGEGATE_GGUF_CONVERTER)"
            )
        pytest.skip("llama.cpp's converter or llama-cpp-python is not installed")
    if not BBQ.is_dir():
        pytest.skip(f"BBQ data not found at {BBQ}")
    root = tmp_path_factory.mktemp("agree")
    model, _ = T.build_pair("gemma3", root, T.build_tokenizer(root / "tok", TEXT, gemma=True))
    items = stratified_sample(load(BBQ, condition="ambig"), 120, seed=0)
    os.environ["EDGEGATE_TORCH_DTYPE"] = "float32"
    try:
        ref = open_backend("transformers", model, n_ctx=512, threads=2)
    finally:
        os.environ.pop("EDGEGATE_TORCH_DTYPE")
    assert ref.info()["dtype"] == "float32"
    toks = ref.tokenize(TEXT[:8000])
    chunks = [[toks[0], *toks[1 + i : i + N_CTX]] for i in range(0, len(toks) - N_CTX, N_CTX - 1)]
    out = {
        "model": model,
        "root": root,
        "items": items,
        "toks": toks,
        "chunks": chunks,
        "ppl": _ppl(ref, chunks),
        "answers": [a.choice for a in Scorer(ref, ScoreConfig()).score(items)],
    }
    ref.close()
    return out


@pytest.mark.parametrize("outtype", ["f16", "bf16"])
def test_llamacpp_agrees_with_transformers(
    outtype: str, reference: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEGATE_GGUF_OUTTYPE", outtype)
    b = open_backend(
        "llamacpp", reference["model"], n_ctx=512, threads=2, cache_dir=reference["root"] / "cache"
    )
    try:
        conv = b.info()["converter"]
        assert conv["name"].startswith("llama.cpp") and conv["outtype"] == outtype
        assert b.tokenize(TEXT[:8000]) == reference["toks"]  # same tokenizer after conversion
        assert len(reference["chunks"]) >= 8
        rel = _ppl(b, reference["chunks"]) / reference["ppl"] - 1
        assert abs(rel) < 0.01, f"perplexity differs by {rel:+.3%}"
        answers = [a.choice for a in Scorer(b, ScoreConfig()).score(reference["items"])]
        agree = sum(x == y for x, y in zip(answers, reference["answers"], strict=True)) / len(
            answers
        )
        assert agree >= 0.97, f"letter-mode answers agree on {agree:.1%} of {len(answers)} items"
        # and not trivially: (almost) every item answered, and not all with one letter
        assert sum(a is not None for a in reference["answers"]) >= 0.95 * len(answers)
        assert len({a for a in reference["answers"] if a is not None}) > 1
    finally:
        b.close()
