"""Parameter sweeps: a grid of scenario overrides x seeds, run in parallel, resumable.

    results/<scenario name>-sweep/
      points/<point id>.json   one finished point (params, seed, variant, summary or error)
      sweep.csv                tidy: one row per point, seed and variant
      sweep_aggregate.csv      per parameter combination and variant: mean, std, 95% CI, n
      sweep_summary.json       grid, seeds, metric, best point, counts, partial, sweep hash
      scenario.resolved.yaml   the base scenario
      figures/                 the chosen metric against each swept parameter

The grid is expanded by a pure function (:func:`expand_grid`); every point is validated before
anything runs (:func:`sweep_points`); :func:`run_sweep` hands the points to a process pool (one
Numba thread per worker) or a Dask cluster and stores each point as soon as it finishes, so a
rerun skips what is done and Ctrl-C loses nothing finished.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import hashlib
import io
import itertools
import json
import math
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moesim.errors import Problem, ScenarioError
from moesim.progress import progress_bar
from moesim.results.folder import package_versions, to_jsonable, write_atomic
from moesim.results.metrics import (
    NOT_METRICS,
    metric_problem,
)
from moesim.statistics import mean_interval

#: Columns of sweep.csv between the swept parameters and the metrics.
BOOKKEEPING_COLUMNS = ("seed", "variant", "status", "point")
#: Metrics shown in the aggregate table next to the chosen one.
KEY_METRICS = ("max_vio_global", "final_max_vio_batch", "starved", "quality")
SWEEP_FILES = ("sweep.csv", "sweep_aggregate.csv", "sweep_summary.json")


class SweepError(ScenarioError):
    """A sweep that cannot run as given (grid, seeds, metric); one line per problem."""


class SweepExistsError(FileExistsError):
    """The output folder holds a different sweep (or a run) and overwriting was not asked for."""


def _grid_problem(key: str, message: str) -> Problem:
    return Problem("sweep grid", None, None, key, message)


# ----------------------------------------------------------------------------------------------
# Grid expansion (pure)

_FUNCTION = re.compile(r"^\s*(logspace|linspace|range)\s*\((.*)\)\s*$")


def _clean(value: float) -> float:
    """12 significant digits: ``logspace(1e-4,1e-2,3)`` gives 0.001, not 0.0010000000000000002."""
    return float(f"{value:.12g}")


def parse_values(key: str, spec) -> list:
    """The values of one grid parameter: a list as is, or a ``logspace``/``linspace``/``range``.

    ``logspace(a, b, n)`` is ``n`` values from ``a`` to ``b`` evenly spaced in log (the values
    themselves, not exponents); ``linspace(a, b, n)`` evenly spaced; ``range(a, b[, step])`` as
    Python's (``b`` excluded), integers when every argument is one.

    Raises
    ------
    SweepError
        Naming ``key`` when the list is empty, a value appears twice (the point would run
        twice) or the range cannot be read.
    """
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise SweepError([_grid_problem(key, "no values (an empty list)")])
        return _distinct(key, list(spec))
    if not isinstance(spec, str):
        return [spec]
    match = _FUNCTION.match(spec)
    if match is None:
        raise SweepError(
            [
                _grid_problem(
                    key,
                    f"expected a list of values or logspace(a,b,n), linspace(a,b,n), "
                    f"range(a,b[,step]); got {spec!r}",
                )
            ]
        )
    name, inner = match.groups()
    try:
        args = [float(part) for part in inner.split(",")]
    except ValueError:
        raise SweepError([_grid_problem(key, f"{name}() takes numbers, got {spec!r}")]) from None
    bad = None
    if name in ("logspace", "linspace"):
        if len(args) != 3 or args[2] != int(args[2]) or args[2] < 1:
            bad = f"{name}(a,b,n) takes two numbers and a count n >= 1, got {spec!r}"
        elif name == "logspace" and (args[0] <= 0 or args[1] <= 0):
            bad = f"logspace(a,b,n) needs a > 0 and b > 0 (the values, not exponents), got {spec!r}"
    elif len(args) not in (2, 3) or (len(args) == 3 and args[2] == 0):
        bad = f"range(a,b[,step]) takes two or three numbers, step not 0; got {spec!r}"
    if bad:
        raise SweepError([_grid_problem(key, bad)])
    if name == "logspace":
        values = [_clean(v) for v in np.geomspace(args[0], args[1], int(args[2]))]
    elif name == "linspace":
        values = [_clean(v) for v in np.linspace(args[0], args[1], int(args[2]))]
    else:
        start, stop, step = (*args, 1.0)[:3]
        if all(a == int(a) for a in (start, stop, step)):
            values = list(range(int(start), int(stop), int(step)))
        else:
            count = max(0, math.ceil((stop - start) / step))
            values = [_clean(start + i * step) for i in range(count)]
    if not values:
        raise SweepError([_grid_problem(key, f"{spec} gives no values")])
    return _distinct(key, values, spec)


def _distinct(key: str, values: list, spec=None) -> list:
    """``values``, unless one appears twice: its points would run twice and count double."""
    for i, value in enumerate(values):
        # Equality, not hashing: values may be lists, and 1 == 1.0 is the same scenario.
        if any(value == earlier for earlier in values[:i]):
            origin = f"{spec} gives" if spec is not None else "the list has"
            raise SweepError([_grid_problem(key, f"{origin} the value {value!r} twice")])
    return values


def expand_grid(grid: dict, zip_groups=()) -> list[dict]:
    """Every parameter combination of ``grid``: the product of independent axes.

    Parameters
    ----------
    grid : dict[str, list or str]
        Key path (``balance.bias.rate``) -> values, or a ``logspace(...)``-style string.
    zip_groups : iterable of list[str]
        Keys varied together (value i with value i), each group one axis of the product.

    Returns
    -------
    list[dict[str, object]]
        One ``{key path: value}`` per combination, keys in grid order; ``[{}]`` for no grid.

    Raises
    ------
    SweepError
        Every problem at once: empty lists, unreadable ranges, zip keys not in the grid or in
        two groups, zipped lists of unequal lengths.
    """
    values: dict[str, list] = {}
    problems: list[Problem] = []
    for key, spec in grid.items():
        try:
            values[key] = parse_values(key, spec)
        except SweepError as error:
            problems.extend(error.problems)
    zipped: dict[str, int] = {}
    groups = [list(group) for group in zip_groups]
    for index, group in enumerate(groups):
        for key in group:
            if key not in grid:
                problems.append(_grid_problem(key, f"zipped but not in the grid ({_known(grid)})"))
            elif key in zipped:
                problems.append(_grid_problem(key, "appears in two zip groups"))
            zipped[key] = index
        lengths = {key: len(values[key]) for key in group if key in values}
        if len(set(lengths.values())) > 1:
            sizes = ", ".join(f"{key} has {n}" for key, n in lengths.items())
            problems.append(
                _grid_problem(",".join(group), f"zipped lists need equal lengths ({sizes})")
            )
    if problems:
        raise SweepError(problems)
    # One axis per independent key or zip group, in the order its first key appears.
    axes: list[list[str]] = []
    for key in grid:
        if key not in zipped:
            axes.append([key])
        elif groups[zipped[key]] not in axes:
            axes.append(groups[zipped[key]])
    columns = [list(zip(*(values[key] for key in axis), strict=True)) for axis in axes]
    combos = []
    for choice in itertools.product(*columns):
        point = {}
        for axis, row in zip(axes, choice, strict=True):
            point.update(zip(axis, row, strict=True))
        combos.append({key: point[key] for key in grid})
    return combos


def _known(grid: dict) -> str:
    return "grid keys: " + (", ".join(grid) if grid else "none")


def check_metric(metric: str, source: str = "--metric", path: str = "") -> None:
    """Raise unless ``metric`` is a numeric summary metric (:data:`SUMMARY_METRICS`).

    Parameters
    ----------
    metric : str
        The metric that picks the best point.
    source, path : str
        Where it was given, for the message (``--metric``).

    Raises
    ------
    SweepError
        Naming the metric, the metrics there are and the closest one, before anything runs.
    """
    problem = metric_problem(metric)
    if problem is not None:
        message, hint = problem
        raise SweepError([Problem(source, None, None, path, message, hint)])


def parse_grid_option(text: str) -> tuple[str, list | str]:
    """``--grid KEY=V1,V2,...`` or ``--grid KEY=logspace(a,b,n)`` -> (key, values or spec).

    Values are YAML scalars (``1e-3`` is a number, ``softmax`` text, ``null`` None); commas
    inside brackets or parentheses do not split.
    """
    from moesim.scenario import parse_override

    key, separator, raw = text.partition("=")
    key = key.strip()
    if not separator or not raw.strip():
        raise SweepError(
            [
                Problem(
                    f"--grid {text}",
                    None,
                    None,
                    "",
                    "expected KEY=V1,V2,... or KEY=logspace(a,b,n), e.g. "
                    "balance.bias.rate=1e-4,1e-3,1e-2",
                )
            ]
        )
    if _FUNCTION.match(raw):
        parse_override(f"{key}=0")  # checks the key's form
        return key, raw.strip()
    values = [parse_override(f"{key}={part}")[1] for part in _split_top_level(raw)]
    return key, values


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts]


# ----------------------------------------------------------------------------------------------
# Points: every combination x seed x variant, validated


@dataclass(frozen=True)
class Point:
    """One simulation of the sweep.

    Attributes
    ----------
    id : str
        Stable hash of params, seed and variant: the name of ``points/<id>.json``.
    params : dict
        Swept key path -> value.
    scenario : dict
        The resolved variant scenario (JSON types), what a worker runs.
    """

    id: str
    params: dict
    seed: int
    variant: str
    scenario: dict = field(repr=False, compare=False)


def point_id(params: dict, seed: int, variant: str | None = None) -> str:
    """Stable id of a point: a hash of its parameters, seed and (when there are any) variant."""
    key = {"params": to_jsonable(params), "seed": int(seed)}
    if variant is not None:
        key["variant"] = variant
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _override(key: str, value) -> str:
    # JSON is YAML flow syntax, so the override parses back to the same value.
    return f"{key}={json.dumps(to_jsonable(value))}"


def _describe(params: dict, seed: int) -> str:
    shown = ", ".join(f"{key}={value!r}" for key, value in params.items())
    return f"sweep point {shown + ', ' if shown else ''}seed={seed}"


def sweep_points(scenario, grid: list[dict], seeds: int = 1) -> list[Point]:
    """Every combination x seed (x variant), each validated through ``load_scenario``.

    Parameters
    ----------
    scenario : Scenario
        The base scenario; its ``seed`` is the first seed, then ``seed + 1``, ...
    grid : list[dict]
        Parameter combinations from :func:`expand_grid`.
    seeds : int
        Seeds per combination.

    Raises
    ------
    ScenarioError
        Every distinct problem of every point, each naming the first point that has it,
        before anything runs.
    """
    from moesim.scenario import expand_variants, load_scenario

    if seeds < 1:
        raise SweepError([Problem("--seeds", None, None, "", f"must be >= 1 (got {seeds})")])
    if grid and "seed" in grid[0]:
        # Each point's seed is the base seed + i; a swept seed would be overwritten unseen.
        raise SweepError(
            [_grid_problem("seed", "is set by the seeds (seed, seed+1, ...): use --seeds N")]
        )
    has_variants = bool(scenario.variants)
    points: list[Point] = []
    problems: dict[tuple, list] = {}
    for params in grid:
        for offset in range(seeds):
            seed = scenario.seed + offset
            overrides = [_override(key, value) for key, value in params.items()]
            overrides.append(f"seed={seed}")
            try:
                resolved = load_scenario(scenario, overrides)
                variants = expand_variants(resolved)
            except ScenarioError as error:
                for problem in error.problems:
                    problems.setdefault((problem.path, problem.message), []).append((params, seed))
                continue
            for name, variant in variants:
                identity = point_id(params, seed, name if has_variants else None)
                points.append(Point(identity, dict(params), seed, name, variant.resolved_dict()))
    if problems:
        lines = []
        for (path, message), where in problems.items():
            more = f" (and {len(where) - 1} more points)" if len(where) > 1 else ""
            lines.append(Problem(_describe(*where[0]) + more, None, None, path, message))
        raise ScenarioError(lines)
    return points


def sweep_hash(scenario, points: list[Point]) -> str:
    """Identity of a sweep: the base scenario (without its sweep/output sections) and points."""
    base = scenario.resolved_dict()
    for key in ("sweep", "output", "description"):
        base.pop(key, None)
    text = json.dumps({"base": base, "points": sorted(p.id for p in points)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# Workers


def _init_worker() -> None:
    """Process-pool initializer: one Numba thread per worker, Ctrl-C handled by the parent."""
    import signal

    os.environ["NUMBA_NUM_THREADS"] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import numba

    numba.set_num_threads(1)


def run_point(payload: dict) -> dict:
    """Run one point (in a worker); never raises: a failure comes back as its error text.

    ``payload`` is ``{"id", "params", "seed", "variant", "scenario"}``; the record returned is
    what ``points/<id>.json`` holds.
    """
    record = {key: payload[key] for key in ("id", "params", "seed", "variant")}
    started = time.perf_counter()
    try:
        import numba

        from moesim.engine import simulate_variant
        from moesim.scenario import Scenario

        if numba.get_num_threads() > 1:
            numba.set_num_threads(1)  # Dask threads: results never depend on it, speed does
        record["numba_threads"] = numba.get_num_threads()
        scenario = Scenario.model_validate(payload["scenario"])
        outcome = simulate_variant(scenario, payload["variant"])
        record.update(status="ok", summary=to_jsonable(outcome.summary), error=None)
    except Exception as error:  # a failed point is recorded, the sweep goes on
        record.update(
            status="failed",
            summary=None,
            error=f"{type(error).__name__}: {error}",
            traceback=traceback.format_exc(),
        )
    record["seconds"] = time.perf_counter() - started
    return record


def _payload(point: Point) -> dict:
    return {
        "id": point.id,
        "params": to_jsonable(point.params),
        "seed": point.seed,
        "variant": point.variant,
        "scenario": point.scenario,
    }


# ----------------------------------------------------------------------------------------------
# Running


@dataclass
class SweepResult:
    """What a sweep left on disk: the rows of sweep.csv and the aggregate, best row included."""

    output_dir: Path
    records: list[dict]
    aggregate: list[dict]
    parameters: list[str]
    metric: str
    minimize: bool
    best: dict | None
    partial: bool
    ran: int
    skipped: int
    interrupted: bool = False

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] != "ok"]


def read_point(path: Path) -> dict | None:
    """A stored point, or None when it is missing or unreadable (it will run again)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def prepare_sweep_dir(output_dir: Path, identity: str, *, force: bool) -> Path:
    """Create the folder; resume the same sweep; refuse a different one unless ``force``.

    ``force`` starts over: stored points and sweep files are deleted first.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise SweepExistsError(f"{output_dir} exists and is not a folder")
    summary_path = output_dir / "sweep_summary.json"
    stored = read_point(summary_path) if summary_path.exists() else None
    if not force:
        if stored is not None and stored.get("sweep_hash") != identity:
            raise SweepExistsError(
                f"{output_dir} holds a different sweep (another grid, seeds or base scenario); "
                "pass --force to replace it or -o to write elsewhere"
            )
        if stored is None and (output_dir / "points").is_dir():
            raise SweepExistsError(
                f"{output_dir}/points exists without sweep_summary.json; pass --force to "
                "replace it or -o to write elsewhere"
            )
        if stored is None and (output_dir / "summary.json").exists():
            raise SweepExistsError(
                f"{output_dir} holds the results of a run; pass --force to write the sweep "
                "there anyway or -o to write elsewhere"
            )
    elif (output_dir / "points").is_dir():
        for path in (output_dir / "points").glob("*.json"):
            path.unlink()
        for name in SWEEP_FILES:
            (output_dir / name).unlink(missing_ok=True)
    (output_dir / "points").mkdir(parents=True, exist_ok=True)
    return output_dir


def run_sweep(
    scenario,
    points: list[Point],
    output_dir: Path,
    *,
    grid: dict | None = None,
    zip_groups=(),
    seeds: int = 1,
    metric: str = "max_vio_global",
    minimize: bool = True,
    jobs: int | None = None,
    executor: str = "local",
    address: str | None = None,
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
    force: bool = False,
    figures: bool = True,
    console=None,
) -> SweepResult:
    """Run every point not already stored in ``output_dir/points`` and write the results.

    Parameters
    ----------
    scenario : Scenario
        The base scenario (saved as ``scenario.resolved.yaml``).
    points : list[Point]
        From :func:`sweep_points`.
    grid, zip_groups, seeds :
        The sweep as given, recorded in ``sweep_summary.json``.
    metric, minimize :
        Summary metric that picks the best parameter combination (mean over seeds); one of
        :data:`SUMMARY_METRICS`, checked before anything runs.
    jobs : int, optional
        Worker processes of the local pool, or of the local Dask cluster started when there is
        no ``address`` (default: CPU count).
    executor : {"local", "dask"}
        ``local``: a ``ProcessPoolExecutor`` (spawned workers, one Numba thread each);
        ``dask``: ``distributed.Client(address)``, one task per point.
    should_stop : callable() -> bool, optional
        Polled while waiting: when true, no new point starts, running ones finish and are kept,
        and the sweep is marked partial. KeyboardInterrupt stops at once, keeping finished ones.
    force : bool
        Start over in a folder that holds another sweep or this one.

    Returns
    -------
    SweepResult

    Raises
    ------
    SweepError
        An unknown ``metric``, before anything runs or is written.
    SweepExistsError
        ``output_dir`` holds another sweep or a run (and not ``force``).
    """
    from moesim.scenario import dump_yaml

    if executor not in ("local", "dask"):
        raise ValueError(f"executor must be 'local' or 'dask', got {executor!r}")
    check_metric(metric, "metric")
    output_dir = Path(output_dir)
    identity = sweep_hash(scenario, points)
    prepare_sweep_dir(output_dir, identity, force=force)
    parameters = list(points[0].params) if points else list(grid or {})
    info = {
        "scenario": scenario.name,
        "sweep_hash": identity,
        "parameters": parameters,
        "grid": to_jsonable(grid if grid is not None else {}),
        "zip": [list(g) for g in zip_groups],
        "seeds": seeds,
        "metric": metric,
        "minimize": minimize,
        "executor": executor,
        "points": len(points),
    }
    write_atomic(output_dir / "scenario.resolved.yaml", dump_yaml(scenario))
    # Written first, so an interrupted (even killed) sweep can be recognised and resumed.
    _write_summary(output_dir, info, best=None, records=[], partial=True, seconds=None)

    done = {}
    for point in points:
        stored = read_point(output_dir / "points" / f"{point.id}.json")
        if stored is not None and stored.get("status") == "ok":
            done[point.id] = stored
    todo = [p for p in points if p.id not in done]
    started = time.perf_counter()

    def store(record: dict) -> None:
        write_atomic(
            output_dir / "points" / f"{record['id']}.json",
            json.dumps(to_jsonable(record), indent=1) + "\n",
        )
        done[record["id"]] = record

    run = _run_dask if executor == "dask" else _run_local
    with progress_bar(progress, unit="points", console=console) as bar:
        task = bar.add_task("sweep", total=len(points), completed=len(done)) if bar else None

        def finished(record: dict) -> None:
            store(record)
            if bar is not None:
                bar.update(task, advance=1)

        interrupted = run(todo, finished, jobs=jobs, address=address, should_stop=should_stop)
    records = [done[p.id] for p in points if p.id in done]
    partial = len(records) < len(points)
    result = write_sweep_results(
        output_dir,
        points,
        records,
        info=info,
        partial=partial,
        seconds=time.perf_counter() - started,
        figures=figures,
    )
    result.ran = len(records) - (len(points) - len(todo))
    result.skipped = len(points) - len(todo)
    result.interrupted = interrupted
    return result


def _run_local(todo, finished, *, jobs, address, should_stop, task=None) -> bool:
    """Process pool with spawned workers; returns True when interrupted.

    At most one point per worker is handed to the pool at a time. A worker that dies (killed,
    out of memory) breaks the whole pool and fails every point in it, so the points that were
    running then are known: each is retried alone in a new pool, and only one that takes its
    worker down alone is recorded as failed; the others go on. ``task`` replaces
    :func:`run_point` (tests).
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    if not todo:
        return False
    task = task or run_point
    workers = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
    queue = collections.deque((point, False) for point in todo)  # (point, run it alone)
    running: dict = {}  # future -> (point, alone)
    pool = None
    stopping = hard_stop = False
    try:
        # Workers are started as points are submitted and read NUMBA_NUM_THREADS when they
        # import numba (at unpickling, before the initializer runs): set for the whole loop.
        with _environment(NUMBA_NUM_THREADS="1"):
            while running or (queue and not stopping):
                if pool is None:
                    # spawn: fork would copy Numba's thread pool state; the start method of
                    # the process stays as it was.
                    pool = ProcessPoolExecutor(
                        max_workers=workers,
                        mp_context=multiprocessing.get_context("spawn"),
                        initializer=_init_worker,
                    )
                while queue and not stopping and len(running) < workers:
                    point, alone = queue[0]
                    if running and (alone or any(a for _, a in running.values())):
                        break
                    queue.popleft()
                    running[pool.submit(task, _payload(point))] = (point, alone)
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    done = set(running)  # the pool fails all of them (at once, or nearly)
                    wait(done)
                suspects = []
                for future in done:
                    point, alone = running.pop(future)
                    if isinstance(future.exception(), BrokenProcessPool):
                        suspects.append((point, alone))
                    else:
                        finished(_outcome(future, point))
                if suspects:
                    pool.shutdown(wait=True)
                    pool = None
                    retry = []
                    for point, alone in suspects:
                        if alone or len(suspects) == 1:  # it took its worker down by itself
                            finished(_failure(point, _WORKER_DIED, ""))
                        else:
                            retry.append(point)
                    queue.extendleft((point, True) for point in reversed(retry))
                if not stopping and should_stop is not None and should_stop():
                    stopping = True  # no new point starts; running ones finish
        return stopping
    except KeyboardInterrupt:
        # Stop now: the points in progress are lost, finished ones are stored. Futures are left
        # alone (cancelling them races the pool's own clean-up of a broken pool on 3.11).
        hard_stop = True
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        return True
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=not hard_stop)


_WORKER_DIED = (
    "WorkerDied: the worker process died while it ran this point alone (killed, or out of memory?)"
)


@contextlib.contextmanager
def _environment(**values):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _outcome(future, point: Point) -> dict:
    """The record of a finished future; a worker that died becomes a failed point."""
    try:
        return future.result()
    except Exception as error:
        return _failure(
            point, f"{type(error).__name__}: {error}", "".join(traceback.format_exception(error))
        )


def _failure(point: Point, error: str, trace: str) -> dict:
    """The record of a point that failed outside :func:`run_point` (its worker died)."""
    return {
        **{key: value for key, value in _payload(point).items() if key != "scenario"},
        "status": "failed",
        "summary": None,
        "error": error,
        "traceback": trace,
    }


def _run_dask(todo, finished, *, jobs, address, should_stop) -> bool:
    """One Dask task per point on ``distributed.Client(address)``; True when interrupted."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise RuntimeError(
            "the dask executor needs dask.distributed: pip install 'moesim[dask]'"
        ) from None
    if not todo:
        return False
    if address:
        client = Client(address)
    else:
        # One single-threaded worker process per job, each with one Numba thread (the workers
        # are spawned now and read NUMBA_NUM_THREADS when they import numba).
        with _environment(NUMBA_NUM_THREADS="1"):
            client = Client(
                processes=True, n_workers=jobs or os.cpu_count() or 1, threads_per_worker=1
            )
    futures = []
    try:
        payloads = {}
        for point in todo:
            future = client.submit(run_point, _payload(point), pure=False)
            payloads[future.key] = point
            futures.append(future)
        stopping = False
        queue = as_completed(futures, with_results=False)
        for future in queue:
            if future.status == "cancelled":
                continue
            finished(_outcome(future, payloads[future.key]))
            if not stopping and should_stop is not None and should_stop():
                stopping = True
                client.cancel([f for f in futures if not f.done()])
                break
        return stopping
    except KeyboardInterrupt:
        client.cancel([f for f in futures if not f.done()])
        return True
    finally:
        client.close()


# ----------------------------------------------------------------------------------------------
# Results


def metric_names(records: list[dict]) -> list[str]:
    """Summary keys of the finished points, in summary order."""
    names: dict[str, None] = {}
    for record in records:
        for key in record.get("summary") or {}:
            if key not in NOT_METRICS:
                names[key] = None
    return list(names)


def _sort_value(value):
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, (bool, int, float)):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _number(value) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return float("nan")


def sweep_rows(points: list[Point], records: list[dict]) -> tuple[list[str], list[list]]:
    """Header and rows of sweep.csv, sorted by params, then seed, then variant order."""
    parameters = list(points[0].params) if points else []
    variant_order = {name: i for i, name in enumerate(dict.fromkeys(p.variant for p in points))}
    metrics = metric_names(records)
    header = [*parameters, *BOOKKEEPING_COLUMNS, *metrics, "error"]
    records = sorted(
        records,
        key=lambda r: (
            tuple(_sort_value(r["params"].get(k)) for k in parameters),
            r["seed"],
            variant_order.get(r["variant"], len(variant_order)),
        ),
    )
    rows = []
    for r in records:
        summary = r.get("summary") or {}
        rows.append(
            [
                *(r["params"].get(k) for k in parameters),
                r["seed"],
                r["variant"],
                r["status"],
                r["id"],
                *(summary.get(m) for m in metrics),
                r.get("error") or "",
            ]
        )
    return header, rows


def aggregate_rows(points: list[Point], records: list[dict]) -> list[dict]:
    """Per parameter combination and variant: n and mean, std, ci95 of each numeric metric.

    ``ci95`` is the half-width of the 95% interval, ``t_{0.975, n-1} * std / sqrt(n)`` (Student's
    t, std with ddof=1, over the seeds whose value is finite; 0 for one seed).
    """
    parameters = list(points[0].params) if points else []
    metrics = metric_names(records)
    groups: dict[str, dict] = {}
    for point in points:
        key = json.dumps([to_jsonable(point.params), point.variant])
        groups.setdefault(key, {"params": point.params, "variant": point.variant, "rows": []})
    for r in records:
        if r["status"] == "ok":
            key = json.dumps([r["params"], r["variant"]])
            groups.setdefault(key, {"params": r["params"], "variant": r["variant"], "rows": []})
            groups[key]["rows"].append(r["summary"])
    out = []
    for group in groups.values():
        row = {**{k: group["params"].get(k) for k in parameters}, "variant": group["variant"]}
        row["n"] = len(group["rows"])
        for metric in metrics:
            values = [s.get(metric) for s in group["rows"]]
            if any(isinstance(v, str) for v in values):
                continue
            finite = np.array([_number(v) for v in values], dtype=float)
            finite = finite[np.isfinite(finite)]
            mean, half_width, n = mean_interval(finite)
            row[f"{metric}_mean"] = mean
            row[f"{metric}_std"] = float(finite.std(ddof=1)) if n > 1 else (0.0 if n else math.nan)
            row[f"{metric}_ci95"] = half_width
        out.append(row)
    variant_order = {name: i for i, name in enumerate(dict.fromkeys(p.variant for p in points))}
    out.sort(
        key=lambda r: (
            tuple(_sort_value(r[k]) for k in parameters),
            variant_order.get(r["variant"], 0),
        )
    )
    return out


def best_row(aggregate: list[dict], metric: str, minimize: bool = True) -> dict | None:
    """The aggregate row with the best finite mean of ``metric`` (None if there is none)."""
    column = f"{metric}_mean"
    candidates = [
        r for r in aggregate if isinstance(r.get(column), float) and math.isfinite(r[column])
    ]
    if not candidates:
        return None
    pick = min if minimize else max
    return pick(candidates, key=lambda r: r[column])


def _csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(value) for value in row])
    return buffer.getvalue()


def _best_summary(best: dict | None, parameters: list[str], metric: str) -> dict | None:
    """The best row as stored in sweep_summary.json: parameters, variant, n and the metric."""
    if best is None:
        return None
    return {
        "params": {key: best[key] for key in parameters},
        "variant": best["variant"],
        "n": best["n"],
        metric: {stat: best.get(f"{metric}_{stat}") for stat in ("mean", "std", "ci95")},
    }


def _command_line() -> list[str]:
    """The command that is running, with the console script's path shortened to ``moesim``."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name == "moesim":
        argv[0] = "moesim"
    return argv


def _write_summary(output_dir, info, *, best, records, partial, seconds) -> None:
    ok = sum(r["status"] == "ok" for r in records)
    summary = {
        **info,
        "best": _best_summary(best, info["parameters"], info["metric"]),
        "ok": ok,
        "failed": len(records) - ok,
        "missing": info["points"] - len(records),
        "partial": partial,
        "seconds": seconds,
        # As typed (the report shows it); from Python, the interpreter's own argv.
        "command": _command_line(),
        "versions": package_versions(),
    }
    write_atomic(output_dir / "sweep_summary.json", json.dumps(to_jsonable(summary), indent=2))


def write_sweep_results(
    output_dir: Path,
    points: list[Point],
    records: list[dict],
    *,
    info: dict,
    partial: bool,
    seconds: float | None = None,
    figures: bool = True,
) -> SweepResult:
    """Write sweep.csv, sweep_aggregate.csv, sweep_summary.json (and figures) from the records."""
    output_dir = Path(output_dir)
    header, rows = sweep_rows(points, records)
    write_atomic(output_dir / "sweep.csv", _csv_text(header, rows))
    aggregate = aggregate_rows(points, records)
    aggregate_header = list(aggregate[0]) if aggregate else []
    for row in aggregate[1:]:
        aggregate_header += [k for k in row if k not in aggregate_header]
    write_atomic(
        output_dir / "sweep_aggregate.csv",
        _csv_text(aggregate_header, [[r.get(k) for k in aggregate_header] for r in aggregate]),
    )
    metric, minimize = info["metric"], info["minimize"]
    best = best_row(aggregate, metric, minimize)
    _write_summary(output_dir, info, best=best, records=records, partial=partial, seconds=seconds)
    result = SweepResult(
        output_dir=output_dir,
        records=records,
        aggregate=aggregate,
        parameters=list(info["parameters"]),
        metric=metric,
        minimize=minimize,
        best=best,
        partial=partial,
        ran=0,
        skipped=0,
    )
    if figures and any(r["status"] == "ok" for r in records) and info["parameters"]:
        write_sweep_figures(output_dir)
    return result


# ----------------------------------------------------------------------------------------------
# Figures and the table


def write_sweep_figures(output_dir: Path) -> list[Path]:
    """The sweep figures of :mod:`moesim.plots` (PNG): ``figures/sweep_<metric>.png`` and the
    other figures of :data:`moesim.plots.SWEEP_FIGURES` that the results allow.

    The figures read the chosen metric and whether lowest or highest is best from
    ``sweep_summary.json`` (written just before), so ``moesim plot`` and ``moesim report`` draw
    the same files later. A figure the results cannot give (no finite value of the metric at
    all, say) is left out.
    """
    from moesim import plots

    return plots.write_figures(Path(output_dir), only=plots.SWEEP_FIGURES)


def aggregate_table(result: SweepResult, max_rows: int = 40):
    """Rich table of the aggregate: parameters, n, the chosen metric, key metrics.

    The chosen metric shows its mean ± 95% interval (Student's t) and its std over the seeds;
    the key metrics their means. Headers break after ``_`` and ``.`` (:func:`_header`), so the
    table fits 80 columns and names are never cut. The best row is bold green; long sweeps
    show the ``max_rows`` best rows.
    """
    from rich import box
    from rich.table import Table

    metric = result.metric
    rows = result.aggregate
    shown_rows = rows
    if len(rows) > max_rows:
        column = f"{metric}_mean"
        sign = 1 if result.minimize else -1
        shown_rows = sorted(
            rows,
            key=lambda r: sign * r[column] if math.isfinite(r.get(column, math.nan)) else math.inf,
        )[:max_rows]
    direction = "lowest" if result.minimize else "highest"
    title = f"sweep: {metric}, {direction} is best"
    if len(shown_rows) < len(rows):
        title += f" (the {len(shown_rows)} best of {len(rows)} rows)"
    extra = [m for m in KEY_METRICS if m != metric and any(f"{m}_mean" in r for r in rows)]
    caption = "mean ± 95% interval (Student's t), sd over the n seeds"
    if extra:
        caption += "; others: means"
    table = Table(
        title=title,
        caption=caption,
        title_style="bold",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    show_variant = len({r["variant"] for r in rows}) > 1

    def add_column(name: str, **options) -> None:
        # Fold rather than cut with "…" when even the short headers do not fit.
        table.add_column(_header(name), overflow="fold", **options)

    for key in result.parameters:
        add_column(key, justify="right")
    if show_variant:
        add_column("variant")
    add_column("n", justify="right")
    add_column(f"{metric} mean ± ci", justify="right")
    add_column("sd", justify="right")
    for m in extra:
        add_column(m, justify="right")
    for row in shown_rows:
        cells = [_short(row[key]) for key in result.parameters]
        if show_variant:
            cells.append(str(row["variant"]))
        cells.append(str(row["n"]))
        mean, ci = row.get(f"{metric}_mean", math.nan), row.get(f"{metric}_ci95", math.nan)
        cells.append("-" if not math.isfinite(mean) else f"{_short(mean)} ± {_short(ci)}")
        cells.append(_short(row.get(f"{metric}_std")))
        cells.extend(_short(row.get(f"{m}_mean")) for m in extra)
        style = "bold green" if row is result.best else None
        table.add_row(*cells, style=style)
    return table


def _header(name: str, width: int = 10) -> str:
    """``name`` on lines of about ``width`` characters, broken after ``_``, ``.`` or a space.

    ``final_max_vio_batch`` -> ``final_max_`` / ``vio_batch``: narrow columns that still show the
    whole name (the one ``--metric`` takes). A part longer than ``width`` keeps its own line.
    """
    parts = re.findall(r"[^_. ]+[_. ]?|[_. ]", name)
    lines = [""]
    for part in parts:
        if lines[-1] and len(lines[-1]) + len(part.rstrip()) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(line.rstrip(" ") for line in lines)


def _short(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:.3f}"
    return str(value)
