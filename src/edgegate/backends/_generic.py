"""The Backend methods written once over three runtime primitives.

A runtime implements ``_forward`` (all-position logits of one sequence, fresh cache),
``_prefill`` (fresh cache, logits of the last position only, cache kept) and ``_step``
(append one token to the kept cache, its logits). Everything the checks call is built from
these, so every runtime scores, samples and times in exactly the same way.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgegate.backends._common import (
    check_context,
    check_finite,
    check_tokens,
    log_softmax,
    peak_rss_bytes,
    pick_token,
    picked_logprobs,
)
from edgegate.backends.base import LoglikResult, Timing
from edgegate.errors import BackendError, InputError


class GenericBackend(ABC):
    runtime: str
    model_path: Path
    n_ctx: int
    n_vocab: int
    load_s: float
    threads: int | None
    converted_from: Path | None = None
    _kept: np.ndarray | None = None  # the scored rows' logits of the last score_tokens_kept
    tokens_evaluated: int = 0  # positions run through the model (padding included): the work done

    def work(self) -> dict[str, int]:
        """Work done so far, machine-independent: positions the model evaluated. The BBQ scorer
        divides the minimum its prompts need by this (work efficiency)."""
        return {"tokens_evaluated": int(self.tokens_evaluated)}

    # -- runtime primitives ---------------------------------------------------------------
    @abstractmethod
    def _forward(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits [len(tokens), n_vocab] for every position (fresh cache)."""

    @abstractmethod
    def _prefill(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits [n_vocab] after the last token (fresh cache, kept for ``_step``)."""

    @abstractmethod
    def _step(self, token: int) -> np.ndarray:
        """Append ``token`` to the kept cache; logits [n_vocab] after it."""

    # -- protocol ---------------------------------------------------------------------------
    def _checked(self, tokens: Sequence[int], what: str, extra: int = 0) -> list[int]:
        toks = [int(t) for t in tokens]
        if not toks:
            raise InputError(f"{what}: empty token sequence", field="tokens")
        check_tokens(toks, self.n_vocab, self.runtime)
        check_context(len(toks) + extra, self.n_ctx, self.runtime, what)
        return toks

    def _checked_candidates(self, candidates: Sequence[int]) -> np.ndarray:
        cands = np.asarray([int(c) for c in candidates], dtype=np.int64)
        check_tokens(list(cands), self.n_vocab, self.runtime)
        return cands

    def _checked_requests(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[tuple[list[int], int]]:
        """Each loglikelihood request as (context + continuation tokens, context length),
        validated: a non-empty continuation after at least one context token (BOS)."""
        seqs: list[tuple[list[int], int]] = []
        for ctx, cont in requests:
            c = [int(t) for t in cont]
            if not c:
                raise InputError("loglikelihood: empty continuation", field="continuation")
            toks = self._checked([*ctx, *c], "loglikelihood")
            if len(toks) - len(c) < 1:
                raise InputError(
                    "loglikelihood: the context needs at least one token (BOS)", field="context"
                )
            seqs.append((toks, len(toks) - len(c)))
        return seqs

    def token_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        toks = self._checked(tokens, "token_logprobs")
        if len(toks) < 2:
            return np.zeros(0, dtype=np.float64)
        logits = self._forward(toks)
        check_finite(logits, self.runtime, "token_logprobs")
        return picked_logprobs(logits[:-1], toks[1:])

    def _scored_logits(self, toks: list[int], first: int) -> np.ndarray:
        """Logits [len - first, n_vocab] of the rows predicting toks[first:] (perplexity scores
        only the second half of each chunk; runtimes that can skip the other rows override this)."""
        return self._forward(toks)[first - 1 : len(toks) - 1]

    def score_tokens(self, tokens: Sequence[int], first: int = 1) -> np.ndarray:
        """log p(tokens[i] | tokens[:i]) for i = first..len-1."""
        return self._score(tokens, first, keep=False)

    def score_tokens_kept(self, tokens: Sequence[int], first: int = 1) -> np.ndarray:
        return self._score(tokens, first, keep=True)

    def _score(self, tokens: Sequence[int], first: int, *, keep: bool) -> np.ndarray:
        self._kept = None  # the last chunk's rows go before this one's are made
        toks = self._checked(tokens, "score_tokens")
        first = max(1, first)
        if first >= len(toks):
            return np.zeros(0, dtype=np.float64)
        logits = self._scored_logits(toks, first)
        check_finite(logits, self.runtime, "score_tokens")
        if keep:
            self._kept = logits
        return picked_logprobs(logits, toks[first:])

    def kept_logits(self, start: int, stop: int) -> np.ndarray:
        kept = self._kept
        if kept is None:
            raise BackendError("kept_logits: no rows are kept (score_tokens_kept comes first)")
        if not 0 <= start <= stop <= len(kept):
            raise InputError(
                f"kept_logits: rows {start}..{stop} outside the {len(kept)} kept", field="rows"
            )
        # may be a view: the kept array is replaced by the next scoring call, never written
        return np.ascontiguousarray(kept[start:stop], dtype=np.float32)

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], candidates: Sequence[int]
    ) -> np.ndarray:
        cands = self._checked_candidates(candidates)
        out = np.empty((len(prompts), len(cands)), dtype=np.float64)
        for i, prompt in enumerate(prompts):
            toks = self._checked(prompt, "next_token_logprobs")
            logits = self._prefill(toks)
            check_finite(logits, self.runtime, "next_token_logprobs")
            out[i] = log_softmax(logits)[cands]
        return out

    def loglikelihood(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[LoglikResult]:
        results: list[LoglikResult] = []
        for toks, n_ctx_toks in self._checked_requests(requests):
            c = toks[n_ctx_toks:]
            logits = self._forward(toks)[n_ctx_toks - 1 : len(toks) - 1]
            check_finite(logits, self.runtime, "loglikelihood")
            lp = picked_logprobs(logits, c)
            greedy = bool(np.all(np.argmax(logits, axis=-1) == np.asarray(c)))
            results.append(LoglikResult(float(lp.sum()), len(c), greedy))
        return results

    def generate(
        self, prompt: Sequence[int], max_tokens: int, *, temperature: float = 0.0, seed: int = 0
    ) -> list[int]:
        toks = self._checked(prompt, "generate")
        budget = min(max_tokens, self.n_ctx - len(toks))
        rng = np.random.default_rng(seed)
        out: list[int] = []
        if budget <= 0:
            return out
        logits = self._prefill(toks)
        eos = self.eos_ids()
        while True:
            check_finite(logits, self.runtime, "generate")
            tok = pick_token(logits, temperature, rng)
            out.append(tok)
            if tok in eos or len(out) >= budget:
                return out
            logits = self._step(tok)

    def time_run(self, prompt: Sequence[int], gen_tokens: int) -> Timing:
        """Prefill ``prompt`` then decode ``gen_tokens`` greedily, ignoring EOS (a benchmark
        measures a fixed amount of work). TTFT = prefill + picking the first token."""
        toks = self._checked(prompt, "time_run", extra=gen_tokens)
        t0 = time.perf_counter()
        logits = self._prefill(toks)
        t1 = time.perf_counter()
        tok = int(np.argmax(logits))
        t_first = time.perf_counter()
        for _ in range(gen_tokens):
            logits = self._step(tok)
            tok = int(np.argmax(logits))
        t2 = time.perf_counter()
        check_finite(logits, self.runtime, "time_run")
        return Timing(
            prompt_tokens=len(toks),
            gen_tokens=gen_tokens,
            prefill_s=t1 - t0,
            decode_s=t2 - t1,
            ttft_s=t_first - t0,
            peak_rss_bytes=peak_rss_bytes(),
        )

    def eos_ids(self) -> set[int]:
        return set()

    def info(self) -> dict[str, object]:
        """What was loaded, for reports."""
        return {
            "runtime": self.runtime,
            "model_path": str(self.model_path),
            "converted_from": str(self.converted_from) if self.converted_from else None,
            "n_ctx": self.n_ctx,
            "n_vocab": self.n_vocab,
            "threads": self.threads,
            "load_s": self.load_s,
        }

    def close(self) -> None:  # optional hook: most runtimes free on GC
        return None
