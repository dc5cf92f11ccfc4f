"""The scoring pass the perplexity and fidelity checks share: both models on the same chunks of
the same text, on one runtime.

One pass serves both checks: the fidelity check (which runs first) scores the chunks with
``Backend.score_tokens_kept`` and compares the distributions as it goes; its per-token NLLs are
left in ``ctx.shared`` under the pass's key (runtime, models, text, n_ctx, mode, shard), and the
perplexity check with the same key uses them instead of scoring the text again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from edgegate.checks.base import (
    CheckContext,
    DataInput,
    DataInputs,
    FidelityScores,
    KeptPass,
    ScoringPass,
    ScoringPassBody,
    Shard,
    jsonable,
)
from edgegate.checks.sections import FidelitySection, PerplexitySection
from edgegate.errors import DatasetError
from edgegate.settings import RunSettings

if TYPE_CHECKING:
    from edgegate.backends.pair import ModelPair
    from edgegate.perplexity import Chunking

ScoringSection = PerplexitySection | FidelitySection  # the sections whose checks share the pass
ScoringContext = CheckContext[PerplexitySection] | CheckContext[FidelitySection]


class TextId(TypedDict):
    """Which text a pass scored: a reviewer can tell the embedded text from a file, and one
    file from another."""

    source: str
    sha256: str
    chars: int


@dataclass(frozen=True)
class Setup:
    """What a scoring pass scores, and where (resolved from a check's policy section)."""

    runtime: str
    requested: str
    n_ctx: int
    mode: str
    body: str
    text_id: TextId
    models: tuple[str | Path, str | Path]
    choice: Any  # backends.auto.RuntimeChoice when the runtime was auto

    def key(self, shard: Shard | None) -> str:
        return json.dumps(
            [
                self.runtime,
                [str(m) for m in self.models],
                self.n_ctx,
                self.mode,
                self.text_id["sha256"],
                list(shard or (1, 1)),
            ]
        )


def text_inputs(check: str) -> DataInputs[ScoringSection]:
    """The text file a scoring check's block names (perplexity's, shared with fidelity)."""

    def inputs(
        section: ScoringSection, settings: RunSettings, policy_dir: Path | None
    ) -> list[DataInput]:
        from edgegate.policy import relative_to_policy

        text = section.text
        if not text:
            return []  # the embedded evaluation text
        return [
            DataInput(
                f"{check}_text",
                f"checks.{check}.text",
                str(relative_to_policy(str(text), policy_dir)),
                f"{check} text",
            )
        ]

    return inputs


def setup(ctx: ScoringContext, check: str) -> Setup | None:
    """The pass a check's section (``ctx.section``) asks for; None without a dense model."""
    from edgegate import perplexity as ppl
    from edgegate.policy import section_defaults

    if ctx.dense_path is None:
        return None
    # runtime, n_ctx, mode and text are the perplexity block's settings (fidelity shares its pass)
    scoring = section_defaults("perplexity")
    sec = ctx.section
    # auto: where the compressed model ships
    runtime = requested = str(scoring["runtime"] if sec.runtime is None else sec.runtime)
    n_ctx = scoring["n_ctx"] if sec.n_ctx is None else sec.n_ctx
    mode = scoring["mode"] if sec.mode is None else sec.mode
    text = None
    if sec.text:
        from edgegate.policy import relative_to_policy

        p = relative_to_policy(str(sec.text), ctx.policy_dir)  # against the policy's folder
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(
                f"cannot read the {check} text: {exc}", path=p, field=f"checks.{check}.text"
            ) from exc
    models: tuple[str | Path, str | Path] = (ctx.dense_path, ctx.compressed_path)
    if ctx.settings.endpoints:  # models on servers
        runtime = "openai"
        models = (str(ctx.settings.dense_endpoint), str(ctx.settings.compressed_endpoint))
    choice = None
    if runtime == "auto":
        from edgegate.backends.auto import resolve_pair

        choice = resolve_pair(ctx.dense_path, ctx.compressed_path)
        runtime = choice.runtime
    body = ppl.evaluation_text(text)
    # Which text was scored is part of the evidence: a reviewer must be able to tell the
    # embedded text from a file, and one file from another.
    text_id = TextId(
        source=str(sec.text) if sec.text else "embedded (edgegate's evaluation text)",
        sha256=hashlib.sha256(body.encode("utf-8")).hexdigest(),
        chars=len(body),
    )
    return Setup(runtime, requested, int(n_ctx), str(mode), body, text_id, models, choice)


def run_pass(ctx: ScoringContext, s: Setup, shard: Shard | None, *, fidelity: bool) -> ScoringPass:
    """Score this shard's chunks with both models: per-token NLLs (and, with ``fidelity``, KL
    and top-1 agreement), JSON-able. With ``fidelity`` the result is kept in ``ctx.shared``."""
    from edgegate import perplexity as ppl
    from edgegate.backends.pair import OpenSettings, open_pair

    t0 = time.perf_counter()
    together = _side_by_side(ctx, s.runtime) if fidelity else None
    opening = OpenSettings(
        n_ctx=s.n_ctx,
        threads=together or ctx.settings.threads,
        cache_dir=ctx.settings.cache_dir,
        timeout=ctx.settings.backend_timeout,
    )
    with open_pair(s.runtime, s.models, opening) as pair:
        extra = ppl.same_tokenizer(pair, s.body)
        chunking = ppl.chunk_text(pair.dense, s.body, s.n_ctx, s.mode)  # type: ignore[arg-type]
        i, n = shard or (1, 1)
        idx = [k for k in range(len(chunking.chunks)) if k % n == i - 1]
        fid: FidelityScores | None = None
        if fidelity:
            from edgegate.fidelity import scored_pass

            res = scored_pass(
                pair.dense,
                pair.compressed,
                chunking,
                idx,
                progress=ctx.progress,
                side_by_side=together is not None,
            )
            nll = {
                "dense": [c.nll_dense.tolist() for c in res.chunks],
                "compressed": [c.nll_compressed.tolist() for c in res.chunks],
            }
            seconds = {r: res.seconds[r] for r in ("dense", "compressed")}
            fid = {
                "kl": [c.kl.tolist() for c in res.chunks],
                "top1": [c.top1.astype(int).tolist() for c in res.chunks],
                "compare_s": res.seconds["compare"],
            }
        else:
            nll, seconds, kept = _nll_pass(ctx, s, pair, chunking, idx, _tokens_digest(chunking))
            extra["result_cache"] = kept
        for role in ("dense", "compressed"):
            be = pair.open(role)
            extra[f"{role}_ident"] = {"runtime": str(be.runtime), "model": str(be.model_path)}
        extra["vocab_size"] = int(pair.dense.n_vocab or 0) or None
    extra["text"] = {**s.text_id, "tokens_scored": sum(len(ch) for ch in chunking.chunks)}
    body: ScoringPassBody = {
        "chunking": {
            "n_ctx": chunking.n_ctx,
            "mode": chunking.mode,
            "first": chunking.first,
            "n_chunks": len(chunking.chunks),
            "n_eval": sum(len(ch) for ch in chunking.chunks),
            "tokens_sha256": _tokens_digest(chunking),
        },
        "indices": idx,
        "nll": nll,
        "seconds": seconds,
        "extra": jsonable(extra),
        "runtime_choice": s.choice.as_dict() if s.choice else None,  # the report says why
        "duration_s": time.perf_counter() - t0,
    }
    # the fidelity numbers first, as the partial files have always had them
    out: ScoringPass = {"fidelity": fid, **body} if fid is not None else {**body}
    if fidelity:
        ctx.shared.scoring_pass = KeptPass(s.key(shard), out)
    return out


def _side_by_side(ctx: ScoringContext, runtime: str) -> int | None:
    """Threads per model when the two models (both loaded for the pass anyway) score at the
    same time, or None to score in turn: side by side where the CPUs hold two processes at
    the threads per process (backends/pool.py)."""
    from edgegate.backends.pool import cpu_processes

    got = cpu_processes(runtime, threads=ctx.settings.threads, requested=ctx.settings.workers)
    return got.threads if got.processes >= 2 else None


def _tokens_digest(chunking: Chunking) -> str:
    return hashlib.sha256(json.dumps([list(ch) for ch in chunking.chunks]).encode()).hexdigest()


def _nll_pass(
    ctx: ScoringContext,
    s: Setup,
    pair: ModelPair,
    chunking: Chunking,
    idx: list[int],
    tokens_sha256: str,
) -> tuple[dict[str, list[list[float]]], dict[str, float], dict[str, dict[str, int]]]:
    """Both models' per-token NLLs of the chunks ``idx``, each chunk from the result cache when
    this model already scored it with the same runtime, threads, libraries and tokens
    (edgegate.nll_cache): a study's dense model is scored once, not once per variant."""
    from edgegate import perplexity as ppl
    from edgegate.backends import RUNTIMES
    from edgegate.bbq.cache import ResultCache
    from edgegate.nll_cache import NLLCache, setting_key

    spec = RUNTIMES.get(s.runtime)
    cache = ResultCache.in_dir(ctx.settings.cache_dir) if spec is not None and spec.local else None
    nll: dict[str, list[list[float]]] = {}
    seconds: dict[str, float] = {}
    kept: dict[str, dict[str, int]] = {}
    try:
        store = NLLCache(cache) if cache is not None else None
        setting = setting_key(
            s.runtime,
            ctx.settings.threads,
            {
                "n_ctx": chunking.n_ctx,
                "mode": chunking.mode,
                "first": chunking.first,
                "tokens_sha256": tokens_sha256,
            },
        )
        for role in ("dense", "compressed"):
            be = pair.open(role)
            t1 = time.perf_counter()
            model = cache.model_hash(be.model_path) if cache is not None else ""
            got = store.get(model, setting, idx) if store is not None else {}
            todo = [k for k in idx if k not in got]
            for k, arr in zip(
                todo,
                ppl.chunk_nlls(be, chunking, todo, progress=ctx.progress, label=role),
                strict=True,
            ):
                got[k] = arr
                if store is not None:
                    store.put(model, setting, k, arr)
            nll[role] = [got[k].tolist() for k in idx]
            seconds[role] = time.perf_counter() - t1
            kept[role] = {"chunks": len(idx), "from_cache": len(idx) - len(todo)}
    finally:
        if cache is not None:
            cache.close()
    return nll, seconds, kept


def reuse(ctx: ScoringContext, s: Setup, shard: Shard | None) -> ScoringPass | None:
    """The pass the fidelity check already made with the same key, or None."""
    kept = ctx.shared.scoring_pass
    return kept.measured if kept is not None and kept.key == s.key(shard) else None
