"""Fault handling of the openai backend against a tiny local HTTP server on 127.0.0.1.

The faults (429, 500, hangs, garbage, a key echoed back) cannot be provoked in a real
inference server on demand, so this file serves them from ``http.server``: that is the
"mock only for a fault you cannot cause otherwise". The happy path runs against a real
llama-cpp-python server in test_backend_openai_server.py.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from edgegate.backends.openai_backend import FeatureUnsupported, OpenAIBackend, parse_logprobs
from edgegate.errors import BackendError, InputError

SECRET = "sk-edgegate-test-0123456789abcdef"
# A handler gets (path, parsed JSON body, call number for that path) and returns
# (status, headers, raw body bytes).
Reply = tuple[int, dict[str, str], bytes]


def _json(obj: Any, status: int = 200, **headers: str) -> Reply:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(obj).encode()


def _models() -> Reply:
    # Looks like vLLM so prompts travel as token ids and no tokenizer calls are needed.
    return _json(
        {
            "object": "list",
            "data": [{"id": "tiny", "object": "model", "owned_by": "vllm", "max_model_len": 256}],
        }
    )


def _completion(ids: list[int], top: dict[int, float], sampled: int | None = None) -> Reply:
    """A vLLM-shaped completion: next token + top-k keyed by token_id:N."""
    best = max(top, key=lambda k: top[k]) if sampled is None else sampled
    return _json(
        {
            "choices": [
                {
                    "index": 0,
                    "text": "x",
                    "finish_reason": "length",
                    "logprobs": {
                        "tokens": [f"token_id:{best}"],
                        "token_logprobs": [top[best]],
                        "text_offset": [0],
                        "top_logprobs": [{f"token_id:{k}": v for k, v in top.items()}],
                    },
                }
            ],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": 1},
        }
    )


class FakeServer:
    def __init__(
        self, handler: Callable[[str, Any, int], Reply], models: Reply | None = None
    ) -> None:
        self.handler = handler
        self.models = models or _models()
        self.calls: dict[str, int] = {}
        self.auth: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                with outer.lock:
                    k = outer.calls.get(self.path, 0)
                    outer.calls[self.path] = k + 1
                    outer.auth.append(self.headers.get("Authorization"))
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    status, headers, data = (
                        outer.models
                        if self.path == "/v1/models"
                        else outer.handler(self.path, body, k)
                    )
                finally:
                    with outer.lock:
                        outer.in_flight -= 1
                try:
                    self.send_response(status)
                    for hk, hv in headers.items():
                        self.send_header(hk, hv)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout test)
                    pass

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def start(handler: Callable[[str, Any, int], Reply], models: Reply | None = None) -> FakeServer:
        servers.append(FakeServer(handler, models))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEGATE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


TOP = {5: -0.5, 7: -1.5, 9: -2.5}


def test_429_then_200_honours_retry_after(serve: Any) -> None:
    def h(path: str, body: Any, k: int) -> Reply:
        if k == 0:
            return _json({"error": "slow down"}, 429, **{"Retry-After": "1"})
        return _completion(body["prompt"], TOP)

    srv = serve(h)
    be = OpenAIBackend(srv.url, max_retries=3, letter_mode="topk")
    t0 = time.perf_counter()
    out = be.next_token_logprobs([[1, 2, 3]], [5, 7])
    assert time.perf_counter() - t0 >= 0.95  # waited as told
    assert srv.calls["/v1/completions"] == 2
    np.testing.assert_allclose(out, [[-0.5, -1.5]])
    assert be.coverage.topk_hits == 2


def test_always_500_gives_clear_error_after_retries(serve: Any) -> None:
    srv = serve(lambda p, b, k: _json({"error": "boom"}, 500))
    be = OpenAIBackend(srv.url, max_retries=2)
    with pytest.raises(BackendError) as ei:
        be.next_token_logprobs([[1, 2]], [5])
    msg = str(ei.value)
    assert f"{srv.url}/v1/completions" in msg and "HTTP 500" in msg and "3 attempts" in msg
    assert srv.calls["/v1/completions"] == 3
    assert ei.value.exit_code == 3


def test_hang_times_out(serve: Any) -> None:
    def h(path: str, body: Any, k: int) -> Reply:
        time.sleep(2.0)  # bounded: the server thread ends on its own
        return _completion(body["prompt"], TOP)

    srv = serve(h)
    be = OpenAIBackend(srv.url, timeout=0.3, max_retries=1)
    t0 = time.perf_counter()
    with pytest.raises(BackendError, match=r"timeout") as ei:
        be.next_token_logprobs([[1, 2]], [5])
    assert time.perf_counter() - t0 < 1.9
    assert "2 attempts" in str(ei.value)


def test_connection_refused_names_url(serve: Any) -> None:
    srv = serve(lambda p, b, k: _completion(b["prompt"], TOP))
    be = OpenAIBackend(srv.url, max_retries=1)
    srv.close()
    with pytest.raises(BackendError, match=r"connection failed") as ei:
        be.next_token_logprobs([[1]], [5])
    assert srv.url in str(ei.value)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"<html>oops</html>", "not valid JSON"),
        (b'{"choices": []}', "no choices"),
        (b'{"choices": [{"text": "a"}]}', "no 'logprobs'"),
        (
            b'{"choices": [{"logprobs": {"tokens": ["a"], "token_logprobs": [NaN], '
            b'"top_logprobs": [{"a": NaN}]}}]}',
            "non-finite number NaN",
        ),
        (
            b'{"choices": [{"logprobs": {"tokens": ["a", "b"], "token_logprobs": [-1.0]}}]}',
            "different lengths",
        ),
        (
            b'{"choices": [{"logprobs": {"tokens": ["a"], "token_logprobs": [3.5], '
            b'"top_logprobs": [{"a": 3.5}]}}]}',
            "invalid log-probability",
        ),
    ],
)
def test_garbage_is_a_backend_error(serve: Any, raw: bytes, needle: str) -> None:
    srv = serve(lambda p, b, k: (200, {"Content-Type": "application/json"}, raw))
    be = OpenAIBackend(srv.url, max_retries=0, letter_mode="topk")
    with pytest.raises(BackendError, match=needle):
        be.next_token_logprobs([[1, 2]], [5])


def test_api_key_sent_as_bearer_and_never_leaked(
    serve: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EDGEGATE_API_KEY", SECRET)
    # A hostile/buggy server that echoes the Authorization header back in its errors.
    srv = serve(lambda p, b, k: _json({"error": f"bad key Bearer {SECRET}"}, 503))
    caplog.set_level(logging.DEBUG)
    be = OpenAIBackend(srv.url, max_retries=1)
    with pytest.raises(BackendError) as ei:
        be.next_token_logprobs([[1, 2]], [5])
    assert all(a == f"Bearer {SECRET}" for a in srv.auth) and srv.auth
    texts = [
        str(ei.value),
        repr(ei.value),
        json.dumps(ei.value.to_dict()),
        caplog.text,
        repr(be),
        repr(be._http),
        getattr(ei.value, "body", ""),
    ]
    assert "HTTP 503" in str(ei.value) and "***" in str(ei.value)
    for t in texts:
        assert SECRET not in t


def test_openai_api_key_fallback_and_401(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    srv = serve(lambda p, b, k: _json({"error": "Invalid API key"}, 401))
    be = OpenAIBackend(srv.url, max_retries=4)
    with pytest.raises(BackendError, match="authentication failed") as ei:
        be.next_token_logprobs([[1]], [5])
    assert srv.calls["/v1/completions"] == 1  # 401 is not retried
    assert srv.auth[-1] == f"Bearer {SECRET}" and SECRET not in str(ei.value)


def test_concurrency_limit(serve: Any) -> None:
    def h(path: str, body: Any, k: int) -> Reply:
        time.sleep(0.15)
        return _completion(body["prompt"], TOP)

    srv = serve(h)
    be = OpenAIBackend(srv.url, concurrency=2, letter_mode="topk")
    out = be.next_token_logprobs([[1, i] for i in range(6)], [9, 5])
    assert out.shape == (6, 2)
    np.testing.assert_allclose(out[:, 0], -2.5)
    assert srv.max_in_flight == 2  # parallel, but never more than asked


def test_missing_candidate_forced_then_bounded(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Token 11 is outside the top-k: first the server honours logit_bias (exact value via
    forcing), then a server that rejects logit_bias (the value is bounded and counted)."""
    reject = {"on": False}

    def h(path: str, body: Any, k: int) -> Reply:
        if "logit_bias" in body:
            if reject["on"]:
                return _json({"error": "logit_bias is not supported"}, 400)
            assert body["logit_bias"] == {"11": 100.0} and body["temperature"] == 0.0
            return _completion(body["prompt"], {11: -7.25, 5: -0.5}, sampled=11)
        return _completion(body["prompt"], TOP)

    srv = serve(h)
    be = OpenAIBackend(srv.url, letter_mode="topk", top_logprobs=3)
    out = be.next_token_logprobs([[1, 2]], [5, 11])
    np.testing.assert_allclose(out, [[-0.5, -7.25]])
    assert (be.coverage.topk_hits, be.coverage.forced, be.coverage.below_kth) == (1, 1, 0)
    reject["on"] = True
    out = be.next_token_logprobs([[1, 2]], [5, 11])
    assert out[0, 1] < -2.5 and out[0, 1] > -2.5001
    assert be.coverage.below_kth == 1
    assert "not in top-3" in caplog.text


def test_post_bias_logprobs_are_refused(serve: Any) -> None:
    """A server that reports log-probabilities *after* logit_bias (forced token ~0, the rest
    ~-100) must not have those numbers taken as the model's."""

    def h(path: str, body: Any, k: int) -> Reply:
        if "logit_bias" in body:
            return _completion(body["prompt"], {11: -1e-6, 5: -99.5}, sampled=11)
        return _completion(body["prompt"], TOP)

    srv = serve(h)
    be = OpenAIBackend(srv.url, letter_mode="forced")
    with pytest.raises(FeatureUnsupported, match="after logit_bias"):
        be.next_token_logprobs([[1, 2]], [11])
    be.letter_mode = "topk"
    out = be.next_token_logprobs([[1, 2]], [11])
    assert -2.5001 < out[0, 0] < -2.5 and be.coverage.below_kth == 1


def test_echo_unsupported_is_named(serve: Any) -> None:
    # llama-server's actual reply to echo=True on /v1/completions.
    def h(path: str, body: Any, k: int) -> Reply:
        if body.get("echo"):
            return _json({"error": {"code": 500, "message": "Only no echo is supported"}}, 500)
        return _completion(body["prompt"], TOP)

    srv = serve(h)
    be = OpenAIBackend(srv.url, max_retries=0)
    with pytest.raises(FeatureUnsupported, match=r"echo=True with logprobs") as ei:
        be.token_logprobs([1, 2, 3])
    assert ei.value.feature == "echo" and "prompt logprobs" in (ei.value.hint or "")


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="not an http"):
        OpenAIBackend("ftp://127.0.0.1:1")
    with pytest.raises(InputError, match="letter_mode"):
        OpenAIBackend("http://127.0.0.1:1", letter_mode="magic")


def test_unknown_model_is_input_error(serve: Any) -> None:
    srv = serve(lambda p, b, k: _completion(b["prompt"], TOP))
    with pytest.raises(InputError, match="served: tiny"):
        OpenAIBackend(srv.url, model="other")


def test_parse_llama_server_content_shape() -> None:
    """llama-server returns chat-style logprobs (``content`` entries keyed by id)."""
    choice = {
        "logprobs": {
            "content": [
                {
                    "id": 42,
                    "token": " A",
                    "logprob": -0.25,
                    "top_logprobs": [
                        {"id": 42, "token": " A", "logprob": -0.25},
                        {"id": 43, "token": " B", "logprob": -1.75},
                    ],
                }
            ]
        }
    }
    (p,) = parse_logprobs(choice)
    assert (p.token_id, p.logprob) == (42, -0.25)
    assert [(t[0], t[2]) for t in p.top] == [(42, -0.25), (43, -1.75)]


def test_llama_server_wire_contract(serve: Any) -> None:
    """No llama-server binary here, so this pins the requests we send it and our reading of
    its answers, in the shapes its source (tools/server) defines: /v1/models with owned_by
    "llamacpp" and meta.n_ctx, token-id prompts, /tokenize {"content", "add_special"},
    "Only no echo is supported", and logprobs as a ``content`` list keyed by token id.
    Log-likelihood must then fall back to forced-token requests."""
    lp = {(1, 2): {3: -0.75, 4: -2.0}, (1, 2, 3): {4: -1.25, 3: -0.5}}  # prefix -> next-token lps
    seen: list[dict[str, Any]] = []

    def h(path: str, body: Any, k: int) -> Reply:
        seen.append({"path": path, **(body or {})})
        if path == "/tokenize":
            return _json({"tokens": [1, 2] if body["add_special"] else [2]})
        if body.get("echo"):
            return _json({"error": {"code": 500, "message": "Only no echo is supported"}}, 500)
        table = lp[tuple(body["prompt"])]
        forced = int(next(iter(body["logit_bias"])))
        top = sorted(table.items(), key=lambda kv: -kv[1])[: body["logprobs"]]
        return _json(
            {
                "choices": [
                    {
                        "text": "?",
                        "index": 0,
                        "finish_reason": "length",
                        "logprobs": {
                            "content": [
                                {
                                    "id": forced,
                                    "token": "?",
                                    "bytes": [63],
                                    "logprob": table[forced],
                                    "top_logprobs": [
                                        {"id": t, "token": "?", "bytes": [63], "logprob": v}
                                        for t, v in top
                                    ],
                                }
                            ]
                        },
                    }
                ],
                "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": 1},
            }
        )

    srv = serve(
        h,
        _json(
            {
                "object": "list",
                "data": [
                    {
                        "id": "m.gguf",
                        "object": "model",
                        "owned_by": "llamacpp",
                        "meta": {"n_ctx": 128},
                    }
                ],
            }
        ),
    )
    be = OpenAIBackend(srv.url, max_retries=0)
    assert (be.dialect, be.n_ctx) == ("llama-server", 128)
    assert be.tokenize("x") == [1, 2] and be.tokenize("x", add_special=False) == [2]
    (r,) = be.loglikelihood([([1, 2], [3, 4])])
    assert r.logprob == pytest.approx(-0.75 + -1.25) and r.n_tokens == 2
    assert r.is_greedy is False  # 3 was the argmax after [1, 2]; 4 was not after [1, 2, 3]
    forced = [s for s in seen if s["path"] == "/v1/completions" and "logit_bias" in s]
    assert [(s["prompt"], s["logit_bias"]) for s in forced] == [
        ([1, 2], {"3": 100.0}),
        ([1, 2, 3], {"4": 100.0}),
    ]
    assert all(s["temperature"] == 0.0 and s["max_tokens"] == 1 for s in forced)
    with pytest.raises(FeatureUnsupported, match="echo"):
        be.token_logprobs([1, 2, 3])


def test_backoff_schedule_is_exponential_capped_and_jittered(serve: Any) -> None:
    from edgegate.backends._http import HttpClient, HttpError

    waits: list[float] = []
    srv = serve(lambda p, b, k: _json({"error": "down"}, 503))
    c = HttpClient(
        srv.url, max_retries=5, backoff_base_s=0.1, backoff_max_s=0.25, sleep=waits.append
    )
    with pytest.raises(HttpError) as ei:
        c.post_json("/v1/completions", {})
    assert ei.value.status == 503 and srv.calls["/v1/completions"] == 6
    caps = [min(0.25, 0.1 * 2**i) for i in range(5)]
    assert len(waits) == 5 and all(0 <= w <= cap for w, cap in zip(waits, caps, strict=True))
    assert len(set(waits)) > 1  # jittered, not a fixed delay

    waits.clear()
    srv2 = serve(
        lambda p, b, k: _json({}, 429, **{"Retry-After": "7"}) if k == 0 else _json({"ok": 1})
    )
    assert HttpClient(srv2.url, sleep=waits.append).post_json("/x", {}) == {"ok": 1}
    assert waits == [7.0]  # the server's word beats the (smaller) backoff
    srv3 = serve(lambda p, b, k: _json({}, 429, **{"Retry-After": "3600"}))
    with pytest.raises(HttpError, match="retry after 3600 s"):
        HttpClient(srv3.url, sleep=waits.append).post_json("/x", {})
