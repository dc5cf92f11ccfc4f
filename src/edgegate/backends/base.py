"""One protocol for every runtime (llama.cpp, MLX, ONNX Runtime, OpenAI-compatible servers).

Checks (perplexity, speed, BBQ) talk only to this protocol. A backend is created by
``edgegate.backends.open_backend(runtime, path, **options)``; a runtime that is not installed
raises ``BackendUnavailable`` (the check is then skipped, or failed under --strict), and a
runtime that crashes, hangs or returns NaN raises ``BackendError`` (exit 3 / inconclusive).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class LoglikResult:
    """Log-likelihood of a continuation given a context (natural log, summed over tokens)."""

    logprob: float
    n_tokens: int
    is_greedy: bool  # every continuation token was the argmax


@dataclass(frozen=True)
class Timing:
    """One timed run: prefill of ``prompt_tokens`` then ``gen_tokens`` decoded greedily."""

    prompt_tokens: int
    gen_tokens: int
    prefill_s: float
    decode_s: float
    ttft_s: float  # time to first generated token (prefill + first decode step)
    peak_rss_bytes: int | None = None


@runtime_checkable
class Backend(Protocol):
    runtime: str  # "llamacpp" | "mlx" | "onnx" | "openai"
    model_path: Path  # what was actually loaded (e.g. the cached GGUF an HF dir was converted to)
    n_ctx: int
    n_vocab: int  # 0 when unknown (a model behind a server)
    load_s: float  # seconds to load the model

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]: ...

    def detokenize(self, ids: Sequence[int]) -> str: ...

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        """The model's chat template applied to one turn (generation prompt added), or None
        when the model has no chat template."""
        ...

    def token_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        """log p(tokens[i] | tokens[:i]) for i = 1..len-1 (float64, length len-1): one
        forward pass."""
        ...

    def score_tokens(self, tokens: Sequence[int], first: int = 1) -> np.ndarray:
        """log p(tokens[i] | tokens[:i]) for i = first..len-1 (float64): perplexity scores
        only part of each chunk, and runtimes that can skip the other rows do."""
        ...

    def score_tokens_kept(self, tokens: Sequence[int], first: int = 1) -> np.ndarray:
        """``score_tokens``, keeping the logits of the rows it scored (float32, until the next
        scoring call) for ``kept_logits``: the fidelity check compares the two models' whole
        next-token distributions from the very pass that scores perplexity."""
        ...

    def kept_logits(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start..stop-1`` of the logits ``score_tokens_kept`` kept (row i predicts
        tokens[first + i]): float32 [stop - start, n_vocab]. Read a few rows at a time: a chunk
        of a 262k vocabulary is hundreds of MB. The rows returned are the caller's: a later
        scoring call leaves them as they are (the fidelity pass compares a chunk's rows while
        the model scores the next chunk)."""
        ...

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], candidates: Sequence[int]
    ) -> np.ndarray:
        """For each prompt, the log-probabilities (full-vocab softmax) of each candidate token
        at the next position: shape [len(prompts), len(candidates)]. Letter-mode BBQ."""
        ...

    def loglikelihood(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[LoglikResult]:
        """(context tokens, continuation tokens) pairs; requests sharing a context may reuse
        its KV cache. Log-likelihood-mode BBQ."""
        ...

    def generate(
        self, prompt: Sequence[int], max_tokens: int, *, temperature: float = 0.0, seed: int = 0
    ) -> list[int]: ...

    def time_run(self, prompt: Sequence[int], gen_tokens: int) -> Timing: ...

    def info(self) -> dict[str, Any]:
        """What was loaded (runtime, model path, context, threads, load time...), for reports."""
        ...

    def close(self) -> None: ...


# The calls that cross a process boundary (``_subprocess``): every protocol method that a
# model answers, and ``work`` (optional: the positions a local runtime evaluated, for the BBQ
# work efficiency); ``info`` and ``close`` are the proxy's own business.
REMOTE_METHODS: frozenset[str] = frozenset(
    name
    for name, v in vars(Backend).items()
    if callable(v) and not name.startswith("_") and name not in ("info", "close")
) | {"work"}
