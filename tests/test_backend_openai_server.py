"""The openai backend against a REAL llama-cpp-python server on 127.0.0.1, checked against
the llama.cpp Python API evaluating the same GGUF in this process.

One server per module (started with an API key, so authentication is real too).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("llama_cpp.server.app", reason="needs edgegate[server]")

from edgegate.backends.base import Backend
from edgegate.backends.openai_backend import OpenAIBackend
from edgegate.errors import BackendError

ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / "fixtures" / "models" / "gguf" / "dense-f16.gguf"
KEY = "sk-edgegate-live-test-key-42"
N_CTX = 512
ATOL = 1e-4  # same library and weights (observed: ~1e-6); only batching differs

PROMPTS = [
    "Question: The doctor and the nurse were late. Who was careless?\nA. the doctor\n"
    "B. the nurse\nC. unknown\nAnswer:",
    "Once upon a time there was a little dog. The dog",
    "The cat sat on the mat and",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    if not GGUF.exists():
        pytest.fail(f"fixture missing: {GGUF} (build it with fixtures/build.py)")
    port = _free_port()
    env = dict(os.environ, API_KEY=KEY)  # read by the server's settings, not on argv
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(GGUF),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(N_CTX),
            "--n_threads",
            "1",
            "--verbose",
            "false",
            "--logits_all",
            "true",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:  # bounded by the deadline
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {err}")
            try:
                req = urllib.request.Request(
                    f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}
                )
                with urllib.request.urlopen(req, timeout=2) as r:
                    json.load(r)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("llama_cpp.server did not come up within 60 s")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ref() -> Any:
    from llama_cpp import Llama

    return Llama(model_path=str(GGUF), n_ctx=N_CTX, logits_all=True, n_threads=1, verbose=False)


@pytest.fixture(scope="module")
def be(server: str) -> Iterator[OpenAIBackend]:
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEGATE_API_KEY", KEY)
    b = OpenAIBackend(server, concurrency=2, timeout=30, max_retries=1, n_ctx=N_CTX)
    mp.undo()
    yield b
    b.close()


def _ref_logprobs(ref: Any, ids: list[int]) -> np.ndarray:
    """Row i: log-softmax of the logits after ids[:i+1] (float64)."""
    ref.reset()
    ref.eval(ids)
    x = np.asarray(ref.scores[: len(ids)], dtype=np.float64)
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def test_connects_as_llama_cpp_python(be: OpenAIBackend) -> None:
    assert isinstance(be, Backend)
    assert be.dialect == "llama-cpp-python"
    assert be.runtime == "openai" and be.n_ctx == N_CTX and be.load_s > 0


def test_tokenize_matches_llama_cpp(be: OpenAIBackend, ref: Any) -> None:
    for text in PROMPTS:
        want = ref.tokenize(text.encode(), add_bos=True, special=True)
        assert be.tokenize(text) == want
        assert be.tokenize(text, add_special=False) == ref.tokenize(
            text.encode(), add_bos=False, special=True
        )
        assert be.detokenize(want) == ref.detokenize(want).decode()


@pytest.mark.parametrize("mode", ["forced", "topk"])
def test_letter_scores_match_direct_eval(be: OpenAIBackend, ref: Any, mode: str) -> None:
    cands = [be.tokenize(c, add_special=False)[0] for c in ("A", "B", "C")]
    assert len(set(cands)) == 3
    prompts = [be.tokenize(p) for p in PROMPTS]
    before = be.coverage
    be.letter_mode = mode
    try:
        got = be.next_token_logprobs(prompts, cands)
    finally:
        be.letter_mode = "auto"
    want = np.array([_ref_logprobs(ref, p)[-1][cands] for p in prompts])
    np.testing.assert_allclose(got, want, atol=ATOL)
    after = be.coverage
    assert after.prompts - before.prompts == 3 and after.below_kth == before.below_kth
    if mode == "forced":
        assert after.forced - before.forced == 9
    else:  # top-20 of a 512-token vocab: hits, plus exact forcing for any that missed
        assert (after.topk_hits - before.topk_hits) + (after.forced - before.forced) == 9


def test_topk_hits_match_direct_eval(be: OpenAIBackend, ref: Any) -> None:
    """Candidates taken from the reference's top-5 must be read straight off the top-k list."""
    prompts = [be.tokenize(p) for p in PROMPTS]
    rows = [_ref_logprobs(ref, p)[-1] for p in prompts]
    before = be.coverage
    be.letter_mode = "topk"
    try:
        for ids, row in zip(prompts, rows, strict=True):
            top5 = [int(t) for t in np.argsort(row)[::-1][:5]]
            got = be.next_token_logprobs([ids], top5)
            np.testing.assert_allclose(got[0], row[top5], atol=ATOL)
    finally:
        be.letter_mode = "auto"
    assert be.coverage.topk_hits - before.topk_hits == 15
    assert be.coverage.forced == before.forced


def test_topk_miss_is_forced_exactly(be: OpenAIBackend, ref: Any) -> None:
    """With top_logprobs=1 most candidates miss the top-k; they must come back exact."""
    ids = be.tokenize(PROMPTS[1])
    row = _ref_logprobs(ref, ids)[-1]
    worst = [int(t) for t in np.argsort(row)[:2]]  # surely outside the top-1
    old_k, be.top_k, be.letter_mode = be.top_k, 1, "topk"
    before = be.coverage
    try:
        got = be.next_token_logprobs([ids], worst)
    finally:
        be.top_k, be.letter_mode = old_k, "auto"
    np.testing.assert_allclose(got[0], row[worst], atol=ATOL)
    assert be.coverage.forced - before.forced == 2


@pytest.mark.parametrize("mode", ["echo", "forced"])
def test_loglikelihood_matches_direct_eval(be: OpenAIBackend, ref: Any, mode: str) -> None:
    pairs = [(PROMPTS[0], " the nurse"), (PROMPTS[1], " ran home."), (PROMPTS[2], " slept")]
    reqs = [(be.tokenize(p), be.tokenize(c, add_special=False)) for p, c in pairs]
    be.loglik_mode = mode
    try:
        got = be.loglikelihood(reqs)
    finally:
        be.loglik_mode = "auto"
    for (ctx, cont), r in zip(reqs, got, strict=True):
        lp = _ref_logprobs(ref, ctx + cont)
        rows = lp[len(ctx) - 1 : len(ctx) + len(cont) - 1]
        want = float(sum(rows[i, t] for i, t in enumerate(cont)))
        greedy = all(int(np.argmax(rows[i])) == t for i, t in enumerate(cont))
        assert r.n_tokens == len(cont)
        assert r.logprob == pytest.approx(want, abs=ATOL * len(cont))
        assert r.is_greedy == greedy


def test_greedy_continuation_is_greedy(be: OpenAIBackend, ref: Any) -> None:
    ctx = be.tokenize(PROMPTS[1])
    nxt = int(np.argmax(_ref_logprobs(ref, ctx)[-1]))
    (r,) = be.loglikelihood([(ctx, [nxt])])
    assert r.is_greedy


def test_token_logprobs_match_direct_eval(be: OpenAIBackend, ref: Any) -> None:
    ids = be.tokenize(PROMPTS[1] + " " + PROMPTS[2])
    got = be.token_logprobs(ids)
    lp = _ref_logprobs(ref, ids)
    want = np.array([lp[i - 1, ids[i]] for i in range(1, len(ids))])
    assert got.shape == (len(ids) - 1,)
    assert np.isnan(got[0])  # this server never reports the first token after BOS
    np.testing.assert_allclose(got[1:], want[1:], atol=ATOL)


def test_generate_greedy_matches(be: OpenAIBackend, ref: Any) -> None:
    ids = be.tokenize(PROMPTS[1])
    got = be.generate(ids, 8)
    ref.reset()
    want: list[int] = []
    for tok in ref.generate(ids, temp=0.0, top_k=1, reset=True):
        if tok == ref.token_eos() or len(want) == 8:
            break
        want.append(int(tok))
    assert be.detokenize(got) == ref.detokenize(want).decode()


def test_time_run(be: OpenAIBackend) -> None:
    t = be.time_run(be.tokenize(PROMPTS[0]), 6)
    assert t.gen_tokens == 6
    assert t.ttft_s > 0 and t.decode_s >= 0 and t.prefill_s == t.ttft_s


def test_prompt_without_bos_is_refused(be: OpenAIBackend) -> None:
    ids = be.tokenize(PROMPTS[2], add_special=False)
    with pytest.raises(BackendError, match="do not survive detokenize"):
        be.next_token_logprobs([ids], ids[:1])


def test_wrong_key_is_clear_and_not_leaked(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGATE_API_KEY", "sk-wrong-key-do-not-print")
    with pytest.raises(BackendError, match="HTTP 401") as ei:
        OpenAIBackend(server, max_retries=0)
    assert "sk-wrong-key-do-not-print" not in str(ei.value)
    assert KEY not in str(ei.value)


def test_local_tokenizer_and_chat_template(
    server: str, be: OpenAIBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tokenizer_path= (the checkpoint's tokenizer.json) tokenizes like the server and brings
    the checkpoint's chat template; without it this server has no template to offer."""
    from edgegate.backends._common import hf_chat_template, render_chat

    hf_dir = ROOT / "fixtures" / "models" / "dense"
    monkeypatch.setenv("EDGEGATE_API_KEY", KEY)
    local = OpenAIBackend(server, tokenizer_path=hf_dir / "tokenizer.json", n_ctx=N_CTX)
    for text in PROMPTS:
        assert local.tokenize(text) == be.tokenize(text)
    tmpl, bos, eos = hf_chat_template(hf_dir)
    want = render_chat(tmpl, "Be brief.", "Hi", bos_token=bos, eos_token=eos)
    assert want and local.chat_prompt("Be brief.", "Hi") == want
    assert be.chat_prompt("Be brief.", "Hi") is None
    ids = local.tokenize(PROMPTS[1])
    np.testing.assert_allclose(
        local.next_token_logprobs([ids], ids[1:3]),
        be.next_token_logprobs([ids], ids[1:3]),
        atol=1e-9,
    )


def test_prompt_longer_than_context_is_not_a_feature_gap(be: OpenAIBackend) -> None:
    from edgegate.backends.openai_backend import FeatureUnsupported

    ids = be.tokenize(" ".join(PROMPTS * 30))
    assert len(ids) > N_CTX
    with pytest.raises(BackendError, match="context") as ei:
        be.token_logprobs(ids)
    assert not isinstance(ei.value, FeatureUnsupported)
    assert "HTTP 400" in str(ei.value)


def test_open_backend_registry(
    server: str, be: OpenAIBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime registry opens it by URL (a click Path collapses "//": that must work)."""
    from edgegate.backends import open_backend

    monkeypatch.setenv("EDGEGATE_API_KEY", KEY)
    ob = open_backend("openai", Path(f"{server}?model={be.model}"), n_ctx=N_CTX)
    assert isinstance(ob, OpenAIBackend) and ob.model == be.model and ob.n_ctx == N_CTX
    ids = be.tokenize(PROMPTS[2])
    np.testing.assert_allclose(ob.token_logprobs(ids)[1:], be.token_logprobs(ids)[1:], atol=1e-9)


def test_score_tokens_for_perplexity(be: OpenAIBackend, ref: Any) -> None:
    from edgegate.backends.openai_backend import FeatureUnsupported

    ids = be.tokenize(" ".join(PROMPTS))
    first = len(ids) // 2 + 1  # the perplexity check's "chunked" mode
    lp = _ref_logprobs(ref, ids)
    want = np.array([lp[i - 1, ids[i]] for i in range(first, len(ids))])
    np.testing.assert_allclose(be.score_tokens(ids, first), want, atol=ATOL)
    with pytest.raises(FeatureUnsupported, match="first token after BOS"):
        be.score_tokens(ids, 1)


def test_info_names_the_server_not_the_key(be: OpenAIBackend) -> None:
    info = be.info()
    assert info["dialect"] == "llama-cpp-python" and info["base_url"] == be.base_url
    assert KEY not in json.dumps(info) and KEY not in repr(be)


def test_special_tokens_need_the_local_tokenizer(
    server: str, be: OpenAIBackend, ref: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Perplexity chunks of chat-formatted text hold special tokens: the server's detokenizer
    drops them, so the ids cannot be sent as text -- a clear error naming tokenizer_path;
    with tokenizer_path the very same chunk scores like llama.cpp."""
    text = "<|im_start|>user\nWho was careless?<|im_end|>\n<|im_start|>assistant\nThe nurse."
    ids = be.tokenize(text)
    assert len(ids) > 8
    with pytest.raises(BackendError, match="tokenizer_path"):
        be.score_tokens(ids, 4)
    monkeypatch.setenv("EDGEGATE_API_KEY", KEY)
    local = OpenAIBackend(
        server, tokenizer_path=ROOT / "fixtures/models/dense/tokenizer.json", n_ctx=N_CTX
    )
    assert local.tokenize(text) == ids
    lp = _ref_logprobs(ref, ids)
    want = np.array([lp[i - 1, ids[i]] for i in range(4, len(ids))])
    np.testing.assert_allclose(local.score_tokens(ids, 4), want, atol=ATOL)
