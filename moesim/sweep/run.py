"""Running a planned sweep: the folder, the points not yet stored, the executor, the results."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

from moesim.progress import progress_bar
from moesim.sweep.executors import EXECUTORS
from moesim.sweep.plan import SweepPlan, check_metric
from moesim.sweep.store import (
    default_sweep_dir,
    finished_points,
    prepare_sweep_dir,
    start_sweep_dir,
    sweep_info,
    write_point,
    write_sweep_results,
)
from moesim.sweep.table import SweepResult


def run_sweep(
    plan: SweepPlan,
    output_dir: Path | str | None = None,
    *,
    jobs: int | None = None,
    executor: str = "local",
    address: str | None = None,
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
    force: bool = False,
    figures: bool = True,
    console=None,
) -> SweepResult:
    """Run every point of ``plan`` not already stored in ``output_dir/points``; write results.

    Parameters
    ----------
    plan : SweepPlan
        From :func:`~moesim.sweep.plan.plan_sweep`: the base scenario (saved as
        ``scenario.resolved.yaml``), the sweep as given (recorded in ``sweep_summary.json``),
        the metric that picks the best combination and the validated points.
    output_dir : path, optional
        The sweep folder (default ``results/<scenario name>-sweep``).
    jobs : int, optional
        Worker processes of the local pool, or of the local Dask cluster started when there is
        no ``address`` (default: CPU count).
    executor : {"local", "dask"}
        ``local``: a ``ProcessPoolExecutor`` (spawned workers, one Numba thread each);
        ``dask``: ``distributed.Client(address)``, one task per point.
    progress : bool
        Show a progress bar (on ``console``).
    should_stop : callable() -> bool, optional
        Polled while waiting: when true, no new point starts, running ones finish and are kept,
        and the sweep is marked partial. KeyboardInterrupt stops at once, keeping finished ones.
    force : bool
        Start over in a folder that holds another sweep or this one.
    figures : bool
        Draw the sweep figures into ``figures/``.

    Returns
    -------
    SweepResult

    Raises
    ------
    SweepError
        A metric that is not a numeric summary metric, before anything runs or is written.
    SweepExistsError
        ``output_dir`` holds another sweep or a run (and not ``force``).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be 'local' or 'dask', got {executor!r}")
    check_metric(plan.metric, "metric")  # plan_sweep checks it too; a plan may be edited
    output_dir = Path(output_dir) if output_dir is not None else default_sweep_dir(plan.scenario)
    prepare_sweep_dir(output_dir, plan.identity, force=force)
    info = sweep_info(plan, executor)
    start_sweep_dir(output_dir, plan.scenario, info)

    started = time.perf_counter()
    execute = functools.partial(
        EXECUTORS[executor], jobs=jobs, address=address, should_stop=should_stop
    )
    done, skipped, interrupted = _run_missing(plan, output_dir, execute, progress, console)
    records = [done[p.id] for p in plan.points if p.id in done]
    result = write_sweep_results(
        output_dir,
        plan.points,
        records,
        info=info,
        partial=len(records) < len(plan.points),
        seconds=time.perf_counter() - started,
        figures=figures,
    )
    result.ran, result.skipped, result.interrupted = len(records) - skipped, skipped, interrupted
    return result


def _run_missing(
    plan: SweepPlan, output_dir: Path, execute, progress: bool, console
) -> tuple[dict[str, dict], int, bool]:
    """Run the points of ``plan`` not stored with status ok, each stored as it finishes.

    ``execute(todo, finished)`` is an executor of :mod:`moesim.sweep.executors`. Returns the
    records by point id (stored before and run now), how many were stored before, and whether
    the executor was interrupted. The progress bar counts every point of the sweep, starting at
    those already stored.
    """
    done = finished_points(output_dir, plan.points)
    skipped = len(done)
    todo = [p for p in plan.points if p.id not in done]
    with progress_bar(progress, unit="points", console=console) as bar:
        task = bar.add_task("sweep", total=len(plan.points), completed=skipped) if bar else None

        def finished(record: dict) -> None:
            write_point(output_dir, record)
            done[record["id"]] = record
            if bar is not None:
                bar.update(task, advance=1)

        interrupted = execute(todo, finished)
    return done, skipped, interrupted
