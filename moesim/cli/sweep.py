"""``moesim sweep``: a parameter grid x seeds, on a local process pool or a Dask cluster.

Registered on the main app by :func:`register`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from moesim.cli.common import (
    EXIT_FAILED_POINTS,
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    console,
    errors,
    fail,
    load_or_exit,
    stop_on_interrupt,
)


def sweep_command(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file (its sweep: section).")],
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            "-g",
            metavar="KEY=V1,V2,...",
            help="Swept parameter: KEY=V1,V2,... or KEY=logspace(a,b,n), linspace(a,b,n), "
            "range(a,b[,step]) (repeatable; wins over the scenario's sweep.grid).",
        ),
    ] = None,
    zip_: Annotated[
        list[str] | None,
        typer.Option(
            "--zip",
            metavar="KEY1,KEY2",
            help="Vary these grid keys together instead of crossing them (repeatable).",
        ),
    ] = None,
    seeds: Annotated[
        int | None, typer.Option(min=1, help="Seeds per point (default: sweep.seeds, 1).")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Local worker processes (default: CPU count)."),
    ] = None,
    executor: Annotated[
        str, typer.Option(help="local (process pool) or dask (distributed cluster).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Dask scheduler, e.g. tcp://HOST:8786 (default: a local cluster)."),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="Metric that picks the best point (default: sweep.metric)."),
    ] = None,
    maximize: Annotated[
        bool | None,
        typer.Option(
            "--maximize/--minimize",
            help="Best is the largest metric (e.g. quality) or the smallest "
            "(default: sweep.minimize).",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            metavar="KEY=VALUE",
            help="Override a base scenario field, e.g. --set router.top_k=4 (repeatable).",
        ),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Override the number of steps.")] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Results folder (default results/<name>-sweep)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Start over, replacing results in the folder.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Sweep a parameter grid x seeds; resumable, one stored file per finished point."""
    from moesim.errors import ScenarioError
    from moesim.sweep import (
        SweepExistsError,
        aggregate_table,
        check_metric,
        expand_grid,
        parse_grid_option,
        run_sweep,
        sweep_points,
    )

    if executor not in ("local", "dask"):
        raise fail(f"--executor must be local or dask, got {executor!r}")
    if address is not None and executor != "dask":
        raise fail("--address needs --executor dask")
    if executor == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise fail(
                "--executor dask needs dask.distributed: pip install 'moesim[dask]'"
            ) from None

    base = load_or_exit(scenario, set_, steps)
    spec = base.sweep
    try:
        merged = dict(spec.grid)
        for text in grid or []:
            key, values = parse_grid_option(text)
            merged[key] = values
        cli_groups = [[k.strip() for k in text.split(",") if k.strip()] for text in zip_ or []]
        cli_keys = {k for group in cli_groups for k in group}
        zip_groups = cli_groups + [g for g in spec.zip if not cli_keys & set(g)]
        n_seeds = seeds if seeds is not None else spec.seeds
        combos = expand_grid(merged, zip_groups)
        points = sweep_points(base, combos, n_seeds)
        # The scenario's own sweep.metric was checked with the scenario (file:line or --set).
        chosen_metric = metric if metric is not None else spec.metric
        if metric is not None:
            check_metric(metric)
    except ScenarioError as error:
        raise fail(str(error)) from None
    minimize = spec.minimize if maximize is None else not maximize
    target = output if output is not None else Path("results") / f"{base.name}-sweep"

    if not quiet:
        workers = f"{jobs or os.cpu_count()} worker(s)"
        workers = "the Dask cluster" if executor == "dask" else workers
        console.print(
            f"[bold]{len(points)}[/] point(s) ({len(combos)} combination(s) x {n_seeds} seed(s)"
            f"{' x variants' if base.variants else ''}) on {workers}; "
            "[dim]compiling kernels (first run only)...[/]",
            highlight=False,
        )
    try:
        with stop_on_interrupt() as stop_requested:
            result = run_sweep(
                base,
                points,
                target,
                grid=merged,
                zip_groups=zip_groups,
                seeds=n_seeds,
                metric=chosen_metric,
                minimize=minimize,
                jobs=jobs,
                executor=executor,
                address=address,
                progress=not quiet,
                should_stop=stop_requested,
                force=force,
                console=console,
            )
    except SweepExistsError as error:
        raise fail(str(error), EXIT_REFUSED) from None
    except (RuntimeError, OSError) as error:  # e.g. no scheduler at --address
        raise fail(f"{type(error).__name__}: {error}") from None

    if any(record["status"] == "ok" for record in result.records):
        console.print(aggregate_table(result))
    if result.skipped:
        console.print(f"[dim]{result.skipped} point(s) already done, skipped[/]", highlight=False)
    console.print(f"results in [bold]{result.output_dir}[/]", highlight=False)
    if result.failed:
        errors.print(
            f"[bold red]{len(result.failed)} point(s) failed[/] (error and traceback in "
            f"{result.output_dir}/points/<id>.json):",
            highlight=False,
        )
        for record in result.failed[:5]:
            errors.print(f"  {record['id']}: {record['error']}", highlight=False, markup=False)
    if result.interrupted or result.partial:
        errors.print(
            "[yellow]interrupted:[/] finished points are kept; run the same command again to "
            "resume",
            highlight=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.failed:
        raise typer.Exit(EXIT_FAILED_POINTS)


def register(app: typer.Typer) -> None:
    """Add ``moesim sweep`` to ``app``."""
    app.command("sweep")(sweep_command)
