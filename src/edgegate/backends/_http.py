"""A small JSON-over-HTTP client for OpenAI-compatible servers (stdlib only).

Why stdlib: the product should not grow a dependency for a handful of POSTs. What it adds
over ``urllib``: a concurrency limit, retries with exponential backoff and jitter on
429/5xx/connection errors (honouring ``Retry-After``), per-request timeouts, and errors that
name the URL and the last status but never the API key.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgegate.backends._http_settings import HttpSettings, current_http_settings, http_settings
from edgegate.errors import BackendError, InputError

__all__ = [
    "FEATURES",
    "FEATURE_HINTS",
    "FeatureUnsupported",
    "HttpClient",
    "HttpError",
    "HttpSettings",
    "current_http_settings",
    "http_settings",
    "public_url",
    "refused",
    "split_url",
]

log = logging.getLogger("edgegate.backends.http")

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 60.0  # a server asking for more than this is treated as down
_SNIPPET = 300


class HttpError(BackendError):
    """A request that failed for good; ``status`` is the last HTTP status (None: no response)."""

    def __init__(
        self, message: str, *, status: int | None, body: str = "", hint: str | None = None
    ):
        super().__init__(message, hint=hint)
        self.status = status
        self.body = body


class FeatureUnsupported(BackendError):
    """The server lacks a feature (echo, logit_bias, tokenize...); ``feature`` names it."""

    def __init__(self, message: str, *, feature: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.feature = feature


def refused(e: HttpError, feature: str) -> bool:
    """A deterministic "no" to ``feature``: a missing endpoint, or a 400/422/500 whose body
    names it (a 400 about, say, context length is the caller's problem, not a feature gap)."""
    if e.status in (404, 405, 501):
        return True
    body = e.body.lower()
    return e.status in (400, 422, 500) and any(w in body for w in FEATURE_WORDS.get(feature, ()))


FEATURES = {
    "echo": "echo=True with logprobs (prompt log-probabilities)",
    "logprobs": "logprobs on /v1/completions",
    "logit_bias": "logit_bias on /v1/completions",
    "tokenize": "a tokenize endpoint",
    "detokenize": "a detokenize endpoint",
    "apply-template": "/apply-template (chat templates)",
}
FEATURE_WORDS = {
    "echo": ("echo", "prompt_logprobs"),
    "logprobs": ("logprob",),
    "logit_bias": ("logit_bias", "logit bias"),
    "tokenize": ("tokeniz",),
    "detokenize": ("tokeniz",),
    "apply-template": ("template",),
}
FEATURE_HINTS = {
    "echo": "perplexity needs prompt logprobs: use vLLM or llama-cpp-python's server",
    "tokenize": "pass tokenizer_path=<tokenizer.json>",
    "detokenize": "pass tokenizer_path=<tokenizer.json>",
    "logit_bias": "use letter_mode='topk'",
}


def public_url(url: str) -> str:
    """The URL without user:password@ so that it is safe to print."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        secs = when.timestamp() - time.time()
    if not math.isfinite(secs):
        return None
    return max(0.0, secs)


def _reject_constant(name: str) -> float:
    # NaN/Infinity are not JSON; a server emitting them is producing garbage.
    raise ValueError(f"non-finite number {name} in JSON")


def _neg_inf_ok(name: str) -> float:
    if name == "-Infinity":  # a log-probability of exactly zero probability
        return float("-inf")
    return _reject_constant(name)


def split_url(base_url: str | Path) -> tuple[str, str | None]:
    """(server root URL, model named by ``?model=NAME``). ``Path("http://h:1")`` collapses
    the "//", which is undone so a CLI may hand over a path; a trailing /v1 is dropped."""
    url = re.sub(r"^(https?):/(?!/)", r"\1://", str(base_url))
    url, _, query = url.partition("?")
    url = re.sub(r"/v1$", "", url.rstrip("/"))
    if not re.match(r"^https?://[^/]+", url):
        raise InputError(
            f"not an http(s) URL: {public_url(url)!r}",
            field="base_url",
            hint="e.g. http://127.0.0.1:8000",
        )
    return url, urllib.parse.parse_qs(query).get("model", [None])[0]


class HttpClient:
    """Thread-safe; at most ``concurrency`` requests are in flight at once."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(concurrency)
        self.n_requests = 0  # attempts, including retries (for tests and reports)
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:  # never show the key
        return f"HttpClient({public_url(self.base_url)!r})"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _redact(self, text: str) -> str:
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return text

    def _request(self, method: str, path: str, body: Any | None) -> urllib.request.Request:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return urllib.request.Request(self.url(path), data=data, headers=headers, method=method)

    def _backoff(self, attempt: int) -> float:
        # full jitter: uniform in [0, base * 2^attempt], capped
        cap = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        return random.uniform(0.0, cap)

    def _open(self, method: str, path: str, body: Any | None) -> Any:
        """Open the request with retries; returns the live response (caller closes it)."""
        where = public_url(self.url(path))
        last = "no response"
        last_status: int | None = None
        for attempt in range(self.max_retries + 1):
            wait: float | None = None
            with self._count_lock:
                self.n_requests += 1
            try:
                return urllib.request.urlopen(
                    self._request(method, path, body), timeout=self.timeout
                )
            except urllib.error.HTTPError as e:
                last_status = e.code
                text = self._redact(e.read(4096).decode("utf-8", "replace"))
                e.close()
                last = f"HTTP {e.code}: {text[:_SNIPPET]}"
                # "X is not supported" answered with a 500 (llama-server does) will not change
                refusal = e.code == 500 and "support" in text.lower()
                if e.code not in RETRY_STATUSES or refusal:
                    raise HttpError(
                        f"{method} {where} failed with {last}",
                        status=e.code,
                        body=text,
                        hint=_status_hint(e.code),
                    ) from None
                wait = _retry_after_s(e.headers.get("Retry-After"))
                if wait is not None and wait > MAX_RETRY_AFTER_S:
                    raise HttpError(
                        f"{method} {where} asked to retry after {wait:.0f} s (HTTP {e.code})",
                        status=e.code,
                        body=text,
                        hint="the server is overloaded; try again later",
                    ) from None
            except TimeoutError:
                last_status = None
                last = f"no answer within {self.timeout:g} s (timeout)"
            except urllib.error.URLError as e:
                last_status = None
                reason = e.reason
                if isinstance(reason, TimeoutError):
                    last = f"no answer within {self.timeout:g} s (timeout)"
                else:
                    last = f"connection failed: {self._redact(str(reason))}"
            except (ConnectionError, OSError) as e:
                last_status = None
                last = f"connection failed: {self._redact(type(e).__name__ + ': ' + str(e))}"
            if attempt == self.max_retries:
                break
            delay = max(wait or 0.0, self._backoff(attempt))
            log.warning(
                "%s %s: %s; retry %d/%d in %.2f s",
                method,
                where,
                last[:120],
                attempt + 1,
                self.max_retries,
                delay,
            )
            self._sleep(delay)
        raise HttpError(
            f"{method} {where} failed after {self.max_retries + 1} attempts; last: {last}",
            status=last_status,
            hint="check that the server is up and reachable, or raise --timeout/--max-retries",
        )

    def _decode(self, raw: bytes, where: str) -> Any:
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_neg_inf_ok)
        except (
            UnicodeDecodeError,
            ValueError,
            RecursionError,
        ) as e:  # RecursionError: a hostile server's [[[[...
            snippet = self._redact(raw[:120].decode("utf-8", "replace"))
            raise HttpError(
                f"{where} returned a response that is not valid JSON ({e}): {snippet!r}",
                status=200,
                hint="is this an OpenAI-compatible server? check --base-url",
            ) from None

    def request_json(self, method: str, path: str, body: Any | None = None) -> Any:
        where = public_url(self.url(path))
        with self._slots:  # held while waiting to retry too: backing off lowers the load
            resp = self._open(method, path, body)
            try:
                raw = resp.read()
            except (TimeoutError, OSError) as e:
                raise HttpError(
                    f"{method} {where}: reading the response failed ({type(e).__name__})",
                    status=None,
                ) from None
            finally:
                resp.close()
        return self._decode(raw, f"{method} {where}")

    def post_json(self, path: str, body: Any) -> Any:
        return self.request_json("POST", path, body)

    def get_json(self, path: str) -> Any:
        return self.request_json("GET", path)

    def post_sse(self, path: str, body: Any) -> Iterator[tuple[float, Any]]:
        """Server-sent events of a streaming POST: yields (monotonic arrival time, JSON data)."""
        where = public_url(self.url(path))
        with self._slots:
            yield from self._sse(where, path, body)

    def _sse(self, where: str, path: str, body: Any) -> Iterator[tuple[float, Any]]:
        resp = self._open("POST", path, body)
        try:
            for line in resp:
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                yield time.perf_counter(), self._decode(data, f"POST {where} (stream)")
        except TimeoutError as e:
            raise HttpError(
                f"POST {where}: stream stalled for {self.timeout:g} s ({type(e).__name__})",
                status=None,
            ) from None
        finally:
            resp.close()


def _status_hint(status: int) -> str | None:
    if status in (401, 403):
        return "authentication failed: set EDGEGATE_API_KEY (or OPENAI_API_KEY) to the server's key"
    if status == 404:
        return "the endpoint does not exist on this server; check --base-url (it usually ends in the host:port, without /v1)"
    return None
