"""``Scorer``: ask one model every BBQ item through the ``Backend`` protocol (see
bbq/scoring.py for the modes), on one process of the model or several (``Pool``)."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from edgegate.backends.base import Backend, LoglikResult
from edgegate.bbq import prompts, workers
from edgegate.bbq.cache import ResultCache
from edgegate.bbq.dataset import BBQItem
from edgegate.bbq.metrics import Answer
from edgegate.bbq.score_config import ScoreConfig, answer_key
from edgegate.errors import BackendError, EdgegateError
from edgegate.progress import NullProgress, Progress

# A second process of a model loads it (about a second for a 270M model); below this many
# batches of work for each process, opening one costs more than it saves.
MIN_BATCHES_PER_PROCESS = 2


def encode(backend: Backend, text: str, chat: bool) -> list[int]:
    """Tokens of a prompt; a chat template that already writes the BOS text must not get a
    second BOS from the tokenizer."""
    if not chat:
        return backend.tokenize(text, add_special=True)
    bos = backend.tokenize("", add_special=True)  # what the tokenizer prepends (may be nothing)
    ids = backend.tokenize(text, add_special=False)
    if bos and ids[: len(bos)] != bos:
        return [*bos, *ids]
    return ids


def letter_candidates(backend: Backend) -> list[list[int]]:
    """For each letter, the single tokens that spell it ("A" and " A" variants)."""
    out: list[list[int]] = []
    owner: dict[int, str] = {}
    for letter in prompts.LETTERS:
        toks: list[int] = []
        for variant in (letter, " " + letter):
            ids = backend.tokenize(variant, add_special=False)
            if len(ids) == 1 and ids[0] not in toks:
                if ids[0] in owner:
                    raise BackendError(f"letters {owner[ids[0]]} and {letter} share token {ids[0]}")
                owner[ids[0]] = letter
                toks.append(ids[0])
        if not toks:
            raise BackendError(
                f"the tokenizer has no single token for the letter {letter}",
                hint="use --mode loglik for this model",
            )
        out.append(toks)
    return out


def _logsumexp(xs: np.ndarray) -> float:
    m = float(np.max(xs))
    if not math.isfinite(m):
        return m
    return m + math.log(float(np.sum(np.exp(xs - m))))


class _PrefixCount:
    """Distinct prefixes of the token sequences added so far (a trie's node count)."""

    def __init__(self) -> None:
        self._root: dict[int, Any] = {}
        self.nodes = 0
        self._lock = threading.Lock()  # the processes scoring one model share one count

    def add(self, tokens: Sequence[int]) -> None:
        with self._lock:
            node = self._root
            for t in tokens:
                nxt = node.get(t)
                if nxt is None:
                    nxt = node[t] = {}
                    self.nodes += 1
                node = nxt


@dataclass(frozen=True)
class Pool:
    """The processes one model is scored with: up to ``processes``, the first being the
    backend already open; ``open_another(n_ctx)`` opens the same model in a new process."""

    processes: int = 1
    open_another: Callable[[int], Backend] | None = None


def tokens_evaluated(backend: Backend) -> int | None:
    """Positions the backend has evaluated so far, where it counts them (local runtimes)."""
    work = getattr(backend, "work", None)
    if work is None:
        return None
    try:
        return int(work()["tokens_evaluated"])
    except (EdgegateError, KeyError, TypeError, ValueError):
        return None


class Scorer:
    def __init__(
        self,
        backend: Backend,
        config: ScoreConfig,
        *,
        cache: ResultCache | None = None,
        model_key: str | None = None,
        progress: Progress | None = None,
        pool: Pool | None = None,
    ) -> None:
        self.backend = backend
        self.cfg = config
        self.pool = pool or Pool()
        self.processes = 1  # the most processes one call of score() used
        self.peer_tokens = 0  # positions the other processes evaluated
        self.cache = cache
        self.progress: Progress = progress or NullProgress()
        self.chat = backend.chat_prompt(prompts.SYSTEM, "test") is not None
        self.prompt_key = prompts.template_hash(config.mode, temperature=config.temperature)
        # from the opened model: a runtime that cannot branch keeps its answers apart
        # (a plugin runtime may leave out info(): its answers keep its runtime's key)
        info = backend.info() if callable(getattr(backend, "info", None)) else {}
        branched = info.get("loglik_scoring", "branched") == "branched"
        self.backend_key = answer_key(backend.runtime, config.mode, branched=branched)
        if cache is not None and model_key is None:
            model_key = cache.model_hash(backend.model_path)
        self.model_key = model_key or str(backend.model_path)
        self._cands: list[list[int]] | None = None
        self.n_scored = 0  # units sent to the backend in this process (not from the cache)
        self.minimal = (
            _PrefixCount()
        )  # the fewest positions any scorer evaluates for the same answers

    # -- prompts -----------------------------------------------------------------------
    def letter_tokens(self, item: BBQItem, rotation: int) -> list[int]:
        user = prompts.letter_user(item, rotation)
        text = self.backend.chat_prompt(prompts.SYSTEM, user) if self.chat else None
        if text is None:
            return encode(self.backend, prompts.letter_plain(item, rotation), chat=False)
        return encode(self.backend, text, chat=True)

    # -- scoring -------------------------------------------------------------------------
    def score(self, items: Sequence[BBQItem], label: str = "model") -> list[Answer]:
        """Answers for every (item, seed, rotation): cached ones are reused, the rest are
        scored and committed batch by batch. Returned in (item order, seed, rotation) order."""
        keys = self.cfg.keys(items)
        done: dict[tuple[str, int, int], Answer] = {}
        if self.cache is not None:
            done = self.cache.get(self.model_key, self.backend_key, self.prompt_key, keys)
        by_uid = {it.uid: it for it in items}
        todo = [k for k in keys if k not in done]
        if not todo:
            return [done[k] for k in keys]
        with self.progress.task(
            f"BBQ {self.cfg.mode} scoring ({label})", total=len(todo)
        ) as advance:

            def commit(answers: list[Answer]) -> None:
                self.n_scored += len(answers)
                if self.cache is not None:
                    self.cache.put(self.model_key, self.backend_key, self.prompt_key, answers)
                for a in answers:
                    done[a.key] = a
                advance(len(answers))

            batches = self._batches(todo, by_uid)
            peers = [_Peer(self, by_uid) for _ in range(self._extra_processes(len(batches)))]
            own = partial(self._score_batch, by_uid=by_uid)
            try:
                workers.run([own, *peers], batches, commit, log=self.progress.log)
            finally:
                for p in peers:
                    self.peer_tokens += p.close()
            self.processes = max(self.processes, 1 + sum(p.opened for p in peers))
        return [done[k] for k in keys]

    def _extra_processes(self, n_batches: int) -> int:
        """Processes to open beside this one: a process's load must pay for itself
        (``MIN_BATCHES_PER_PROCESS`` batches each)."""
        if self.pool.open_another is None:
            return 0
        return max(0, min(self.pool.processes, n_batches // MIN_BATCHES_PER_PROCESS) - 1)

    def _batches(
        self, todo: list[tuple[str, int, int]], by_uid: dict[str, BBQItem]
    ) -> list[list[tuple[tuple[str, int, int], list[int]]]]:
        if self.cfg.mode == "loglik":
            enc = [
                (k, self.backend.tokenize(prompts.loglik_context(by_uid[k[0]]), add_special=True))
                for k in todo
            ]
        else:
            enc = [(k, self.letter_tokens(by_uid[k[0]], k[2])) for k in todo]
        enc.sort(key=lambda kt: (kt[1], kt[0]))  # adjacent prompts share prefixes
        bs = self.cfg.batch_size
        return [enc[i : i + bs] for i in range(0, len(enc), bs)]

    def _score_batch(
        self, batch: list[tuple[tuple[str, int, int], list[int]]], by_uid: dict[str, BBQItem]
    ) -> list[Answer]:
        # a prompt the context window cannot hold is a counted failure, not a crash
        limit = int(self.backend.n_ctx or 0) - self._room()
        too_long = [kt for kt in batch if limit > 0 and len(kt[1]) > limit]
        fits = [kt for kt in batch if not (limit > 0 and len(kt[1]) > limit)]
        out = [
            Answer(
                k[0],
                k[1],
                k[2],
                None,
                json.dumps({"error": f"prompt of {len(t)} tokens > {limit}"}),
            )
            for k, t in too_long
        ]
        if not fits:
            return out
        if self.cfg.mode == "loglik":
            out += self._loglik(fits, by_uid)
        elif self.cfg.sampled:
            out += [self._sample(k, toks) for k, toks in fits]
        else:
            out += self._letters(fits)
        return out

    def _room(self) -> int:
        """Tokens needed after the prompt: the answer continuation or the generated letters."""
        if self.cfg.mode == "loglik":
            return 64
        return self.cfg.max_new_tokens if self.cfg.sampled else 0

    def _letters(self, batch: list[tuple[tuple[str, int, int], list[int]]]) -> list[Answer]:
        if self._cands is None:
            self._cands = letter_candidates(self.backend)
        cands = self._cands
        flat = [t for toks in cands for t in toks]
        for _, toks in batch:
            self.minimal.add(toks)  # the logits after the prompt's last token: every position once
        lp = np.asarray(
            self.backend.next_token_logprobs([t for _, t in batch], flat), dtype=np.float64
        )
        if lp.shape != (len(batch), len(flat)) or np.isnan(lp).any():
            raise BackendError(
                f"next_token_logprobs returned shape {lp.shape} or NaN for {len(batch)} prompts"
            )
        out = []
        for row, ((uid, seed, rot), _) in zip(lp, batch, strict=True):
            per_letter = []
            j = 0
            for toks in cands:
                per_letter.append(_logsumexp(row[j : j + len(toks)]))
                j += len(toks)
            mass = float(sum(math.exp(x) for x in per_letter))
            pos = int(np.argmax(per_letter))
            ok = math.isfinite(max(per_letter)) and mass >= self.cfg.min_letter_mass
            choice = prompts.order(rot)[pos] if ok else None
            detail = json.dumps({"lp": [round(x, 4) for x in per_letter], "mass": round(mass, 4)})
            out.append(Answer(uid, seed, rot, choice, detail))
        return out

    def _sample(self, key: tuple[str, int, int], toks: list[int]) -> Answer:
        uid, seed, rot = key
        ids = self.backend.generate(
            toks, self.cfg.max_new_tokens, temperature=self.cfg.temperature, seed=seed
        )
        text = self.backend.detokenize(ids)
        pos = prompts.parse_letter(text)
        choice = prompts.order(rot)[pos] if pos is not None else None
        return Answer(uid, seed, rot, choice, json.dumps({"text": text}))

    def _loglik_calls(self, reqs: list[tuple[list[int], list[int]]]) -> list[LoglikResult]:
        """Three requests per item, in calls where no context comes twice: a runtime may score
        a context's continuations together (llama.cpp branches them in one decode), and an
        item's scores must not depend on whether another item with the same context and
        other answers (126 BBQ contexts have two answer sets) came in the same call."""
        calls: list[list[int]] = []
        seen: list[set[tuple[int, ...]]] = []
        for n in range(0, len(reqs), 3):
            ctx = tuple(reqs[n][0])
            j = next((j for j, s in enumerate(seen) if ctx not in s), len(calls))
            if j == len(calls):
                calls.append([])
                seen.append(set())
            calls[j] += [n, n + 1, n + 2]
            seen[j].add(ctx)
        res: list[LoglikResult | None] = [None] * len(reqs)
        for call in calls:
            got = self.backend.loglikelihood([reqs[i] for i in call])
            if len(got) != len(call):
                raise BackendError(
                    f"loglikelihood returned {len(got)} results for {len(call)} requests"
                )
            for i, r in zip(call, got, strict=True):
                res[i] = r
        return [r for r in res if r is not None]

    def _loglik(
        self, batch: list[tuple[tuple[str, int, int], list[int]]], by_uid: dict[str, BBQItem]
    ) -> list[Answer]:
        reqs: list[tuple[list[int], list[int]]] = []
        for (uid, _, _), ctx in batch:
            item = by_uid[uid]
            ctx_text = prompts.loglik_context(item)
            for i in range(3):
                whole = self.backend.tokenize(
                    ctx_text + prompts.loglik_continuation(item, i), add_special=True
                )
                if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
                    cont = whole[len(ctx) :]
                else:  # tokenizer merged across the boundary: encode the answer on its own
                    cont = self.backend.tokenize(
                        prompts.loglik_continuation(item, i), add_special=False
                    )
                reqs.append((ctx, cont))
                self.minimal.add(
                    ctx + cont[:-1]
                )  # the last answer token is scored, never evaluated
        res = self._loglik_calls(reqs)
        out = []
        for n, ((uid, seed, rot), _) in enumerate(batch):
            lps = [res[3 * n + i].logprob for i in range(3)]
            if any(math.isnan(x) for x in lps):
                raise BackendError(f"loglikelihood returned NaN for item {uid}")
            ok = math.isfinite(max(lps))
            choice = int(np.argmax(lps)) if ok else None
            out.append(
                Answer(uid, seed, rot, choice, json.dumps({"lp": [round(x, 4) for x in lps]}))
            )
        return out


class _Peer:
    """Another process of the scorer's model: opened by its worker thread on its first batch
    (while the first process already scores), sharing the scorer's minimal-work count."""

    def __init__(self, parent: Scorer, by_uid: dict[str, BBQItem]) -> None:
        self.parent, self.by_uid = parent, by_uid
        self.scorer: Scorer | None = None
        self.opened = False
        self._start = 0

    def __call__(self, batch: list[tuple[tuple[str, int, int], list[int]]]) -> list[Answer]:
        if self.scorer is None:
            p = self.parent
            assert p.pool.open_another is not None
            try:
                backend = p.pool.open_another(int(p.backend.n_ctx or 0))
            except EdgegateError as e:
                raise workers.Unavailable(
                    f"a second process of the model did not open ({e})"
                ) from e
            self.scorer = Scorer(backend, p.cfg, model_key=p.model_key)
            self.scorer.minimal = p.minimal
            self.scorer._cands = p._cands
            self._start = tokens_evaluated(backend) or 0
            self.opened = True
        return self.scorer._score_batch(batch, self.by_uid)

    def close(self) -> int:
        """Close the process; the positions it evaluated."""
        if self.scorer is None:
            return 0
        used = (tokens_evaluated(self.scorer.backend) or self._start) - self._start
        self.scorer.backend.close()
        return used
