"""Run the checks a policy enables and turn their results into one gate decision.

Checks are looked up by name: first in an in-process registry (tests and plugins), then as
``edgegate.checks.<name>``. A check that this build does not have is SKIPPED, a runtime that
is not installed (``BackendUnavailable``) is SKIPPED with the pip extra to install, and any
other error inside a check makes that check ERROR with its cause while the others still run.

Gate rules (the report explains each one in ``reasons``):
- a required check that fails, or errors, fails the run (exit 1, or 2/3 for errors);
- a required check that is inconclusive fails when ``fail_on_inconclusive`` (or --strict);
- a required check that was skipped fails when ``fail_on_skipped`` (or --strict), otherwise
  the run is "incomplete": exit 0, but never reported as a pass;
- checks deselected with --only/--skip are listed as such and do not count either way;
- optional checks are advisory: reported, never gating.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgegate.checks.base import CheckContext, CheckResult, Status
from edgegate.environment import describe_input, environment_info
from edgegate.errors import BackendUnavailable, EdgegateError, ExitCode, InputError
from edgegate.policy import CHECK_NAMES, Policy, policy_schema
from edgegate.progress import NullProgress, Progress

CheckFn = Callable[[CheckContext], CheckResult]

_REGISTRY: dict[str, CheckFn | None] = {}  # None: treat the check as absent from this build

# Optional third-party modules a check may import, and the pip extra that provides them.
_OPTIONAL_MODULES = {"llama_cpp": "llamacpp", "mlx": "mlx", "mlx_lm": "mlx", "onnxruntime": "onnx", "onnx": "onnx"}


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
    module_name = f"edgegate.checks.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    fn = getattr(module, "run", None)
    return fn if callable(fn) else None


# ---------------------------------------------------------------- claims


def claim_keys() -> list[str]:
    return sorted(policy_schema()["properties"]["claims"]["properties"])


def parse_claim(text: str) -> tuple[str, float]:
    """``size_saving=0.5`` or ``sparsity=50%`` -> (key, fraction)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or not value.strip():
        raise InputError(f"expected KEY=VALUE, got '{text}'", field="--claim", hint=f"keys: {', '.join(claim_keys())}")
    if key not in claim_keys():
        close = difflib.get_close_matches(key, claim_keys(), n=1)
        tip = f"did you mean '{close[0]}'? " if close else ""
        raise InputError(f"unknown claim '{key}'", field="--claim", hint=f"{tip}keys: {', '.join(claim_keys())}")
    # The readers' claim rules (fractions in [0, 1], 50%, 1.5x), so metadata and CLI agree.
    from edgegate.checkpoint.claims import from_mapping

    try:
        parsed = from_mapping({key: value.strip()}, "--claim")
    except InputError as exc:
        raise InputError(exc.message, field="--claim", hint=exc.hint) from None
    return key, float(getattr(parsed, key))


def metadata_claims(compressed: Path) -> tuple[dict[str, float], dict[str, str]]:
    """Claims the checkpoint makes about itself (pruning_meta.json, compressed-tensors
    sparsity_config), with where each came from; ({}, {}) when it makes none.

    A claims file that exists but cannot be read is an input error: going on without the
    claim would verify nothing and could pass a checkpoint on missing data."""
    from edgegate.checkpoint.claims import from_checkpoint_dir

    found = from_checkpoint_dir(compressed)
    keys = claim_keys()
    values = {k: float(getattr(found, k)) for k in keys if getattr(found, k, None) is not None}
    where = dict(getattr(found, "source", {}) or {})
    return values, {k: f"checkpoint metadata ({where[k]})" if where.get(k) else "checkpoint metadata" for k in values}


def merge_claims(
    cli: Mapping[str, float],
    policy: Mapping[str, float],
    meta: Mapping[str, float],
    meta_sources: Mapping[str, str] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """CLI --claim > policy claims: > checkpoint metadata; also where each value came from."""
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for source, claims in (("checkpoint metadata", meta), ("policy", policy), ("--claim", cli)):
        for k, v in claims.items():
            values[k] = float(v)
            sources[k] = (meta_sources or {}).get(k, source) if source == "checkpoint metadata" else source
    return values, sources


# ---------------------------------------------------------------- running


@dataclass(frozen=True)
class GateOptions:
    compressed: Path
    policy: Policy
    dense: Path | None = None
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    strict: bool = False
    cli_claims: Mapping[str, float] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)  # runtimes, threads, bbq_data, seed...
    hash_inputs: bool = True
    argv: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    required: bool
    selected: bool
    result: CheckResult
    gate: str  # pass | fail | error | not-verified | advisory | skipped | deselected
    reason: str


@dataclass(frozen=True)
class GateResult:
    status: str  # pass | fail | incomplete | error
    exit_code: int
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    outcomes: tuple[CheckOutcome, ...]
    policy: Policy
    strict: bool
    claims: Mapping[str, float]
    claim_sources: Mapping[str, str]
    inputs: tuple[Mapping[str, Any], ...]
    environment: Mapping[str, Any]
    started_at: str
    finished_at: str
    duration_s: float
    argv: tuple[str, ...] = ()

    def result(self, name: str) -> CheckResult | None:
        return next((o.result for o in self.outcomes if o.name == name), None)


def select_checks(policy: Policy, only: tuple[str, ...], skip: tuple[str, ...]) -> list[str]:
    enabled = [c.name for c in policy.enabled_checks()]
    for flag, names in (("--only", only), ("--skip", skip)):
        for n in names:
            if n not in CHECK_NAMES:
                close = difflib.get_close_matches(n, CHECK_NAMES, n=1)
                tip = f"did you mean '{close[0]}'? " if close else ""
                raise InputError(f"unknown check '{n}'", field=flag, hint=f"{tip}checks: {', '.join(CHECK_NAMES)}")
            if n not in enabled and flag == "--only":
                raise InputError(
                    f"check '{n}' is not enabled in policy '{policy.name}'",
                    field=flag,
                    hint=f"enabled: {', '.join(enabled) or 'none'}; add a checks.{n} block to the policy",
                )
    return [n for n in enabled if (not only or n in only) and n not in skip]


def run_one(name: str, ctx: CheckContext) -> CheckResult:
    """Run one check, turning every way it can go wrong into a result; never raises
    (except KeyboardInterrupt)."""
    t0 = time.perf_counter()
    try:
        fn = resolve_check(name)
        if fn is None:
            result = CheckResult.skipped(name, f"check '{name}' is not available in this build")
        else:
            result = fn(ctx)
            if not isinstance(result, CheckResult):
                raise TypeError(f"check returned {type(result).__name__}, expected CheckResult")
    except BackendUnavailable as exc:
        result = CheckResult(name, Status.SKIPPED, exc.one_line(), error=exc.to_dict())
    except ModuleNotFoundError as exc:
        extra = _OPTIONAL_MODULES.get((exc.name or "").split(".")[0])
        if extra is None:
            result = _error_result(name, exc)
        else:
            missing = BackendUnavailable(extra, extra)
            msg = f"Python module '{exc.name}' is not installed (install it with: pip install 'edgegate[{extra}]')"
            result = CheckResult(name, Status.SKIPPED, msg, error=missing.to_dict())
    except EdgegateError as exc:
        result = CheckResult(name, Status.ERROR, exc.one_line(), error=exc.to_dict())
    except Exception as exc:  # a bug in a check: report it, keep the other checks running
        result = _error_result(name, exc)
    return replace(result, check=name, duration_s=round(time.perf_counter() - t0, 6))


def _error_result(name: str, exc: BaseException) -> CheckResult:
    err = {
        "type": type(exc).__name__,
        "message": str(exc),
        "path": None,
        "field": None,
        "hint": "this is a bug in edgegate; set EDGEGATE_DEBUG=1 for a traceback and please report it",
        "exit_code": int(ExitCode.RUNTIME_ERROR),
    }
    if os.environ.get("EDGEGATE_DEBUG"):
        traceback.print_exception(exc, file=sys.stderr)
    return CheckResult(name, Status.ERROR, f"internal error: {type(exc).__name__}: {exc}", error=err)


def run_gate(opts: GateOptions, progress: Progress | None = None) -> GateResult:
    progress = progress or NullProgress()
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    policy = opts.policy.strict() if opts.strict else opts.policy
    selected = select_checks(policy, opts.only, opts.skip)

    inputs = [_model_input("compressed", opts.compressed, opts, progress)]
    if opts.dense is not None:
        inputs.insert(0, _model_input("dense", opts.dense, opts, progress))
    if policy.source and Path(policy.source).is_file():
        inputs.append(describe_input("policy", Path(policy.source), hash_files=opts.hash_inputs))
    for role, value in _data_inputs(policy, selected, opts.options):
        if Path(value).exists():  # hub datasets (hf:...) have no local files to hash
            inputs.append(describe_input(role, Path(value), hash_files=opts.hash_inputs))

    meta = metadata_claims(opts.compressed) if opts.compressed.exists() else ({}, {})  # endpoint only: no metadata
    claims, sources = merge_claims(opts.cli_claims, policy.claims, *meta)
    # Checks see where each claim came from (e.g. to name pruning_meta.json in a message).
    options = {**opts.options, "claim_sources": dict(sources)}
    if policy.base_dir is not None:  # issue 15: paths in a policy resolve against the policy file
        options.setdefault("policy_dir", policy.base_dir)
    shared: dict[str, Any] = {}
    outcomes: list[CheckOutcome] = []
    for cp in policy.enabled_checks():
        if cp.name not in selected:
            flag = "--only" if opts.only else "--skip"
            res = CheckResult.skipped(cp.name, f"deselected with {flag}")
            outcomes.append(CheckOutcome(cp.name, cp.required, False, res, "deselected", res.summary))
            continue
        progress.log(f"edgegate: running check {cp.name}")
        ctx = CheckContext(
            compressed_path=opts.compressed,
            dense_path=opts.dense,
            section=cp.section,
            claims=dict(claims),
            options=options,
            shared=shared,
            progress=progress,
        )
        if cp.name in _NEEDS_FILES and not all(p.exists() for p in (opts.compressed, opts.dense) if p is not None):
            res = CheckResult.skipped(cp.name, f"check '{cp.name}' needs the local checkpoint files; only endpoints were given")
        else:
            res = run_one(cp.name, ctx)
        progress.log(f"edgegate: {cp.name}: {res.status.value} ({res.duration_s:.2f}s) {res.summary}")
        outcomes.append(_judge(cp.name, cp.required, res, policy, opts.strict))

    status, code, reasons = _overall(outcomes, policy)
    return GateResult(
        status=status,
        exit_code=code,
        reasons=tuple(reasons),
        notes=tuple(_notes(outcomes)),
        outcomes=tuple(outcomes),
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


_NEEDS_FILES = ("sparsity", "size", "speed")  # the others can score models behind --*-endpoint URLs


def _model_input(role: str, path: Path, opts: GateOptions, progress: Progress) -> dict[str, Any]:
    url = opts.options.get(f"{role}_endpoint")
    if not url:
        return describe_input(role, path, hash_files=opts.hash_inputs, progress=progress)
    from edgegate.shard import endpoint_input

    ep = endpoint_input(role, str(url))  # what the server says it is: the runtime checks score that
    if not path.exists():
        return ep
    return {**describe_input(role, path, hash_files=opts.hash_inputs, progress=progress),
            **{k: ep[k] for k in ("base_url", "model", "dialect")}}


def _data_inputs(policy: Policy, selected: list[str], options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Data files the selected checks will read: (report role, path)."""
    out = []
    if "bbq" in selected:
        data = options.get("bbq_data") or policy.checks["bbq"].section.get("data")
        if data:
            out.append(("bbq_data", str(data)))
    if "perplexity" in selected:
        text = options.get("ppl_text")
        if not text and policy.checks["perplexity"].section.get("text"):
            from edgegate.policy import relative_to_policy

            # issue 15: relative to the policy file, not the cwd
            text = relative_to_policy(policy.checks["perplexity"].section["text"], policy.base_dir)
        if text:
            out.append(("perplexity_text", str(text)))
    return out


def _judge(name: str, required: bool, res: CheckResult, policy: Policy, strict: bool) -> CheckOutcome:
    s = res.status
    if s is Status.ERROR and int((res.error or {}).get("exit_code", ExitCode.RUNTIME_ERROR)) == ExitCode.INPUT_ERROR:
        # issue 15: an unreadable input is an input error (exit 2) whether or not the check that
        # found it gates; as "advisory" it once ended in exit 0/1 ("no check passed")
        return CheckOutcome(name, required, True, res, "error", res.summary)
    if not required:
        gate = "pass" if s is Status.PASS else "skipped" if s is Status.SKIPPED else "advisory"
        why = "optional check: reported, does not gate" if gate != "pass" else "passed"
        return CheckOutcome(name, False, True, res, gate, why)
    if s is Status.PASS:
        return CheckOutcome(name, True, True, res, "pass", "passed")
    if s is Status.FAIL:
        return CheckOutcome(name, True, True, res, "fail", _why(res))
    if s is Status.ERROR:
        return CheckOutcome(name, True, True, res, "error", res.summary)
    if s is Status.INCONCLUSIVE:
        if policy.fail_on_inconclusive:
            rule = "--strict" if strict else "fail_on_inconclusive"
            return CheckOutcome(name, True, True, res, "fail", f"inconclusive ({res.summary}); {rule} makes that a failure")
        return CheckOutcome(name, True, True, res, "not-verified", f"inconclusive: {res.summary}")
    if policy.fail_on_skipped:
        rule = "--strict" if strict else "fail_on_skipped"
        return CheckOutcome(name, True, True, res, "fail", f"required check did not run ({res.summary}); {rule} makes that a failure")
    return CheckOutcome(name, True, True, res, "not-verified", f"required check did not run: {res.summary}")


def _why(res: CheckResult) -> str:
    """The summary plus the messages of the verdicts that failed (what to look at first)."""
    failed = [v.message for v in res.verdicts if v.status in (Status.FAIL, Status.INCONCLUSIVE)]
    more = f" (+{len(failed) - 3} more)" if len(failed) > 3 else ""
    return res.summary + (": " + "; ".join(failed[:3]) + more if failed else "")


def _overall(outcomes: list[CheckOutcome], policy: Policy) -> tuple[str, int, list[str]]:
    errors = [o for o in outcomes if o.gate == "error"]
    fails = [o for o in outcomes if o.gate == "fail"]
    unverified = [o for o in outcomes if o.gate == "not-verified"]
    passed = [o for o in outcomes if o.result.status is Status.PASS and o.selected]
    reasons = [f"{o.name}: {o.reason}" for o in (*errors, *fails, *unverified)]
    if errors:
        codes = [int((o.result.error or {}).get("exit_code", ExitCode.RUNTIME_ERROR)) for o in errors]
        code = ExitCode.INPUT_ERROR if ExitCode.INPUT_ERROR in codes else ExitCode.RUNTIME_ERROR
        return "error", int(code), reasons
    if fails:
        return "fail", int(ExitCode.POLICY_FAILED), reasons
    if not passed:
        why = "no check passed: nothing was verified"
        if policy.fail_on_skipped:
            return "fail", int(ExitCode.POLICY_FAILED), [*reasons, why]
        return "incomplete", int(ExitCode.PASS), [*reasons, why]
    if unverified:
        return "incomplete", int(ExitCode.PASS), reasons
    return "pass", int(ExitCode.PASS), [f"{len(passed)} check(s) passed"]


def _notes(outcomes: list[CheckOutcome]) -> list[str]:
    by = {o.name: o for o in outcomes}
    notes: list[str] = []
    ppl, bbq = by.get("perplexity"), by.get("bbq")
    if ppl and bbq and ppl.result.status is Status.PASS and bbq.result.status is Status.FAIL:
        notes.append(
            "smart pruning paradox: perplexity passed while BBQ failed; perplexity gave false "
            f"assurance about bias ({ppl.result.summary} / {bbq.result.summary})"
        )
    for o in outcomes:
        if o.gate == "advisory":
            notes.append(f"advisory: {o.name} is {o.result.status.value} ({o.result.summary}); optional check: reported, does not gate")
    deselected = [o.name for o in outcomes if not o.selected]
    if deselected:
        notes.append(f"not run (deselected): {', '.join(deselected)}; this run verifies only the others")
    unavailable = [o.name for o in outcomes if o.selected and o.result.status is Status.SKIPPED]
    if unavailable:
        notes.append(f"could not run: {', '.join(unavailable)} (see each check's reason)")
    return notes
