"""Sharded runs: which shard scores which BBQ item, and the partial-result files shards write.

``--shard i/n`` splits the work *after* the seeded stratified sample is drawn: every shard
draws the very same sample and keeps the items whose stable hash (sha256 of the item uid)
falls in its bucket, so the union of the n shards is exactly the unsharded item set and no
item is scored twice. Each shard writes a partial file with per-item answers (never
aggregate statistics) and a *fingerprint* of everything that decides the answers: input
sha256s, the resolved policy, seed, settings, backend identity, software versions.
``edgegate merge`` refuses parts whose fingerprints differ, and recomputes the verdicts with
the same aggregation code a single run uses (``edgegate.checks.bbq.result_from_answers``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgegate.bbq.dataset import BBQItem
from edgegate.bbq.metrics import Answer
from edgegate.bbq.targets import Targets
from edgegate.checks.base import CheckResult, Interval, Status, Verdict, _jsonable
from edgegate.errors import InputError

FORMAT = "edgegate-partial"
VERSION = 1
# Library versions that can change a model's answers; shards must agree on them.
_SOFTWARE = ("numpy", "tokenizers", "llama-cpp-python", "mlx", "mlx-lm", "onnxruntime")

Shard = tuple[int, int]  # (i, n), 1 <= i <= n


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


def shard_of(key: str, n: int) -> int:
    """The 1-based shard that owns ``key``: stable across machines, Python versions and runs
    (not ``hash()``, which is salted per process)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def shard_items(items: Sequence[BBQItem], shard: Shard) -> list[BBQItem]:
    i, n = shard
    return [it for it in items if shard_of(it.uid, n) == i]


# ------------------------------------------------------------------ BBQ payload


def _item_dict(it: BBQItem, t: Targets) -> dict[str, Any]:
    return {**asdict(it), "targets": asdict(t)}


def _item_from(d: Mapping[str, Any]) -> tuple[BBQItem, Targets]:
    fields = {k: v for k, v in d.items() if k != "targets"}
    item = BBQItem(
        **{**fields, "answers": tuple(fields["answers"]),
           "answer_info": tuple(tuple(p) for p in fields["answer_info"]),
           "stereotyped_groups": tuple(fields["stereotyped_groups"])}
    )
    return item, Targets(**d["targets"])


def bbq_partial(
    items: Sequence[BBQItem],
    run_items: Sequence[BBQItem],
    targets: Mapping[str, Targets],
    info: Mapping[str, Any],
    cfg: Any,
    pol: Mapping[str, Any],
    answers: Mapping[str, Sequence[Answer]],
    duration_s: float,
) -> dict[str, Any]:
    """What one shard of the BBQ check records: the whole sample's uids (so merge can prove
    the shards cover it exactly), this shard's items with their targets, and every answer."""
    uids = [it.uid for it in items]
    return {
        "sample": uids,
        "sample_sha256": hashlib.sha256("\n".join(uids).encode()).hexdigest(),
        "items": [_item_dict(it, targets[it.uid]) for it in run_items],
        "answers": {role: [[a.uid, a.seed, a.rotation, a.choice, a.detail] for a in ans] for role, ans in answers.items()},
        "data": _jsonable(dict(info)),
        "config": _jsonable(asdict(cfg)),
        "policy": _jsonable(dict(pol)),
        "duration_s": duration_s,
    }


def merge_bbq(parts: Sequence[tuple[str, Mapping[str, Any]]]) -> CheckResult:
    """Recombine the BBQ payloads of all shards (already checked to share one fingerprint)
    into the check result a single run would give."""
    from edgegate.bbq.scoring import ScoreConfig
    from edgegate.checks.bbq import result_from_answers

    first_name, first = parts[0]
    for name, p in parts[1:]:
        for key in ("sample_sha256", "config", "policy", "data"):
            if p[key] != first[key]:
                raise differ(first_name, name, f"checks.bbq.{key}", first[key], p[key])
    owner: dict[str, str] = {}
    items: dict[str, BBQItem] = {}
    targets: dict[str, Targets] = {}
    # "null": the dense model with fresh seeds (sampled modes), when the run scored one
    answers: dict[str, dict[tuple[str, int, int], Answer]] = {r: {} for r in ("dense", "compressed", "null") if r in first["answers"]}
    for name, p in parts:
        for d in p["items"]:
            it, t = _item_from(d)
            if it.uid in owner:
                raise InputError(
                    f"cannot merge: item {it.uid} is in both {owner[it.uid]} and {name} (overlapping shards)",
                    field="checks.bbq.items", hint="pass each shard's partial file once",
                )
            owner[it.uid], items[it.uid], targets[it.uid] = name, it, t
        for role in answers:
            for uid, seed, rot, choice, detail in p["answers"][role]:
                answers[role][(uid, seed, rot)] = Answer(uid, seed, rot, choice, detail)
    sample = list(first["sample"])
    missing = [u for u in sample if u not in items]
    extra = sorted(set(items) - set(sample))
    if missing or extra:
        what = f"{len(missing)} sampled item(s) have no answers (e.g. {missing[0]})" if missing else f"item {extra[0]} is not in the sample"
        raise InputError(f"cannot merge: {what}", field="checks.bbq.items", hint="merge every shard of the same run")
    cfg = ScoreConfig(**first["config"])
    ordered = [items[u] for u in sample]
    keys = cfg.keys(ordered)
    by_role: dict[str, list[Answer]] = {}
    for role, got in answers.items():
        lost = [k for k in keys if k not in got]
        if lost:
            raise InputError(f"cannot merge: {role} answers missing for {lost[0][0]}", field=f"checks.bbq.answers.{role}")
        by_role[role] = [got[k] for k in keys]
    duration = sum(float(p["duration_s"]) for _, p in parts)
    return result_from_answers(ordered, targets, first["data"], cfg, first["policy"], by_role, duration)


# ------------------------------------------------------------------ partial files


def software() -> dict[str, Any]:
    from edgegate import __version__
    from edgegate.environment import library_versions

    libs = library_versions()
    return {"edgegate": __version__, **{k: libs.get(k) for k in _SOFTWARE}}


def input_identity(desc: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an input description that decides results: contents, not where the
    file lies on this machine (shards may run in different checkouts)."""
    if desc.get("kind") == "endpoint":
        return {k: desc.get(k) for k in ("role", "kind", "base_url", "model", "dialect")}
    if desc.get("kind") == "hub":  # a dataset hub name: the name is all there is
        return {k: desc.get(k) for k in ("role", "kind", "path")}
    files = [{"path": f["path"], "bytes": f["bytes"], "sha256": f.get("sha256")} for f in desc.get("files", [])]
    ident = {"role": desc.get("role"), "kind": desc.get("kind"), "total_bytes": desc.get("total_bytes"), "files": files}
    return {**ident, **{k: desc[k] for k in ("base_url", "model", "dialect") if k in desc}}


def endpoint_input(role: str, url: str, timeout: float = 60.0) -> dict[str, Any]:
    """Describe a model behind a server by what the server says it is (base URL, model id,
    dialect), as the report's inputs and the shard fingerprint record it."""
    from edgegate.backends.openai_backend import OpenAIBackend

    be = OpenAIBackend(url, timeout=timeout, max_retries=2, n_ctx=2048)  # n_ctx: unused here
    try:
        info = be.info()
    finally:
        be.close()
    return {"role": role, "path": url, "kind": "endpoint", "format": None, "total_bytes": 0, "files": [],
            "base_url": info.get("base_url"), "model": info.get("model"), "dialect": info.get("dialect")}


def write_partial(
    path: str | Path, *, command: str, shard: Shard, fingerprint: Mapping[str, Any], payload: Mapping[str, Any]
) -> Path:
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "command": command,
        "shard": {"index": shard[0], "count": shard[1]},
        "fingerprint": _jsonable(dict(fingerprint)),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **_jsonable(dict(payload)),
    }
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, out)  # a killed shard never leaves a half-written partial
    except OSError as exc:
        raise InputError(f"cannot write the partial file: {exc.strerror}", path=out, field="--partial-out") from exc
    return out


def read_partial(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read the partial file: {exc.strerror}", path=p) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a JSON partial file: {exc}", path=p, hint="pass files written by --shard i/n") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError("not an edgegate partial file", path=p, field="format", hint="pass files written by --shard i/n")
    if doc.get("version") != VERSION:
        raise InputError(f"partial file version {doc.get('version')!r}, this edgegate reads {VERSION}", path=p,
                         field="version", hint="re-run the shards with this edgegate version")
    sh = doc.get("shard")
    if not (isinstance(sh, dict) and all(type(sh.get(k)) is int for k in ("index", "count"))
            and 1 <= sh["index"] <= sh["count"]):
        raise InputError("expected {index: i, count: n} with 1 <= i <= n", path=p, field="shard")
    for key, kind in (("command", str), ("fingerprint", dict), ("checks", dict)):
        if not isinstance(doc.get(key), kind):
            raise InputError(f"missing or not a {kind.__name__}", path=p, field=key, hint="pass files written by --shard i/n")
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
    same = a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    return None if same else (where, a, b)


def _short(v: Any) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 60 else s[:57] + "..."


def differ(a_name: str, b_name: str, field: str, a: Any, b: Any) -> InputError:
    d = first_difference(a, b, field) or (field, a, b)
    return InputError(
        f"cannot merge: {a_name} and {b_name} differ in {d[0]} ({_short(d[1])} vs {_short(d[2])})",
        field=d[0], hint="every shard must run the same inputs, policy, seed and settings",
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
        raise InputError("no partial files given", hint="edgegate merge edgegate-partial-*.json --policy FILE")
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
            raise InputError(f"cannot merge: {seen[i]} and {name} are both shard {i}/{n} (duplicate shard)",
                             field="shard.index", hint="pass each shard's partial file once")
        seen[i] = name
    missing = [i for i in range(1, n + 1) if i not in seen]
    if missing:
        raise InputError(
            f"cannot merge: shard(s) {', '.join(f'{i}/{n}' for i in missing)} missing "
            f"(have {', '.join(f'{i}/{n}' for i in sorted(seen))})",
            field="shard.index", hint="run the missing shards, then merge all n partial files",
        )
    order = sorted(range(len(docs)), key=lambda k: int(docs[k][1]["shard"]["index"]))
    return Parts(tuple(docs[k][0] for k in order), tuple(docs[k][1] for k in order), n)


def check_result_from_dict(d: Mapping[str, Any]) -> CheckResult:
    """Inverse of ``CheckResult.to_dict`` (for the non-sharded checks shard 1 carries)."""
    verdicts = []
    for v in d.get("verdicts", []):
        ci = Interval(**v["ci"]) if v.get("ci") else None
        verdicts.append(Verdict(**{**v, "status": Status(v["status"]), "ci": ci}))
    return CheckResult(
        check=d["check"], status=Status(d["status"]), summary=d["summary"], verdicts=tuple(verdicts),
        measurements=d.get("measurements", {}), duration_s=float(d.get("duration_s", 0.0)), error=d.get("error"),
    )


def write_bbq_run_partial(ctx: Any, section: Mapping[str, Any], partial_out: str | None, result: CheckResult) -> Path:
    """The partial file of ``edgegate bbq run --shard i/n``."""
    from edgegate.environment import describe_input

    shard: Shard = ctx.options["shard"]
    payload = ctx.options["partial_sink"].get("bbq")
    if payload is None:  # the check returned before scoring (e.g. no dense model)
        raise InputError(f"shard {shard[0]}/{shard[1]} scored nothing: {result.summary}", field="--shard")
    inputs: list[dict[str, Any]] = []
    for role, p in (("dense", ctx.dense_path), ("compressed", ctx.compressed_path)):
        remote = section.get("runtime") == "openai"
        inputs.append(endpoint_input(role, str(p)) if remote else describe_input(role, Path(p)))
    data = str(section.get("data"))
    inputs.append(describe_input("bbq_data", Path(data)) if Path(data).exists() else {"role": "bbq_data", "kind": "hub", "path": data})
    fp = {
        "section": {k: v for k, v in section.items() if k != "data"},
        "inputs": [input_identity(d) for d in inputs],
        "software": software(),
        "shard_count": shard[1],
    }
    return write_partial(partial_out or default_partial_name(shard), command="bbq", shard=shard,
                         fingerprint=fp, payload={"checks": {"bbq": payload}})
