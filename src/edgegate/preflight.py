"""Fail fast: every problem a run would hit, found before the first measurement.

A missing BBQ folder used to surface after speed and perplexity had run (minutes on a real
model), an unwritable cache as a bare ``FileNotFoundError``. ``preflight`` looks at the data,
the output paths, the cache and (where the policy will not tolerate a skip) the runtimes, and
raises one ``InputError`` that lists every problem at once: the user fixes them in one go.

The sanity of the inputs (identical, two different models) is checked here too, since it
needs only headers and the sha256 the runner computes anyway.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgegate.backends.auto import AUTO
from edgegate.checks import needs, section
from edgegate.checks.base import DataInput, RuntimeUse
from edgegate.errors import MAX_MESSAGE_CHARS, InputError, excerpt
from edgegate.policy import Policy
from edgegate.sanity import Finding, identical_inputs, shape_mismatches
from edgegate.settings import RunSettings, default_cache_dir

if TYPE_CHECKING:
    from edgegate.environment import InputDescription


@dataclass(frozen=True)
class Problem:
    where: str  # a flag, a policy field or a path
    message: str

    def line(self) -> str:
        return f"{self.where}: {self.message}"


def raise_if_any(problems: Sequence[Problem]) -> None:
    if not problems:
        return
    if len(problems) == 1:
        p = problems[0]
        raise InputError(p.message, field=p.where)
    # Every problem must survive the cap on a message's length (errors.MAX_MESSAGE_CHARS): each
    # gets an equal share, long paths cut in the middle, so no flag or field is lost.
    head = f"{len(problems)} problems, nothing was measured: "
    share = max(40, (MAX_MESSAGE_CHARS - len(head)) // len(problems) - 6)
    listed = "; ".join(
        f"({i}) {excerpt(p.line(), share, quote=False)}" for i, p in enumerate(problems, 1)
    )
    raise InputError(head + listed)


def data_inputs(
    policy: Policy, selected: Sequence[str], settings: RunSettings
) -> list[tuple[str, DataInput]]:
    """(check, data input) for every file or folder the selected checks will read besides the
    models, as each check declares them (``NEEDS.data``)."""
    out = []
    # a check that reads another's data by default comes after it: a path both read is named
    # after its owner in the report's inputs
    for name in sorted(selected, key=lambda n: needs(n).shares_data_of is not None):
        declared = needs(name).data
        if declared is not None and name in policy.checks:
            typed = section(name, policy.checks[name].section)
            out += [(name, d) for d in declared(typed, settings, policy.base_dir)]
    return out


def data_problems(policy: Policy, selected: Sequence[str], settings: RunSettings) -> list[Problem]:
    """Data the selected checks will read that is not given, not there, or not a regular file
    (a FIFO or device would block or never end when the check reads it); one problem per path."""
    out: list[Problem] = []
    seen: set[str] = set()
    for _, d in data_inputs(policy, selected, settings):
        if d.value is None:
            if d.missing:
                out.append(Problem(d.where, d.missing))
            continue
        if d.value.startswith("hf:") or d.value in seen:
            continue
        p = Path(d.value)
        if not p.exists():
            out.append(Problem(d.where, f"{d.label} not found: {d.value}"))
        elif d.kind == "file" and not p.is_file():
            out.append(Problem(d.where, f"{d.label} is not a regular file: {d.value}"))
        else:
            continue
        seen.add(d.value)
    return out


def output_problems(
    outputs: Mapping[str, str | None], inputs: Mapping[str, str | Path | None] | None = None
) -> list[Problem]:
    """Report destinations: one report per stream and per file, none of them an input (or
    inside one), writable files."""
    from edgegate import report_paths

    out: list[Problem] = []
    clashes = report_paths.problems(outputs, inputs or {})
    out += [Problem(flag, msg) for flag, msg in clashes]
    refused = {flag for flag, _ in clashes}
    outputs = {flag: dest for flag, dest in outputs.items() if flag not in refused}
    to_stdout = [flag for flag, dest in outputs.items() if dest == "-"]
    if len(to_stdout) > 1:
        out.append(
            Problem(
                to_stdout[1],
                f"only one report can go to stdout ('-'), and {to_stdout[0]} already does; write the others to files",
            )
        )
    for flag, dest in outputs.items():
        if not dest or dest == "-":
            continue
        p = Path(dest)
        if p.is_dir():
            out.append(Problem(flag, f"{dest} is a directory; give a file name"))
        elif not p.parent.exists() and not _creatable(p.parent):
            out.append(Problem(flag, f"cannot create the folder {p.parent}"))
        elif p.parent.exists() and not os.access(p.parent, os.W_OK):
            out.append(Problem(flag, f"cannot write to {p.parent}"))
    return out


def _creatable(folder: Path) -> bool:
    parent = next((q for q in folder.parents if q.exists()), None)
    return parent is not None and parent.is_dir() and os.access(parent, os.W_OK)


def cache_problems(settings: RunSettings, selected: Sequence[str]) -> list[Problem]:
    if all(needs(n).runtime is RuntimeUse.NONE for n in selected):
        return []  # the static checks cache nothing
    where = Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()
    flag = "--cache-dir" if settings.cache_dir else "EDGEGATE_CACHE"
    if where.exists() and not where.is_dir():
        return [Problem(flag, f"cache {where} is a file, not a folder")]
    if where.exists():
        return (
            []
            if os.access(where, os.W_OK)
            else [Problem(flag, f"cache folder {where} is not writable")]
        )
    return [] if _creatable(where) else [Problem(flag, f"cannot create the cache folder {where}")]


def runtime_problems(
    policy: Policy, selected: Sequence[str], settings: RunSettings, fmt_runtime: Any = None
) -> list[Problem]:
    """Runtimes a selected check needs that are not installed. Only where the policy would turn
    the resulting skip into a failure (fail_on_skipped, --strict): elsewhere a missing runtime
    is a reported skip, not an error. ``fmt_runtime(check, runtime)`` resolves ``auto`` (the
    runtime the inputs' format ships for); unresolved, ``auto`` is left to the check."""
    from edgegate.backends import RUNTIMES, available

    if not policy.fail_on_skipped or settings.endpoints:
        return []
    out: list[Problem] = []
    for name in selected:
        cp = policy.checks.get(name)
        if cp is None or not cp.required:
            continue
        for rt in wanted_runtimes(name, cp.section, settings):
            if rt == "auto" and fmt_runtime is not None:
                rt = fmt_runtime(name, rt)
            spec = RUNTIMES.get(str(rt))  # the registry names each runtime's modules and extra
            if spec is not None and spec.local and not available(spec.name):
                out.append(
                    Problem(
                        f"checks.{name}.runtime",
                        f"runtime '{rt}' is not installed (pip install 'edgegate[{spec.extra}]'); the policy fails a required check that cannot run",
                    )
                )
    return out


def input_findings(
    descs: Mapping[str, InputDescription], configs: Mapping[str, Mapping[str, Any] | None]
) -> list[Finding]:
    """Identical inputs and different models, from the inputs' descriptions and configs."""
    out = []
    if "dense" in descs and "compressed" in descs:
        same = identical_inputs(descs["dense"], descs["compressed"])
        if same:
            out.append(same)
    diff = shape_mismatches(configs.get("dense"), configs.get("compressed"))
    if diff:
        out.append(diff)
    return out


def check_runtime(name: str, section: Mapping[str, Any], settings: RunSettings) -> str:
    """The runtime a check that compares both models on one runtime will use: ``--runtime``
    (one name) over the policy's."""
    if settings.runtimes and needs(name).runtime is RuntimeUse.ONE:
        return settings.runtimes[0]
    return str(section.get("runtime") or AUTO)


def wanted_runtimes(name: str, section: Mapping[str, Any], settings: RunSettings) -> list[str]:
    """The runtimes check ``name`` will run on (``auto`` unresolved); none for a static check."""
    use = needs(name).runtime
    if use is RuntimeUse.SEVERAL:
        return [str(r) for r in (settings.runtimes or section.get("runtimes") or [AUTO])]
    return [check_runtime(name, section, settings)] if use is RuntimeUse.ONE else []


def runtime_flag_problems(selected: Sequence[str], settings: RunSettings) -> list[Problem]:
    """``--runtime`` reaches every runtime check; perplexity and BBQ compare two models on one
    runtime, so several names are refused rather than silently used by speed alone."""
    rts = settings.runtimes or ()
    users = [n for n in selected if needs(n).runtime is RuntimeUse.ONE]
    if len(rts) > 1 and users and not settings.endpoints:
        return [
            Problem(
                "--runtime",
                f"{', '.join(rts)} names {len(rts)} runtimes, but {' and '.join(users)} run(s) on "
                "one: pass one runtime, or time several with `--only speed`",
            )
        ]
    return []


def format_problems(
    policy: Policy,
    selected: Sequence[str],
    settings: RunSettings,
    models: Mapping[str, Path | None],
) -> list[Problem]:
    """A runtime named for a check (policy or --runtime) that cannot open an input's format at
    all: decidable from the files' headers, so it is refused before the first measurement."""
    from edgegate.backends.auto import LOADS
    from edgegate.checkpoint.detect import detect_format
    from edgegate.errors import EdgegateError

    if settings.endpoints:
        return []
    formats = {}
    for role, path in models.items():
        try:
            formats[role] = detect_format(path) if path is not None and path.exists() else None
        except (EdgegateError, OSError):
            formats[role] = None  # unreadable: the checks report it with its own message
    out: list[Problem] = []
    for name in selected:
        cp = policy.checks.get(name)
        # an advisory check that cannot run is a reported skip; a required one would lose the run
        use = needs(name).runtime
        if cp is None or use is RuntimeUse.NONE or not (cp.required or settings.runtimes):
            continue
        wanted = wanted_runtimes(name, cp.section, settings)
        where = (
            "--runtime"
            if settings.runtimes
            else f"checks.{name}.runtime" + ("s" if use is RuntimeUse.SEVERAL else "")
        )
        refused = []
        for rt in wanted:
            loads = LOADS.get(str(rt))
            bad = [
                f"{role} is {fmt.value}"
                for role, fmt in formats.items()
                if loads is not None and fmt is not None and fmt not in loads
            ]
            if bad:
                refused.append(f"runtime '{rt}' cannot load these inputs ({'; '.join(bad)})")
        if refused and (
            use is not RuntimeUse.SEVERAL or len(refused) == len(wanted)
        ):  # timing what it can
            can = ", ".join(
                sorted(
                    r
                    for r, fs in LOADS.items()
                    if all(f in fs for f in formats.values() if f is not None)
                )
            )
            out.append(
                Problem(
                    where,
                    f"{name}: {'; '.join(refused)}; use {can or 'one runtime per format'}, or auto",
                )
            )
    return out
