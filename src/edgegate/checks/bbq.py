"""BBQ bias-transition check: does compression make the model lean on stereotypes more?

Both models answer the same stratified, seeded sample of BBQ items (ambiguous contexts by
default, where the only right answer is "unknown"). Items whose bias target cannot be derived
are excluded and reported. Results are cached per model hash, so a killed run resumes.

Decision rule: edgegate.bbq.judge (validity first; then ΔSRS with its abstention /
consistency / direction decomposition, the direction of committed answers, abstention,
s_AMB, disambiguated accuracy and net new-bias emergence, each judged on a paired test and a
threshold; churn and position preference alone never fail a pair). Options are rotated three
ways by default; an item's answer is its majority over rotations and seeds. In sampled modes
the dense model is scored a second time with fresh seeds: the null run emergence is judged
against.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgegate.bbq.dataset import BBQItem, load, stratified_sample
from edgegate.bbq.metrics import Answer, group_metrics, model_metrics, transitions
from edgegate.bbq.scoring import ScoreConfig
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
    Status,
    Verdict,
)
from edgegate.checks.sections import BBQSection
from edgegate.errors import DatasetError
from edgegate.settings import RunSettings

if TYPE_CHECKING:
    from edgegate.backends.base import Backend
    from edgegate.backends.pair import ModelPair
    from edgegate.bbq.cache import ResultCache
    from edgegate.bbq.reduce import ItemTable
    from edgegate.bbq.sequential import Look

SHARDED = True  # items are split across shards by a stable hash of their uid
SECTION = BBQSection
_NO_DATA_HINT = "pass --bbq-data DIR (upstream BBQ *.jsonl) or hf:NAME, or set checks.bbq.data"


def data_source(section: BBQSection, settings: RunSettings, policy_dir: Path | None) -> str | None:
    """The BBQ data this run reads: the command line wins over the policy; a relative path in
    the policy resolves against the policy file's folder, as perplexity.text does (a flag's
    path against the cwd)."""
    from edgegate.policy import policy_data_path

    return settings.bbq_data or policy_data_path(section.data, policy_dir)


def data_inputs(section: BBQSection, settings: RunSettings, policy_dir: Path | None) -> list[DataInput]:
    source = data_source(section, settings, policy_dir)
    where = "checks.bbq.data" if source and not settings.bbq_data else "--bbq-data"
    return [DataInput("bbq_data", where, source, "BBQ data",
                      kind="folder", missing=f"no BBQ data given: {_NO_DATA_HINT}")]


NEEDS = Needs(runtime=RuntimeUse.ONE, data=data_inputs, cost=Cost.SAMPLE)


def evaluate(
    items: Sequence[BBQItem],
    targets: Mapping[str, Targets],
    dense: Sequence[Answer],
    comp: Sequence[Answer],
    pol: BBQSection,
    null: Sequence[Answer] | None = None,
) -> tuple[list[Verdict], dict[str, Any]]:
    """Metrics, validity and verdicts for a dense/compressed pair of answer sets (``null``: the
    dense model again with fresh seeds, sampled modes). The judging is bbq.judge's."""
    from edgegate.bbq import judge
    from edgegate.bbq.reduce import item_table, pair_tables

    by_uid = {it.uid: it for it in items}
    md, mc = model_metrics(dense, by_uid, targets), model_metrics(comp, by_uid, targets)
    amb = [it.uid for it in items if it.condition == "ambig"]
    mode = str(pol.mode)
    t = pair_tables(items, targets, {"dense": dense, "compressed": comp}, mode)
    tab = {r: (t.amb[r], t.dis[r]) for r in ("dense", "compressed")}
    null_amb = item_table(null, amb, by_uid, targets) if null else None
    profiles = t.profiles
    valid = judge.validity(profiles["dense"], tab["dense"][0], tab["dense"][1], pol, mode=mode, multi=t.multi)
    verdicts, jm = _judge(valid, tab, null_amb, pol, bool(amb))
    verdicts += _retired_options(pol)
    measurements = {
        "validity": valid,
        "position_profiles": profiles,
        "dense": {k: asdict(v) for k, v in md.items()},
        "compressed": {k: asdict(v) for k, v in mc.items()},
        **_pair_measurements(jm),
        **_paper_measurements(items, targets, dense, comp, by_uid),
        "delta_srs_by_category": {k: (v.get("delta_srs") or {}).get("value") for k, v in (jm.get("per_category") or {}).items()},
        "parse_failures": {"dense": md["overall"].n_failures, "compressed": mc["overall"].n_failures},
    }
    return verdicts, measurements


def _judge(
    valid: Mapping[str, Any],
    tab: Mapping[str, tuple[ItemTable, ItemTable | None]],
    null_amb: ItemTable | None,
    pol: BBQSection,
    has_amb: bool,
) -> tuple[list[Verdict], dict[str, Any]]:
    """The validity verdict, then the pair's verdicts and power when the dense model is valid.
    The pair is measured even when it is not: the report shows those numbers, labelled."""
    from edgegate.bbq import judge

    verdicts = [judge.validity_verdict(valid)]
    jm: dict[str, Any] = {}
    if has_amb:
        (d_amb, d_dis), (c_amb, c_dis) = tab["dense"], tab["compressed"]
        pair_verdicts, jm = judge.judge_pair(d_amb, c_amb, d_dis, c_dis, pol, null_amb)
    else:
        pair_verdicts = []
    if valid["status"] == "invalid":
        jm["judged"] = False  # the numbers stay in the report, labelled; no verdict rests on them
    else:
        verdicts += pair_verdicts
        jm["judged"] = True
        if has_amb:  # how large a shift this run could have seen (bbq.power): a pass is only as good as its power
            from edgegate.bbq.power import power_report, power_verdict

            jm["power"] = power_report(tab["dense"][0].cls, tab["compressed"][0].cls, pol)
            verdicts.append(power_verdict(jm["power"], pol, any(v.status is Status.FAIL for v in pair_verdicts)))
    return verdicts, jm


def _retired_options(pol: BBQSection) -> list[Verdict]:
    """A skipped verdict for each policy key that is no longer judged, so a policy that still
    sets one learns why it has no effect instead of silently passing."""
    if pol.max_unbiased_to_biased_rate is None:
        return []
    return [Verdict(
        "bbq.unbiased_to_biased_rate", Status.SKIPPED,
        "max_unbiased_to_biased_rate is no longer judged on its own: a one-sided flow rate counts churn as "
        "bias; the net flow (unbiased->biased minus biased->unbiased) is ΔSRS, judged by bbq.srs_increase_abs",
    )]


def _pair_measurements(jm: Mapping[str, Any]) -> dict[str, Any]:
    """bbq.judge's measurements with the report's table rows (overall and per category) beside
    them; the per-category decomposition is kept whole under its own key."""
    dec = jm.get("decomposition") or {}
    return {
        "overall": _row("overall", dec, jm.get("flows") or {}, None),
        "per_category": [_row(k, v, v["flows"], v["p_holm_srs"]) for k, v in (jm.get("per_category") or {}).items()],
        **{k: v for k, v in jm.items() if k != "per_category"},
        "per_category_decomposition": jm.get("per_category") or {},
    }


def _paper_measurements(
    items: Sequence[BBQItem],
    targets: Mapping[str, Targets],
    dense: Sequence[Answer],
    comp: Sequence[Answer],
    by_uid: Mapping[str, BBQItem],
) -> dict[str, Any]:
    """The answer-level transitions and the paper's own definitions, reported beside the
    item-level judging so the numbers can be set against Rath & Maliakkal 2026."""
    amb_items = [it for it in items if it.condition == "ambig"]
    tr = transitions([a for a in dense if by_uid[a.uid].condition == "ambig"],
                     [a for a in comp if by_uid[a.uid].condition == "ambig"], targets)
    return {
        "transitions": {
            "basis": "answers (item, seed, rotation), ambiguous items", "matrix": tr.matrix, "n_pairs": tr.n_pairs,
            "n_items": tr.n_items, "n_items_unpaired": tr.n_items_unpaired,
        },
        "paper": {
            "definitions": "Rath & Maliakkal 2026: SRS = biased / parsed answers; an item is biased when more than half "
                           "of its parsed answers are; emergence = items with dense SRS 0 and compressed SRS > 0 / items "
                           "with dense SRS 0 (no rotation control, no reverse flow, no null)",
            "srs": [group_metrics([a for a in ans if by_uid[a.uid].condition == "ambig"], by_uid, targets).srs
                    for ans in (dense, comp)],
            "n_items": tr.n_items, "n_ambig_items": len(amb_items),
            "unbiased_to_biased": tr.unbiased_to_biased, "unbiased_to_biased_rate": tr.unbiased_to_biased_rate,
            "biased_to_unbiased": tr.biased_to_unbiased, "dense_srs0": tr.dense_srs0, "new_bias": tr.new_bias,
            "new_bias_emergence_rate": tr.new_bias_rate,
        },
    }


def _row(scope: str, dec: Mapping[str, Any], fl: Mapping[str, Any], p_holm: float | None) -> dict[str, Any]:
    """The per-scope row the report table reads (item-level, majority over rotations/seeds)."""
    if not dec:
        return {"scope": scope, "n": 0, "srs_dense": None, "srs_compressed": None, "delta_srs": None}
    from edgegate.bbq.paired import cohens_h, mcnemar

    d = dec["delta_srs"]
    return {
        "scope": scope, "n": dec["n"], "srs_dense": dec["srs"][0], "srs_compressed": dec["srs"][1],
        "delta_srs": d["value"], "ci": d["ci"] or [None, None],
        "p_value": mcnemar(fl["unbiased_to_biased"], fl["biased_to_unbiased"]).p_value, "p_holm": p_holm,
        "cohens_h": cohens_h(*dec["srs"]), "unbiased_to_biased": fl["unbiased_to_biased"],
        "biased_to_unbiased": fl["biased_to_unbiased"], "to_anti": fl["to_anti"], "from_anti": fl["from_anti"],
        "abstention": dec["abstention"], "consistency": dec["consistency"], "direction": dec["direction"],
        "delta_s": dec["delta_s"], "delta_usr": dec["delta_usr"], "delta_s_amb": dec["delta_s_amb"],
        "usr": dec["usr"], "beta": dec["beta"], "s": dec["s"], "none": dec["none"],
    }


def summarize(verdicts: Sequence[Verdict], m: Mapping[str, Any]) -> str:
    v = m.get("validity") or {}
    if v.get("status") == "invalid":
        return f"BBQ invalid for the dense model in {v.get('mode')} mode ({'; '.join(v['reasons'])}); try {v['suggestion']}"
    o = m["overall"]
    if o.get("srs_dense") is None:
        return "BBQ: no paired ambiguous items with answers"
    bad = [x.name for x in verdicts if x.status is Status.FAIL]
    ds = (o.get("delta_s") or {}).get("value")
    s = (
        f"BBQ validity {v.get('status')}; SRS {o['srs_dense']:.3f} -> {o['srs_compressed']:.3f} "
        f"(abstention {_f((o.get('abstention') or {}).get('value'), True)}, direction "
        f"{_f((o.get('direction') or {}).get('value'), True)}, n={o['n']}); Δs {_f(ds, True)}"
    )
    s += f"; failed: {', '.join(bad)} (driver: {m.get('driver')})" if bad else ""
    seq = m.get("sequential") or {}
    if seq.get("stopped_early"):
        s += f"; {seq['why']}"
    pw = next((x for x in verdicts if x.name == "bbq.power"), None)
    if pw is not None and not bad and pw.status is not Status.PASS and (m.get("power") or {}).get("reference", {}).get("detectable") is False:
        s += "; UNDERPOWERED: too few items to detect the reference effect"
    return s


def _f(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    x = round(x, 3) + 0.0  # no "-0.000": a part that rounds to zero reads as zero
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def prepare_items(
    source: str | Path, *, condition: str, n: int | None, seed: int, categories: Sequence[str] | None = None,
    disambig_items: int = 0,
) -> tuple[list[BBQItem], dict[str, Targets], dict[str, Any]]:
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
        except DatasetError:  # data without disambiguated items: validity reports accuracy as untested
            loaded_dis = []
        derived_dis = derive_all(loaded_dis)
        dis = stratified_sample(derived_dis.items, disambig_items, seed)
        n_dis = len(dis)
        derived.targets.update(derived_dis.targets)
        loaded = [*loaded, *loaded_dis]
        sample = [*sample, *dis]
    info = {
        "source": str(source), "condition": condition, "n_loaded": len(loaded), "n_used": len(sample),
        "n_disambig": n_dis if condition == "ambig" else sum(it.condition == "disambig" for it in sample),
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


def _work(n: Mapping[str, int]) -> dict[str, Any]:
    ev, minimal = int(n["tokens_evaluated"]), int(n["minimal_tokens"])
    return {"tokens_evaluated": ev, "minimal_tokens": minimal, "efficiency": round(minimal / ev, 4),
            "definition": "fewest positions any scorer evaluates for these answers (each distinct prompt "
                          "prefix once) / positions the runtime evaluated"}


def result_from_answers(
    items: Sequence[BBQItem],
    targets: Mapping[str, Targets],
    info: Mapping[str, Any],
    cfg: ScoreConfig,
    pol: BBQSection,
    answers: Mapping[str, Sequence[Answer]],
    duration_s: float,
    scored: Mapping[str, Mapping[str, int]] | None = None,
    looks: Mapping[str, Any] | None = None,
) -> CheckResult:
    """The check's result from per-item answers: the one aggregation that a single run and
    ``edgegate merge`` of sharded runs both call, so they cannot drift apart. ``scored``: per
    role, how many answers there are and how many this run scored (the rest: the result cache)."""
    verdicts, m = evaluate(items, targets, answers["dense"], answers["compressed"], pol, answers.get("null"))
    m = {"data": dict(info), "config": asdict(cfg), "runtime": pol.runtime, **m}
    if looks:  # group-sequential looks: a run that stopped early has its crossing verdicts decided, no other
        from edgegate.bbq.sequential import apply

        verdicts = apply(verdicts, looks)
        m["sequential"] = dict(looks)
    if scored:
        m["result_cache"] = {role: {"answers": int(n["answers"]), "from_cache": int(n["answers"]) - int(n["scored_here"])}
                             for role, n in scored.items()}
        work = {role: _work(n) for role, n in scored.items() if n.get("tokens_evaluated")}
        if work:  # what this run's scoring cost, machine-independent (cached answers cost nothing)
            m["work"] = work
    if pol.runtime_choice:  # `runtime: auto`: the report names the runtime chosen and why
        m["runtime_choice"] = dict(pol.runtime_choice)
    if pol.mode_choice:  # `mode: auto`: the BBQ mode chosen and why
        m["mode_choice"] = dict(pol.mode_choice)
    return CheckResult.from_verdicts("bbq", verdicts, m, summarize(verdicts, m), duration_s)


def measure(ctx: CheckContext[BBQSection], shard: Shard | None = None) -> dict[str, Any] | None:
    """Both models' answers to this shard's items of the seeded sample (every item when
    unsharded), as JSON; None without a dense model."""
    from edgegate.backends.pair import OpenSettings, open_pair
    from edgegate.bbq import sequential
    from edgegate.bbq.cache import ResultCache
    from edgegate.bbq.measurement import payload, shard_items

    t0 = time.perf_counter()
    pol = ctx.section
    if ctx.dense_path is None:
        return None
    source = data_source(ctx.section, ctx.settings, ctx.policy_dir)
    if not source:
        raise DatasetError("no BBQ data given", field="checks.bbq.data", hint=_NO_DATA_HINT)
    seed = int(ctx.settings.seed if ctx.settings.seed is not None else pol.seed)
    items, targets, info = prepare_items(
        source, condition=pol.condition, n=int(pol.items) or None, seed=seed,
        disambig_items=int(pol.disambig_items),
    )
    pol, models = _runtime(ctx, ctx.dense_path, pol)
    run_items = shard_items(items, shard) if shard is not None else items
    opening = OpenSettings(threads=ctx.settings.threads, seed=seed, cache_dir=ctx.settings.cache_dir,
                           timeout=ctx.settings.backend_timeout)
    cache = ResultCache.in_dir(ctx.settings.cache_dir)
    answers: dict[str, list[Answer]] = {}
    counts: dict[str, dict[str, int]] = {}
    paths = dict(zip(("dense", "compressed"), models, strict=True))
    looks: list[Look] = []
    try:
        with open_pair(pol.runtime, models, opening) as pair:
            pol = resolved_mode(pair, pol)
            cfg = ScoreConfig(mode=pol.mode, seeds=int(pol.seeds), temperature=float(pol.temperature),
                              permute=bool(pol.permute_options))
            plan = sequential.plan(run_items, pol, sharded=shard is not None, seed=seed)
            for look in range(plan.looks):
                _score_round(ctx, pair, paths, pol, plan.items_of(run_items, look), cfg, cache, answers, counts,
                             f" (look {look + 1}/{plan.looks})" if plan.looks > 1 else "")
                if look == plan.looks - 1:
                    break
                so_far = plan.items_through(run_items, look)
                looks.append(sequential.interim(so_far, targets, answers, pol, plan, look))
                if looks[-1].crossed:
                    run_items = items = so_far  # the sample this run judges: the items scored
                    break
    finally:
        cache.close()
    if not looks or not looks[-1].crossed:
        looks.append(sequential.Look(plan.looks, sum(it.condition == "ambig" for it in run_items),
                                     sum(it.condition == "disambig" for it in run_items), 1.0, None, None))
    rec = sequential.record(plan, looks, int(info["n_used"]) - int(info["n_disambig"]), int(info["n_disambig"]))
    if rec["stopped_early"]:  # the data block counts what was judged; the sample drawn stays on record
        info = {**info, "n_sampled": info["n_used"], "n_used": len(run_items),
                "n_disambig": rec["n_disambig"]["used"]}
    return payload(items, run_items, targets, info, cfg, pol, answers, time.perf_counter() - t0, counts, rec)


def _runtime(ctx: CheckContext[BBQSection], dense: str | Path, pol: BBQSection) -> tuple[BBQSection, tuple[str | Path, str | Path]]:
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
    ctx: CheckContext[BBQSection], pair: ModelPair, paths: Mapping[str, str | Path], pol: BBQSection,
    items: Sequence[BBQItem], cfg: ScoreConfig, cache: ResultCache, answers: dict[str, list[Answer]],
    counts: dict[str, dict[str, int]], look: str,
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
            partial(open_for_bbq, pair, model), paths[model], pol.runtime, items, c, cache,
            progress=ctx.progress, label=role + look,
        )
        got = scored.answers
        answers.setdefault(role, []).extend([replace(a, seed=a.seed - c.seed_offset) for a in got] if c.seed_offset else got)
        n = counts.setdefault(role, {"answers": 0, "scored_here": 0})
        n["answers"] += len(got)
        n["scored_here"] += scored.scored_here
        if scored.work is not None:
            n["tokens_evaluated"] = n.get("tokens_evaluated", 0) + scored.work.tokens_evaluated
            n["minimal_tokens"] = n.get("minimal_tokens", 0) + scored.work.minimal_tokens
        pair.close(model)  # one model in memory at a time; score_model closed its backend


def judge(measurements: Sequence[Measured], section: BBQSection) -> CheckResult:
    """The verdicts from every shard's answers (the thresholds each shard recorded, not
    ``section``'s: a merge has checked that they agree with each other and with the policy)."""
    from edgegate.bbq.measurement import combine

    if measurements[0][1] is None:
        return CheckResult.skipped("bbq", "BBQ transitions need a dense baseline model")
    c = combine(measurements)
    return result_from_answers(c.items, c.targets, c.info, c.config, c.policy, c.answers, c.duration_s, c.scored,
                               c.sequential)
