"""``moesim sweep``: a parameter grid x seeds, on a local process pool or a Dask cluster.

A thin layer over :mod:`moesim.sweep`: read the options, :func:`~moesim.sweep.plan_sweep`,
:func:`~moesim.sweep.run_sweep`, print. Registered on the main app by :func:`register`.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from moesim.cli.common import (
    EXIT_FAILED_POINTS,
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    cannot_write,
    console,
    errors,
    fail,
    load_or_exit,
    stop_on_interrupt,
)
from moesim.cli.run import output_option

GridOption = Annotated[
    list[str] | None,
    typer.Option(
        "--grid",
        "-g",
        metavar="KEY=V1,V2,...",
        help="Swept parameter: KEY=V1,V2,... or KEY=logspace(a,b,n), linspace(a,b,n), "
        "range(a,b[,step]) (repeatable; wins over the scenario's sweep.grid).",
    ),
]
ZipOption = Annotated[
    list[str] | None,
    typer.Option(
        "--zip",
        metavar="KEY1,KEY2",
        help="Vary these grid keys together instead of crossing them (repeatable).",
    ),
]
SeedsOption = Annotated[
    int | None, typer.Option(min=1, help="Seeds per point (default: sweep.seeds, 1).")
]
JobsOption = Annotated[
    int | None,
    typer.Option("--jobs", "-j", min=1, help="Local worker processes (default: CPU count)."),
]
ExecutorOption = Annotated[
    str, typer.Option(help="local (process pool) or dask (distributed cluster).")
]
AddressOption = Annotated[
    str | None,
    typer.Option(help="Dask scheduler, e.g. tcp://HOST:8786 (default: a local cluster)."),
]
MetricOption = Annotated[
    str | None,
    typer.Option(help="Metric that picks the best point (default: sweep.metric)."),
]
MaximizeOption = Annotated[
    bool | None,
    typer.Option(
        "--maximize/--minimize",
        help="Best is the largest metric (e.g. quality) or the smallest (default: sweep.minimize).",
    ),
]
BaseSetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a base scenario field, e.g. --set router.top_k=4 (repeatable).",
    ),
]
StepsOption = Annotated[int | None, typer.Option(help="Override the number of steps.")]
OutputOption = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="Results folder (default results/<name>-sweep); ~ is your home folder.",
    ),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Start over, replacing results in the folder.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def sweep_command(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file (its sweep: section).")],
    grid: GridOption = None,
    zip_: ZipOption = None,
    seeds: SeedsOption = None,
    jobs: JobsOption = None,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    metric: MetricOption = None,
    maximize: MaximizeOption = None,
    set_: BaseSetOption = None,
    steps: StepsOption = None,
    output: OutputOption = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Sweep a parameter grid x seeds; resumable, one stored file per finished point."""
    from moesim.errors import ScenarioError
    from moesim.sweep import (
        SweepExistsError,
        default_sweep_dir,
        parse_grid_option,
        parse_zip_option,
        plan_sweep,
        run_sweep,
    )

    _check_executor(executor, address)
    chosen = output_option(output)  # as `moesim run`: -o '' refused, ~ expanded
    base = load_or_exit(scenario, set_, steps)
    try:
        plan = plan_sweep(
            base,
            grid=dict(parse_grid_option(text) for text in grid or []),
            zip_groups=[parse_zip_option(text) for text in zip_ or []],
            seeds=seeds,
            metric=metric,
            minimize=None if maximize is None else not maximize,
        )
    except ScenarioError as error:
        raise fail(str(error)) from None
    if not quiet:
        _announce(plan, jobs, executor)
    target = chosen if chosen is not None else default_sweep_dir(base)
    try:
        with stop_on_interrupt() as stop_requested:
            result = run_sweep(
                plan,
                target,
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
    except OSError as error:
        if _is_write_error(error):  # as `moesim run`: cannot write is exit 1
            raise fail(cannot_write(target, error), EXIT_REFUSED) from None
        raise fail(f"{type(error).__name__}: {error}") from None  # e.g. no scheduler at --address
    except RuntimeError as error:
        raise fail(f"{type(error).__name__}: {error}") from None
    _print_outcome(result, interrupted_exit=stop_requested.exit_code)


#: Errors of a file system that cannot take the results (not of a network, e.g. a scheduler).
_WRITE_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENAMETOOLONG,
}


def _is_write_error(error: OSError) -> bool:
    """Whether ``error`` says the results folder cannot be written (exit 1, like ``run``)."""
    return error.filename is not None or error.errno in _WRITE_ERRNOS


def _check_executor(executor: str, address: str | None) -> None:
    """Refuse an unknown executor, ``--address`` without Dask, Dask not installed (exit 2)."""
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


def _announce(plan, jobs: int | None, executor: str) -> None:
    """One line before the points run: how many, on what, and the first run's compile."""
    workers = f"{jobs or os.cpu_count()} worker(s)"
    workers = "the Dask cluster" if executor == "dask" else workers
    console.print(
        f"[bold]{len(plan.points)}[/] point(s) ({len(plan.combinations)} combination(s) x "
        f"{plan.seeds} seed(s){' x variants' if plan.scenario.variants else ''}) on {workers}; "
        "[dim]compiling kernels (first run only)...[/]",
        highlight=False,
    )


def _print_outcome(result, *, interrupted_exit: int = EXIT_INTERRUPTED) -> None:
    """The aggregate table, where the results are, failed points; the exit code
    (``interrupted_exit`` when the sweep was stopped: 130 after Ctrl-C, 143 after SIGTERM)."""
    from moesim.sweep import aggregate_table

    if any(record["status"] == "ok" for record in result.records):
        console.print(aggregate_table(result))
    if result.skipped:
        console.print(f"[dim]{result.skipped} point(s) already done, skipped[/]", highlight=False)
    console.print(f"results in [bold]{escape(str(result.output_dir))}[/]", highlight=False)
    if result.failed:
        errors.print(
            f"[bold red]{len(result.failed)} point(s) failed[/] (error and traceback in "
            f"{escape(str(result.output_dir))}/points/<id>.json):",
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
        raise typer.Exit(interrupted_exit)
    if result.failed:
        raise typer.Exit(EXIT_FAILED_POINTS)


def register(app: typer.Typer) -> None:
    """Add ``moesim sweep`` to ``app``."""
    app.command("sweep")(sweep_command)
