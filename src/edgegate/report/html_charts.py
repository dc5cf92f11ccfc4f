"""The HTML report's charts, drawn when their data is in the report: sparsity per layer and
module kind (against the claimed sparsity), bytes on disk per format (against the claimed
size), and Δperplexity vs ΔSRS with ΔSRS per BBQ category. The sparsity and size
measurements differ by checkpoint format, so their numbers are looked up by key wherever
they sit (``_find``) rather than read from one layout."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from edgegate.bbq.record import bbq_measurements
from edgegate.checkpoint.names import small_int
from edgegate.escape import html as escape
from edgegate.report.common import human_bytes
from edgegate.report.paradox import report_charts
from edgegate.report.svg import RefLine, bar_chart
from edgegate.results import GateResult, Status


def _find(obj: Any, key: str, depth: int = 0) -> Any:
    """The first value stored under ``key`` in nested mappings (breadth before depth)."""
    if depth > 4 or not isinstance(obj, Mapping):
        return None
    if key in obj:
        return obj[key]
    for v in obj.values():
        found = _find(v, key, depth + 1)
        if found is not None:
            return found
    return None


def gate_charts(gate: GateResult) -> Iterator[str]:
    """The report's charts, each drawn when its data is in the run's measurements."""
    sp = gate.result("sparsity")
    if sp is not None and sp.measurements:
        yield from _sparsity_charts(sp.measurements, gate.claims.get("sparsity"))
    size = gate.result("size")
    if size is not None and size.measurements:
        chart = _size_chart(size.measurements, gate.claims.get("size_saving"))
        if chart:
            yield chart
    yield from _ppl_vs_bias(gate)


_KIND_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _pct(v: float) -> str:
    return f"{v * 100:.0f}%"


def _sparsity_charts(m: Mapping[str, Any], claim: float | None) -> Iterator[str]:
    refs = [RefLine(claim, f"claimed {claim:.0%}")] if claim is not None else []
    tensors = _find(m, "tensors")
    if (
        isinstance(tensors, list)
        and tensors
        and isinstance(tensors[0], Mapping)
        and "layer" in tensors[0]
    ):
        grid: dict[int, dict[str, list[float]]] = {}
        for t in tensors:
            if t.get("layer") is None or t.get("kind") not in _KIND_ORDER or not t.get("numel"):
                continue
            cell = grid.setdefault(int(t["layer"]), {}).setdefault(t["kind"], [0.0, 0.0])
            cell[0] += float(t.get("zeros", 0))
            cell[1] += float(t["numel"])
        if grid:
            layers = sorted(grid)
            kinds = [k for k in _KIND_ORDER if any(k in grid[layer] for layer in layers)]
            series = [
                (
                    k,
                    [
                        grid[layer][k][0] / grid[layer][k][1] if k in grid[layer] else None
                        for layer in layers
                    ],
                )
                for k in kinds
            ]
            yield _per_layer_chart(layers, series, refs)
            return
    nested = _find(m, "by_layer_kind")  # {layer: {kind: {zeros, numel} | sparsity}}
    if isinstance(nested, Mapping) and nested:
        layers = sorted(nested, key=_layer_key)
        kinds = [k for k in _KIND_ORDER if any(k in (nested[layer] or {}) for layer in layers)]
        if kinds:
            series = [
                (k, [_sparsity_of((nested[layer] or {}).get(k)) for layer in layers]) for k in kinds
            ]
            yield _per_layer_chart(layers, series, refs)
            return
    by_kind = _find(m, "by_kind")
    if isinstance(by_kind, Mapping) and by_kind:
        kinds = [
            k for k in _KIND_ORDER if k in by_kind
        ]  # the prunable kinds: norm/lm_head are never pruned
        vals = [_sparsity_of(by_kind[k]) for k in kinds]
        yield bar_chart(
            "Sparsity by module kind", kinds, [("sparsity", vals)], fmt=_pct, ymax=1.0, refs=refs
        )
    by_layer = _find(m, "by_layer")
    if isinstance(by_layer, Mapping) and by_layer:
        keys = sorted(by_layer, key=_layer_key)
        yield bar_chart(
            "Sparsity of prunable weights per layer",
            [f"layer {k}" for k in keys],
            [("sparsity", [_sparsity_of(by_layer[k]) for k in keys])],
            fmt=_pct,
            ymax=1.0,
            refs=refs,
        )


def _layer_key(k: Any) -> int:
    n = small_int(str(k))
    return n if n is not None else 1 << 30


def _sparsity_of(v: Any) -> float | None:
    if isinstance(v, Mapping):
        if v.get("sparsity") is not None:
            return float(v["sparsity"])
        if v.get("numel"):
            return float(v.get("zeros", 0)) / float(v["numel"])
        return None
    return float(v) if isinstance(v, (int, float)) else None


def _size_chart(m: Mapping[str, Any], claim: float | None) -> str | None:
    """Bytes on disk: dense, compressed as shipped, and what the same tensors would take in
    other layouts; the claimed size is a reference line."""
    cats: list[str] = []
    vals: list[float | None] = []
    dense_disk = (
        _find(m, "dense_bytes")
        or _find(_find(m, "dense") or {}, "disk_bytes")
        or _find(_find(m, "dense_size") or {}, "disk_bytes")
    )
    comp_disk = (
        _find(m, "compressed_bytes")
        or _find(_find(m, "compressed") or {}, "disk_bytes")
        or _find(m, "disk_bytes")
    )
    if isinstance(dense_disk, (int, float)):
        cats.append("dense (disk)")
        vals.append(float(dense_disk))
    if isinstance(comp_disk, (int, float)):
        fmt = _find(m, "format")
        cats.append(f"compressed (disk{', ' + str(fmt) if isinstance(fmt, str) else ''})")
        vals.append(float(comp_disk))
    projected = _find(m, "projected")
    if isinstance(projected, Mapping):
        for layout, b in projected.items():
            cats.append(f"as {layout}")
            vals.append(float(b) if isinstance(b, (int, float)) else None)
    per_format = _find(m, "per_format")
    if isinstance(per_format, Mapping):
        for fmt_name, b in per_format.items():
            b = b.get("disk_bytes") if isinstance(b, Mapping) else b
            cats.append(str(fmt_name))
            vals.append(float(b) if isinstance(b, (int, float)) else None)
    if len(cats) < 2:
        return None
    refs = []
    if claim is not None and isinstance(dense_disk, (int, float)):
        refs.append(RefLine(float(dense_disk) * (1 - claim), f"claimed size ({claim:.0%} saving)"))
    return bar_chart(
        "Bytes on disk vs claimed size", cats, [("bytes", vals)], fmt=human_bytes, refs=refs
    )


def _ppl_vs_bias(gate: GateResult) -> list[str]:
    """Δperplexity vs ΔSRS, and ΔSRS per category. Data that is not a verdict is not drawn as
    one: an invalid BBQ measurement (the dense model cannot do BBQ in this mode) and a
    perplexity that did not reach a verdict are left out with the reason in words; an
    inconclusive BBQ result is drawn greyed under an "inconclusive" label."""
    ppl, bbq = gate.result("perplexity"), gate.result("bbq")
    if ppl is None or bbq is None or not bbq.measurements:
        return []
    m = bbq_measurements(bbq.measurements)
    validity = m.get("validity")
    if isinstance(validity, Mapping) and validity.get("status") == "invalid":
        return [
            _not_drawn(
                "Δperplexity vs ΔSRS and ΔSRS per BBQ category",
                f"BBQ is invalid in this mode ({bbq.summary})",
            )
        ]
    out: list[str] = []
    ppl_ok = ppl.status in (Status.PASS, Status.FAIL)
    if not ppl_ok:
        out.append(
            _not_drawn("Δperplexity vs ΔSRS", f"perplexity is {ppl.status.value} ({ppl.summary})")
        )
    y_limit = (
        gate.policy.checks["bbq"].section.get("max_srs_increase_abs")
        if "bbq" in gate.policy.checks
        else None
    )
    charts = report_charts(
        ppl.verdicts if ppl_ok else [],
        m,
        float(y_limit) if y_limit is not None else None,
    )
    if bbq.status is Status.INCONCLUSIVE:
        label = f"<div class='inconclusive-label'>inconclusive, not a verdict: {escape(bbq.summary)}</div>"
        charts = [f"{label}<div class='greyed'>{c}</div>" for c in charts]
    return out + charts


def _not_drawn(what: str, why: str) -> str:
    return f"<div class='not-drawn'><b>{escape(what)}: not drawn</b> — {escape(why)}</div>"


def _per_layer_chart(
    layers: list[Any], series: list[tuple[str, list[float | None]]], refs: list[RefLine]
) -> str:
    """The sparsity of each layer by module kind, from either layout the scan reports."""
    return bar_chart(
        "Sparsity per layer, by module kind",
        [f"layer {layer}" for layer in layers],
        series,
        fmt=_pct,
        ymax=1.0,
        refs=refs,
    )
