"""`edgegate scan PATH [--against DENSE]`: what a checkpoint really is (sparsity, structure,
bytes). Measures only; judging against a policy is `edgegate check`'s job."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from edgegate.policy import check_default

if TYPE_CHECKING:
    from rich.console import Console

    from edgegate.forensics.scan import ScanResult


@click.command(name="scan")
@click.argument("path", type=click.Path(exists=False))
@click.option(
    "--against", "against", type=click.Path(exists=False), help="Dense original to compare with."
)
@click.option(
    "--claim",
    "claims",
    multiple=True,
    metavar="KEY=VALUE",
    help="e.g. sparsity=0.5 (overrides metadata).",
)
@click.option(
    "--tolerance",
    default=check_default("sparsity", "claim_tolerance"),
    show_default=True,
    help="Claim tolerance used in the explanation.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document to stdout.")
@click.option("--per-tensor", is_flag=True, help="Include every tensor (table or JSON).")
@click.option("--threads", default=2, show_default=True, help="Scanner threads.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def command(
    path: str, against: str | None, claims: tuple[str, ...], tolerance: float, as_json: bool,
    per_tensor: bool, threads: int, quiet: bool,
) -> None:  # fmt: skip
    """Measure actual sparsity, structure and bytes of the checkpoint at PATH."""
    from edgegate.claims import parse_claims
    from edgegate.forensics.scan import scan_paths
    from edgegate.progress import make_progress

    claim_map = parse_claims(claims)
    progress: Any = make_progress(quiet)
    res, dense = scan_paths(
        path, against, claims=claim_map, claim_sources=dict.fromkeys(claim_map, "cli"),
        claim_tolerance=tolerance, threads=max(1, threads), progress=progress,
    )  # fmt: skip
    if as_json:
        doc = res.to_dict(per_tensor=per_tensor)
        if dense is not None:
            doc["dense"] = dense.to_dict(per_tensor=per_tensor)
        from edgegate.escape import json_safe

        click.echo(json.dumps(json_safe(_clean(doc)), indent=2, sort_keys=False))
        return
    render(res, dense, per_tensor=per_tensor)


def _clean(obj: Any) -> Any:
    """JSON has no NaN: map it to null."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _p(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}%"


def render(res: Any, dense: Any = None, *, per_tensor: bool = False, console: Any = None) -> None:
    """Rich tables on stdout: summary, claim, per kind, per layer, structure, sizes."""
    from rich.console import Console

    # names, paths and claims come from the checkpoint: every one goes through escape.markup
    con = console or Console(highlight=False)
    _render_summary(con, res)
    _render_structure(con, res)
    _render_sizes(con, res, dense)
    _render_comparison(con, res)
    if per_tensor:
        _render_tensors(con, res)


def _render_summary(con: Console, res: ScanResult) -> None:
    """The summary table and the sparsity claim."""
    from rich.table import Table

    from edgegate.escape import markup as m
    from edgegate.forensics.size import human

    summ = Table(title=f"edgegate scan: {m(res.path)} ({m(res.format)})", show_header=False)
    summ.add_row(
        "prunable-linear sparsity",
        f"{_p(res.prunable.sparsity)}  ({res.prunable.zeros:,} / {res.prunable.numel:,} weights)",
    )
    summ.add_row(
        "whole-model sparsity",
        f"{_p(res.overall.sparsity)}  ({res.overall.zeros:,} / {res.overall.numel:,} weights)",
    )
    summ.add_row("NaN / Inf", f"{res.nan:,} / {res.inf:,}")
    claimed_structure = res.claimed_text.get("structure")
    summ.add_row(
        "pattern",
        m(res.structure.pattern)
        + (f"  (claimed: {m(claimed_structure)})" if claimed_structure else ""),
    )
    summ.add_row("scanned", f"{human(res.bytes_scanned)} in {res.seconds:.2f} s")
    con.print(summ)
    c = res.sparsity_claim
    if c is not None:
        con.print(
            f"[bold]claim[/]: sparsity {_p(c.claimed)} (from {m(c.source)}) vs actual {_p(c.actual)} (n={c.n:,})"
        )
        con.print(f"  why: {m(c.reason)}")
    else:
        con.print(
            "[bold]claim[/]: no sparsity claim (pass --claim sparsity=0.5 or ship pruning_meta.json)"
        )


def _render_structure(con: Console, res: ScanResult) -> None:
    """Sparsity by module kind and by layer, and the structure of the prunable linears."""
    from rich.table import Table

    from edgegate.escape import markup as m

    kt = Table(title="sparsity by module kind")
    for col in ("kind", "tensors", "weights", "zeros", "sparsity"):
        kt.add_column(col, justify="left" if col == "kind" else "right")
    for k, a in res.kinds.items():
        kt.add_row(m(k), str(a.tensors), f"{a.numel:,}", f"{a.zeros:,}", _p(a.sparsity))
    con.print(kt)

    if res.layers:
        lt = Table(title="prunable-linear sparsity by layer")
        for col in ("layer", "weights", "sparsity"):
            lt.add_column(col, justify="right")
        for lay, a in res.layers.items():
            lt.add_row(str(lay), f"{a.numel:,}", _p(a.sparsity))
        con.print(lt)

    s = res.structure
    st = Table(title="structure (prunable linears)", show_header=False)
    st.add_row("2:4 conformance", _p(s.nm_conformance.get("2:4")))
    st.add_row("4:8 conformance", _p(s.nm_conformance.get("4:8")))
    st.add_row("all-zero rows / cols / heads", f"{s.zero_rows} / {s.zero_cols} / {s.zero_heads}")
    st.add_row("row-uniform pruned tensors", f"{s.row_uniform_tensors} / {s.pruned_tensors}")
    con.print(st)


def _render_comparison(con: Console, res: ScanResult) -> None:
    """Against the dense original: the mask fingerprint and the super weights."""
    from edgegate.escape import markup as m

    if res.comparison is not None:
        cmp_ = res.comparison
        method = res.claimed_text.get("method")
        claimed = f"  (claimed: {m(method)})" if method else ""
        con.print(f"[bold]mask fingerprint[/]: {m(cmp_.fingerprint.method)}{claimed}")
        con.print(f"  {m(cmp_.fingerprint.evidence)}")
        t = cmp_.fingerprint.totals
        con.print(
            f"  weights changed beyond pruning: {t.changed:,} of {t.kept:,} kept"
            f" (max |change| {t.max_abs_change:.3g})"
        )
        sw = cmp_.super_weights
        con.print(
            f"  super weights (top-{sw.top_k} |w| > {sw.std_multiple:g} std in {sw.tensors_examined} down_proj):"
            f" {sw.zeroed} of {len(sw.candidates)} zeroed"
        )


def _render_tensors(con: Console, res: ScanResult) -> None:
    """One row per tensor (--per-tensor)."""
    from rich.table import Table

    from edgegate.escape import markup as m

    tt = Table(title="tensors")
    for col in ("name", "kind", "shape", "dtype", "sparsity", "2:4", "rows min/max", "NaN/Inf"):
        tt.add_column(col)
    for r in res.tensors:
        stc = r.structure
        tt.add_row(
            m(r.name), m(r.kind.value), "x".join(map(str, r.shape)), m(r.dtype), _p(r.sparsity),
            _p(stc.nm_conformance.get("2:4")) if stc else "-",
            f"{_p(stc.row_sparsity_min)}/{_p(stc.row_sparsity_max)}" if stc else "-",
            f"{r.nan}/{r.inf}",
        )  # fmt: skip
    con.print(tt)


def _render_sizes(con: Any, res: Any, dense: Any) -> None:
    from rich.table import Table

    from edgegate.escape import markup as m
    from edgegate.forensics.size import human

    sz = res.size
    t = Table(title="bytes")
    t.add_column("what")
    t.add_column("bytes", justify="right")
    t.add_column("vs dense layout", justify="right")
    base = sz.projected.get("dense") or 0
    t.add_row(f"on disk ({len(sz.files)} files)", f"{sz.disk_bytes:,} ({human(sz.disk_bytes)})", "")
    t.add_row(
        f"tensors as stored ({m(sz.format)})",
        f"{sz.tensor_bytes:,}",
        _p(sz.tensor_bytes / base if base else None),
    )
    for layout, b in sz.projected.items():
        t.add_row(
            f"projected {m(layout)}",
            "n/a (not 2:4)" if b is None else f"{b:,}",
            _p(b / base if b and base else None),
        )
    if dense is not None:
        t.add_row(f"dense original on disk ({m(dense.size.format)})", f"{dense.size.disk_bytes:,}",
                  _p(sz.disk_bytes / dense.size.disk_bytes if dense.size.disk_bytes else None))  # fmt: skip
    con.print(t)
    con.print(f"[bold]size[/]: {m(sz.verdict)}")
