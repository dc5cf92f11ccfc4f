"""What a run reads, before it measures anything: the preflight of every input, output,
cache and runtime problem at once, and the description of each input (sha256 of each file
unless --no-hash) with the findings about the model pair (identical inputs, two different
models). Used by the runner (edgegate.runner), which passes its GateOptions as ``RunInputs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from edgegate.environment import InputDescription, describe_input
from edgegate.errors import EdgegateError, InputError
from edgegate.policy import Policy
from edgegate.progress import Progress
from edgegate.sanity import Finding
from edgegate.settings import RunSettings


class RunInputs(Protocol):
    """The run options these functions read (``edgegate.runner.GateOptions`` has them)."""

    @property
    def compressed(self) -> Path: ...
    @property
    def dense(self) -> Path | None: ...
    @property
    def settings(self) -> RunSettings: ...
    @property
    def hash_inputs(self) -> bool: ...
    @property
    def allow_identical(self) -> bool: ...
    @property
    def outputs(self) -> Mapping[str, str | None]: ...


def describe_inputs(
    opts: RunInputs, policy: Policy, selected: list[str], progress: Progress
) -> tuple[list[InputDescription], list[Finding]]:
    """Every input the run reads, described (sha256 of each file unless --no-hash), and the
    findings about the model pair (identical inputs, two different models)."""
    inputs = [_model_input("compressed", opts.compressed, opts, progress)]
    if opts.dense is not None:
        inputs.insert(0, _model_input("dense", opts.dense, opts, progress))
    findings = _input_findings(opts, inputs, selected)
    if policy.source and Path(policy.source).is_file():
        inputs.append(describe_input("policy", Path(policy.source), hash_files=opts.hash_inputs))
    for role, value in _data_inputs(policy, selected, opts.settings):
        if Path(value).exists():  # hub datasets (hf:...) have no local files to hash
            inputs.append(describe_input(role, Path(value), hash_files=opts.hash_inputs))
    return inputs, findings


def preflight_run(opts: RunInputs, policy: Policy, selected: list[str]) -> None:
    """Every problem the run would hit (data, outputs, cache, runtimes), at once, before the
    first measurement."""
    from edgegate import preflight

    preflight.raise_if_any(
        [
            *preflight.data_problems(policy, selected, opts.settings),
            *preflight.output_problems(opts.outputs, _inputs_read(opts, policy, selected)),
            *preflight.cache_problems(opts.settings, selected),
            *preflight.runtime_problems(
                policy, selected, opts.settings, partial(_auto_runtime, opts)
            ),
            *preflight.runtime_flag_problems(selected, opts.settings),
            *preflight.format_problems(
                policy,
                selected,
                opts.settings,
                {"dense": opts.dense, "compressed": opts.compressed},
            ),
        ]
    )


def _inputs_read(
    opts: RunInputs, policy: Policy, selected: list[str]
) -> dict[str, str | Path | None]:
    """Every file or folder the run reads: no report may be written over (or into) one."""
    from edgegate.report_paths import input_paths

    others: list[tuple[str, str | Path | None]] = [
        ("policy", policy.source if policy.source and Path(policy.source).exists() else None)
    ]
    others += _data_inputs(policy, selected, opts.settings)
    return input_paths(opts.dense, opts.compressed, others)


def _auto_runtime(opts: RunInputs, check: str, requested: str) -> str:
    """What ``runtime: auto`` will pick for these inputs (as the checks resolve it), or
    ``auto`` itself when the inputs cannot tell (missing or unreadable: reported elsewhere)."""
    from edgegate.backends.auto import resolve_pair

    try:
        return resolve_pair(opts.dense, opts.compressed, requested).runtime
    except (EdgegateError, OSError):
        return requested


def _input_findings(
    opts: RunInputs, inputs: list[InputDescription], selected: list[str]
) -> list[Finding]:
    """Identical inputs or two different models: an input error before anything is measured,
    except a null run the user asked for (--allow-identical), which is reported as such."""
    from edgegate.checkpoint import open_checkpoint
    from edgegate.preflight import input_findings

    descs = {str(d["role"]): d for d in inputs if d.get("files") is not None}
    configs: dict[str, Mapping[str, Any] | None] = {}  # config.json, or what the format maps to it
    for role, path in (("dense", opts.dense), ("compressed", opts.compressed)):
        if path is None or not path.exists():
            continue
        try:
            with open_checkpoint(path) as ck:
                configs[role] = ck.config
        except EdgegateError:
            pass  # best effort: the checks that read the checkpoint report it, with its exit code
    findings = input_findings(descs, configs)
    for f in findings:
        if f.code == "identical-inputs" and opts.allow_identical:
            continue
        raise InputError(f.message, field="DENSE COMPRESSED", hint=f.hint)
    return [
        replace(f, severity="warning", message=f"null run (--allow-identical): {f.message}")
        for f in findings
    ]


def _model_input(role: str, path: Path, opts: RunInputs, progress: Progress) -> InputDescription:
    url = opts.settings.dense_endpoint if role == "dense" else opts.settings.compressed_endpoint
    if not url:
        return describe_input(role, path, hash_files=opts.hash_inputs, progress=progress)
    from edgegate.environment import endpoint_input

    ep = endpoint_input(role, str(url))  # what the server says it is: the runtime checks score that
    if not path.exists():
        return ep
    return {
        **describe_input(role, path, hash_files=opts.hash_inputs, progress=progress),
        "base_url": ep["base_url"],
        "model": ep["model"],
        "dialect": ep["dialect"],
    }


def _data_inputs(
    policy: Policy, selected: list[str], settings: RunSettings
) -> list[tuple[str, str]]:
    """Data files the selected checks will read: (report role, path), each path once."""
    from edgegate.preflight import data_inputs

    out: list[tuple[str, str]] = []
    for _, d in data_inputs(policy, selected, settings):
        if d.value and d.value not in {v for _, v in out}:
            out.append((d.role, d.value))
    return out
