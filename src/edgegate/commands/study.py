"""`edgegate study SPEC.yaml`: run every variant of a study through one gate and write the
combined table (JSON, Markdown) and the Δperplexity-vs-ΔSRS plot.

Resumable: a variant whose inputs did not change since its report was written is not run
again, and BBQ answers come from the answer cache. Exit 0 when every variant present on disk
has a report (whatever the gate verdicts: a study measures, it does not gate), 2 for a bad
spec, 3 when a variant's run errored.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command(name="study")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="NAMES",
    help="Run only these variants (comma-separated).",
)
@click.option(
    "--force", is_flag=True, help="Re-run the selected variants even if their reports are current."
)
@click.option(
    "--table-only",
    is_flag=True,
    help="Rebuild table and plot from the reports on disk; run nothing.",
)
@click.option(
    "--models-dir",
    type=click.Path(path_type=Path),
    help="Folder the spec's model paths are relative to.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), help="Output folder (default: the spec's `out`)."
)
@click.option(
    "--bbq-data",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="BBQ *.jsonl folder (default: the spec's).",
)
@click.option(
    "--policy",
    "policy",
    metavar="FILE",
    help="Policy file or preset, instead of the spec's (use with --out).",
)
@click.option(
    "--pass",
    "pass_name",
    metavar="NAME",
    help="Run the spec's pass NAME (its policy, its folder) instead of the main gate; the main table gains its columns.",
)
@click.option(
    "--disambig-items",
    type=click.IntRange(min=0),
    help="Disambiguated BBQ items (instead of the spec's).",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No per-check progress bars (study progress lines still print).",
)
def command(
    spec_path: Path,
    only: tuple[str, ...],
    force: bool,
    table_only: bool,
    models_dir: Path | None,
    out: Path | None,
    bbq_data: Path | None,
    policy: str | None,
    pass_name: str | None,
    disambig_items: int | None,
    quiet: bool,
) -> None:
    """Run the variants of SPEC (YAML) through one gate; write table.json, table.md, paradox.svg."""
    from edgegate.policy import resolve_policy
    from edgegate.progress import NullProgress, RichProgress
    from edgegate.study.run import run_study
    from edgegate.study.spec import load_spec
    from edgegate.study.table import write_outputs

    if pass_name and (policy or out):
        raise click.UsageError(
            "--pass takes its policy and folder from the spec: leave out --policy and --out"
        )
    main = load_spec(
        spec_path,
        models_dir=models_dir,
        out=out,
        bbq_data=bbq_data,
        policy=policy,
        disambig_items=disambig_items,
    )
    spec = main.for_pass(pass_name) if pass_name else main
    names = tuple(n.strip() for v in only for n in v.split(",") if n.strip())
    for n in names:
        spec.variant(n)  # unknown names are an input error before anything runs
    paths: tuple[Path, ...]
    if table_only:
        paths = write_outputs(spec, resolve_policy(spec.policy))
        if pass_name:
            paths += write_outputs(main, resolve_policy(main.policy))
    else:
        records = run_study(
            spec,
            only=names,
            force=force,
            progress=NullProgress() if quiet else RichProgress(),
            argv=tuple(sys.argv[1:]),
        )
        paths = (spec.out / "table.json", spec.out / "table.md", spec.out / "paradox.svg")
        if (
            pass_name and (main.out / "table.json").is_file()
        ):  # the main table shows the pass's columns
            paths += write_outputs(main, resolve_policy(main.policy))
        if any(r["status"] == "error" for r in records):
            for p in paths:
                click.echo(f"edgegate study: wrote {p}", err=True)
            sys.exit(3)
    for p in paths:
        click.echo(f"edgegate study: wrote {p}", err=True)
