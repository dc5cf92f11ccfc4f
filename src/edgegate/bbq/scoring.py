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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgegate.backends.base import Backend
from edgegate.bbq import prompts
from edgegate.bbq.cache import ResultCache
from edgegate.bbq.dataset import BBQItem
from edgegate.bbq.metrics import Answer
from edgegate.bbq.score_config import MODES, ScoreConfig, answer_key
from edgegate.bbq.scorer import (
    Pool,
    Scorer,
    _PrefixCount,
    encode,
    letter_candidates,
    tokens_evaluated,
)
from edgegate.errors import BackendError
from edgegate.progress import NullProgress, Progress

# the names callers import from here (the scorer and its config live in their own modules)
__all__ = [
    "MODES",
    "Pool",
    "ScoreConfig",
    "Scored",
    "Scorer",
    "Work",
    "_PrefixCount",
    "answer_key",
    "encode",
    "letter_candidates",
    "score_model",
    "tokens_evaluated",
]


@dataclass(frozen=True)
class Scored:
    """One model's answers, and how many of them this run scored (the rest came from the
    result cache: a warm CI run scores only the compressed side)."""

    answers: list[Answer]
    scored_here: int
    # the scoring this run did (None: all from the cache, or not countable)
    work: Work | None = None
    processes: int = 0  # processes of the model that scored (0: none, all from the cache)


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
    pool: Pool | None = None,
) -> Scored:
    """Answers for one model: straight from the cache when it holds them all (the runtime is
    not even opened), else open the model and score what is missing (on up to
    ``pool.processes`` processes of it)."""
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
                open_backend(), runtime, items, config, cache, model_key, progress, label, pool
            )
    return _score_open(backend, runtime, items, config, cache, model_key, progress, label, pool)


def _score_open(
    backend: Backend,
    runtime: str,
    items: Sequence[BBQItem],
    config: ScoreConfig,
    cache: ResultCache,
    model_key: str,
    progress: Progress | None,
    label: str,
    pool: Pool | None = None,
) -> Scored:
    try:
        if backend.runtime != runtime:
            raise BackendError(f"asked for runtime {runtime!r}, got {backend.runtime!r}")
        scorer = Scorer(
            backend, config, cache=cache, model_key=model_key, progress=progress, pool=pool
        )
        before = tokens_evaluated(backend)
        answers = scorer.score(items, label)
        after = tokens_evaluated(backend)
        work = None
        if before is not None and after is not None and scorer.minimal.nodes and not config.sampled:
            work = Work(after - before + scorer.peer_tokens, scorer.minimal.nodes)
        processes = scorer.processes if scorer.n_scored else 0
        return Scored(answers, scorer.n_scored, work, processes)
    finally:
        backend.close()
