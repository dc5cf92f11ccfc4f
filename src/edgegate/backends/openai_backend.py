"""The ``openai`` backend: any OpenAI-compatible ``/v1/completions`` server with logprobs.

Tested for real against llama-cpp-python's server; written to the documented APIs of vLLM
(tensor/pipeline parallel deployments) and llama.cpp's ``llama-server``. Servers differ in
what they accept, so the backend picks a *dialect* when it connects:

==================  ==============  ==========================  =======================
dialect             prompt sent as  prompt logprobs (echo)      top-logprob keys
==================  ==============  ==========================  =======================
vllm                token ids       yes                         token ids (token_id:N)
llama-server        token ids       no -> forced-token scoring  token ids
llama-cpp-python    text            yes (first token: none)     token strings
generic             text            probed on first use         token strings
==================  ==============  ==========================  =======================

Text prompts are checked to re-tokenize to exactly the requested ids, so a score is never
computed for a prompt other than the one asked for. *Forced-token* scoring asks for one
token with a +100 ``logit_bias`` on the wanted token at temperature 0: the server then
samples it and reports its raw (unbiased) log-probability, which is exact whatever the
top-k. Missing candidates, ambiguities and fallbacks are counted in ``coverage`` and logged.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgegate.backends._http import FeatureUnsupported
from edgegate.backends._openai_server import DIALECTS, OpenAIServer
from edgegate.backends._openai_wire import CompletionRequest, Pos, parse_logprobs
from edgegate.backends.base import LoglikResult, Timing
from edgegate.errors import BackendError, InputError

__all__ = [
    "DIALECTS",
    "FORCE_BIAS",
    "Coverage",
    "FeatureUnsupported",
    "OpenAIBackend",
    "parse_logprobs",
]

log = logging.getLogger("edgegate.backends.openai")

FORCE_BIAS = 100.0


@dataclass(frozen=True)
class Coverage:
    """How letter scores were obtained; anything but ``topk_hits``/``forced`` is a caveat."""

    prompts: int = 0
    topk_hits: int = 0  # candidate found in the top-k list
    forced: int = 0  # exact value via a forced-token request
    below_kth: int = 0  # not in top-k and no logit_bias: set just below the k-th value


class OpenAIBackend(OpenAIServer):
    """The ``openai`` runtime: letter scores, prompt log-probabilities, log-likelihoods,
    generation and timing over an ``OpenAIServer`` connection."""

    def _forced(self, ids: Sequence[int], tok: int) -> tuple[float, bool]:
        """Exact raw log p(tok | ids) and whether tok is the argmax, via logit_bias."""
        c = self._complete(ids, "logit_bias", logprobs=2, logit_bias={str(tok): FORCE_BIAS})
        pos = parse_logprobs(c)
        lp = pos[0].logprob if pos else None
        if lp is None:
            raise BackendError(f"{self.base_url}: forced-token request returned no logprob")
        p = pos[0]
        got = p.token_id
        if got is None and p.token is not None and p.token != self._piece(tok):
            got = -1
        if got is not None and got != tok:
            raise FeatureUnsupported(
                f"{self.base_url} ignored logit_bias (sampled {p.token!r}, not token {tok})",
                feature="logit_bias",
                hint="use letter_mode='topk'",
            )
        tops = sorted((t[2] for t in p.top), reverse=True)
        if len(tops) > 1 and tops[0] > -1e-4 and tops[1] < -FORCE_BIAS / 2:
            # the +100 shows in the numbers: these are post-bias, not the model's, logprobs
            raise FeatureUnsupported(
                f"{self.base_url} reports log-probabilities after logit_bias",
                feature="logit_bias",
                hint="use letter_mode='topk' with a larger top_logprobs",
            )
        return lp, lp >= (tops[0] if tops else lp) - 1e-6

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], candidates: Sequence[int]
    ) -> np.ndarray:
        cands = [int(c) for c in candidates]
        mode = self.letter_mode
        if mode == "auto":  # string keys can collide (byte tokens): go exact by id there
            mode = "topk" if self._ids_keyed else "forced"
        if mode == "topk" and not self._ids_keyed:
            pieces = [self._piece(c) for c in cands]
            if len(set(pieces)) != len(pieces) or "" in pieces:
                raise BackendError(
                    f"candidate tokens {cands} are not distinguishable by their text {pieces}",
                    hint="use letter_mode='forced'",
                )
        rows = self._map(lambda p: self._letter_row(p, cands, mode), list(prompts))
        return np.array(rows, dtype=np.float64).reshape(len(prompts), len(cands))

    def _letter_row(self, prompt: Sequence[int], cands: list[int], mode: str) -> list[float]:
        self._bump("prompts")
        if mode == "forced":
            self._bump("forced", len(cands))
            return [self._forced(prompt, c)[0] for c in cands]
        pos = parse_logprobs(self._complete(prompt, "logprobs", logprobs=self.top_k))
        if not pos:
            raise BackendError(f"{self.base_url}: no logprobs for the next token")
        top = pos[0].top
        kth = min((t[2] for t in top), default=-math.inf)
        row: list[float] = []
        for c in cands:
            hit = [t[2] for t in top if (t[0] == c if t[0] is not None else t[1] == self._piece(c))]
            if hit:
                self._bump("topk_hits")
                row.append(hit[0])
                continue
            try:
                row.append(self._forced(prompt, c)[0])
                self._bump("forced")
            except FeatureUnsupported as e:
                self._bump("below_kth")
                log.warning(
                    "candidate %d not in top-%d and %s; scoring it just below the k-th (%.3f)",
                    c,
                    self.top_k,
                    e.message,
                    kth,
                )
                row.append(float(np.nextafter(kth, -np.inf)))
        return row

    def _bump(self, key: str, n: int = 1) -> None:
        with self._cov_lock:  # bumped from the request threads
            self._cov[key] += n

    @property
    def coverage(self) -> Coverage:
        return Coverage(**self._cov)

    def _echo(self, ids: Sequence[int], k: int) -> tuple[list[Pos], int]:
        """Prompt positions of an echo request and the offset (ids dropped from the front)."""
        try:
            c = self._complete(ids, "echo", echo=True, logprobs=k)
        except FeatureUnsupported:
            self._echo_ok = False
            raise
        self._echo_ok = True
        pos = parse_logprobs(c)
        n_gen = c["_usage"].get("completion_tokens")
        n_gen = n_gen if isinstance(n_gen, int) else 1
        prompt_pos = pos[: max(0, len(pos) - n_gen)]
        offset = len(ids) - len(prompt_pos)
        if offset not in (0, 1):
            raise BackendError(
                f"{self.base_url} echoed {len(prompt_pos)} prompt positions for {len(ids)} tokens"
            )
        return prompt_pos, offset

    def token_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        out = self._prompt_logprobs(tokens)
        if out.size and np.isnan(out[0]) and not self._warned_first:
            self._warned_first = True
            log.warning(
                "%s gives no log-probability for the first token after BOS; "
                "token_logprobs()[0] is NaN",
                self.base_url,
            )
        return out

    def _prompt_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        ids = [int(t) for t in tokens]
        if len(ids) < 2:
            return np.zeros(0, dtype=np.float64)
        pos, off = self._echo(ids, 0 if self.dialect != "llama-server" else 1)
        out = np.full(len(ids) - 1, np.nan, dtype=np.float64)
        for i in range(1, len(ids)):
            v = pos[i - off].logprob if i - off >= 0 else None
            if v is None and not (i == 1 and off == 1):  # llama-cpp-python: none after BOS
                raise BackendError(f"{self.base_url}: no prompt log-probability at position {i}")
            out[i - 1] = np.nan if v is None else v
        return out

    def score_tokens(self, tokens: Sequence[int], first: int = 1) -> np.ndarray:
        """log p(tokens[i] | tokens[:i]) for i = first..len-1 (perplexity scores the second
        half of each chunk). The prompt plus one generated token must fit the server's context."""
        first = max(1, first)
        lp = self._prompt_logprobs(tokens)[first - 1 :]
        if lp.size and np.isnan(lp[0]):
            raise FeatureUnsupported(
                f"{self.base_url} ({self.dialect}) gives no log-probability for the first token "
                "after BOS",
                feature="echo",
                hint="use perplexity mode 'chunked' (it scores only "
                "the second half of each chunk), or a vLLM server",
            )
        return lp

    def score_tokens_kept(self, tokens: Sequence[int], first: int = 1) -> np.ndarray:
        raise FeatureUnsupported(
            f"{self.base_url} returns at most the top log-probabilities of a position, not the full "
            "next-token distribution the fidelity check compares",
            feature="full logits",
            hint="run the fidelity check on the model files (llama.cpp, transformers, ONNX, MLX)",
        )

    def kept_logits(self, start: int, stop: int) -> np.ndarray:
        return self.score_tokens_kept([], 1)

    def info(self) -> dict[str, object]:
        """What was scored against, for reports (never the API key)."""
        return {
            "runtime": self.runtime,
            "base_url": self.base_url,
            "model": self.model,
            "model_path": str(self.model_path),
            "dialect": self.dialect,
            "n_ctx": self.n_ctx,
            "letter_mode": self.letter_mode,
            "loglik_mode": self.loglik_mode,
            "top_logprobs": self.top_k,
            "load_s": self.load_s,
            "coverage": dataclasses.asdict(self.coverage),
        }

    def loglikelihood(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[LoglikResult]:
        reqs = [([int(t) for t in c], [int(t) for t in x]) for c, x in requests]
        for c, x in reqs:
            if not c or not x:
                raise InputError(
                    "loglikelihood needs a non-empty context and continuation", field="requests"
                )
        mode = self.loglik_mode
        if mode == "auto":
            mode = "forced" if self.dialect == "llama-server" or self._echo_ok is False else "echo"
        if mode == "echo":
            try:
                return self._map(self._loglik_echo, reqs)
            except FeatureUnsupported as e:
                if self.loglik_mode != "auto":
                    raise
                log.warning("%s; falling back to forced-token scoring", e.message)
        return self._map(self._loglik_forced, reqs)

    def _loglik_echo(self, req: tuple[list[int], list[int]]) -> LoglikResult:
        ctx, cont = req
        ids = ctx + cont
        pos, off = self._echo(ids, 1)
        total, greedy = 0.0, True
        for j in range(len(ctx), len(ids)):
            p = pos[j - off] if j - off >= 0 else None
            if p is None or p.logprob is None:
                raise BackendError(
                    f"{self.base_url}: no log-probability for continuation token {j - len(ctx)}",
                    hint="give a context beyond BOS",
                )
            total += p.logprob
            best = max((t[2] for t in p.top), default=p.logprob)
            greedy = greedy and p.logprob >= best - 1e-6
        return LoglikResult(logprob=total, n_tokens=len(cont), is_greedy=greedy)

    def _loglik_forced(self, req: tuple[list[int], list[int]]) -> LoglikResult:
        ctx, cont = req
        total, greedy = 0.0, True
        for j, tok in enumerate(cont):
            lp, g = self._forced(ctx + cont[:j], tok)
            total += lp
            greedy = greedy and g
        return LoglikResult(logprob=total, n_tokens=len(cont), is_greedy=greedy)

    # -------------------------------------------------------------- generation
    def generate(
        self, prompt: Sequence[int], max_tokens: int, *, temperature: float = 0.0, seed: int = 0
    ) -> list[int]:
        c = self._complete(
            prompt,
            "generate",
            max_tokens=int(max_tokens),
            temperature=float(temperature),
            seed=int(seed),
            logprobs=0,
        )
        try:
            pos = parse_logprobs(c)
        except BackendError:
            pos = []
        if pos and all(p.token_id is not None for p in pos):
            return [int(p.token_id) for p in pos if p.token_id is not None]
        text = c.get("text")
        if not isinstance(text, str):
            raise BackendError(f"{self.base_url}: completion has no 'text'")
        # Text-only servers: re-tokenize the continuation (may differ at merge boundaries).
        return self.tokenize(text, add_special=False) if text else []

    def time_run(self, prompt: Sequence[int], gen_tokens: int) -> Timing:
        body: CompletionRequest = {
            "model": self.model,
            "prompt": self._prompt(prompt),
            "max_tokens": gen_tokens,
            "temperature": 0.0,
            "stream": True,
            "min_tokens": gen_tokens,
            "ignore_eos": True,
        }
        t0 = time.perf_counter()
        first: float | None = None
        last = t0
        n = 0
        for t, chunk in self._http.post_sse("/v1/completions", body):
            ch = (chunk.get("choices") or [{}])[0] if isinstance(chunk, dict) else {}
            if not isinstance(ch, dict):
                raise BackendError(f"{self.base_url}: malformed stream chunk")
            if ch.get("text") or ch.get("finish_reason") is None:
                n += 1
                first = t if first is None else first
                last = t
        if first is None:
            raise BackendError(f"{self.base_url}: the stream produced no tokens")
        return Timing(
            prompt_tokens=len(prompt),
            gen_tokens=n,
            prefill_s=first - t0,
            decode_s=last - first,
            ttft_s=first - t0,
        )

    def close(self) -> None:
        """Nothing to free: the server owns the model."""
