"""The grid of a sweep on the command line: ``--grid`` and ``--zip``.

The value language itself (lists, ``logspace``/``linspace``/``range``, zip groups, the limit on
points) is :mod:`moesim.scenario.grid`, shared with the validation of a file's ``sweep.grid``;
it is re-exported here. :func:`parse_grid_option` / :func:`parse_zip_option` read the command
line's ``--grid`` and ``--zip`` (values read as YAML, like ``--set``).
"""

from __future__ import annotations

from moesim.errors import Problem, ScenarioError
from moesim.scenario import parse_override
from moesim.scenario.grid import (
    MAX_SWEEP_POINTS,
    SweepError,
    check_size,
    count_values,
    expand_grid,
    grid_problem,
    is_function,
    parse_values,
)

__all__ = [
    "MAX_SWEEP_POINTS",
    "SweepError",
    "check_size",
    "count_values",
    "expand_grid",
    "grid_problem",
    "parse_grid_option",
    "parse_values",
    "parse_zip_option",
]

_GRID_FORM = "expected KEY=V1,V2,... or KEY=logspace(a,b,n), e.g. balance.bias.rate=1e-4,1e-3,1e-2"


def parse_grid_option(text: str) -> tuple[str, list | str]:
    """``--grid KEY=V1,V2,...`` or ``--grid KEY=logspace(a,b,n)`` -> (key, values or spec).

    Values are YAML scalars (``1e-3`` is a number, ``softmax`` text, ``null`` None); commas
    inside brackets or parentheses do not split. Problems name ``--grid``, not ``--set``.
    """
    key, separator, raw = text.partition("=")
    key = key.strip()
    if not separator or not key or not raw.strip():
        raise SweepError([Problem(f"--grid {text}", None, None, "", _GRID_FORM)])
    try:
        if is_function(raw):
            parse_override(f"{key}=0")  # checks the key's form
            return key, raw.strip()
        values = [parse_override(f"{key}={part}")[1] for part in _split_top_level(raw)]
    except ScenarioError as error:
        # parse_override speaks of --set; this value came from --grid.
        raise SweepError(
            [Problem(f"--grid {text}", None, None, "", p.message, None) for p in error.problems]
        ) from None
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
