"""The gate's rules: from each check's result to one decision (shared by a single run and
``edgegate merge``, so the two cannot drift apart).

- a required check that fails, or errors, fails the run (exit 1, or 2/3 for errors);
- a required check that is inconclusive fails when ``fail_on_inconclusive`` (or --strict);
- a required check that was skipped fails when ``fail_on_skipped`` (or --strict);
- PASS only when every required check of the policy ran and passed. When nothing failed but
  some required checks were not verified (deselected with --only/--skip, skipped or
  inconclusive where the policy allows it), the run is "partial" — "PARTIAL (n of m required
  checks verified)", never reported as a pass, and exit 1 unless the caller accepts it
  (--allow-partial; the Action's allow-partial passes that flag), so CLI and CI agree;
- every check edgegate knows is listed: one the policy has no block for is "not in the
  policy", one with ``enabled: false`` is "disabled" — neither runs nor gates;
- a run that verified no required check at all is "unverified": exit 1, because a CI step
  that verified nothing must not go green;
- optional checks are advisory: reported, never gating;
- fail-fast (the policy's ``fail_fast``, or --fail-fast/--no-fail-fast): once a *required* check
  has failed (gate "fail", so also inconclusive/skipped under fail_on_inconclusive/
  fail_on_skipped) or errored, the checks after it are not run. Each is listed as "not-run"
  with the reason, never as a pass; the status stays FAIL (or ERROR) with its exit code. An
  advisory check's failure stops nothing.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgegate.errors import ErrorRecord, ExitCode, InputError
from edgegate.policy import CHECK_NAMES, Policy
from edgegate.results import CheckDecision, CheckOutcome, CheckResult, GateStatus, Status


@dataclass(frozen=True)
class Decision:
    status: GateStatus
    exit_code: int
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    outcomes: tuple[CheckOutcome, ...]


def select_checks(policy: Policy, only: tuple[str, ...], skip: tuple[str, ...]) -> list[str]:
    enabled = [c.name for c in policy.enabled_checks()]
    both = sorted(set(only) & set(skip))
    if both:  # contradictory flags: refuse rather than guess which one the user meant
        raise InputError(
            f"check(s) {', '.join(both)} given to both --only and --skip",
            field="--skip",
            hint="name each check in one of them",
        )
    for flag, names in (("--only", only), ("--skip", skip)):
        for n in names:
            if n not in CHECK_NAMES:
                close = difflib.get_close_matches(n, CHECK_NAMES, n=1)
                tip = f"did you mean '{close[0]}'? " if close else ""
                raise InputError(
                    f"unknown check '{n}'",
                    field=flag,
                    hint=f"{tip}checks: {', '.join(CHECK_NAMES)}",
                )
            if n not in enabled and flag == "--only":
                raise InputError(
                    f"check '{n}' is not enabled in policy '{policy.name}'",
                    field=flag,
                    hint=f"enabled: {', '.join(enabled) or 'none'}; add a checks.{n} block to the policy",
                )
    selected = [n for n in enabled if (not only or n in only) and n not in skip]
    if enabled and not selected:
        raise InputError(
            "--skip leaves no check to run",
            field="--skip",
            hint=f"policy '{policy.name}' enables {', '.join(enabled)}; a run that checks nothing verifies nothing",
        )
    return selected


def decide(
    policy: Policy,
    strict: bool,
    only: Sequence[str],
    skip: Sequence[str],
    result_of: Callable[[str], CheckResult],
    allow_partial: bool = False,
    *,
    fail_fast: bool = False,
    judged_here: Callable[[str], bool] | None = None,
    order: Sequence[str] = CHECK_NAMES,
    free: Callable[[str], bool] | None = None,
) -> Decision:
    """Run ``result_of`` for every selected check in ``order`` (the runner's: cheapest first;
    deselected ones are listed, not run) and apply the gate's rules; outcomes are listed in
    policy order whatever the run order. ``policy`` is already strict() under --strict.

    ``fail_fast``: after the first required check whose gate is "fail" or "error", the
    remaining selected checks are not run (``result_of`` is not called for them). The caller
    says whether fail-fast applies (``edgegate merge`` judges measurements that exist: never).
    ``judged_here(name)`` is false for a result that is only a placeholder here (a shard's
    "measured, judged at merge" or "runs in shard 1"): such a result stops nothing.
    ``free(name)``: the check's measurement is already in hand (perplexity from the fidelity
    check's pass), so fail-fast still judges it: skipping it would save nothing."""
    selected = select_checks(policy, tuple(only), tuple(skip))
    outcomes: list[CheckOutcome] = []
    stop: CheckOutcome | None = None  # the required check that failed or errored (fail-fast)
    for name in order:
        cp = policy.checks.get(name)
        if cp is None or not cp.enabled:  # listed, so a reader sees what this policy leaves out
            outcomes.append(_not_in_policy(name, policy, cp is None))
            continue
        if cp.name not in selected:
            flag = "--only" if only else "--skip"
            res = CheckResult.skipped(cp.name, f"deselected with {flag}")
            outcomes.append(
                CheckOutcome(
                    cp.name, cp.required, False, res, CheckDecision.DESELECTED, res.summary
                )
            )
            continue
        if stop is not None and not (free is not None and free(cp.name)):
            outcomes.append(_not_run_fail_fast(cp.name, cp.required, stop))
            continue
        outcome = _judge(cp.name, cp.required, result_of(cp.name), policy, strict)
        outcomes.append(outcome)
        if (
            fail_fast
            and stop is None
            and outcome.required
            and outcome.gate in (CheckDecision.FAIL, CheckDecision.ERROR)
            and (judged_here is None or judged_here(cp.name))
        ):
            stop = outcome  # the first failure is the one every "not run" names
    outcomes.sort(key=lambda o: CHECK_NAMES.index(o.name))
    status, code, reasons = _overall(outcomes, policy)
    if status is GateStatus.PARTIAL and not allow_partial:
        code = int(ExitCode.POLICY_FAILED)
    return Decision(status, code, tuple(reasons), tuple(_notes(outcomes)), tuple(outcomes))


def _not_in_policy(name: str, policy: Policy, absent: bool) -> CheckOutcome:
    why = (
        f"not in the policy: '{policy.name}' has no checks.{name} block, so it is not run"
        if absent
        else f"disabled: checks.{name}.enabled is false in '{policy.name}'"
    )
    res = CheckResult.skipped(name, why)
    return CheckOutcome(
        name,
        False,
        False,
        res,
        CheckDecision.NOT_IN_POLICY if absent else CheckDecision.DISABLED,
        why,
    )


FAIL_FAST = "FailFast"  # the error type of a check that fail-fast did not run


def _not_run_fail_fast(name: str, required: bool, stop: CheckOutcome) -> CheckOutcome:
    """A selected check that fail-fast did not run: skipped, never a pass. Like a check skipped
    for a missing runtime, its ``error`` says why it did not run; that keeps it "not-run" when a
    shard's partial file carries it into ``edgegate merge``."""
    why = f"not run: fail-fast — required check '{stop.name}' already {'failed' if stop.gate is CheckDecision.FAIL else 'errored'}"
    hint = "fail-fast (the policy's fail_fast or --fail-fast) stopped the run; --no-fail-fast runs every check"
    err = ErrorRecord(
        FAIL_FAST, why, field="fail_fast", hint=hint
    )  # no exit code: nothing went wrong here
    return CheckOutcome(
        name,
        required,
        True,
        CheckResult(name, Status.SKIPPED, why, error=err),
        CheckDecision.NOT_RUN,
        why,
    )


def _not_run_by_fail_fast(res: CheckResult) -> bool:
    return res.status is Status.SKIPPED and res.error is not None and res.error.type == FAIL_FAST


def _judge(
    name: str, required: bool, res: CheckResult, policy: Policy, strict: bool
) -> CheckOutcome:
    s = res.status
    if _not_run_by_fail_fast(res):  # carried from a shard that stopped early (edgegate merge)
        return CheckOutcome(name, required, True, res, CheckDecision.NOT_RUN, res.summary)
    if s is Status.ERROR and res.error_code is ExitCode.INPUT_ERROR:
        # an unreadable input is an input error (exit 2) whether or not the check that
        # found it gates; as "advisory" it once ended in exit 0/1 ("no check passed")
        return CheckOutcome(name, required, True, res, CheckDecision.ERROR, res.summary)
    if not required:
        gate = (
            CheckDecision.PASS
            if s is Status.PASS
            else CheckDecision.SKIPPED
            if s is Status.SKIPPED
            else CheckDecision.ADVISORY
        )
        why = (
            "optional check: reported, does not gate"
            if gate is not CheckDecision.PASS
            else "passed"
        )
        return CheckOutcome(name, False, True, res, gate, why)
    if s is Status.PASS:
        return CheckOutcome(name, True, True, res, CheckDecision.PASS, "passed")
    if s is Status.FAIL:
        return CheckOutcome(name, True, True, res, CheckDecision.FAIL, _why(res))
    if s is Status.ERROR:
        return CheckOutcome(name, True, True, res, CheckDecision.ERROR, res.summary)
    if s is Status.INCONCLUSIVE:
        if policy.fail_on_inconclusive:
            rule = "--strict" if strict else "fail_on_inconclusive"
            return CheckOutcome(
                name,
                True,
                True,
                res,
                CheckDecision.FAIL,
                f"inconclusive ({res.summary}); {rule} makes that a failure",
            )
        return CheckOutcome(
            name, True, True, res, CheckDecision.NOT_VERIFIED, f"inconclusive: {res.summary}"
        )
    if policy.fail_on_skipped:
        rule = "--strict" if strict else "fail_on_skipped"
        return CheckOutcome(
            name,
            True,
            True,
            res,
            CheckDecision.FAIL,
            f"required check did not run ({res.summary}); {rule} makes that a failure",
        )
    return CheckOutcome(
        name,
        True,
        True,
        res,
        CheckDecision.NOT_VERIFIED,
        f"required check did not run: {res.summary}",
    )


def _why(res: CheckResult) -> str:
    """The summary plus the messages of the verdicts that failed (what to look at first)."""
    failed = [v.message for v in res.verdicts if v.status in (Status.FAIL, Status.INCONCLUSIVE)]
    more = f" (+{len(failed) - 3} more)" if len(failed) > 3 else ""
    return res.summary + (": " + "; ".join(failed[:3]) + more if failed else "")


def _overall(outcomes: list[CheckOutcome], policy: Policy) -> tuple[GateStatus, int, list[str]]:
    errors = [o for o in outcomes if o.gate is CheckDecision.ERROR]
    fails = [o for o in outcomes if o.gate is CheckDecision.FAIL]
    unverified = [o for o in outcomes if o.gate is CheckDecision.NOT_VERIFIED]
    reasons = [f"{o.name}: {o.reason}" for o in (*errors, *fails, *unverified)]
    if errors:
        codes = [o.result.error_code for o in errors]
        code = ExitCode.INPUT_ERROR if ExitCode.INPUT_ERROR in codes else ExitCode.RUNTIME_ERROR
        return GateStatus.ERROR, int(code), reasons
    if fails:
        return GateStatus.FAIL, int(ExitCode.POLICY_FAILED), reasons
    v = verification(outcomes)
    if v.required == 0:  # a policy of advisory checks only: nothing gates, nothing to call verified
        passed = [o for o in outcomes if o.selected and o.result.status is Status.PASS]
        if passed:
            return (
                GateStatus.PASS,
                int(ExitCode.PASS),
                [f"{len(passed)} advisory check(s) passed; the policy requires none"],
            )
        return (
            GateStatus.UNVERIFIED,
            int(ExitCode.POLICY_FAILED),
            [*reasons, "no check passed: nothing was verified"],
        )
    if v.verified == 0:
        return (
            GateStatus.UNVERIFIED,
            int(ExitCode.POLICY_FAILED),
            [*reasons, *v.gaps(outcomes), "no required check was verified"],
        )
    if v.verified < v.required:
        return (
            GateStatus.PARTIAL,
            int(ExitCode.PASS),
            [*reasons, *v.gaps(outcomes)] or [v.headline()],
        )
    return GateStatus.PASS, int(ExitCode.PASS), [f"all {v.required} required check(s) passed"]


@dataclass(frozen=True)
class Verification:
    """How much of what the policy requires this run verified."""

    required: int
    verified: int
    not_verified: tuple[str, ...]

    def headline(self) -> str:
        return f"{self.verified} of {self.required} required checks verified"

    def gaps(self, outcomes: Sequence[CheckOutcome]) -> list[str]:
        return [
            f"{o.name}: not verified ({'deselected' if not o.selected else o.reason})"
            for o in outcomes
            if o.name in self.not_verified and (not o.selected)
        ]


def verification(outcomes: Sequence[CheckOutcome]) -> Verification:
    """Verified = ran to a verdict: a required check that failed was verified (and failed);
    only what was deselected, skipped, inconclusive or errored is "not verified"."""
    required = [o for o in outcomes if o.required]
    verified = [o for o in required if o.selected and o.result.status in (Status.PASS, Status.FAIL)]
    missing = tuple(o.name for o in required if o not in verified)
    return Verification(len(required), len(verified), missing)


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
        if o.gate is CheckDecision.ADVISORY:
            notes.append(
                f"advisory: {o.name} is {o.result.status.value} ({o.result.summary}); optional check: reported, does not gate"
            )
    left_out = [
        o.name for o in outcomes if o.gate in (CheckDecision.NOT_IN_POLICY, CheckDecision.DISABLED)
    ]
    if left_out:
        notes.append(f"not in the policy (not run, not verified): {', '.join(left_out)}")
    deselected = [o.name for o in outcomes if o.gate is CheckDecision.DESELECTED]
    if deselected:
        notes.append(
            f"not run (deselected): {', '.join(deselected)}; this run verifies only the others"
        )
    not_run = [o.name for o in outcomes if o.gate is CheckDecision.NOT_RUN]
    if not_run:
        first = next(i for i, o in enumerate(outcomes) if o.gate is CheckDecision.NOT_RUN)
        stops = [
            o.name
            for o in outcomes[:first]
            if o.required and o.gate in (CheckDecision.FAIL, CheckDecision.ERROR)
        ]
        after = (
            f"required check '{stops[0]}' failed or errored"
            if stops
            else "a required check failed or errored"
        )
        notes.append(
            f"not run (fail-fast): {', '.join(not_run)}: {after}; not verified "
            "(--no-fail-fast runs every check)"
        )
    unavailable = [
        o.name
        for o in outcomes
        if o.selected and o.gate is not CheckDecision.NOT_RUN and o.result.status is Status.SKIPPED
    ]
    if unavailable:
        notes.append(f"could not run: {', '.join(unavailable)} (see each check's reason)")
    return notes
