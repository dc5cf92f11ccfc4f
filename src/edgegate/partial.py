"""The partial-result file of a sharded run: its format, the fingerprint that proves shards
belong together, and reading them back.

A shard (``edgegate check --shard i/n`` or ``edgegate bbq run --shard i/n``) writes one JSON
file: ``format``/``version``, the command, ``shard: {index, count}``, a *fingerprint* of
everything that decides the results (input sha256s, the resolved policy, settings, software
versions), the measurements of the sharded checks (``checks``: per-item answers, per-chunk
NLLs; never aggregate statistics) and, from shard 1, the results of the checks that are not
split (``results``). ``load_parts`` refuses parts whose fingerprints differ, a shard missing
or given twice; ``edgegate.merge`` then judges the measurements with the checks' own
``judge``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from edgegate.errors import InputError
from edgegate.policy import Policy, ResolvedPolicy
from edgegate.results import CheckEntry, GateResult, jsonable
from edgegate.settings import RunSettings, SettingsFingerprint, Shard

if TYPE_CHECKING:
    from edgegate.environment import EnvironmentInfo, HubInput, InputDescription, InputFile

FORMAT = "edgegate-partial"
# 2: the BBQ measurement holds disambiguated items beside the ambiguous ones and, in
# sampled modes, a "null" role (the dense model with fresh seeds); a version-1 reader would
# count the disambiguated items as bias items, so it must refuse these files.
VERSION = 2
# Library versions that can change a model's answers; shards must agree on them.
_SOFTWARE = (
    "numpy",
    "tokenizers",
    "llama-cpp-python",
    "mlx",
    "mlx-lm",
    "onnxruntime",
    "transformers",
    "torch",
)


def parse_shard(text: str) -> Shard:
    """``"2/3"`` -> (2, 3)."""
    i_s, sep, n_s = text.strip().partition("/")
    try:
        i, n = int(i_s), int(n_s)
    except ValueError:
        i, n = 0, 0
    if not sep or n < 1 or not 1 <= i <= n:
        raise InputError(f"expected i/n with 1 <= i <= n (e.g. 2/3), got '{text}'", field="--shard")
    return i, n


def default_partial_name(shard: Shard) -> str:
    return f"edgegate-partial-{shard[0]}-of-{shard[1]}.json"


def software() -> dict[str, str | None]:
    """edgegate's version and the versions of the libraries that decide results."""
    from edgegate import __version__
    from edgegate.environment import library_versions

    libs = library_versions()
    return {"edgegate": __version__, **{k: libs.get(k) for k in _SOFTWARE}}


class InputIdentity(TypedDict, total=False):
    """What decides results of an input (``input_identity``): files by size and sha256, a
    model behind a server by what the server says it is, a hub dataset by its name."""

    role: str
    kind: str
    base_url: str | None
    model: str | None
    dialect: str | None
    path: str  # a hub dataset
    total_bytes: int
    files: list[InputFile]


_SERVED: tuple[Literal["base_url", "model", "dialect"], ...] = ("base_url", "model", "dialect")


def input_identity(desc: InputDescription | HubInput) -> InputIdentity:
    """The part of an input description that decides results: contents, not where the
    file lies on this machine (shards may run in different checkouts)."""
    if desc["kind"] == "hub":  # a dataset hub name: the name is all there is
        return {"role": desc["role"], "kind": desc["kind"], "path": desc["path"]}
    if desc["kind"] == "endpoint":
        ident: InputIdentity = {"role": desc["role"], "kind": desc["kind"]}
        for key in _SERVED:
            ident[key] = desc.get(key)
        return ident
    files: list[InputFile] = [
        {"path": f["path"], "bytes": f["bytes"], "sha256": f.get("sha256")}
        for f in desc.get("files", [])
    ]
    ident = {
        "role": desc["role"],
        "kind": desc["kind"],
        "total_bytes": desc["total_bytes"],
        "files": files,
    }
    for key in _SERVED:
        if key in desc:
            ident[key] = desc[key]
    return ident


class RunOptions(TypedDict):
    strict: bool
    only: list[str]
    skip: list[str]
    claims: dict[str, float]  # --claim
    options: SettingsFingerprint


class Fingerprint(TypedDict):
    """Everything that decides a shard's results of ``edgegate check`` (``fingerprint``)."""

    policy: ResolvedPolicy
    inputs: list[InputIdentity]
    settings: RunOptions
    software: dict[str, str | None]
    shard_count: int


def fingerprint(
    policy: Policy,
    strict: bool,
    only: Sequence[str],
    skip: Sequence[str],
    cli_claims: Mapping[str, float],
    settings: RunSettings,
    inputs: Sequence[InputDescription],
    shard_count: int,
) -> Fingerprint:
    """Everything that decides a shard's results of ``edgegate check``; shards of one run
    must agree on all of it."""
    pol = policy.strict() if strict else policy
    return {
        "policy": pol.to_dict(),
        "inputs": [input_identity(d) for d in inputs],
        "settings": {
            "strict": strict,
            "only": list(only),
            "skip": list(skip),
            "claims": dict(cli_claims),
            "options": settings.fingerprint(),
        },
        "software": software(),
        "shard_count": shard_count,
    }


class GateBlock(TypedDict):
    """What a shard of ``edgegate check`` records of its run for the merged report."""

    claims: dict[str, float]
    claim_sources: dict[str, str]
    inputs: list[InputDescription]
    environment: EnvironmentInfo
    argv: list[str]
    started_at: str


class CheckPayload(TypedDict):
    """The body of a partial file of ``edgegate check`` (``check_payload``)."""

    gate: GateBlock
    results: dict[str, CheckEntry]  # check -> its result (not split, or could not measure)
    # sharded check -> this shard's measurement (bbq.measurement.ShardMeasurement: the BBQ one
    # imports this module, so the union cannot be named here)
    checks: dict[str, Any]


def check_payload(
    gate: GateResult, shard: Shard, measured: Mapping[str, Any], sharded: Sequence[str]
) -> CheckPayload:
    """The partial file's body for one shard of ``edgegate check``: the ``sharded`` checks'
    measurements (or, for one that could not measure, its result: why), and from shard 1
    the results of every other check."""
    carried: dict[str, CheckEntry] = {}
    for o in gate.outcomes:
        if not o.selected:
            continue
        if o.name in sharded:
            if (
                o.name not in measured
            ):  # the check could not measure (missing runtime, error): keep why
                carried[o.name] = o.result.to_dict()
        elif shard[0] == 1:
            carried[o.name] = o.result.to_dict()
    return {
        "gate": {
            "claims": dict(gate.claims),
            "claim_sources": dict(gate.claim_sources),
            "inputs": list(gate.inputs),
            "environment": gate.environment.copy(),
            "argv": list(gate.argv),
            "started_at": gate.started_at,
        },
        "results": carried,
        "checks": {k: measured[k] for k in sharded if k in measured},
    }


def write_partial(
    path: str | Path,
    *,
    command: str,
    shard: Shard,
    fingerprint: Mapping[str, Any],
    payload: Mapping[str, Any],
) -> Path:
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "command": command,
        "shard": {"index": shard[0], "count": shard[1]},
        "fingerprint": jsonable(dict(fingerprint)),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **jsonable(dict(payload)),
    }
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, out)  # a killed shard never leaves a half-written partial
    except OSError as exc:
        raise InputError(
            f"cannot write the partial file: {exc.strerror}", path=out, field="--partial-out"
        ) from exc
    return out


def read_partial(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    from edgegate import safe_json  # depth/size guard: a hostile partial is exit 2, file named

    # partials are written with allow_nan=False, so NaN/Infinity in one is tampering
    try:
        doc = safe_json.load(
            p, hint="pass files written by --shard i/n", allow_nan=False, expect_object=False
        )
    except InputError as exc:
        raise InputError(f"not a JSON partial file: {exc.message}", path=p, hint=exc.hint) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(
            "not an edgegate partial file",
            path=p,
            field="format",
            hint="pass files written by --shard i/n",
        )
    if doc.get("version") != VERSION:
        raise InputError(
            f"partial file version {doc.get('version')!r}, this edgegate reads {VERSION}",
            path=p,
            field="version",
            hint="re-run the shards with this edgegate version",
        )
    sh = doc.get("shard")
    if not (
        isinstance(sh, dict)
        and all(type(sh.get(k)) is int for k in ("index", "count"))
        and 1 <= sh["index"] <= sh["count"]
    ):
        raise InputError("expected {index: i, count: n} with 1 <= i <= n", path=p, field="shard")
    for key, kind in (("command", str), ("fingerprint", dict), ("checks", dict)):
        if not isinstance(doc.get(key), kind):
            raise InputError(
                f"missing or not a {kind.__name__}",
                path=p,
                field=key,
                hint="pass files written by --shard i/n",
            )
    return doc


def first_difference(a: Any, b: Any, where: str = "") -> tuple[str, Any, Any] | None:
    """The first (dotted path, a value, b value) where two JSON values differ."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b), key=str):
            d = first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = first_difference(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    same = a == b or (
        isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    )
    return None if same else (where, a, b)


def _short(v: Any) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 60 else s[:57] + "..."


def differ(a_name: str, b_name: str, field: str, a: Any, b: Any) -> InputError:
    d = first_difference(a, b, field) or (field, a, b)
    return InputError(
        f"cannot merge: {a_name} and {b_name} differ in {d[0]} ({_short(d[1])} vs {_short(d[2])})",
        field=d[0],
        hint="every shard must run the same inputs, policy, seed and settings",
    )


@dataclass(frozen=True)
class Parts:
    names: tuple[str, ...]  # as given on the command line, in shard order
    docs: tuple[dict[str, Any], ...]
    count: int

    @property
    def first(self) -> dict[str, Any]:
        return self.docs[0]


def load_parts(paths: Sequence[str | Path]) -> Parts:
    """Read and cross-check partial files: same command and fingerprint, each shard once,
    none missing. Raises InputError (exit 2) naming the files and the field at fault."""
    if not paths:
        raise InputError(
            "no partial files given", hint="edgegate merge edgegate-partial-*.json --policy FILE"
        )
    docs = [(str(p), read_partial(p)) for p in paths]
    name0, doc0 = docs[0]
    n = int(doc0["shard"]["count"])
    seen: dict[int, str] = {}
    for name, doc in docs:
        for key in ("command", "shard.count", "fingerprint"):
            a: Any = doc0
            b: Any = doc
            for part in key.split("."):
                a, b = a.get(part), b.get(part)
            if first_difference(a, b, key):
                raise differ(name0, name, key, a, b)
        i = int(doc["shard"]["index"])
        if i in seen:
            raise InputError(
                f"cannot merge: {seen[i]} and {name} are both shard {i}/{n} (duplicate shard)",
                field="shard.index",
                hint="pass each shard's partial file once",
            )
        seen[i] = name
    missing = [i for i in range(1, n + 1) if i not in seen]
    if missing:
        raise InputError(
            f"cannot merge: shard(s) {', '.join(f'{i}/{n}' for i in missing)} missing "
            f"(have {', '.join(f'{i}/{n}' for i in sorted(seen))}: {', '.join(seen[i] for i in sorted(seen))})",
            field="shard.index",
            hint="run the missing shards, then merge all n partial files",
        )
    order = sorted(range(len(docs)), key=lambda k: int(docs[k][1]["shard"]["index"]))
    return Parts(tuple(docs[k][0] for k in order), tuple(docs[k][1] for k in order), n)
