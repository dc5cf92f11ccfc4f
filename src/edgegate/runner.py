"""Run the checks a policy enables and turn their results into one gate decision.

Checks are looked up by name: first in an in-process registry (tests and plugins), then as
``edgegate.checks.<name>``. A check that this build does not have is SKIPPED, a runtime that
is not installed (``BackendUnavailable``) is SKIPPED with the pip extra to install, and any
other error inside a check makes that check ERROR with its cause while the others still run.
The gate's rules are in ``edgegate.gate``; claims are resolved once (``edgegate.claims``).

A sharded run (``GateOptions.shard``) measures only its share of the sharded checks and keeps
their measurements (``ShardRun.measured``) for the partial file; ``edgegate merge`` judges them.
Fail-fast (``GateOptions.fail_fast``, else the policy's ``fail_fast``) applies within one run or
shard: a shard's placeholders ("measured", "runs in shard 1") stop nothing.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from edgegate import checks
from edgegate.checks.base import (
    THIS_RUN,
    CheckContext,
    CheckResult,
    PolicySection,
    SharedWork,
    Status,
)
from edgegate.claims import resolve_claims
from edgegate.environment import environment_info
from edgegate.errors import BackendUnavailable, EdgegateError, ErrorRecord, ExitCode
from edgegate.gate import decide, select_checks
from edgegate.policy import CHECK_NAMES, Policy
from edgegate.progress import NullProgress, Progress
from edgegate.results import GateResult, GateStatus
from edgegate.run_inputs import describe_inputs, preflight_run
from edgegate.sanity import Finding, summarize
from edgegate.settings import RunSettings, Shard

if TYPE_CHECKING:
    from edgegate.bbq.measurement import ShardMeasurement

Context = CheckContext[
    PolicySection
]  # the runner's view: each check's own section type is its module's
CheckFn = Callable[[Context], CheckResult]

_REGISTRY: dict[str, CheckFn | None] = {}  # None: treat the check as absent from this build

# Optional third-party modules a check may import, and the pip extra that provides them.
_OPTIONAL_MODULES = {
    "llama_cpp": "llamacpp",
    "mlx": "mlx",
    "mlx_lm": "mlx",
    "onnxruntime": "onnx",
    "onnx": "onnx",
    "torch": "torch",
    "transformers": "torch",
}


def register_check(name: str, fn: CheckFn | None) -> None:
    """Make ``fn`` the implementation of check ``name`` (wins over edgegate.checks.<name>);
    ``None`` makes the check unavailable, as in a build without it."""
    _REGISTRY[name] = fn


def unregister_check(name: str) -> None:
    _REGISTRY.pop(name, None)


@contextmanager
def registered(name: str, fn: CheckFn | None) -> Iterator[None]:
    had, previous = name in _REGISTRY, _REGISTRY.get(name)
    register_check(name, fn)
    try:
        yield
    finally:
        if had:
            register_check(name, previous)
        else:
            unregister_check(name)


def resolve_check(name: str) -> CheckFn | None:
    """The check's ``run`` function, or None when this build does not have the check."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if checks.load(name) is None:
        return None
    return partial(checks.run, name)


@dataclass(frozen=True)
class GateOptions:
    compressed: Path
    policy: Policy
    dense: Path | None = None
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    strict: bool = False
    cli_claims: Mapping[str, float] = field(default_factory=dict)
    settings: RunSettings = field(default_factory=RunSettings)
    shard: Shard | None = None  # --shard i/n: measure this shard's share of the sharded checks
    hash_inputs: bool = True
    argv: tuple[str, ...] = ()
    outputs: Mapping[str, str | None] = field(default_factory=dict)  # report flag -> destination
    allow_identical: bool = False  # a deliberate null run (dense vs itself)
    caveats: tuple[str, ...] = ()  # e.g. a quick --bbq-items run
    samples_out: str | None = None  # --samples-out: per-item evidence of BBQ and perplexity (JSONL)
    allow_partial: bool = False  # --allow-partial: PARTIAL exits 0 (default 1: not a pass)
    # --fail-fast/--no-fail-fast; None: the policy's fail_fast decides
    fail_fast: bool | None = None


@dataclass(frozen=True)
class ShardRun:
    gate: GateResult  # the shard's own outcomes (sharded checks: "measured", not judged)
    measured: Mapping[str, ShardMeasurement]  # check name -> its measurement of this shard
    sharded: tuple[str, ...]  # the enabled checks whose work is split across shards


def owned_by_shard_1(name: str, shard: Shard | None) -> bool:
    """A check that is not split runs whole in shard 1; the other shards have nothing of it to
    do. Kept apart from the user's --skip: turning it into a --skip once collided with --only."""
    return shard is not None and shard[0] != 1 and not _sharded(name)


def _sharded(name: str) -> bool:
    return name not in _REGISTRY and checks.is_sharded(name)


def run_one(name: str, ctx: Context, fn: CheckFn | None = None) -> CheckResult:
    """Run one check (``fn``, else the check's own ``run``), turning every way it can go
    wrong into a result; never raises (except KeyboardInterrupt)."""
    t0 = time.perf_counter()
    try:
        fn = fn or resolve_check(name)
        if fn is None:
            result = CheckResult.skipped(name, f"check '{name}' is not available in this build")
        else:
            result = fn(ctx)
            if not isinstance(result, CheckResult):
                raise TypeError(f"check returned {type(result).__name__}, expected CheckResult")
    except BackendUnavailable as exc:
        result = CheckResult(name, Status.SKIPPED, exc.one_line(), error=exc.record())
    except ModuleNotFoundError as exc:
        extra = _OPTIONAL_MODULES.get((exc.name or "").split(".")[0])
        if extra is None:
            result = _error_result(name, exc)
        else:
            missing = BackendUnavailable(extra, extra)
            msg = f"Python module '{exc.name}' is not installed (install it with: pip install 'edgegate[{extra}]')"
            result = CheckResult(name, Status.SKIPPED, msg, error=missing.record())
    except EdgegateError as exc:
        result = CheckResult(name, Status.ERROR, exc.one_line(), error=exc.record())
    except Exception as exc:  # a bug in a check: report it, keep the other checks running
        result = _error_result(name, exc)
    return replace(result, check=name, duration_s=round(time.perf_counter() - t0, 6))


def _error_result(name: str, exc: BaseException) -> CheckResult:
    err = ErrorRecord(
        type(exc).__name__,
        str(exc),
        exit_code=ExitCode.RUNTIME_ERROR,
        hint="this is a bug in edgegate; set EDGEGATE_DEBUG=1 for a traceback and please report it",
    )
    if os.environ.get("EDGEGATE_DEBUG"):
        traceback.print_exception(exc, file=sys.stderr)
    return CheckResult(
        name, Status.ERROR, f"internal error: {type(exc).__name__}: {exc}", error=err
    )


def run_gate(opts: GateOptions, progress: Progress | None = None) -> GateResult:
    return _run(opts, progress or NullProgress(), {})


def run_shard(opts: GateOptions, progress: Progress | None = None) -> ShardRun:
    """One shard of a sharded run: the gate of the checks it runs, and its measurements."""
    measured: dict[str, ShardMeasurement] = {}
    gate = _run(opts, progress or NullProgress(), measured)
    sharded = tuple(c.name for c in opts.policy.enabled_checks() if _sharded(c.name))
    return ShardRun(gate, measured, sharded)


def _run(
    opts: GateOptions, progress: Progress, measured: dict[str, ShardMeasurement]
) -> GateResult:
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    policy = _run_policy(opts)
    selected = select_checks(policy, opts.only, opts.skip)
    # a registered check brings its own needs
    preflight_run(opts, policy, [n for n in selected if n not in _REGISTRY])
    inputs, findings = describe_inputs(opts, policy, selected, progress)

    claims, sources = resolve_claims(opts.cli_claims, policy.claims, opts.compressed)
    run = _CheckRun(opts, policy, progress, measured, claims, sources)
    decision = decide(
        policy,
        opts.strict,
        opts.only,
        opts.skip,
        run.result_of,
        opts.allow_partial,
        fail_fast=policy.fail_fast,
        judged_here=run.judged_here,
        order=checks.run_order(CHECK_NAMES),
        free=run.already_measured,
    )
    if opts.samples_out:
        _write_evidence(opts.samples_out, run.evidence, progress)
    swapped = _swapped(run.shared)
    findings += [swapped] if swapped else []
    status, code, reasons = decision.status, decision.exit_code, decision.reasons
    if swapped:  # the measurements stand, but a verdict on swapped inputs means nothing
        status, code, reasons = (
            GateStatus.ERROR,
            int(ExitCode.INPUT_ERROR),
            (*summarize([swapped]), *reasons),
        )
    return GateResult(
        status=status,
        exit_code=code,
        reasons=reasons,
        notes=(*summarize(findings), *decision.notes),
        findings=tuple(f.to_dict() for f in findings),
        caveats=opts.caveats,
        outcomes=decision.outcomes,
        policy=policy,
        strict=opts.strict,
        claims=claims,
        claim_sources=sources,
        inputs=tuple(inputs),
        environment=environment_info(),
        started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - t0, 6),
        argv=opts.argv,
    )


@dataclass
class _CheckRun:
    """What the checks of one run (or shard) share: their contexts, the scan work done once,
    the raw measurements kept for --samples-out, and the checks whose verdicts are made
    elsewhere. ``result_of`` is what the gate calls to run a check."""

    opts: GateOptions
    policy: Policy
    progress: Progress
    measured: dict[str, ShardMeasurement]  # a shard's measurements, for its partial file
    claims: Mapping[str, float]
    sources: Mapping[str, str]
    shared: SharedWork = field(default_factory=SharedWork)
    # --samples-out: the raw measurements of the sharded checks
    evidence: dict[str, ShardMeasurement] = field(default_factory=dict)
    # a shard's stand-ins for verdicts made elsewhere (fail-fast ignores them)
    placeholders: set[str] = field(default_factory=set)
    _sections: dict[str, PolicySection] = field(default_factory=dict)

    def section_of(self, name: str) -> PolicySection:
        """The check's section, built once per check and run."""
        if name not in self._sections:
            self._sections[name] = _section(name, self.policy, self.opts.settings)
        return self._sections[name]

    def ctx_for(self, name: str) -> Context:
        opts = self.opts
        return CheckContext(
            compressed_path=opts.compressed,
            dense_path=opts.dense,
            section=self.section_of(name),
            claims=dict(self.claims),
            claim_sources=dict(self.sources),
            settings=opts.settings,
            shard=opts.shard,
            shared=self.shared,
            progress=self.progress,
            policy_dir=self.policy.base_dir,
        )

    def judged_here(self, name: str) -> bool:
        return name not in self.placeholders

    def already_measured(self, name: str) -> bool:
        return checks.already_measured(name, self.ctx_for(name))

    def result_of(self, name: str) -> CheckResult:
        self.progress.log(f"edgegate: running check {name}")
        res = self._result(name, self.ctx_for(name))
        self.progress.log(
            f"edgegate: {name}: {res.status.value} ({res.duration_s:.2f}s) {res.summary}"
        )
        return res

    def _result(self, name: str, ctx: Context) -> CheckResult:
        """The check's result in this run: skipped when another shard, swapped inputs or
        missing local files make running it pointless, else run (a sharded check measured
        only, in a shard)."""
        opts = self.opts
        swapped = _swapped(self.shared)
        if owned_by_shard_1(name, opts.shard):
            assert opts.shard is not None
            self.placeholders.add(name)
            return CheckResult.skipped(
                name,
                f"runs in shard 1 (not split): shard {opts.shard[0]}/{opts.shard[1]} has nothing of it to do",
            )
        if swapped is not None and not checks.needs(name).on_swapped_inputs:
            # the verdict will be an input error whatever this check measures: do not spend minutes on it
            return CheckResult.skipped(name, f"not run: {swapped.message}")
        if checks.needs(name).local_files and not all(
            p.exists() for p in (opts.compressed, opts.dense) if p is not None
        ):
            return CheckResult.skipped(
                name, f"check '{name}' needs the local checkpoint files; only endpoints were given"
            )
        if opts.shard is not None and _sharded(name):
            res = run_one(name, ctx, lambda c: _measure_shard(name, c, self.measured))
            if name in self.measured and res.status is Status.SKIPPED:
                self.placeholders.add(name)  # measured here, judged by merge
            return res
        if opts.samples_out and _sharded(name):  # keep the raw measurement for the evidence file
            return run_one(name, ctx, lambda c: _measure_and_judge(name, c, self.evidence))
        return run_one(name, ctx)


def _write_evidence(
    dest: str, evidence: Mapping[str, ShardMeasurement], progress: Progress
) -> None:
    """--samples-out: the per-item evidence the run kept, as JSONL (``-``: stdout)."""
    from edgegate.report.samples import write_samples

    rows = write_samples(sys.stdout if dest == "-" else dest, evidence)
    progress.log(f"edgegate: wrote {rows} evidence row(s) to {dest}")


def _run_policy(opts: GateOptions) -> Policy:
    """The policy as this run applies it: --strict, and --fail-fast/--no-fail-fast over the
    policy's fail_fast (the report's resolved policy shows what applied)."""
    policy = opts.policy.strict() if opts.strict else opts.policy
    return policy if opts.fail_fast is None else replace(policy, fail_fast=opts.fail_fast)


def _section(name: str, policy: Policy, settings: RunSettings) -> PolicySection:
    """The check's typed policy section (its module's ``SECTION``), with ``--runtime`` applied to
    perplexity and BBQ too (the flag once reached only the speed check; preflight refuses
    several names for them)."""
    from edgegate.checks.base import RuntimeUse
    from edgegate.preflight import check_runtime

    sec = policy.checks[name].section
    if (
        settings.runtimes
        and checks.needs(name).runtime is RuntimeUse.ONE
        and not settings.endpoints
    ):
        sec = {**sec, "runtime": check_runtime(name, sec, settings)}
    return checks.section(name, sec)


def _swapped(shared: SharedWork) -> Finding | None:
    from edgegate.sanity import probably_swapped

    comp, dense = shared.scan_compressed, shared.scan_dense
    if comp is None or dense is None:
        return None
    return probably_swapped(dense.prunable.sparsity, comp.prunable.sparsity)


def _measure_and_judge(
    name: str, ctx: Context, evidence: dict[str, ShardMeasurement]
) -> CheckResult:
    module = checks.load(name)
    assert module is not None
    m = module.measure(ctx, None)
    if m is not None:
        evidence[name] = m
    return module.judge([(THIS_RUN, m)], ctx.section)


def _measure_shard(name: str, ctx: Context, measured: dict[str, ShardMeasurement]) -> CheckResult:
    """A sharded check in a shard: measure this shard's share and keep it; the verdict comes
    from ``edgegate merge``. A check that cannot measure (e.g. no dense model) says why."""
    module = checks.load(name)
    assert module is not None and ctx.shard is not None  # _sharded(name) holds
    m = module.measure(ctx, ctx.shard)
    if m is None:
        return module.judge([(THIS_RUN, None)], ctx.section)
    measured[name] = m
    i, n = ctx.shard
    return CheckResult.skipped(
        name, f"shard {i}/{n}: measured; the verdict comes from `edgegate merge` of all shards"
    )
