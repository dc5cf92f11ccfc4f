"""The YAML grid spec of `edgegate study`: one dense model, many compressed variants, one
policy, one BBQ sample and one perplexity text for all of them.

    version: 1
    name: gemma3-270m
    policy: ../policies/strict.yaml   # a file (relative to this spec) or a preset name
    models_dir: /work/models          # variant paths are relative to it (--models-dir wins)
    out: results/gemma3-270m          # relative to this spec (--out wins)
    bbq_data: ../../shared/bbq/data   # relative to this spec (--bbq-data wins)
    threads: 2
    seed: 0
    disambig_items: 600               # also score N disambiguated items: accuracy, s_DIS (0: off)
    dense: {path: gguf/gemma3-270m-f16.gguf, label: dense}
    variants:
      - {name: wanda50, path: gguf/gemma3-270m-wanda50-f16.gguf, label: Wanda 50%,
         group: pruning, claims: {sparsity: 0.5}}

A spec may name extra *passes*: the same variants through another policy into another folder,
run with ``edgegate study SPEC --pass NAME``. Their reports add columns to the main table
without re-running the main gate (e.g. a fidelity pass added after the study was measured):

    passes:
      fidelity: {policy: policy-fidelity.yaml, out: results/gemma3-270m/fidelity}

A variant may set ``allow_identical: true``: a deliberate null run of the dense model against
itself (otherwise identical inputs are refused, as by ``edgegate check``).

Relative paths resolve against the spec file's folder, except variant and dense paths, which
resolve against ``models_dir`` (itself relative to the spec when relative).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgegate.errors import InputError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOP = {
    "version",
    "name",
    "description",
    "policy",
    "models_dir",
    "out",
    "bbq_data",
    "threads",
    "seed",
    "disambig_items",
    "dense",
    "variants",
    "passes",
}
_PASS = {"policy", "out"}
_VARIANT = {"name", "path", "label", "group", "claims", "note", "allow_identical"}


@dataclass(frozen=True)
class Variant:
    name: str
    path: Path
    label: str
    group: str = ""
    claims: Mapping[str, float] = field(default_factory=dict)
    note: str = ""
    allow_identical: bool = False  # a deliberate null run: this "variant" is the dense model itself


@dataclass(frozen=True)
class Pass:
    """Another policy over the same variants, reported in its own folder."""

    name: str
    policy: str  # a resolved file path or a preset name
    out: Path


@dataclass(frozen=True)
class StudySpec:
    source: Path
    name: str
    description: str
    policy: str  # a resolved file path or a preset name
    dense: Variant
    variants: tuple[Variant, ...]
    out: Path
    bbq_data: Path | None
    threads: int | None
    seed: int
    disambig_items: int
    passes: tuple[Pass, ...] = ()

    def for_pass(self, name: str) -> StudySpec:
        """This study run under pass ``name``: its policy and folder, no extra disambiguated
        scoring (a pass adds the checks of its policy, not the main table's BBQ columns)."""
        for p in self.passes:
            if p.name == name:
                return replace(self, policy=p.policy, out=p.out, disambig_items=0, passes=())
        raise InputError(
            f"no pass named {name!r}",
            path=self.source,
            field="passes",
            hint=f"known: {', '.join(p.name for p in self.passes) or '(none: add a passes: mapping)'}",
        )

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise InputError(
            f"no variant named {name!r}",
            path=self.source,
            field="variants",
            hint=f"known: {', '.join(v.name for v in self.variants)}",
        )


def _fail(msg: str, path: Path, fld: str, hint: str | None = None) -> InputError:
    return InputError(msg, path=path, field=fld, hint=hint)


def _int(
    data: Mapping[str, Any], key: str, default: int | None, path: Path, minimum: int
) -> int | None:
    v = data.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise _fail(f"'{key}' must be an integer >= {minimum}, got {v!r}", path, key)
    return v


def _variant(raw: Any, where: str, path: Path, models_dir: Path) -> Variant:
    if not isinstance(raw, Mapping):
        raise _fail(
            "expected a mapping with name and path",
            path,
            where,
            "e.g. {name: wanda50, path: gguf/x.gguf}",
        )
    unknown = sorted(map(str, set(raw) - _VARIANT))  # keys may be numbers (`1: x`)
    if unknown:
        raise _fail(
            f"unknown key(s) {', '.join(unknown)}",
            path,
            where,
            f"known: {', '.join(sorted(_VARIANT))}",
        )
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(
            f"'name' must be a short slug (letters, digits, _ . -), got {name!r}",
            path,
            f"{where}.name",
        )
    p = raw.get("path")
    if not isinstance(p, str) or not p:
        raise _fail("'path' must be a model file or folder", path, f"{where}.path")
    claims = raw.get("claims") or {}
    if not isinstance(claims, Mapping):
        raise _fail("'claims' must be a mapping such as {sparsity: 0.5}", path, f"{where}.claims")
    allow_identical = raw.get("allow_identical", False)
    if not isinstance(allow_identical, bool):
        raise _fail(
            f"'allow_identical' must be true or false, got {allow_identical!r}",
            path,
            f"{where}.allow_identical",
        )
    from edgegate.claims import parse_claim

    parsed = dict(parse_claim(f"{k}={v}") for k, v in claims.items())
    return Variant(
        name=name,
        path=(models_dir / p).expanduser(),
        label=str(raw.get("label") or name),
        group=str(raw.get("group") or ""),
        claims=parsed,
        note=str(raw.get("note") or ""),
        allow_identical=allow_identical,
    )


# The policy loader's messages, reworded for a study spec (data such as a key is left alone).
_POLICY_WORDS = (
    ("in policy files", "in study specs"),
    ("policy is ", "study spec is "),
    ("a policy may have", "a study spec may have"),
    ("policy file is empty", "study spec is empty"),
)


def _read_yaml(src: Path) -> Mapping[Any, Any]:
    """The spec through the policy loader's guards: a small regular file (no FIFO, no
    /dev/zero), no YAML aliases (a "billion laughs" hung the plain loader), no duplicate or
    unhashable keys, bounded nesting, huge integers refused."""
    from edgegate.errors import PolicyError
    from edgegate.policy import MAX_POLICY_BYTES, _load_yaml
    from edgegate.safe_read import read_text

    if not src.exists() and not src.is_symlink():
        raise InputError(
            "study spec not found", path=src, hint="pass a YAML study spec (see studies/)"
        )
    text = read_text(src, max_bytes=4 * MAX_POLICY_BYTES, what="study spec")
    try:
        data, _ = _load_yaml(text, str(src))
    except PolicyError as e:  # the same rules; the messages name a policy
        message = e.message
        for theirs, ours in _POLICY_WORDS:
            message = message.replace(theirs, ours)
        raise InputError(message, path=src) from None
    return data


def load_spec(
    path: str | Path,
    *,
    models_dir: Path | None = None,
    out: Path | None = None,
    bbq_data: Path | None = None,
    policy: str | None = None,
    disambig_items: int | None = None,
) -> StudySpec:
    """Read and validate a study spec; overrides come from the command line."""
    src = Path(path)
    data = _read_yaml(src)
    unknown = sorted(map(str, set(data) - _TOP))
    if unknown:
        raise _fail(
            f"unknown key(s) {', '.join(unknown)}",
            src,
            "(top)",
            f"known: {', '.join(sorted(_TOP))}",
        )
    if data.get("version") != 1:
        raise _fail(f"'version' must be 1, got {data.get('version')!r}", src, "version")
    base = src.resolve().parent

    def rel(v: Any, key: str) -> Path:
        if not isinstance(v, str) or not v:
            raise _fail(f"'{key}' must be a path", src, key)
        p = Path(v).expanduser()
        return p if p.is_absolute() else base / p

    mdir = models_dir if models_dir is not None else rel(data.get("models_dir", "."), "models_dir")
    pol = data.get("policy")
    if not isinstance(pol, str) or not pol:
        raise _fail(
            "'policy' must be a policy file or preset name", src, "policy", "e.g. policy: strict"
        )
    pol_path = str(rel(pol, "policy")) if ("/" in pol or pol.endswith((".yaml", ".yml"))) else pol
    variants_raw = data.get("variants")
    if not isinstance(variants_raw, list) or not variants_raw:
        raise _fail("'variants' must be a non-empty list", src, "variants")
    variants = tuple(_variant(v, f"variants[{i}]", src, mdir) for i, v in enumerate(variants_raw))
    names = [v.name for v in variants]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _fail(f"duplicate variant name(s) {', '.join(dup)}", src, "variants")
    dense_raw = data.get("dense")
    if isinstance(dense_raw, str):
        dense_raw = {"path": dense_raw}
    if isinstance(dense_raw, Mapping):
        dense_raw = {"name": "dense", **dense_raw}
    dense = _variant(dense_raw, "dense", src, mdir)
    passes = _passes(data.get("passes"), src, rel)
    bbq = (
        bbq_data
        if bbq_data is not None
        else (rel(data["bbq_data"], "bbq_data") if data.get("bbq_data") else None)
    )
    return StudySpec(
        source=src,
        name=str(data.get("name") or src.stem),
        description=str(data.get("description") or ""),
        policy=policy or pol_path,
        dense=dense,
        variants=variants,
        out=out if out is not None else rel(data.get("out", f"results/{src.stem}"), "out"),
        bbq_data=bbq,
        threads=_int(data, "threads", None, src, 1),
        seed=_int(data, "seed", 0, src, 0) or 0,
        disambig_items=disambig_items
        if disambig_items is not None
        else (_int(data, "disambig_items", 0, src, 0) or 0),
        passes=passes,
    )


def _passes(raw: Any, src: Path, rel: Any) -> tuple[Pass, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise _fail(
            "'passes' must map a name to {policy, out}",
            src,
            "passes",
            "e.g. passes: {fidelity: {policy: policy-fidelity.yaml, out: results/x/fidelity}}",
        )
    out = []
    for name, body in raw.items():
        where = f"passes.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise _fail(
                f"a pass name must be a short slug (letters, digits, _ . -), got {name!r}",
                src,
                "passes",
            )
        if not isinstance(body, Mapping) or not {"policy", "out"} <= set(body):
            raise _fail(
                "a pass needs 'policy' and 'out'",
                src,
                where,
                "e.g. {policy: policy-fidelity.yaml, out: results/x/fidelity}",
            )
        unknown = sorted(map(str, set(body) - _PASS))
        if unknown:
            raise _fail(
                f"unknown key(s) {', '.join(unknown)}",
                src,
                where,
                f"known: {', '.join(sorted(_PASS))}",
            )
        pol = body["policy"]
        if not isinstance(pol, str) or not pol:
            raise _fail("'policy' must be a policy file or preset name", src, f"{where}.policy")
        pol_path = (
            str(rel(pol, f"{where}.policy"))
            if ("/" in pol or pol.endswith((".yaml", ".yml")))
            else pol
        )
        out.append(Pass(name=name, policy=pol_path, out=rel(body["out"], f"{where}.out")))
    return tuple(out)
