"""Run every variant of a study through the gate, resumably.

Per variant the study writes ``<out>/variants/<name>.report.json`` (the ordinary edgegate
JSON report, unchanged) and ``<name>.study.json`` (the input fingerprint, timings and the
disambiguated-item BBQ metrics). A variant whose fingerprint still matches is not run again;
BBQ answers come from edgegate's answer cache, so an interrupted variant resumes where its
scoring stopped, and the dense model's answers are scored once for the whole study.
After each variant the combined table and the plot are rebuilt from the report files, so
they always reflect what is on disk (``--table-only`` rebuilds them without running).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict, cast

from edgegate import __version__
from edgegate.bbq.record import metrics_rows
from edgegate.bbq.shapes import SampleInfo
from edgegate.checks.sections import BBQSection, bbq_section
from edgegate.errors import InputError
from edgegate.progress import NullProgress, Progress
from edgegate.settings import RunSettings
from edgegate.study.rows import DisambigRecord, StudyRecord
from edgegate.study.spec import StudySpec, Variant

if TYPE_CHECKING:
    from edgegate.policy import Policy

# Prior cost of one variant before anything was measured here, in seconds per unit (gemma-3-270m
# f16 on 2 busy CPU cores); replaced by the measured mean as soon as one variant has run.
_PRIOR_S_PER_BBQ_ITEM = 0.6
_PRIOR_S_CHECK = {"sparsity": 20.0, "size": 5.0, "perplexity": 150.0, "speed": 180.0, "bbq": 0.0}


class _FileStat(TypedDict):
    """A model's identity in the fingerprint: its path, size and newest mtime."""

    path: str
    bytes: int
    mtime_ns: int


def _stat(p: Path) -> _FileStat:
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return {
        "path": str(p),
        "bytes": sum(f.stat().st_size for f in files),
        "mtime_ns": max((f.stat().st_mtime_ns for f in files), default=0),
    }


def fingerprint(spec: StudySpec, policy_sha: str | None, v: Variant) -> str:
    """What a variant's result depends on: models (path, size, mtime), policy, claims, data,
    sample sizes, threads, seed and the edgegate version."""
    ident = {
        "edgegate": __version__,
        "policy": policy_sha,
        "dense": _stat(spec.dense.path),
        "model": _stat(v.path),
        "claims": dict(v.claims),
        "bbq_data": str(spec.bbq_data),
        "threads": spec.threads,
        "seed": spec.seed,
        "disambig_items": spec.disambig_items,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def paths(spec: StudySpec, name: str) -> tuple[Path, Path]:
    d = spec.out / "variants"
    return d / f"{name}.report.json", d / f"{name}.study.json"


def is_current(spec: StudySpec, policy_sha: str | None, v: Variant) -> bool:
    report, side = paths(spec, v.name)
    if not (report.is_file() and side.is_file()):
        return False
    try:
        return bool(
            json.loads(side.read_text("utf-8")).get("fingerprint")
            == fingerprint(spec, policy_sha, v)
        )
    except (OSError, json.JSONDecodeError):
        return False


def _settings(spec: StudySpec) -> RunSettings:
    """The run settings every variant's gate (and the disambiguated scoring) uses."""
    return RunSettings(
        threads=spec.threads, bbq_data=str(spec.bbq_data) if spec.bbq_data else None, seed=spec.seed
    )


def _bbq_policy(policy: Policy) -> BBQSection | None:
    """The policy's BBQ section, typed; None when the policy has no BBQ check."""
    return bbq_section(policy.checks["bbq"].section) if "bbq" in policy.checks else None


_ROLES: tuple[Literal["dense", "compressed"], ...] = ("dense", "compressed")


def _disambig(
    spec: StudySpec,
    v: Variant,
    pol: BBQSection | None,
    settings: RunSettings,
    progress: Progress,
) -> DisambigRecord | None:
    """Accuracy and s_DIS of both models on a stratified sample of disambiguated items, scored
    with the policy's BBQ settings (same mode, seeds, rotation) through the answer cache.
    The one place that calls BBQ internals directly: adapt it when the BBQ method changes."""
    if spec.disambig_items <= 0 or not (spec.bbq_data or (pol is not None and pol.data)):
        return None
    from edgegate.backends.pair import OpenSettings, open_pair
    from edgegate.bbq.cache import ResultCache
    from edgegate.bbq.metrics import model_metrics
    from edgegate.bbq.scoring import ScoreConfig, score_model
    from edgegate.checks.bbq import (
        open_for_bbq,
        pool,
        prepare_items,
        process_threads,
        resolved_mode,
        scoring_processes,
    )

    p = pol if pol is not None else bbq_section()
    source = str(spec.bbq_data or p.data)
    items, targets, info = prepare_items(
        source, condition="disambig", n=spec.disambig_items, seed=spec.seed
    )
    by_uid = {it.uid: it for it in items}
    models: tuple[Path, Path] = (spec.dense.path, v.path)
    sizes = scoring_processes(settings, dict(zip(_ROLES, models, strict=True)), p.runtime, progress)
    opening = OpenSettings(
        threads=settings.threads or process_threads(sizes),
        seed=spec.seed,
        cache_dir=settings.cache_dir,
        timeout=settings.backend_timeout,
    )
    cache = ResultCache.in_dir(settings.cache_dir)
    # prepare_items' info is what the BBQ measurements keep as "data" (untyped there)
    out: DisambigRecord = {"data": cast(SampleInfo, info)}
    try:
        with open_pair(p.runtime, models, opening) as pair:
            p = resolved_mode(pair, p)  # as the bbq check decides it
            cfg = ScoreConfig(
                mode=p.mode,
                seeds=int(p.seeds),
                temperature=float(p.temperature),
                permute=bool(p.permute_options),
            )
            out["config"] = asdict(cfg)
            for role, path in zip(_ROLES, models, strict=True):
                answers = score_model(
                    partial(open_for_bbq, pair, role),
                    path,
                    p.runtime,
                    items,
                    cfg,
                    cache,
                    progress=progress,
                    label=f"{role} (disambiguated)",
                    pool=pool(pair, role, sizes[role]),
                ).answers
                pair.close(role)  # one model in memory at a time
                out[role] = metrics_rows(model_metrics(answers, by_uid, targets))
    finally:
        cache.close()
    return out


def _policy_disambig(pol: BBQSection | None) -> int:
    """Disambiguated items the policy's BBQ check scores itself (0: none, or no BBQ check)."""
    return int(pol.disambig_items or 0) if pol is not None else 0


def run_variant(
    spec: StudySpec, policy: Policy, v: Variant, progress: Progress, argv: tuple[str, ...]
) -> StudyRecord:
    from edgegate.report import write_report
    from edgegate.runner import GateOptions, run_gate

    settings = _settings(spec)
    t0 = time.perf_counter()
    try:
        gate = run_gate(
            GateOptions(
                compressed=v.path,
                dense=spec.dense.path,
                policy=policy,
                cli_claims=dict(v.claims),
                settings=settings,
                argv=argv,
                allow_identical=v.allow_identical,
                fail_fast=False,
            ),  # a study measures every variant whole: its table needs every check
            progress=progress,
        )
    except InputError as e:  # e.g. identical inputs: name the variant, and the spec's way out
        hint = e.hint
        if e.field == "DENSE COMPRESSED" and "--allow-identical" in (e.hint or ""):
            hint = "point the variant at a compressed model, or set allow_identical: true on it for a deliberate null run"
        raise InputError(
            f"variant {v.name}: {e.message}",
            path=spec.source,
            field=f"variants ({v.name})",
            hint=hint,
        ) from None
    gate_s = time.perf_counter() - t0
    report, side = paths(spec, v.name)
    write_report("json", gate, report)
    bbq_pol = _bbq_policy(policy)
    t1 = time.perf_counter()
    # A policy whose BBQ check scores disambiguated items (its validity and accuracy
    # verdicts) already measured them in the gate: the table reads them from the report.
    dis = None if _policy_disambig(bbq_pol) else _disambig(spec, v, bbq_pol, settings, progress)
    info: StudyRecord = {
        "variant": v.name,
        "label": v.label,
        "group": v.group,
        "note": v.note,
        "claims": dict(v.claims),
        "fingerprint": fingerprint(spec, policy.sha256, v),
        "gate_seconds": round(gate_s, 1),
        "disambig_seconds": round(time.perf_counter() - t1, 1) if dis else None,
        "seconds": round(time.perf_counter() - t0, 1),
        "status": gate.status,
        "disambig": dis,
    }
    side.write_text(json.dumps(info, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return info


def _eta(seconds: float) -> str:
    m = int(seconds // 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{int(seconds % 60):02d}s"


def run_study(
    spec: StudySpec,
    *,
    only: tuple[str, ...] = (),
    force: bool = False,
    progress: Progress | None = None,
    echo: Callable[[str], None] | None = None,
    argv: tuple[str, ...] = (),
) -> list[StudyRecord]:
    """Run what is missing or stale; returns the per-variant study records of this call."""
    from edgegate.policy import resolve_policy
    from edgegate.study.table import write_outputs

    say = echo or (lambda s: print(s, file=sys.stderr, flush=True))
    progress = progress or NullProgress()
    if not spec.dense.path.exists():
        raise InputError(
            "dense model not found",
            path=spec.dense.path,
            field="dense.path",
            hint="build it first (see the spec's comments) or pass --models-dir",
        )
    policy = resolve_policy(spec.policy)
    chosen = [spec.variant(n) for n in only] if only else list(spec.variants)
    missing = [v for v in chosen if not v.path.exists()]
    todo = [
        v for v in chosen if v.path.exists() and (force or not is_current(spec, policy.sha256, v))
    ]
    done_before = [v for v in chosen if v not in todo and v not in missing]
    bbq = _bbq_policy(policy)
    items = int(bbq.items or 0) if bbq is not None else 0
    per_items = items + (_policy_disambig(bbq) or spec.disambig_items)
    fixed = sum(_PRIOR_S_CHECK.get(c.name, 60.0) for c in policy.enabled_checks())
    per_items = per_items if "bbq" in policy.checks and policy.checks["bbq"].enabled else 0
    prior = fixed + _PRIOR_S_PER_BBQ_ITEM * per_items
    say(
        f"study {spec.name}: {len(chosen)} variant(s): {len(done_before)} up to date, {len(todo)} to run, "
        f"{len(missing)} missing on disk"
        + (f" ({', '.join(v.name for v in missing)})" if missing else "")
    )
    if todo:
        first = (
            prior + _PRIOR_S_PER_BBQ_ITEM * per_items
        )  # the first one also scores the dense model
        say(
            f"estimate: ~{_eta(first + prior * (len(todo) - 1))} in all (prior of ~{_eta(prior)} per variant "
            "on 2 CPU cores; refined after each variant)"
        )
    spec.out.mkdir(parents=True, exist_ok=True)
    durations: list[float] = []
    records: list[StudyRecord] = []
    t_start = time.perf_counter()
    for i, v in enumerate(todo, 1):
        if not force and is_current(
            spec, policy.sha256, v
        ):  # another `study --only` process ran it meanwhile
            say(
                f"[{i}/{len(todo)}] {v.name}: up to date (its report appeared while this run went on); not run again"
            )
            continue
        say(f"[{i}/{len(todo)}] {v.name} ({v.label}): running the gate ...")
        rec = run_variant(spec, policy, v, progress, argv)
        records.append(rec)
        durations.append(rec["seconds"])
        write_outputs(spec, policy)
        left = len(todo) - i
        per = sum(durations[1:]) / len(durations[1:]) if len(durations) > 1 else durations[0]
        say(
            f"[{i}/{len(todo)}] {v.name}: {rec['status'].upper()} in {_eta(rec['seconds'])}; "
            f"elapsed {_eta(time.perf_counter() - t_start)}"
            + (f", ETA {_eta(per * left)} for {left} more" if left else "")
        )
    if not todo:
        write_outputs(spec, policy)
    return records
