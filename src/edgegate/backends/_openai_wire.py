"""The OpenAI-compatible wire format: request bodies (TypedDicts), the per-dialect tokenize
and detokenize endpoints, the ``/v1/models`` entry, and the ``logprobs`` block of a
completion in both shapes servers send."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from edgegate.backends._http import HttpClient, public_url
from edgegate.errors import BackendError, InputError


def pick_model(client: HttpClient, model: str | None) -> dict[str, Any]:
    """The ``/v1/models`` entry for ``model`` (the first one when None)."""
    where = public_url(client.url("/v1/models"))
    models = client.get_json("/v1/models")
    data = models.get("data") if isinstance(models, dict) else None
    if not isinstance(data, list) or not data or not all(isinstance(m, dict) for m in data):
        raise BackendError(
            f"{where} returned no models", hint="is this an OpenAI-compatible server?"
        )
    ids = [str(m.get("id")) for m in data]
    if model is None:
        return data[0]
    if model not in ids:
        raise InputError(
            f"model {model!r} is not served at {where}",
            field="model",
            hint=f"served: {', '.join(ids[:10])}",
        )
    return data[ids.index(model)]


# ---------------------------------------------------------------- completions wire format
@dataclass(frozen=True)
class Pos:
    """One position of a completions ``logprobs`` block."""

    token_id: int | None
    token: str | None
    logprob: float | None
    top: tuple[tuple[int | None, str | None, float], ...]


def _finite(x: Any, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise BackendError(f"server returned a non-number {what}: {x!r:.60}")
    v = float(x)
    if math.isnan(v) or v == math.inf or v > 1e-3:  # a log-probability is <= 0
        raise BackendError(f"server returned an invalid log-probability {what}: {v}")
    return v


def _key(k: str) -> tuple[int | None, str]:
    if k.startswith("token_id:") and k[9:].lstrip("-").isdigit():
        return int(k[9:]), k
    return None, k


def parse_logprobs(choice: Any) -> list[Pos]:
    """Both shapes in the wild: legacy OpenAI (tokens/token_logprobs/top_logprobs) and the
    chat-style ``content`` list that llama-server returns."""
    if not isinstance(choice, dict) or not isinstance(choice.get("logprobs"), dict):
        raise BackendError(
            "server response has no 'logprobs' in choices[0]",
            hint="the server must support logprobs on /v1/completions",
        )
    lp = choice["logprobs"]
    out: list[Pos] = []
    if isinstance(lp.get("content"), list):
        for i, e in enumerate(lp["content"]):
            if not isinstance(e, dict) or "logprob" not in e:
                raise BackendError(f"malformed logprobs.content[{i}]: {e!r:.80}")
            ctops = tuple(
                (t.get("id"), t.get("token"), _finite(t.get("logprob"), "top_logprob"))
                for t in e.get("top_logprobs") or []
                if isinstance(t, dict)
            )
            out.append(Pos(e.get("id"), e.get("token"), _finite(e["logprob"], "logprob"), ctops))
        return out
    toks, lps, tops_l = lp.get("tokens"), lp.get("token_logprobs"), lp.get("top_logprobs")
    if not isinstance(toks, list) or not isinstance(lps, list) or len(toks) != len(lps):
        raise BackendError(
            "malformed logprobs block: 'tokens'/'token_logprobs' missing or of different lengths"
        )
    if tops_l is not None and (not isinstance(tops_l, list) or len(tops_l) != len(toks)):
        raise BackendError("malformed logprobs block: 'top_logprobs' length differs")
    for i, (tok, val) in enumerate(zip(toks, lps, strict=True)):
        tid, text = _key(tok) if isinstance(tok, str) else (None, None)
        top_d = tops_l[i] if tops_l is not None else None
        tops: tuple[tuple[int | None, str | None, float], ...] = ()
        if isinstance(top_d, dict):
            tops = tuple((*_key(k), _finite(v, "top_logprob")) for k, v in top_d.items())
        out.append(Pos(tid, text, None if val is None else _finite(val, "logprob"), tops))
    return out


# ---------------------------------------------------------------- request bodies
class ChatMessage(TypedDict):
    role: str
    content: str


class CompletionOptions(TypedDict, total=False):
    """What a scoring or generation request sets beyond the model and the prompt."""

    max_tokens: int
    temperature: float
    logprobs: int
    echo: bool
    logit_bias: dict[str, float]  # token id (as text) -> bias
    seed: int


class _CompletionBase(TypedDict):
    model: str
    prompt: list[int] | str  # token ids, or text proven to re-tokenize to them


class CompletionRequest(_CompletionBase, CompletionOptions, total=False):
    """A ``/v1/completions`` body."""

    return_tokens_as_token_ids: bool  # vLLM: top-logprob keys as token_id:N
    stream: bool
    min_tokens: int
    ignore_eos: bool


class TokenizeRequest(TypedDict, total=False):
    """A tokenize body: each dialect sends its own few of these keys."""

    model: str
    prompt: str  # vLLM
    add_special_tokens: bool  # vLLM
    messages: list[ChatMessage]  # vLLM: a chat rendered with its template
    add_generation_prompt: bool  # vLLM
    content: str  # llama-server
    add_special: bool  # llama-server
    input: str  # llama-cpp-python


class DetokenizeRequest(TypedDict, total=False):
    model: str
    tokens: list[int]


class TemplateRequest(TypedDict):
    """llama-server's ``/apply-template`` body."""

    messages: list[ChatMessage]


RequestBody = CompletionRequest | TokenizeRequest | DetokenizeRequest | TemplateRequest

# (path, request body, answer field) per dialect; "*": llama-cpp-python's /extras/* endpoints
TOKENIZE: dict[str, tuple[str, Callable[[str, str, bool], TokenizeRequest], str]] = {
    "vllm": (
        "/tokenize",
        lambda m, t, s: {"model": m, "prompt": t, "add_special_tokens": s},
        "tokens",
    ),
    "llama-server": ("/tokenize", lambda m, t, s: {"content": t, "add_special": s}, "tokens"),
    "*": ("/extras/tokenize", lambda m, t, s: {"input": t, "model": m}, "tokens"),
}
DETOKENIZE: dict[str, tuple[str, Callable[[str, list[int]], DetokenizeRequest], str]] = {
    "vllm": ("/detokenize", lambda m, ids: {"model": m, "tokens": ids}, "prompt"),
    "llama-server": ("/detokenize", lambda m, ids: {"tokens": ids}, "content"),
    "*": ("/extras/detokenize", lambda m, ids: {"tokens": ids, "model": m}, "text"),
}
