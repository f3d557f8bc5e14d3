"""pydantic's errors as readable problems, and the list of problems of one scenario that the
cross-field checks add to.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ValidationError

from moesim.errors import Problem, suggest
from moesim.scenario.schema import (
    Scenario,
)
from moesim.scenario.source import Source

_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected text",
    "list_type": "expected a list",
    "model_type": "expected a mapping of keys",
    "dict_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
    "finite_number": "expected a finite number",
}

_BOUNDS = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}


def _model_at(path: tuple):
    """The pydantic model class holding the last key of ``path`` (for suggestions)."""
    model = Scenario
    for part in path[:-1]:
        if isinstance(part, int):
            continue
        if part == "variants":  # a variant holds the same keys as the scenario
            model = Scenario
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return None
    return model


def _message(error: dict, path: tuple) -> tuple[str, str | None]:
    """(message, hint) for one pydantic error at ``path``."""
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        model = _model_at(path)
        fields = list(model.model_fields) if model is not None else []
        return "unknown key", suggest(path[-1], fields)
    if kind == "missing":
        return "required", None
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        return f"expected one of {expected}, got {value!r}", suggest(value, choices)
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {value!r}", None
    if kind in _BOUNDS:
        limit = next(iter(error.get("ctx", {}).values()), "?")
        return f"must be {_BOUNDS[kind]} {limit} (got {value!r})", None
    if kind == "string_pattern_mismatch":
        return (
            f"must contain only letters, digits and _ . + -, and not start with . (got {value!r})",
            None,
        )
    return f"{error['msg'][0].lower()}{error['msg'][1:]} (got {value!r})", None


def validation_problems(error: ValidationError, source: Source, prefix=()) -> list[Problem]:
    problems = []
    for item in error.errors():
        path = tuple(part for part in item["loc"] if not str(part).startswith("function-"))
        # Optional fields report the failed member type as an extra location part; drop it.
        path = tuple(p for p in path if p not in ("float", "int", "bool", "str", "list[float]"))
        message, hint = _message(item, path)
        problems.append(source.problem((*prefix, *path), message, hint))
    return problems


class Report:
    """The problems of one scenario (or of ``variants[i]``, given as ``prefix``)."""

    def __init__(self, source: Source, prefix: tuple):
        self.source = source
        self.prefix = prefix
        self.problems: list[Problem] = []

    def add(self, path: tuple, message: str, hint=None, near: tuple | None = None) -> None:
        """A problem at ``path``; ``near`` is the setting that needs it, where ``path`` is not
        given (see :meth:`Source.problem`)."""
        near = (*self.prefix, *near) if near else None
        self.problems.append(self.source.problem((*self.prefix, *path), message, hint, near))
