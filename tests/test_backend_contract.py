"""Every local runtime honours the Backend contract on the real fixture model.

No mocks: real llama.cpp, MLX and ONNX Runtime on fixtures/models (a tiny trained Llama).
Expected values are derived independently inside each test (e.g. next-token log-probs must
match the full-sequence log-probs at the same position; a full-vocabulary softmax sums to 1).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edgegate.backends import available, open_backend
from edgegate.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"
CASES = {  # id -> (runtime, path)
    "mlx-hf": ("mlx", MODELS / "dense"),
    "mlx-mlxdir": ("mlx", MODELS / "mlx" / "dense"),
    "llamacpp-gguf": ("llamacpp", MODELS / "gguf" / "dense-f16.gguf"),
    "onnx": ("onnx", MODELS / "onnx" / "dense"),
}
TEXT = "Cora opens a heavy piano after lunch. There are two blankets in the workshop."


@pytest.fixture(scope="module", params=sorted(CASES))
def backend(request: pytest.FixtureRequest):
    runtime, path = CASES[request.param]
    if not available(runtime):
        pytest.skip(f"{runtime} is not installed")
    if not path.exists():
        pytest.skip(f"fixture {path} not built yet")
    b = open_backend(runtime, path, n_ctx=128, threads=1)
    yield b
    b.close()


def test_tokenize_roundtrip(backend) -> None:
    ids = backend.tokenize(TEXT)
    plain = backend.tokenize(TEXT, add_special=False)
    assert ids[0] == 0 and ids[1:] == plain  # the fixture tokenizer adds <|bos|> = 0
    assert all(0 <= i < backend.n_vocab for i in ids)
    assert backend.detokenize(plain) == TEXT


def test_token_logprobs_finite_and_consistent(backend) -> None:
    ids = backend.tokenize(TEXT)
    lp = backend.token_logprobs(ids)
    assert lp.shape == (len(ids) - 1,)
    assert np.all(np.isfinite(lp)) and np.all(lp <= 0)
    # a trained model beats the uniform distribution on in-domain text
    assert -lp.mean() < math.log(backend.n_vocab)
    tail = backend.score_tokens(ids, 5)
    np.testing.assert_allclose(tail, lp[4:], atol=2e-4)


def test_next_token_logprobs_is_a_distribution(backend) -> None:
    ids = backend.tokenize(TEXT)
    vocab = list(range(backend.n_vocab))
    out = backend.next_token_logprobs([ids[:6], ids[:9]], vocab)
    assert out.shape == (2, backend.n_vocab)
    assert np.all(out <= 0)
    np.testing.assert_allclose(np.exp(out).sum(axis=1), 1.0, atol=1e-4)
    # same number as the full forward pass at that position
    lp = backend.token_logprobs(ids)
    np.testing.assert_allclose(out[0, ids[6]], lp[5], atol=2e-4)
    np.testing.assert_allclose(out[1, ids[9]], lp[8], atol=2e-4)


def test_loglikelihood_matches_token_logprobs(backend) -> None:
    ids = backend.tokenize(TEXT)
    lp = backend.token_logprobs(ids)
    ctx, cont = ids[:7], ids[7:12]
    (r,) = backend.loglikelihood([(ctx, cont)])
    assert r.n_tokens == 5
    assert r.logprob == pytest.approx(float(lp[6:11].sum()), abs=1e-3)
    greedy = backend.generate(ctx, 4)
    (g,) = backend.loglikelihood([(ctx, greedy)])
    assert g.is_greedy
    assert g.logprob <= 0


def test_generate_deterministic(backend) -> None:
    ids = backend.tokenize(TEXT)[:8]
    a = backend.generate(ids, 12)
    assert a == backend.generate(ids, 12)
    assert 1 <= len(a) <= 12
    s1 = backend.generate(ids, 12, temperature=1.0, seed=1)
    assert s1 == backend.generate(ids, 12, temperature=1.0, seed=1)
    # greedy generation continues exactly the argmax of next_token_logprobs
    first = int(np.argmax(backend.next_token_logprobs([ids], list(range(backend.n_vocab)))[0]))
    assert a[0] == first


def test_chat_prompt_uses_the_model_template(backend) -> None:
    p = backend.chat_prompt("Be brief.", "Who was late?")
    assert p is not None
    assert "<|im_start|>user\nWho was late?<|im_end|>" in p
    assert p.endswith("<|im_start|>assistant\n")


def test_time_run_reports_positive_times(backend) -> None:
    t = backend.time_run(list(range(5, 37)), 8)
    assert t.prompt_tokens == 32 and t.gen_tokens == 8
    assert t.prefill_s > 0 and t.decode_s > 0 and t.prefill_s <= t.ttft_s
    assert t.peak_rss_bytes and t.peak_rss_bytes > 10 * 2**20


def test_context_too_long_is_a_clear_error(backend) -> None:
    with pytest.raises(InputError, match="context holds 128"):
        backend.token_logprobs([1] * 129)
    with pytest.raises(InputError, match="out of range"):
        backend.token_logprobs([0, backend.n_vocab])
