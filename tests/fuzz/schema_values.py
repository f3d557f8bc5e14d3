"""Field values at and beyond the scenario schema's bounds, read from the schema itself.

:func:`schema_fields` walks :class:`moesim.scenario.schema.Scenario` and returns, for every
scalar field, its type, its bounds (pydantic's ``ge``/``gt``/``le``/``lt``), its choices and
whether it may be null; :func:`field_values` turns one into a hypothesis strategy of values
inside, at and beyond those bounds, plus values of the wrong type.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass

import annotated_types
from hypothesis import strategies as st
from pydantic import BaseModel

from moesim.scenario.schema import Scenario

from .budget import allowed


class Raw(str):
    """A scalar written into the YAML text as is (``010``, ``1:30``, ``.nan``, ``yes``)."""


@dataclass(frozen=True)
class FieldSpec:
    """One scalar field of the schema."""

    path: tuple[str, ...]
    kind: str  # int, float, bool, choice, text, floats (a list of floats), other
    lower: float | None = None
    lower_strict: bool = False
    upper: float | None = None
    upper_strict: bool = False
    choices: tuple = ()
    nullable: bool = False
    default: object = None

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


#: Sections the fuzzer builds on its own (names, free text, sweeps, variants, published points).
SKIPPED = {"name", "description", "variants", "published", "sweep"}


def _members(annotation) -> list:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return list(typing.get_args(annotation))
    return [annotation]


def _kind(members: list) -> tuple[str, tuple]:
    for member in members:
        if typing.get_origin(member) is typing.Literal:
            return "choice", typing.get_args(member)
    if bool in members:
        return "bool", ()
    if float in members:
        return "float", ()
    if int in members:
        return "int", ()
    if str in members:
        return "text", ()
    if any(typing.get_origin(m) is list and typing.get_args(m) == (float,) for m in members):
        return "floats", ()
    return "other", ()


def schema_fields(model: type[BaseModel] = Scenario, prefix: tuple = ()) -> list[FieldSpec]:
    """Every scalar field of ``model`` and its sections, with bounds and choices."""
    found = []
    for name, info in model.model_fields.items():
        if not prefix and name in SKIPPED:
            continue
        members = _members(info.annotation)
        section = next(
            (m for m in members if isinstance(m, type) and issubclass(m, BaseModel)), None
        )
        if section is not None:
            found.extend(schema_fields(section, (*prefix, name)))
            continue
        kind, choices = _kind(members)
        bounds = {}
        for item in info.metadata:
            for attr, key in (("ge", "lower"), ("gt", "lower"), ("le", "upper"), ("lt", "upper")):
                if isinstance(item, getattr(annotated_types, attr.capitalize())):
                    bounds[key] = getattr(item, attr)
                    bounds[f"{key}_strict"] = attr in ("gt", "lt")
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        found.append(
            FieldSpec(
                (*prefix, name),
                kind,
                choices=choices,
                nullable=type(None) in members,
                default=default,
                **bounds,
            )
        )
    return found


def _around(spec: FieldSpec) -> list:
    """Values at each bound and just beyond it."""
    values = []
    for bound, strict, sign in (
        (spec.lower, spec.lower_strict, -1),
        (spec.upper, spec.upper_strict, 1),
    ):
        if bound is None:
            continue
        if spec.kind == "int":
            bound = int(bound)
            values += [bound, bound + sign, bound + sign * 10**6]
        else:
            beyond = math.nextafter(float(bound), sign * math.inf)
            inside = math.nextafter(float(bound), -sign * math.inf)
            values += [float(bound), beyond, inside if strict else float(bound), bound * 10 + sign]
    return values


def _wrong_type(spec: FieldSpec) -> st.SearchStrategy:
    return st.sampled_from(
        [Raw("true"), Raw('"8"'), Raw("[1, 2]"), Raw("{a: 1}"), Raw("~"), Raw("''"), Raw("0x10")]
    )


def _odd_numbers() -> st.SearchStrategy:
    """Huge, tiny, non-finite and YAML 1.1 forms of numbers."""
    return st.sampled_from(
        [
            10**30,
            -(10**30),
            2**63,
            2**64 + 1,
            Raw("9" * 5000),
            1e308,
            -1e308,
            5e-324,
            -0.0,
            Raw(".inf"),
            Raw("-.inf"),
            Raw(".nan"),
            Raw("010"),
            Raw("0o17"),
            Raw("1:30"),
            Raw("1_000"),
            Raw("+12"),
            Raw(".5"),
            Raw("1e400"),
            Raw("1.0e+3"),
        ]
    )


def valid_values(spec: FieldSpec, *, cheap: bool = False) -> st.SearchStrategy:
    """Values the schema accepts on their own: in range and at the bounds."""
    if spec.kind == "choice":
        return st.sampled_from(spec.choices)
    if spec.kind == "bool":
        return st.booleans()
    if spec.kind not in ("int", "float") or spec.lower is None or spec.upper is None:
        return st.just(spec.default)
    low, high = spec.lower, spec.upper
    if spec.kind == "int":
        high = min(high, 64) if cheap else high
        return st.one_of(st.sampled_from([int(low), int(high)]), st.integers(int(low), int(high)))
    edges = [float(b) for b, strict in ((low, spec.lower_strict), (high, spec.upper_strict))]
    edges = [e for e in edges if e != low or not spec.lower_strict]
    inside = st.floats(float(low), float(high), allow_nan=False, exclude_min=spec.lower_strict)
    return st.one_of(st.sampled_from(edges), inside) if edges else inside


def field_values(spec: FieldSpec, *, cheap: bool = False) -> st.SearchStrategy:
    """Values for one field: in range, at and beyond the bounds, wrong types, odd numbers.

    With ``cheap`` an integer field is never set at or near its upper bound (for runs that
    must stay small: a valid upper bound may mean 16 million tokens per step).
    """
    options: list[st.SearchStrategy] = [_wrong_type(spec)]
    if spec.nullable:
        options.append(st.none())
    if spec.kind == "choice":
        options.append(st.sampled_from(spec.choices))
        options.append(st.sampled_from([f"{spec.choices[0]}x", spec.choices[0].upper(), 1]))
    elif spec.kind == "bool":
        options.append(st.booleans())
        options.append(st.sampled_from([Raw("yes"), Raw("off"), Raw("on"), 1, 0]))
    elif spec.kind in ("int", "float"):
        around = _around(spec)
        if cheap and spec.kind == "int" and spec.upper is not None:
            limit = spec.upper
            around = [v for v in around if v > limit or v < 64]
        if around:
            options.append(st.sampled_from(around))
        low = spec.lower if spec.lower is not None else -1e6
        high = spec.upper if spec.upper is not None else 1e6
        if spec.kind == "int":
            high = min(high, 64) if cheap else high
            options.append(st.integers(int(low), int(max(low, high))))
        else:
            options.append(st.floats(float(low), float(high), allow_nan=False))
        options.append(_odd_numbers())
    elif spec.kind == "floats":
        options.append(
            st.lists(st.one_of(st.floats(0, 10), st.sampled_from([1e308, -1.0, 0.0])), max_size=6)
        )
    elif spec.kind == "text":
        # Control characters make a file PyYAML will not read ("control" in budget.py).
        categories = () if allowed("control") else ("Cc", "Cs")
        options.append(st.text(st.characters(exclude_categories=categories), max_size=12))
        options.append(st.sampled_from(["a b.npy", "[bold]x", "[/]", "~/x", "", "é.npz"]))
    return st.one_of(options)
