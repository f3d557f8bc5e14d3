"""The value language of a sweep grid: lists, ``logspace``/``linspace``/``range``, zip groups.

Pure functions, no I/O, low enough that validating a scenario's ``sweep.grid`` and planning a
sweep (:mod:`moesim.sweep`) read grids the same way. Sizes are counted arithmetically before
anything is expanded: a grid never holds more than :data:`MAX_SWEEP_POINTS` points, so
``range(0,1e9)`` or ``range(0,1,1e-300)`` is refused at once instead of filling the memory.

:func:`count_values` counts one parameter's values, :func:`check_size` the points of a whole
sweep, :func:`parse_values` reads one parameter's values and :func:`expand_grid` crosses the
parameters (or zips them) into combinations. Every problem is a :class:`SweepError` naming the
parameter.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np

from moesim.errors import Problem, ScenarioError

#: The most points a sweep may have: combinations x seeds x variants (docs/sweeps.md).
MAX_SWEEP_POINTS = 100_000


class SweepError(ScenarioError):
    """A sweep that cannot run as given (grid, seeds, metric); one line per problem."""


def grid_problem(key: str, message: str) -> Problem:
    """A problem of the grid parameter ``key`` (``sweep grid: KEY: message``)."""
    return Problem("sweep grid", None, None, key, message)


_FUNCTION = re.compile(r"^\s*(logspace|linspace|range)\s*\((.*)\)\s*$")


def is_function(spec) -> bool:
    """Whether ``spec`` is written as ``logspace(...)``, ``linspace(...)`` or ``range(...)``."""
    return isinstance(spec, str) and _FUNCTION.match(spec) is not None


def _clean(value: float) -> float:
    """12 significant digits: ``logspace(1e-4,1e-2,3)`` gives 0.001, not 0.0010000000000000002."""
    return float(f"{value:.12g}")


def count_values(key: str, spec) -> int:
    """How many values ``spec`` gives, counted without making them.

    Raises
    ------
    SweepError
        Naming ``key`` when the list is empty, the function cannot be read, an argument is not
        finite, a count is not a whole number, or there are more than :data:`MAX_SWEEP_POINTS`.
    """
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise SweepError([grid_problem(key, "no values (an empty list)")])
        return len(spec)
    if not isinstance(spec, str):
        return 1
    name, args = _read_function(key, spec)
    if name == "range":
        start, stop, step = (*args, 1.0)[:3]
        if all(a == int(a) for a in (start, stop, step)):
            count = len(range(int(start), int(stop), int(step)))
        else:
            span = (stop - start) / step  # inf when it overflows: too many, refused below
            count = 0 if span <= 0 else math.ceil(span) if span <= MAX_SWEEP_POINTS else math.inf
    else:
        count = int(args[2])
    if count > MAX_SWEEP_POINTS:
        shown = f"{count:,}" if count != math.inf else f"more than {MAX_SWEEP_POINTS:,}"
        raise SweepError(
            [
                grid_problem(
                    key,
                    f"{spec} gives {shown} values; a sweep may have at most "
                    f"{MAX_SWEEP_POINTS:,} points",
                )
            ]
        )
    if count == 0:
        raise SweepError([grid_problem(key, f"{spec} gives no values")])
    return count


def _read_function(key: str, spec: str) -> tuple[str, list[float]]:
    """The name and the numbers of ``logspace(a,b,n)`` and the like, checked."""
    match = _FUNCTION.match(spec)
    if match is None:
        raise SweepError(
            [
                grid_problem(
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
        raise SweepError([grid_problem(key, f"{name}() takes numbers, got {spec!r}")]) from None
    bad = None
    if not all(math.isfinite(a) for a in args):
        bad = f"{name}() takes finite numbers (no inf or nan), got {spec!r}"
    elif name in ("logspace", "linspace"):
        if len(args) != 3 or args[2] != int(args[2]) or args[2] < 1:
            bad = f"{name}(a,b,n) takes two numbers and a whole count n >= 1, got {spec!r}"
        elif name == "logspace" and (args[0] <= 0 or args[1] <= 0):
            bad = f"logspace(a,b,n) needs a > 0 and b > 0 (the values, not exponents), got {spec!r}"
    elif len(args) not in (2, 3) or (len(args) == 3 and args[2] == 0):
        bad = f"range(a,b[,step]) takes two or three numbers, step not 0; got {spec!r}"
    if bad:
        raise SweepError([grid_problem(key, bad)])
    return name, args


def parse_values(key: str, spec) -> list:
    """The values of one grid parameter: a list as is, or a ``logspace``/``linspace``/``range``.

    ``logspace(a, b, n)`` is ``n`` values from ``a`` to ``b`` evenly spaced in log (the values
    themselves, not exponents); ``linspace(a, b, n)`` evenly spaced; ``range(a, b[, step])`` as
    Python's (``b`` excluded), integers when every argument is one.

    Raises
    ------
    SweepError
        Naming ``key`` when :func:`count_values` refuses ``spec`` or a value appears twice (the
        point would run twice).
    """
    count_values(key, spec)  # before anything is made
    if isinstance(spec, (list, tuple)):
        return _distinct(key, list(spec))
    if not isinstance(spec, str):
        return [spec]
    name, args = _read_function(key, spec)
    return _distinct(key, _function_values(name, args), spec)


def _function_values(name: str, args: list[float]) -> list:
    """The values of a checked and counted ``logspace``, ``linspace`` or ``range``."""
    if name == "logspace":
        return [_clean(v) for v in np.geomspace(args[0], args[1], int(args[2]))]
    if name == "linspace":
        return [_clean(v) for v in np.linspace(args[0], args[1], int(args[2]))]
    start, stop, step = (*args, 1.0)[:3]
    if all(a == int(a) for a in (start, stop, step)):
        return list(range(int(start), int(stop), int(step)))
    count = max(0, math.ceil((stop - start) / step))
    return [_clean(start + i * step) for i in range(count)]


def _same(value):
    """A hashable stand-in for ``value`` that is equal exactly when the values are equal."""
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_same(item) for item in value))
    if isinstance(value, dict):
        return ("dict", frozenset((_same(key), _same(item)) for key, item in value.items()))
    return value


def _distinct(key: str, values: list, spec=None) -> list:
    """``values``, unless one appears twice: its points would run twice and count double."""
    seen = set()
    for value in values:
        # Equality, not identity: 1 == 1.0 is the same scenario (and hashes the same).
        same = _same(value)
        if same in seen:
            origin = f"{spec} gives" if spec is not None else "the list has"
            raise SweepError([grid_problem(key, f"{origin} the value {value!r} twice")])
        seen.add(same)
    return values


def check_size(grid: dict, zip_groups=(), seeds: int = 1, variants: int = 0) -> int:
    """The number of combinations of ``grid``, counted, once the whole sweep is within limits.

    Parameters
    ----------
    grid : dict[str, list or str]
        Key path -> values or a ``logspace(...)``-style string.
    zip_groups : iterable of list[str]
        Keys varied together, each group one axis.
    seeds, variants : int
        Seeds per combination and the scenario's variants (0: none): points are
        combinations x seeds x variants.

    Raises
    ------
    SweepError
        Every problem of the grid and zip groups, or more than :data:`MAX_SWEEP_POINTS`
        points; nothing is expanded.
    """
    counts, problems = _per_key(grid, count_values)
    groups = [list(group) for group in zip_groups]
    problems.extend(_zip_problems(grid, counts, groups))
    if problems:
        raise SweepError(problems)
    combinations = math.prod(counts[axis[0]] for axis in _axes(grid, groups))
    points = combinations * seeds * max(1, variants)
    if points > MAX_SWEEP_POINTS:
        parts = [f"{combinations:,} combination(s)", f"{seeds:,} seed(s)"]
        parts += [f"{variants} variants"] if variants else []
        raise SweepError(
            [
                grid_problem(
                    "",
                    f"{' x '.join(parts)} make {points:,} points, more than a sweep may have "
                    f"({MAX_SWEEP_POINTS:,}); sweep fewer values or split the sweep",
                )
            ]
        )
    return combinations


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
        two groups, zipped lists of unequal lengths, more than :data:`MAX_SWEEP_POINTS`
        combinations (counted before anything is expanded), a value given twice.
    """
    groups = [list(group) for group in zip_groups]
    check_size(grid, groups)
    values, problems = _per_key(grid, parse_values)
    if problems:
        raise SweepError(problems)
    axes = _axes(grid, groups)
    columns = [list(zip(*(values[key] for key in axis), strict=True)) for axis in axes]
    combos = []
    for choice in itertools.product(*columns):
        point = {}
        for axis, row in zip(axes, choice, strict=True):
            point.update(zip(axis, row, strict=True))
        combos.append({key: point[key] for key in grid})
    return combos


def _per_key(grid: dict, read) -> tuple[dict, list[Problem]]:
    """``read(key, spec)`` of every grid key, and every problem (not only the first)."""
    results: dict = {}
    problems: list[Problem] = []
    for key, spec in grid.items():
        try:
            results[key] = read(key, spec)
        except SweepError as error:
            problems.extend(error.problems)
    return results, problems


def _zip_problems(grid: dict, counts: dict[str, int], groups: list[list[str]]) -> list[Problem]:
    """Zip keys not in the grid or in two groups, zipped lists of unequal lengths."""
    problems = []
    seen: set[str] = set()
    for group in groups:
        for key in group:
            if key not in grid:
                problems.append(grid_problem(key, f"zipped but not in the grid ({_known(grid)})"))
            elif key in seen:
                problems.append(grid_problem(key, "appears in two zip groups"))
            seen.add(key)
        lengths = {key: counts[key] for key in group if key in counts}
        if len(set(lengths.values())) > 1:
            sizes = ", ".join(f"{key} has {n}" for key, n in lengths.items())
            problems.append(
                grid_problem(",".join(group), f"zipped lists need equal lengths ({sizes})")
            )
    return problems


def _axes(grid: dict, groups: list[list[str]]) -> list[list[str]]:
    """One axis per independent key or zip group, in the order its first key appears."""
    group_of = {key: group for group in groups for key in group}
    axes: list[list[str]] = []
    for key in grid:
        if key not in group_of:
            axes.append([key])
        elif group_of[key] not in axes:
            axes.append(group_of[key])
    return axes


def _known(grid: dict) -> str:
    return "grid keys: " + (", ".join(grid) if grid else "none")
