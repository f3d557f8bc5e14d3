"""The plan of a sweep: every point (combination x seed x variant), validated before anything runs.

:func:`plan_sweep` is what ``moesim sweep`` calls and what a notebook calls: it merges the
scenario's ``sweep:`` section with the caller's grid, zip groups, seeds and metric, expands the
grid (:func:`~moesim.sweep.grid.expand_grid`), checks the metric and validates every point
(:func:`sweep_points`), and returns a :class:`SweepPlan` for :func:`moesim.sweep.run_sweep`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from moesim.errors import Problem, ScenarioError
from moesim.results.folder import to_jsonable
from moesim.results.metrics import metric_problem
from moesim.scenario import Scenario, expand_variants, load_scenario
from moesim.sweep.grid import SweepError, check_size, expand_grid, grid_problem


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


def sweep_points(scenario: Scenario, grid: list[dict], seeds: int = 1) -> list[Point]:
    """Every combination x seed (x variant), each validated through ``load_scenario``.

    Parameters
    ----------
    scenario : Scenario
        The base scenario; its ``seed`` is the first seed, then ``seed + 1``, ...
    grid : list[dict]
        Parameter combinations from :func:`~moesim.sweep.grid.expand_grid`.
    seeds : int
        Seeds per combination.

    Raises
    ------
    ScenarioError
        Every distinct problem of every point, each naming the first point that has it,
        before anything runs.
    """
    if seeds < 1:
        raise SweepError([Problem("--seeds", None, None, "", f"must be >= 1 (got {seeds})")])
    if grid and "seed" in grid[0]:
        # Each point's seed is the base seed + i; a swept seed would be overwritten unseen.
        raise SweepError(
            [grid_problem("seed", "is set by the seeds (seed, seed+1, ...): use --seeds N")]
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
                variants = expand_variants(load_scenario(scenario, overrides))
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


def sweep_hash(scenario: Scenario, points: list[Point]) -> str:
    """Identity of a sweep: the base scenario (without its sweep/output sections) and points."""
    base = scenario.resolved_dict()
    for key in ("sweep", "output", "description"):
        base.pop(key, None)
    text = json.dumps({"base": base, "points": sorted(p.id for p in points)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_metric(metric: str, source: str = "--metric", path: str = "") -> None:
    """Raise unless ``metric`` is a numeric summary metric (``SUMMARY_METRICS``).

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


@dataclass(frozen=True)
class SweepPlan:
    """A sweep ready to run: the base scenario, the sweep as given, and its validated points.

    Attributes
    ----------
    scenario : Scenario
        The base scenario (its ``sweep:`` section merged into the fields below).
    grid : dict[str, list or str]
        Key path -> values or ``logspace(...)``-style text, as given (recorded in
        ``sweep_summary.json``).
    zip_groups : list[list[str]]
        Groups of grid keys varied together.
    seeds : int
        Seeds per combination: ``scenario.seed``, ``+ 1``, ...
    metric : str
        Summary metric whose mean over the seeds picks the best combination.
    minimize : bool
        Best is the smallest mean (False: the largest).
    combinations : list[dict]
        Every parameter combination (:func:`~moesim.sweep.grid.expand_grid`).
    points : list[Point]
        Every combination x seed x variant, validated (:func:`sweep_points`).
    """

    scenario: Scenario
    grid: dict
    zip_groups: list[list[str]]
    seeds: int
    metric: str
    minimize: bool
    combinations: list[dict] = field(repr=False)
    points: list[Point] = field(repr=False)

    @property
    def parameters(self) -> list[str]:
        """The swept key paths, in grid order (the first columns of sweep.csv)."""
        return list(self.points[0].params) if self.points else list(self.grid)

    @property
    def identity(self) -> str:
        """:func:`sweep_hash` of the plan: a folder holding another identity is another sweep."""
        return sweep_hash(self.scenario, self.points)


def plan_sweep(
    scenario: Scenario,
    *,
    grid: Mapping[str, list | str] | None = None,
    zip_groups: Iterable[Iterable[str]] | None = None,
    seeds: int | None = None,
    metric: str | None = None,
    minimize: bool | None = None,
) -> SweepPlan:
    """Plan a sweep of ``scenario``: its ``sweep:`` section, overridden by the arguments.

    Parameters
    ----------
    scenario : Scenario
        The base scenario, from :func:`moesim.scenario.load_scenario`.
    grid : mapping, optional
        Key path -> list of values or ``"logspace(a,b,n)"``, ``"linspace(a,b,n)"``,
        ``"range(a,b[,step])"``; wins over ``sweep.grid`` key by key (``--grid``).
    zip_groups : iterable of iterable of str, optional
        Groups of keys varied together (``--zip``); a group of ``sweep.zip`` that shares a key
        with one of them is dropped.
    seeds, metric, minimize : optional
        Seeds per combination, the metric that picks the best point and its direction;
        ``sweep.seeds``, ``sweep.metric`` and ``sweep.minimize`` when None.

    Returns
    -------
    SweepPlan

    Raises
    ------
    ScenarioError
        (:class:`~moesim.sweep.grid.SweepError` for the grid, seeds and metric) every problem
        of the grid (more than :data:`~moesim.scenario.grid.MAX_SWEEP_POINTS` points, counted
        before anything is expanded), then of the points (each naming the first point that has
        it), then an unknown or non-numeric metric: before anything runs or is written.
    """
    spec = scenario.sweep
    merged = {**spec.grid, **(grid or {})}
    given = [list(group) for group in zip_groups or []]
    given_keys = {key for group in given for key in group}
    groups = given + [list(group) for group in spec.zip if not given_keys & set(group)]
    seeds = spec.seeds if seeds is None else seeds
    if seeds >= 1:
        # Counted before anything is expanded or validated: at most MAX_SWEEP_POINTS points.
        check_size(merged, groups, seeds, len(scenario.variants))
    combinations = expand_grid(merged, groups)
    points = sweep_points(scenario, combinations, seeds)
    # The scenario's own sweep.metric was checked with the scenario (file:line or --set).
    if metric is not None:
        check_metric(metric)
    return SweepPlan(
        scenario=scenario,
        grid=merged,
        zip_groups=groups,
        seeds=seeds,
        metric=spec.metric if metric is None else metric,
        minimize=spec.minimize if minimize is None else minimize,
        combinations=combinations,
        points=points,
    )
