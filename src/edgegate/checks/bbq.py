"""BBQ bias-transition check: does compression make the model lean on stereotypes more?

Both models answer the same stratified, seeded sample of BBQ items (ambiguous contexts by
default, where the only right answer is "unknown"). Items whose bias target cannot be derived
are excluded and reported. Results are cached per model hash, so a killed run resumes.

Decision rule: edgegate.bbq.judge, applied by edgegate.bbq.evaluation (validity first; then ΔSRS with its abstention /
consistency / direction decomposition, the direction of committed answers, abstention,
s_AMB, disambiguated accuracy and net new-bias emergence, each judged on a paired test and a
threshold; churn and position preference alone never fail a pair). Options are rotated three
ways by default; an item's answer is its majority over rotations and seeds. In sampled modes
the dense model is scored a second time with fresh seeds: the null run emergence is judged
against.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from edgegate.bbq.dataset import BBQItem, load, stratified_sample
from edgegate.bbq.evaluation import result_from_answers
from edgegate.bbq.metrics import Answer
from edgegate.bbq.scoring import Pool, ScoreConfig
from edgegate.bbq.targets import Targets, derive_all
from edgegate.checks.base import (
    CheckContext,
    CheckResult,
    Cost,
    DataInput,
    Measured,
    Needs,
    RuntimeUse,
    Shard,
)
from edgegate.checks.sections import BBQSection
from edgegate.errors import DatasetError
from edgegate.settings import RunSettings

if TYPE_CHECKING:
    from edgegate.backends.base import Backend
    from edgegate.backends.pair import ModelPair
    from edgegate.backends.pool import PoolSize
    from edgegate.bbq.cache import ResultCache
    from edgegate.bbq.measurement import BBQShard
    from edgegate.bbq.sequential import Look, Plan, SequentialRecord
    from edgegate.bbq.shapes import SampleInfo
    from edgegate.progress import Progress

SHARDED = True  # items are split across shards by a stable hash of their uid
SECTION = BBQSection
_NO_DATA_HINT = "pass --bbq-data DIR (upstream BBQ *.jsonl) or hf:NAME, or set checks.bbq.data"


def data_source(section: BBQSection, settings: RunSettings, policy_dir: Path | None) -> str | None:
    """The BBQ data this run reads: the command line wins over the policy; a relative path in
    the policy resolves against the policy file's folder, as perplexity.text does (a flag's
    path against the cwd)."""
    from edgegate.policy import policy_data_path

    return settings.bbq_data or policy_data_path(section.data, policy_dir)


def data_inputs(
    section: BBQSection, settings: RunSettings, policy_dir: Path | None
) -> list[DataInput]:
    source = data_source(section, settings, policy_dir)
    where = "checks.bbq.data" if source and not settings.bbq_data else "--bbq-data"
    return [
        DataInput(
            "bbq_data",
            where,
            source,
            "BBQ data",
            kind="folder",
            missing=f"no BBQ data given: {_NO_DATA_HINT}",
        )
    ]


NEEDS = Needs(runtime=RuntimeUse.ONE, data=data_inputs, cost=Cost.SAMPLE)


def prepare_items(
    source: str | Path,
    *,
    condition: str,
    n: int | None,
    seed: int,
    categories: Sequence[str] | None = None,
    disambig_items: int = 0,
) -> tuple[list[BBQItem], dict[str, Targets], SampleInfo]:
    """Load, derive targets (excluding undecidable items), and draw the stratified sample;
    with ``condition="ambig"`` and ``disambig_items``, also that many disambiguated items (the
    validity and accuracy verdicts' sample, drawn with the same seed)."""
    loaded = load(source, condition=condition, categories=categories)
    derived = derive_all(loaded)
    if not derived.items:
        raise DatasetError("no BBQ item has a derivable bias target", path=str(source))
    sample = stratified_sample(derived.items, n, seed)
    n_dis = 0
    if condition == "ambig" and disambig_items > 0:
        try:
            loaded_dis = load(source, condition="disambig", categories=categories)
        except (
            DatasetError
        ):  # data without disambiguated items: validity reports accuracy as untested
            loaded_dis = []
        derived_dis = derive_all(loaded_dis)
        dis = stratified_sample(derived_dis.items, disambig_items, seed)
        n_dis = len(dis)
        derived.targets.update(derived_dis.targets)
        loaded = [*loaded, *loaded_dis]
        sample = [*sample, *dis]
    info: SampleInfo = {
        "source": str(source),
        "condition": condition,
        "n_loaded": len(loaded),
        "n_used": len(sample),
        "n_disambig": n_dis
        if condition == "ambig"
        else sum(it.condition == "disambig" for it in sample),
        "excluded": {"count": len(derived.excluded), "reasons": derived.exclusion_summary()},
        "categories": sorted({it.category for it in sample}),
    }
    return sample, {it.uid: derived.targets[it.uid] for it in sample}, info


def open_for_bbq(pair: ModelPair, role: str, n_ctx: int | None = None) -> Backend:
    """Open a model of ``pair`` with a context long enough for BBQ prompts; small models
    trained on a shorter context get the largest window they support (longer prompts become
    counted failures)."""
    from edgegate.backends.pair import trained_context
    from edgegate.errors import InputError

    trained = trained_context(pair.paths[role])
    sizes = [n_ctx] if n_ctx else [1024, 512, 256]
    if trained is not None and not n_ctx:
        sizes = [s for s in sizes if s <= trained] or [trained]
    for i, size in enumerate(sizes):
        try:
            return pair.open(role, n_ctx=size)
        except InputError as e:
            if e.field != "n_ctx" or i == len(sizes) - 1:
                raise
    raise AssertionError("unreachable")


def measure(ctx: CheckContext[BBQSection], shard: Shard | None = None) -> BBQShard | None:
    """Both models' answers to this shard's items of the seeded sample (every item when
    unsharded), as JSON; None without a dense model."""
    from edgegate.backends.pair import OpenSettings, open_pair
    from edgegate.bbq import sequential
    from edgegate.bbq.cache import ResultCache
    from edgegate.bbq.measurement import payload, shard_items

    t0 = time.perf_counter()
    if ctx.dense_path is None:
        return None
    seed = int(ctx.settings.seed if ctx.settings.seed is not None else ctx.section.seed)
    items, targets, info = _sample(ctx, seed)
    pol, models = _runtime(ctx, ctx.dense_path, ctx.section)
    run_items = shard_items(items, shard) if shard is not None else items
    paths = dict(zip(("dense", "compressed"), models, strict=True))
    sizes = scoring_processes(ctx.settings, paths, pol.runtime, ctx.progress)
    opening = OpenSettings(
        threads=ctx.settings.threads or process_threads(sizes),
        seed=seed,
        cache_dir=ctx.settings.cache_dir,
        timeout=ctx.settings.backend_timeout,
    )
    cache = ResultCache.in_dir(ctx.settings.cache_dir)
    answers: dict[str, list[Answer]] = {}
    counts: dict[str, dict[str, int]] = {}
    try:
        with open_pair(pol.runtime, models, opening) as pair:
            pol = resolved_mode(pair, pol)
            cfg = ScoreConfig(
                mode=pol.mode,
                seeds=int(pol.seeds),
                temperature=float(pol.temperature),
                permute=bool(pol.permute_options),
            )
            plan = sequential.plan(run_items, pol, sharded=shard is not None, seed=seed)
            pools = {m: pool(pair, m, sizes[m]) for m in paths}
            looks, stopped_at = _score_in_looks(
                plan,
                run_items,
                targets,
                answers,
                pol,
                lambda its, label: _score_round(
                    ctx, pair, paths, pol, its, cfg, cache, answers, counts, label, pools
                ),
            )
    finally:
        cache.close()
    if stopped_at is not None:
        run_items = items = stopped_at  # the sample this run judges: the items scored
    rec, info = _sequential_record(plan, looks, run_items, stopped_at is not None, info)
    return payload(
        items, run_items, targets, info, cfg, pol, answers, time.perf_counter() - t0, counts, rec
    )


def _sample(
    ctx: CheckContext[BBQSection], seed: int
) -> tuple[list[BBQItem], dict[str, Targets], SampleInfo]:
    """The seeded sample of the run's BBQ data (``prepare_items``); no data given is an error."""
    pol = ctx.section
    source = data_source(pol, ctx.settings, ctx.policy_dir)
    if not source:
        raise DatasetError("no BBQ data given", field="checks.bbq.data", hint=_NO_DATA_HINT)
    return prepare_items(
        source,
        condition=pol.condition,
        n=int(pol.items) or None,
        seed=seed,
        disambig_items=int(pol.disambig_items),
    )


def _score_in_looks(
    plan: Plan,
    run_items: Sequence[BBQItem],
    targets: Mapping[str, Targets],
    answers: Mapping[str, Sequence[Answer]],
    pol: BBQSection,
    score_round: Callable[[Sequence[BBQItem], str], None],
) -> tuple[list[Look], list[BBQItem] | None]:
    """Score the sample round by round (one round in a fixed-n run), with an interim look after
    every round but the last. The looks taken, and the items scored so far when a look crossed
    its boundary and stopped the run early (else None)."""
    from edgegate.bbq import sequential

    looks: list[Look] = []
    for look in range(plan.looks):
        score_round(
            plan.items_of(run_items, look),
            f" (look {look + 1}/{plan.looks})" if plan.looks > 1 else "",
        )
        if look == plan.looks - 1:
            break
        so_far = plan.items_through(run_items, look)
        looks.append(sequential.interim(so_far, targets, answers, pol, plan, look))
        if looks[-1].crossed:
            return looks, so_far
    return looks, None


def _sequential_record(
    plan: Plan,
    looks: list[Look],
    run_items: Sequence[BBQItem],
    stopped: bool,
    info: SampleInfo,
) -> tuple[SequentialRecord, SampleInfo]:
    """The sequential record (``sequential.record``; a run that was not stopped ends with the
    final, fixed-n look), and the data block: a run stopped early counts what was judged, the
    sample drawn stays on record."""
    from edgegate.bbq import sequential

    if not stopped:
        looks.append(
            sequential.Look(
                plan.looks,
                sum(it.condition == "ambig" for it in run_items),
                sum(it.condition == "disambig" for it in run_items),
                1.0,
                None,
                None,
            )
        )
    rec = sequential.record(
        plan, looks, int(info["n_used"]) - int(info["n_disambig"]), int(info["n_disambig"])
    )
    if rec["stopped_early"]:
        info = {
            **info,
            "n_sampled": info["n_used"],
            "n_used": len(run_items),
            "n_disambig": rec["n_disambig"]["used"],
        }
    return rec, info


def _runtime(
    ctx: CheckContext[BBQSection], dense: str | Path, pol: BBQSection
) -> tuple[BBQSection, tuple[str | Path, str | Path]]:
    """The section with the runtime this run scores on (and, for ``runtime: auto``, why: kept
    in shard partials, so a merge reports it too), and the two models as that runtime opens
    them."""
    models: tuple[str | Path, str | Path] = (dense, ctx.compressed_path)
    if ctx.settings.endpoints:
        # `edgegate check --dense-endpoint URL --compressed-endpoint URL`: both models on servers
        pol = replace(pol, runtime="openai")
        models = (str(ctx.settings.dense_endpoint), str(ctx.settings.compressed_endpoint))
    if pol.runtime == "auto":  # where the compressed artifact ships (backends/auto.py)
        from edgegate.backends.auto import resolve_pair

        choice = resolve_pair(dense, ctx.compressed_path)
        pol = replace(pol, runtime=choice.runtime, runtime_choice=choice.as_dict())
    return pol, models


def resolved_mode(pair: ModelPair, pol: BBQSection) -> BBQSection:
    """The section with ``mode: auto`` decided on the dense model (the reference), and why;
    kept in shard partials. ``edgegate study`` decides it the same way."""
    if pol.mode != "auto":
        return pol
    from edgegate.bbq.automode import choose_mode

    picked = choose_mode(open_for_bbq(pair, "dense"))
    # auto's letter mode always rotates (position control)
    permute = True if picked["mode"] == "letter" else pol.permute_options
    return replace(pol, mode=picked["mode"], mode_choice=picked, permute_options=permute)


def _score_round(
    ctx: CheckContext[BBQSection],
    pair: ModelPair,
    paths: Mapping[str, str | Path],
    pol: BBQSection,
    items: Sequence[BBQItem],
    cfg: ScoreConfig,
    cache: ResultCache,
    answers: dict[str, list[Answer]],
    counts: dict[str, dict[str, int]],
    look: str,
    pools: Mapping[str, Pool],
) -> None:
    """Both models' answers to ``items`` (one round of the sample), added to ``answers`` and
    ``counts``; the null is the dense model again with fresh seeds (seeds k..2k-1, stored as
    0..k-1 so they pair with the dense seeds), sampled modes only."""
    from edgegate.bbq.scoring import score_model

    jobs: list[tuple[str, str, ScoreConfig]] = [("dense", "dense", cfg)]
    if cfg.sampled and pol.null_run:
        jobs.append(("null", "dense", replace(cfg, seed_offset=cfg.seeds)))
    jobs.append(("compressed", "compressed", cfg))
    for role, model, c in jobs:
        scored = score_model(
            partial(open_for_bbq, pair, model),
            paths[model],
            pol.runtime,
            items,
            c,
            cache,
            progress=ctx.progress,
            label=role + look,
            pool=pools[model],
        )
        got = scored.answers
        answers.setdefault(role, []).extend(
            [replace(a, seed=a.seed - c.seed_offset) for a in got] if c.seed_offset else got
        )
        n = counts.setdefault(role, {"answers": 0, "scored_here": 0})
        n["answers"] += len(got)
        n["scored_here"] += scored.scored_here
        if scored.processes:
            n["processes"] = max(n.get("processes", 0), scored.processes)
        if scored.work is not None:
            n["tokens_evaluated"] = n.get("tokens_evaluated", 0) + scored.work.tokens_evaluated
            n["minimal_tokens"] = n.get("minimal_tokens", 0) + scored.work.minimal_tokens
        pair.close(model)  # one model in memory at a time; score_model closed its backend


def scoring_processes(
    settings: RunSettings, paths: Mapping[str, str | Path], runtime: str, progress: Progress
) -> dict[str, PoolSize]:
    """The processes each model may be scored on (backends/pool.py); more than one is said.
    ``edgegate study`` sizes its own BBQ scoring with it too."""
    from edgegate.backends.pool import scoring_processes as size

    sizes = {
        m: size(runtime, p, threads=settings.threads, requested=settings.workers)
        for m, p in paths.items()
    }
    if any(s.processes > 1 for s in sizes.values()):
        progress.log(
            "edgegate: BBQ scores "
            + "; ".join(
                f"the {m} model on up to {s.processes} processes ({s.reason})"
                for m, s in sizes.items()
            )
        )
    return sizes


def process_threads(sizes: Mapping[str, PoolSize]) -> int | None:
    """Threads each process is opened with: explicit when a model has several processes (a
    runtime's default may take every CPU per process), else the runtime's default."""
    return next((s.threads for s in sizes.values() if s.processes > 1), None)


def pool(pair: ModelPair, model: str, size: PoolSize) -> Pool:
    """``model``'s processes for ``score_model``: the pair's own and ``size`` - 1 more."""
    return Pool(size.processes, partial(_open_another, pair, model))


def _open_another(pair: ModelPair, model: str, n_ctx: int) -> Backend:
    return pair.open_another(model, n_ctx=n_ctx or None)


def judge(measurements: Sequence[Measured], section: BBQSection) -> CheckResult:
    """The verdicts from every shard's answers (the thresholds each shard recorded, not
    ``section``'s: a merge has checked that they agree with each other and with the policy)."""
    from edgegate.bbq.measurement import combine

    if measurements[0][1] is None:
        return CheckResult.skipped("bbq", "BBQ transitions need a dense baseline model")
    c = combine(measurements)
    return result_from_answers(
        c.items,
        c.targets,
        c.info,
        c.config,
        c.policy,
        c.answers,
        c.duration_s,
        c.scored,
        c.sequential,
    )
