"""The grid language of a sweep: lists of values, ``logspace``/``linspace``/``range``, zip groups.

Pure functions, no I/O: :func:`parse_values` reads one parameter's values, :func:`expand_grid`
crosses the parameters (or zips them) into combinations, and :func:`parse_grid_option` /
:func:`parse_zip_option` read the command line's ``--grid`` and ``--zip`` (values read as YAML,
like ``--set``). Every problem is a :class:`SweepError` naming the parameter.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np

from moesim.errors import Problem, ScenarioError
from moesim.scenario import parse_override


class SweepError(ScenarioError):
    """A sweep that cannot run as given (grid, seeds, metric); one line per problem."""


def grid_problem(key: str, message: str) -> Problem:
    """A problem of the grid parameter ``key`` (``sweep grid: KEY: message``)."""
    return Problem("sweep grid", None, None, key, message)


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
            raise SweepError([grid_problem(key, "no values (an empty list)")])
        return _distinct(key, list(spec))
    if not isinstance(spec, str):
        return [spec]
    name, args = _read_function(key, spec)
    values = _function_values(name, args)
    if not values:
        raise SweepError([grid_problem(key, f"{spec} gives no values")])
    return _distinct(key, values, spec)


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
    if name in ("logspace", "linspace"):
        if len(args) != 3 or args[2] != int(args[2]) or args[2] < 1:
            bad = f"{name}(a,b,n) takes two numbers and a count n >= 1, got {spec!r}"
        elif name == "logspace" and (args[0] <= 0 or args[1] <= 0):
            bad = f"logspace(a,b,n) needs a > 0 and b > 0 (the values, not exponents), got {spec!r}"
    elif len(args) not in (2, 3) or (len(args) == 3 and args[2] == 0):
        bad = f"range(a,b[,step]) takes two or three numbers, step not 0; got {spec!r}"
    if bad:
        raise SweepError([grid_problem(key, bad)])
    return name, args


def _function_values(name: str, args: list[float]) -> list:
    """The values of a checked ``logspace``, ``linspace`` or ``range``."""
    if name == "logspace":
        return [_clean(v) for v in np.geomspace(args[0], args[1], int(args[2]))]
    if name == "linspace":
        return [_clean(v) for v in np.linspace(args[0], args[1], int(args[2]))]
    start, stop, step = (*args, 1.0)[:3]
    if all(a == int(a) for a in (start, stop, step)):
        return list(range(int(start), int(stop), int(step)))
    count = max(0, math.ceil((stop - start) / step))
    return [_clean(start + i * step) for i in range(count)]


def _distinct(key: str, values: list, spec=None) -> list:
    """``values``, unless one appears twice: its points would run twice and count double."""
    for i, value in enumerate(values):
        # Equality, not hashing: values may be lists, and 1 == 1.0 is the same scenario.
        if any(value == earlier for earlier in values[:i]):
            origin = f"{spec} gives" if spec is not None else "the list has"
            raise SweepError([grid_problem(key, f"{origin} the value {value!r} twice")])
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
    groups = [list(group) for group in zip_groups]
    problems.extend(_zip_problems(grid, values, groups))
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


def _zip_problems(grid: dict, values: dict[str, list], groups: list[list[str]]) -> list[Problem]:
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
        lengths = {key: len(values[key]) for key in group if key in values}
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


def parse_grid_option(text: str) -> tuple[str, list | str]:
    """``--grid KEY=V1,V2,...`` or ``--grid KEY=logspace(a,b,n)`` -> (key, values or spec).

    Values are YAML scalars (``1e-3`` is a number, ``softmax`` text, ``null`` None); commas
    inside brackets or parentheses do not split.
    """
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


def parse_zip_option(text: str) -> list[str]:
    """``--zip KEY1,KEY2`` -> the group of keys varied together (blanks dropped)."""
    return [key.strip() for key in text.split(",") if key.strip()]


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
