"""llama.cpp backend (llama-cpp-python).

Loads GGUF directly. An HF safetensors directory is first converted to GGUF (f16 unless
``EDGEGATE_GGUF_OUTTYPE`` says otherwise) with llama.cpp's own converter (``hf_to_gguf``) and
cached under ``<cache_dir>/gguf/<sha256 of converter and inputs>.gguf``, so the second run
reuses it; ``converted_from`` and ``info()["converter"]`` record that this happened and how.

We drive llama.cpp's decode with our own batches (not ``Llama.eval``) so logits are computed
only for the positions we score: perplexity asks for the scored half of each chunk, the
benchmark for the last position only, exactly as llama-perplexity / llama-bench do.

Scoring calls (``next_token_logprobs``, ``loglikelihood``) keep the KV cache between prompts:
the cells of the longest prefix shared with the previous sequence stay, the rest are removed
(``llama_memory_seq_rm``) and only the new suffix is decoded. BBQ prompts share the system
prompt and sorted prompts share whole contexts. The kept prefix is cut to llama.cpp's kernel
row tiles (``_ROW_TILE``), which makes the result bit-identical to a decode from an empty
cache. Timing (``time_run``) always starts from an empty cache.

``loglikelihood`` scores a context and all its continuations in one decode: the context in
every sequence, each continuation in its own (``backends/branching.py``: a trie, so shared
leading tokens are evaluated once and last tokens never). That is the fewest positions any
scorer evaluates. A branch row attends over a KV layout unlike a lone sequence's, so scores
differ from decoding each answer alone by float noise (<= 0.005 nats on gemma-3-270m); they
are the same bits whatever else the call holds and in whatever order, as the layout depends
only on the context and its set of continuations (tests/test_backend_llamacpp_prefix.py).
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.backends import branching
from edgegate.backends._common import (
    check_finite,
    log_softmax,
    picked_logprobs,
    render_chat,
)
from edgegate.backends._generic import GenericBackend
from edgegate.backends.base import LoglikResult
from edgegate.backends.branching import BranchPlan
from edgegate.backends.llamacpp_load import (
    N_BRANCHES,
    classify_refusal,
    ensure_gguf_with_info,
    extra_buffers,
    extra_buffers_for,
    patched_defaults,
)
from edgegate.errors import BackendError, BackendUnavailable, InputError

# llama.cpp's CPU kernels for repacked quantised weights (Q4_K, Q4_0, IQ4_NL...) multiply
# activations in tiles of 4 rows (leftover rows and very small batches take another path), and
# a row's result depends on the path (up to 0.9 nats on gemma-3-270m Q4_K_M). A kept prefix
# that is a multiple of 4 tokens long, followed by at least 8 decoded rows, puts every row on
# the same path as a decode from scratch: reuse is then bit-exact (tests/test_backend_llamacpp_prefix.py).
_ROW_TILE = 4
_MIN_ROWS = 8


_BRANCH_PARAMS = frozenset({"n_seq_max", "kv_unified"})


def _fields(struct: Any) -> set[str]:
    return {f[0] for f in getattr(struct, "_fields_", ())}


class LlamaCppBackend(GenericBackend):
    runtime = "llamacpp"

    def __init__(
        self,
        path: Path,
        *,
        threads: int | None = None,
        n_ctx: int = 2048,
        seed: int = 0,
        cache_dir: Path | None = None,
    ) -> None:
        try:
            import llama_cpp
        except ImportError as exc:
            raise BackendUnavailable("llamacpp", "llamacpp") from exc
        self._lib = llama_cpp
        gguf, src, self.converter = ensure_gguf_with_info(Path(path), cache_dir)
        self.model_path, self.converted_from = gguf, src
        self.threads = threads
        self.n_ctx = int(n_ctx)
        self._n_batch = min(self.n_ctx, 512)
        t0 = time.perf_counter()
        self.extra_buffers, self._extra_buffers_why = extra_buffers_for(llama_cpp, gguf)
        self._llm: Any = self._load(llama_cpp, gguf, threads, seed)
        self.load_s = time.perf_counter() - t0
        self.n_vocab = int(self._llm.n_vocab())
        train_ctx = int(self._llm._model.n_ctx_train())
        if self.n_ctx > train_ctx > 0:
            raise InputError(
                f"n_ctx {self.n_ctx} exceeds the model's trained context {train_ctx}",
                path=gguf,
                field="n_ctx",
                hint=f"use --n-ctx {train_ctx} or less",
            )
        self._ctx = self._llm._ctx
        self._bind_batch()
        self._n_past = 0
        # tokens whose KV cells (sequence 0, positions 0..len-1) are valid right now, and how
        # many of them were computed on the kernels' full row tiles (only those may be kept)
        self._cached: list[int] = []
        self._exact = 0
        self.reuse_prefix = True  # False: every scoring call starts from an empty cache
        # llama-cpp-python before the llama_memory_* API (or a model without a KV memory):
        # no partial removal, so every sequence starts from an empty cache
        self._mem = getattr(self._ctx, "memory", None)
        self._can_trim = self._mem is not None and all(
            hasattr(llama_cpp, f)
            for f in ("llama_memory_seq_rm", "llama_memory_seq_pos_min", "llama_memory_seq_cp")
        )
        # branches need several sequences in one unified KV buffer
        self.branching = (
            self._can_trim and _fields(llama_cpp.llama_context_params) >= _BRANCH_PARAMS
        )

    def _load(self, llama_cpp: Any, gguf: Path, threads: int | None, seed: int) -> Any:
        branches = {"n_seq_max": N_BRANCHES + 1, "kv_unified": True}
        if not _fields(llama_cpp.llama_context_params) >= _BRANCH_PARAMS:
            branches = {}  # an older llama-cpp-python: one sequence, answers decoded in turn
        try:
            with (
                extra_buffers(llama_cpp, self.extra_buffers),
                patched_defaults(llama_cpp, "llama_context_default_params", **branches),
            ):
                return llama_cpp.Llama(
                    model_path=str(gguf),
                    n_ctx=self.n_ctx,
                    n_batch=self._n_batch,
                    n_ubatch=self._n_batch,
                    n_threads=threads,
                    n_threads_batch=threads,
                    seed=seed,
                    logits_all=False,
                    verbose=False,
                )
        except (
            ValueError
        ) as exc:  # llama.cpp refused the file: the user's (exit 2) or the runtime's (exit 3)?
            raise classify_refusal(gguf, exc) from exc

    def _bind_batch(self) -> None:
        """numpy views on the batch arrays: filling them per token from Python costs more
        than a small model's decode. Every row is in sequence 0 alone unless a branched
        decode says otherwise (and puts it back)."""
        self._batch = self._llm._batch
        b, nb = self._batch.batch, self._n_batch
        self._tok_v = np.ctypeslib.as_array(b.token, shape=(nb,))
        self._pos_v = np.ctypeslib.as_array(b.pos, shape=(nb,))
        self._out_v = np.ctypeslib.as_array(b.logits, shape=(nb,))
        for j in range(nb):
            b.n_seq_id[j] = 1
            b.seq_id[j][0] = 0

    # -- decoding with explicit output rows ------------------------------------------------
    def _decode(self, tokens: Sequence[int], n_past: int, want: np.ndarray) -> np.ndarray:
        """Decode ``tokens`` at positions n_past.., returning logits for rows where ``want``."""
        return self._decode_rows(tokens, np.arange(n_past, n_past + len(tokens)), want)

    def _decode_rows(
        self,
        tokens: Sequence[int],
        pos: np.ndarray,
        want: np.ndarray,
        seqs: Sequence[Sequence[int]] | None = None,
    ) -> np.ndarray:
        """Decode ``tokens`` at positions ``pos`` (in sequence 0, or in the sequences ``seqs``
        names per row), returning logits for rows where ``want``."""
        v = self.n_vocab
        self.tokens_evaluated += len(tokens)
        out = np.empty((int(want.sum()), v), dtype=np.float32)
        k = 0
        b = self._batch.batch
        for i in range(0, len(tokens), self._n_batch):
            part = tokens[i : i + self._n_batch]
            flags = want[i : i + len(part)]
            n = len(part)
            b.n_tokens = n
            self._tok_v[:n] = part
            self._pos_v[:n] = pos[i : i + n]
            self._out_v[:n] = flags
            if seqs is not None:
                for j, ids in enumerate(seqs[i : i + n]):
                    b.n_seq_id[j] = len(ids)
                    for m, sid in enumerate(ids):
                        b.seq_id[j][m] = sid
            try:
                self._ctx.decode(self._batch)
            except RuntimeError as exc:
                raise BackendError(f"llama.cpp decode failed: {exc}") from exc
            finally:
                if seqs is not None:  # every other decode puts each row in sequence 0 alone
                    for j in range(n):
                        b.n_seq_id[j] = 1
                        b.seq_id[j][0] = 0
            n_out = int(flags.sum())
            if n_out:
                ptr = self._lib.llama_get_logits(self._ctx.ctx)
                rows = np.ctypeslib.as_array(
                    ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n_out * v,)
                )
                out[k : k + n_out] = rows.reshape(n_out, v)
                k += n_out
        return out

    def _clear(self) -> None:
        self._ctx.kv_cache_clear()
        self._n_past = 0
        self._cached = []
        self._exact = 0

    def _keep_prefix(self, toks: list[int], limit: int) -> int:
        """Keep the cached cells of the longest prefix shared with ``toks``, at most ``limit``
        tokens long and computed on full row tiles; drop the rest. Returns how many tokens are
        already in the cache."""
        prev, limit = self._cached, min(len(self._cached), limit, self._exact)
        k = 0
        if self.reuse_prefix and self._can_trim and limit > 0:
            a = np.asarray(prev[:limit], dtype=np.int64)
            diff = np.flatnonzero(a != np.asarray(toks[:limit], dtype=np.int64))
            k = int(diff[0]) if len(diff) else limit
        k -= k % _ROW_TILE
        if k == 0:
            self._clear()
            return 0
        mem = self._mem
        # a sliding-window cache may have evicted early cells: then the prefix is not whole
        if (
            not self._lib.llama_memory_seq_rm(mem, 0, k, -1)
            or self._lib.llama_memory_seq_pos_min(mem, 0) != 0
        ):
            self._clear()
            return 0
        self._cached = prev[:k]
        self._exact = k
        return k

    def _run(self, toks: list[int], want: np.ndarray) -> np.ndarray:
        """Logits of the rows where ``want``, decoding only what the cache does not hold. A
        row whose logits we need must be decoded, and so must at least _MIN_ROWS rows."""
        first = int(np.argmax(want)) if want.any() else len(toks) - 1
        k = self._keep_prefix(toks, min(first, len(toks) - _MIN_ROWS))
        try:
            logits = self._decode(toks[k:], k, want[k:])
        except BackendError:
            self._clear()
            raise
        self._hold(toks, len(toks) - len(toks) % _ROW_TILE)
        return logits

    def _hold(self, toks: list[int], exact: int) -> None:
        """Sequence 0 now holds ``toks``; the first ``exact`` were computed on full row tiles
        (a batch's last n % 4 rows are not: with the kept prefix a multiple of 4, the tiles of
        a batch line up with those of a decode from an empty cache)."""
        self._cached = list(toks)
        self._exact = exact
        self._n_past = len(toks)

    def _fresh(self, toks: list[int], want: np.ndarray) -> np.ndarray:
        self._clear()
        try:
            logits = self._decode(toks, 0, want)
        except BackendError:
            self._clear()
            raise
        self._hold(toks, len(toks) - len(toks) % _ROW_TILE)
        return logits

    def _branched(self, ctx: list[int], p: BranchPlan) -> np.ndarray:
        """One decode for a context and its continuations (``branching.plan``): the context
        (less the kept prefix) in sequence 0 and every branch 1..n, each tail row in the
        branches whose path holds it. Returns the logits of the context's last row, then of
        every tail row. Afterwards sequence 0 holds the context and the branches are gone."""
        n_ctx, n_tail = len(ctx), len(p.tokens)
        k = self._keep_prefix(ctx, min(n_ctx - 1, n_ctx + n_tail - _MIN_ROWS))
        everyone = tuple(range(p.n_branches + 1))
        tokens = [*ctx[k:], *p.tokens]
        pos = np.concatenate([np.arange(k, n_ctx), n_ctx + np.asarray(p.depth, dtype=np.int64)])
        seqs = [everyone] * (n_ctx - k) + list(p.branches)
        want = np.zeros(len(tokens), dtype=bool)
        want[n_ctx - k - 1 :] = True
        try:
            if k:  # a branch's positions continue its own cells: share the kept prefix's cells
                for branch in range(1, p.n_branches + 1):
                    self._lib.llama_memory_seq_cp(self._mem, 0, branch, -1, -1)
            logits = self._decode_rows(tokens, pos, want, seqs)
            for branch in range(1, p.n_branches + 1):
                self._lib.llama_memory_seq_rm(self._mem, branch, -1, -1)
        except BackendError:
            self._clear()
            raise
        n = len(tokens)
        self._hold(ctx, min(n_ctx, k + n - n % _ROW_TILE))
        return logits

    def _forward(self, tokens: Sequence[int]) -> np.ndarray:
        return self._fresh(list(tokens), np.ones(len(tokens), dtype=bool))

    def _prefill(self, tokens: Sequence[int]) -> np.ndarray:
        # always from an empty cache: time_run measures a whole prefill
        want = np.zeros(len(tokens), dtype=bool)
        want[-1] = True
        return self._fresh(list(tokens), want)[0]

    def _step(self, token: int) -> np.ndarray:
        try:
            logits = self._decode([token], self._n_past, np.ones(1, dtype=bool))[0]
        except BackendError:
            self._clear()
            raise
        self._n_past += 1  # a one-row decode: not reusable (see _ROW_TILE), so not in _cached
        return logits

    def _scored_logits(self, toks: list[int], first: int) -> np.ndarray:
        """Only the rows that predict tokens[first:] get logits computed (llama-perplexity's
        trick: the output layer over a 256k vocabulary dominates small models)."""
        want = np.zeros(len(toks), dtype=bool)
        want[first - 1 : len(toks) - 1] = True
        return self._fresh(toks, want)

    # -- scoring with prefix reuse ------------------------------------------------------------
    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], candidates: Sequence[int]
    ) -> np.ndarray:
        cands = self._checked_candidates(candidates)
        toks = [self._checked(p, "next_token_logprobs") for p in prompts]
        out = np.empty((len(toks), len(cands)), dtype=np.float64)
        for i in sorted(range(len(toks)), key=lambda j: toks[j]):  # neighbours share prefixes
            want = np.zeros(len(toks[i]), dtype=bool)
            want[-1] = True
            logits = self._run(toks[i], want)[0]
            check_finite(logits, self.runtime, "next_token_logprobs")
            out[i] = log_softmax(logits)[cands]
        return out

    def loglikelihood(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[LoglikResult]:
        """Requests sharing a context are scored in one decode: the context once (less the
        prefix kept from the previous context), each continuation a branch of it."""
        seqs = self._checked_requests(requests)
        if not self.branching:
            return self._loglik_one_by_one(seqs)
        by_ctx: dict[tuple[int, ...], list[int]] = {}
        for i, (toks, n_ctx_toks) in enumerate(seqs):
            by_ctx.setdefault(tuple(toks[:n_ctx_toks]), []).append(i)
        results: list[LoglikResult | None] = [None] * len(seqs)
        for ctx in sorted(by_ctx):  # neighbours share prefixes
            group = by_ctx[ctx]
            conts = [seqs[i][0][len(ctx) :] for i in group]
            for part in branching.split(conts, N_BRANCHES):
                p = branching.plan([conts[j] for j in part])
                logits = self._branched(list(ctx), p)
                check_finite(logits, self.runtime, "loglikelihood")
                for j, rows in zip(part, p.rows, strict=True):
                    cont = conts[j]
                    lg = logits[[r + 1 for r in rows]]  # CONTEXT_ROW (-1) is row 0
                    lp = picked_logprobs(lg, cont)
                    greedy = bool(np.all(np.argmax(lg, axis=-1) == np.asarray(cont)))
                    results[group[j]] = LoglikResult(float(lp.sum()), len(cont), greedy)
        return [r for r in results if r is not None]

    def _loglik_one_by_one(self, seqs: list[tuple[list[int], int]]) -> list[LoglikResult]:
        """Without branches (a llama-cpp-python too old for them): each request from the kept
        prefix, its context tail and continuation decoded in sequence 0."""
        results: list[LoglikResult | None] = [None] * len(seqs)
        for i in sorted(range(len(seqs)), key=lambda j: seqs[j][0]):
            toks, n_ctx_toks = seqs[i]
            want = np.zeros(len(toks), dtype=bool)
            want[n_ctx_toks - 1 : len(toks) - 1] = True
            logits = self._run(toks, want)
            check_finite(logits, self.runtime, "loglikelihood")
            cont = toks[n_ctx_toks:]
            lp = picked_logprobs(logits, cont)
            greedy = bool(np.all(np.argmax(logits, axis=-1) == np.asarray(cont)))
            results[i] = LoglikResult(float(lp.sum()), len(cont), greedy)
        return [r for r in results if r is not None]

    # -- text -------------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        # special=True parses control tokens written in the text, as HF tokenizers do
        ids = self._llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True)
        return [int(i) for i in ids]

    def detokenize(self, ids: Sequence[int]) -> str:
        raw: bytes = self._llm.detokenize([int(i) for i in ids], special=True)
        return raw.decode("utf-8", errors="replace")

    def _token_text(self, tok: int) -> str:
        if tok < 0:
            return ""
        return self.detokenize([tok])

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        tmpl = self._llm.metadata.get("tokenizer.chat_template")
        return render_chat(
            tmpl,
            system,
            user,
            bos_token=self._token_text(int(self._llm.token_bos())),
            eos_token=self._token_text(int(self._llm.token_eos())),
        )

    def eos_ids(self) -> set[int]:
        ids = {int(self._llm.token_eos())}
        eot = getattr(self._lib, "llama_vocab_eot", None)
        vocab = getattr(self._llm._model, "vocab", None)
        if eot is not None and vocab is not None:  # e.g. Gemma's <end_of_turn>
            ids.add(int(eot(vocab)))
        return {i for i in ids if i >= 0}

    def info(self) -> dict[str, object]:
        out = super().info()
        # how a context's answers are scored: the answer cache keys them by it
        out["loglik_scoring"] = "branched" if self.branching else "one by one"
        out["extra_buffers"] = self.extra_buffers
        out["extra_buffers_reason"] = self._extra_buffers_why
        if (
            self.converter
        ):  # which converter made the GGUF from the HF directory: part of the evidence
            out["converter"] = dict(self.converter)
        return out

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            self._llm = None
