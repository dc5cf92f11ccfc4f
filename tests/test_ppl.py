"""Perplexity: chunking, statistics, cross-runtime agreement, and the CLI's refusals."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgegate import checks
from edgegate.backends import available, open_backend
from edgegate.checks.base import CheckContext, Status
from edgegate.checks.sections import PerplexitySection
from edgegate.errors import InputError
from edgegate.perplexity import PPLResult, compare, default_text, make_chunks, perplexity, run_ppl
from edgegate.stats import mean_t_interval, t_quantile

ROOT = Path(__file__).resolve().parents[1]
DENSE = ROOT / "fixtures" / "models" / "dense"
GGUF = ROOT / "fixtures" / "models" / "gguf" / "dense-f16.gguf"
ONNX = ROOT / "fixtures" / "models" / "onnx" / "dense"
EVAL = ROOT / "fixtures" / "text" / "eval.txt"
needs_mlx = pytest.mark.skipif(not available("mlx"), reason="mlx is not installed")
needs_llama = pytest.mark.skipif(
    not available("llamacpp"), reason="llama-cpp-python is not installed"
)


# -- chunking ----------------------------------------------------------------------------------
def test_chunked_mode_follows_llama_perplexity() -> None:
    stream = list(
        range(10, 10 + 37)
    )  # no BOS yet: it is prepended, then each chunk starts with BOS
    ch = make_chunks(stream, 8, "chunked", bos=1)
    assert len(ch.chunks) == (37 + 1) // 8 == 4
    assert ch.chunks[0] == (1, 10, 11, 12, 13, 14, 15, 16)
    assert ch.chunks[1] == (1, *range(18, 25))  # token 17 was overwritten by BOS, as llama.cpp does
    assert (
        ch.first == 5
    )  # scores tokens 5..7 of each chunk: the second half minus the predicted-from-BOS row
    assert all(len(c) == 8 for c in ch.chunks)


def test_full_mode_scores_every_token_once() -> None:
    stream = list(range(10, 10 + 22))
    ch = make_chunks(stream, 8, "full", bos=1)
    assert ch.first == 1
    scored = [t for c in ch.chunks for t in c[ch.first :]]
    assert scored == stream[: len(ch.chunks) * 7] and len(ch.chunks) == 3
    nobos = make_chunks(stream, 8, "full", bos=None)
    assert [c[0] for c in nobos.chunks] == [10, 18]


def test_text_shorter_than_a_chunk_is_refused() -> None:
    with pytest.raises(InputError, match="fewer than one 64-token chunk"):
        make_chunks(list(range(30)), 64, "chunked", bos=1)
    with pytest.raises(InputError, match="unknown perplexity mode"):
        make_chunks(list(range(300)), 64, "sliding", bos=1)  # type: ignore[arg-type]


# -- statistics ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("df", "expected"), [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423)]
)
def test_t_quantile_matches_tables(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, rel=1e-4)


def _result(chunk_nll: list[float], per_chunk: int = 10) -> PPLResult:
    m = float(np.mean(chunk_nll))
    return PPLResult(
        math.exp(m),
        0.0,
        m,
        len(chunk_nll),
        per_chunk * len(chunk_nll),
        64,
        "chunked",
        tuple(chunk_nll),
        1.0,
        1.0,
    )


def test_paired_comparison_by_hand() -> None:
    d = _result([2.0, 2.2, 1.9, 2.1, 2.0])
    c = _result([2.05, 2.2, 2.0, 2.1, 2.05])
    r = compare(d, c)
    diffs = np.array([0.05, 0.0, 0.1, 0.0, 0.05])
    assert r.relative_change == pytest.approx(math.exp(diffs.mean()) - 1)
    half = 2.7764 * diffs.std(ddof=1) / math.sqrt(5)
    assert r.ci_low == pytest.approx(math.expm1(diffs.mean() - half), rel=1e-3)
    assert r.ci_high == pytest.approx(math.expm1(diffs.mean() + half), rel=1e-3)
    assert r.n == 5
    assert mean_t_interval([1.0])[1] != mean_t_interval([1.0])[1]  # NaN bound with one value


# -- real runtimes ---------------------------------------------------------------------------------
@needs_mlx
def test_mlx_ppl_matches_an_independent_numpy_computation() -> None:
    b = open_backend("mlx", DENSE, n_ctx=128)
    ch = make_chunks(b.tokenize(EVAL.read_text()[:4000], add_special=False), 128, "chunked", bos=0)
    res = perplexity(b, ch)
    # independent: full-vocab log-softmax over the same logits, via next_token_logprobs per position
    c0 = ch.chunks[0]
    lp = b.next_token_logprobs([c0[:i] for i in range(ch.first, 128)], list(range(b.n_vocab)))
    nll0 = -np.mean([lp[k, c0[ch.first + k]] for k in range(len(lp))])
    assert res.chunk_nll[0] == pytest.approx(nll0, abs=1e-4)
    assert res.n_scored == len(ch.chunks) * (128 - ch.first)
    assert 1 < res.ppl < 512 and res.se_ppl > 0
    b.close()


@needs_mlx
@needs_llama
def test_llamacpp_and_mlx_agree_within_one_percent(tmp_path: Path) -> None:
    text = EVAL.read_text()[:12000]
    kw = {"text": text, "n_ctx": 256, "timeout": None, "threads": 1}
    r_mlx = run_ppl(DENSE, DENSE, runtime="mlx", **kw)
    r_gguf = run_ppl(GGUF, GGUF, runtime="llamacpp", **kw)
    r_hf = run_ppl(DENSE, DENSE, runtime="llamacpp", cache_dir=tmp_path, **kw)
    assert r_mlx.dense.n_scored == r_gguf.dense.n_scored > 1000
    assert r_gguf.dense.ppl == pytest.approx(r_mlx.dense.ppl, rel=0.01)
    assert r_hf.dense.ppl == pytest.approx(
        r_mlx.dense.ppl, rel=0.01
    )  # HF dir converted to GGUF f16
    assert r_mlx.relative_change == 0.0 and r_gguf.relative_change == 0.0


@needs_llama
@pytest.mark.skipif(
    not (available("onnx") and ONNX.exists()), reason="ONNX fixture or onnxruntime missing"
)
def test_onnx_and_llamacpp_are_close() -> None:
    text = EVAL.read_text()[:8000]
    kw = {"text": text, "n_ctx": 128, "timeout": None, "threads": 1}
    r_onnx = run_ppl(ONNX, ONNX, runtime="onnx", **kw)
    r_gguf = run_ppl(GGUF, GGUF, runtime="llamacpp", **kw)
    assert r_onnx.dense.ppl == pytest.approx(r_gguf.dense.ppl, rel=0.01)


# -- CLI refusals ------------------------------------------------------------------------------------
def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from edgegate.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@needs_llama
def test_tokenizer_mismatch_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    shutil.copytree(DENSE, other)
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, b = (
        next(k for k, v in vocab.items() if v == 300),
        next(k for k, v in vocab.items() if v == 301),
    )
    vocab[a], vocab[b] = 301, 300  # same size, two ids swapped: silently different text
    (other / "tokenizer.json").write_text(json.dumps(tok))
    code, _, err = _cli(
        [
            "ppl",
            str(DENSE),
            str(other),
            "--runtime",
            "llamacpp",
            "--n-ctx",
            "64",
            "-q",
            "--threads",
            "1",
            "--text",
            str(EVAL),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capsys,
    )
    assert code == 2
    assert "tokenizer differs" in err and "Traceback" not in err


@needs_llama
def test_context_longer_than_trained_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(
        ["ppl", str(GGUF), str(GGUF), "--runtime", "llamacpp", "--n-ctx", "1024", "-q"], capsys
    )
    assert code == 2
    assert "exceeds the model's trained context 512" in err


@needs_llama
def test_ppl_cli_json_and_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(
        [
            "ppl",
            str(GGUF),
            str(GGUF),
            "--runtime",
            "llamacpp",
            "--n-ctx",
            "128",
            "-q",
            "--threads",
            "1",
            "--text",
            str(EVAL),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    data = json.loads(out)
    assert data["relative_change"] == 0.0 and data["n"] == data["dense"]["n_chunks"] >= 4
    from edgegate.settings import RunSettings

    section = {
        "runtime": "llamacpp",
        "max_relative_increase": 0.05,
        "n_ctx": 128,
        "text": str(EVAL),
        "min_chunks": 4,
    }
    opts = RunSettings(threads=1)
    res = checks.run(
        "perplexity",
        CheckContext(
            compressed_path=GGUF,
            dense_path=GGUF,
            section=PerplexitySection.from_policy(section),
            settings=opts,
        ),
    )
    assert res.status is Status.PASS and res.verdicts[0].ci is not None and res.verdicts[0].n >= 4
    # the observed value is the relative change, and its unit says so (9.591 beside "+959%" misled)
    assert res.verdicts[0].unit.startswith("relative") and res.verdicts[0].observed == 0.0
    few = checks.run(
        "perplexity",
        CheckContext(
            compressed_path=GGUF,
            dense_path=GGUF,
            section=PerplexitySection.from_policy({**section, "min_chunks": 10_000}),
            settings=opts,
        ),
    )
    assert few.status is Status.INCONCLUSIVE


def test_default_text_is_packaged_and_long() -> None:
    text = default_text()
    assert len(text.split()) > 3000


@needs_llama
def test_full_mode_scores_every_text_token() -> None:
    text = EVAL.read_text()[:3000]
    full = run_ppl(
        GGUF, GGUF, runtime="llamacpp", text=text, n_ctx=64, mode="full", timeout=None, threads=1
    )
    chunked = run_ppl(
        GGUF, GGUF, runtime="llamacpp", text=text, n_ctx=64, mode="chunked", timeout=None, threads=1
    )
    assert full.dense.n_scored == full.dense.n_chunks * 63
    assert chunked.dense.n_scored == chunked.dense.n_chunks * (64 - 33)
    # tokens with little context are harder: full-mode PPL is the higher one
    assert full.dense.ppl > chunked.dense.ppl


@needs_llama
def test_a_models_chunks_are_scored_once(tmp_path: Path) -> None:
    """edgegate.nll_cache: a second run against the same dense model takes the dense model's
    chunks from the result cache, bit-identical to scoring them; another thread count is another
    key. Null: a cold cache reuses nothing."""
    from edgegate.settings import RunSettings

    section = {
        "runtime": "llamacpp",
        "max_relative_increase": 0.05,
        "n_ctx": 128,
        "text": str(EVAL),
        "min_chunks": 4,
    }
    gguf = ROOT / "fixtures" / "models" / "gguf"

    def run(comp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        ctx = CheckContext(
            compressed_path=comp,
            dense_path=GGUF,
            section=PerplexitySection.from_policy(section),
            settings=RunSettings(threads=1, cache_dir=str(tmp_path)),
        )
        m = checks.run("perplexity", ctx).measurements
        return m["extra"]["result_cache"], m

    kept, cold = run(gguf / "dense-q8_0.gguf")
    n = cold["n"]
    assert kept == {
        "dense": {"chunks": n, "from_cache": 0},
        "compressed": {"chunks": n, "from_cache": 0},
    }
    kept, other = run(gguf / "wanda50-f16.gguf")
    assert kept == {
        "dense": {"chunks": n, "from_cache": n},
        "compressed": {"chunks": n, "from_cache": 0},
    }
    assert other["dense"] == cold["dense"] or other["dense"]["ppl"] == cold["dense"]["ppl"]
    kept, again = run(gguf / "dense-q8_0.gguf")
    assert (
        kept["compressed"] == {"chunks": n, "from_cache": n}
        and again["relative_change"] == cold["relative_change"]
    )
    # the key holds what may change the numbers (a second llama.cpp run with 2 threads would be
    # slow on a busy 2-core machine, so the key itself is checked)
    from edgegate.nll_cache import setting_key

    ch = {"n_ctx": 128, "mode": "chunked", "first": 64, "tokens_sha256": "x"}
    base = setting_key("llamacpp", 1, ch)
    assert base == setting_key("llamacpp", 1, dict(ch))
    for other in (
        setting_key("llamacpp", 2, ch),
        setting_key("mlx", 1, ch),
        setting_key("llamacpp", 1, {**ch, "first": 0}),
        setting_key("llamacpp", 1, {**ch, "tokens_sha256": "y"}),
    ):
        assert other != base
