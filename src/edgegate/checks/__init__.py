"""Checks: one module per check, ``edgegate.checks.<name>``, with ``measure``/``judge`` halves
and ``run(ctx)`` (see ``edgegate.checks.base``)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import cast

from edgegate.checks.base import (
    THIS_RUN,
    CheckContext,
    CheckModule,
    CheckResult,
    Needs,
    PolicySection,
)


def load(name: str) -> CheckModule[PolicySection] | None:
    """The module of check ``name``, or None when this build does not have it."""
    module_name = f"{__name__}.{name}"
    try:
        return cast("CheckModule[PolicySection]", importlib.import_module(module_name))
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def is_sharded(name: str) -> bool:
    """True for checks whose work a sharded run splits (their measurements travel in the
    partial files); the others run whole in shard 1."""
    module = load(name)
    return bool(getattr(module, "SHARDED", False))


def needs(name: str) -> Needs[PolicySection]:
    """What check ``name`` needs from a run (its module's ``NEEDS``); a check this build lacks,
    or one registered from outside, needs nothing the runner provides for it."""
    return getattr(load(name), "NEEDS", None) or Needs()


def section(name: str, block: Mapping[str, object]) -> PolicySection:
    """Check ``name``'s policy block typed, by the parser its module declares (``SECTION``):
    the runner and ``edgegate merge`` build a check's section only this way. A check this
    build lacks, or one registered from outside, gets a section with no keys."""
    parser = getattr(load(name), "SECTION", None)
    return parser.from_policy(block) if parser is not None else PolicySection()


def run_order(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` in the order a run measures them: cheapest first (each module's
    ``NEEDS.cost``), ties in the given order. Reports keep the given order."""
    return tuple(sorted(names, key=lambda n: (needs(n).cost, names.index(n))))


def already_measured(name: str, ctx: CheckContext[PolicySection]) -> bool:
    """True when check ``name`` would measure nothing new in this run (its module's
    ``already_measured``, e.g. perplexity after the fidelity check's pass)."""
    from edgegate.errors import EdgegateError

    fn = getattr(load(name), "already_measured", None)
    try:
        return bool(fn is not None and fn(ctx))
    except EdgegateError:  # the check itself reports the problem if it runs
        return False


def run(name: str, ctx: CheckContext[PolicySection]) -> CheckResult:
    """A whole (unsharded) run of check ``name``: measure, then judge the one measurement
    against ``ctx.section``; ``edgegate merge`` calls the same ``judge`` on every shard's."""
    module = load(name)
    if module is None:
        raise ModuleNotFoundError(
            f"no check named {name!r} in this build", name=f"{__name__}.{name}"
        )
    return module.judge([(THIS_RUN, module.measure(ctx, None))], ctx.section)
