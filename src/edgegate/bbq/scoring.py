"""Ask a model every BBQ item through the ``Backend`` protocol and record its answers.

Modes:
- ``letter`` (temperature 0): multiple-choice prompt, answer = the most probable of the
  candidate letter tokens at the next position (deterministic). A unit is a parse failure when
  the letters' total probability is below ``min_letter_mass``.
- ``letter`` with temperature > 0: sampled; ``seeds`` generations per item, each parsed for a
  leading A/B/C; an output without one is a parse failure.
- ``loglik``: each answer text scored as a continuation of the context (lm-eval style, summed
  log-probability); answer = the most likely one.

Work is sorted by prompt tokens (neighbours share long prefixes, which backends can reuse),
sent in batches, and every batch is committed to the cache before the next starts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.backends.base import Backend, LoglikResult
from edgegate.bbq import prompts
from edgegate.bbq.cache import ResultCache
from edgegate.bbq.dataset import BBQItem
from edgegate.bbq.metrics import Answer
from edgegate.errors import BackendError, EdgegateError, InputError
from edgegate.progress import NullProgress, Progress

MODES = ("letter", "loglik")


@dataclass(frozen=True)
class ScoreConfig:
    mode: str = "letter"
    seeds: int = 1
    temperature: float = 0.0
    permute: bool = False
    batch_size: int = 16
    min_letter_mass: float = 0.0
    max_new_tokens: int = 4  # sampled letter mode
    seed_offset: int = 0  # first sampling seed (a dense-vs-dense null run uses fresh seeds)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(
                f"unknown BBQ mode {self.mode!r}", field="mode", hint="use letter or loglik"
            )
        if self.seeds < 1 or self.batch_size < 1:
            raise InputError("seeds and batch size must be >= 1", field="seeds")
        if self.temperature < 0:
            raise InputError("temperature must be >= 0", field="temperature")
        if self.mode == "loglik" and self.temperature > 0:
            raise InputError(
                "loglik mode is deterministic; temperature must be 0", field="temperature"
            )

    @property
    def sampled(self) -> bool:
        return self.mode == "letter" and self.temperature > 0

    def seed_list(self) -> list[int]:
        # deterministic scoring gives the same answer for every seed: ask once
        return list(range(self.seed_offset, self.seed_offset + self.seeds)) if self.sampled else [0]

    def rotations(self) -> list[int]:
        # positions only exist in letter mode
        return [0, 1, 2] if self.permute and self.mode == "letter" else [0]

    def keys(self, items: Sequence[BBQItem]) -> list[tuple[str, int, int]]:
        """Every (item, seed, rotation) to answer, in report order."""
        return [(it.uid, s, r) for it in items for s in self.seed_list() for r in self.rotations()]


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


@dataclass(frozen=True)
class Scored:
    """One model's answers, and how many of them this run scored (the rest came from the
    result cache: a warm CI run scores only the compressed side)."""

    answers: list[Answer]
    scored_here: int
    # the scoring this run did (None: all from the cache, or not countable)
    work: Work | None = None


@dataclass(frozen=True)
class Work:
    """Machine-independent cost of scoring: positions the runtime evaluated, against the
    fewest any scorer needs for the same answers (every distinct prefix of the prompts once:
    a shared system prompt, a context shared by its answers or rotations; in loglik mode the
    last answer token needs no evaluation). efficiency = minimal / evaluated."""

    tokens_evaluated: int
    minimal_tokens: int

    @property
    def efficiency(self) -> float:
        return (
            self.minimal_tokens / self.tokens_evaluated if self.tokens_evaluated else float("nan")
        )


class _PrefixCount:
    """Distinct prefixes of the token sequences added so far (a trie's node count)."""

    def __init__(self) -> None:
        self._root: dict[int, Any] = {}
        self.nodes = 0

    def add(self, tokens: Sequence[int]) -> None:
        node = self._root
        for t in tokens:
            nxt = node.get(t)
            if nxt is None:
                nxt = node[t] = {}
                self.nodes += 1
            node = nxt


# Where a runtime's way of scoring changed the numbers an answer rests on, its answers are
# cached under a new key, so one run never mixes answers from both ways (llama.cpp loglik:
# a context's answers are branches of one decode since this version; see backends/branching.py).
_SCORING = {("llamacpp", "loglik"): "llamacpp/branched"}


def answer_key(runtime: str, mode: str) -> str:
    """The result cache's backend key for answers scored by ``runtime`` in ``mode``."""
    return _SCORING.get((runtime, mode), runtime)


def tokens_evaluated(backend: Backend) -> int | None:
    """Positions the backend has evaluated so far, where it counts them (local runtimes)."""
    work = getattr(backend, "work", None)
    if work is None:
        return None
    try:
        return int(work()["tokens_evaluated"])
    except (EdgegateError, KeyError, TypeError, ValueError):
        return None


def score_model(
    open_backend: Callable[[], Backend],
    path: str | Path,
    runtime: str,
    items: Sequence[BBQItem],
    config: ScoreConfig,
    cache: ResultCache,
    *,
    progress: Progress | None = None,
    label: str = "model",
) -> Scored:
    """Answers for one model: straight from the cache when it holds them all (the runtime is
    not even opened), else open the model and score what is missing."""
    from edgegate.backends import RUNTIMES

    keys = config.keys(items)
    prompt_key = prompts.template_hash(config.mode, temperature=config.temperature)
    backend_key = answer_key(runtime, config.mode)
    spec = RUNTIMES.get(runtime)
    if spec is not None and not spec.local:
        # a URL has no file to hash: ask the server who it is (cheap) and key by that
        backend = open_backend()
        model_key = cache.endpoint_hash(backend.info())
    else:
        model_key = cache.model_hash(path)
        hit = cache.get(model_key, backend_key, prompt_key, keys)
        if len(hit) == len(keys):
            return Scored([hit[k] for k in keys], 0)
        shown = progress or NullProgress()

        def waiting() -> None:
            shown.log(
                f"edgegate: BBQ ({label}): another edgegate run is scoring this model into the same cache; "
                "waiting to reuse its answers"
            )

        with cache.scoring_lock(model_key, backend_key, prompt_key, on_wait=waiting):
            hit = cache.get(
                model_key, backend_key, prompt_key, keys
            )  # what the other run scored meanwhile
            if len(hit) == len(keys):
                return Scored([hit[k] for k in keys], 0)
            return _score_open(
                open_backend(), runtime, items, config, cache, model_key, progress, label
            )
    return _score_open(backend, runtime, items, config, cache, model_key, progress, label)


def _score_open(
    backend: Backend,
    runtime: str,
    items: Sequence[BBQItem],
    config: ScoreConfig,
    cache: ResultCache,
    model_key: str,
    progress: Progress | None,
    label: str,
) -> Scored:
    try:
        if backend.runtime != runtime:
            raise BackendError(f"asked for runtime {runtime!r}, got {backend.runtime!r}")
        scorer = Scorer(backend, config, cache=cache, model_key=model_key, progress=progress)
        before = tokens_evaluated(backend)
        answers = scorer.score(items, label)
        after = tokens_evaluated(backend)
        work = None
        if before is not None and after is not None and scorer.minimal.nodes and not config.sampled:
            work = Work(after - before, scorer.minimal.nodes)
        return Scored(answers, scorer.n_scored, work)
    finally:
        backend.close()


class Scorer:
    def __init__(
        self,
        backend: Backend,
        config: ScoreConfig,
        *,
        cache: ResultCache | None = None,
        model_key: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.backend = backend
        self.cfg = config
        self.cache = cache
        self.progress: Progress = progress or NullProgress()
        self.chat = backend.chat_prompt(prompts.SYSTEM, "test") is not None
        self.prompt_key = prompts.template_hash(config.mode, temperature=config.temperature)
        self.backend_key = answer_key(backend.runtime, config.mode)
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
        if todo:
            with self.progress.task(
                f"BBQ {self.cfg.mode} scoring ({label})", total=len(todo)
            ) as advance:
                for batch in self._batches(todo, by_uid):
                    answers = self._score_batch(batch, by_uid)
                    self.n_scored += len(answers)
                    if self.cache is not None:
                        self.cache.put(self.model_key, self.backend_key, self.prompt_key, answers)
                    for a in answers:
                        done[a.key] = a
                    advance(len(answers))
        return [done[k] for k in keys]

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
