"""The checks of ``by_layer`` (docs/model.md §1.1), run by :mod:`moesim.scenario.checks` with
its report: every entry selects layers of the model and sets only what a layer may, at least
one layer has a router, and every layer's merged settings pass the schema and the cross-field
rules of the router's sections, each problem reported at the entry that set the key."""

from __future__ import annotations

from pydantic import ValidationError

from moesim.errors import Problem
from moesim.scenario.layers import (
    SAME_IN_EVERY_LAYER,
    SelectorError,
    layer_data,
    layer_entries,
    selected_layers,
)
from moesim.scenario.schema import Scenario
from moesim.scenario.source import has_path


def check_by_layer(scenario: Scenario, report, validation_problems, check_layer) -> None:
    """Add the problems of ``scenario.by_layer`` to ``report`` (a
    :class:`~moesim.scenario.checks.problems.Report`).

    ``validation_problems(error, source)`` turns pydantic's errors into problems and
    ``check_layer(layer, report)`` runs the cross-field rules on one layer's scenario (both from
    :mod:`moesim.scenario.checks`, which imports this module).
    """
    if not scenario.by_layer:
        return
    found = len(report.problems)
    dense: dict[int, int] = {}  # layer -> the entry that made it dense
    for index, settings in enumerate(scenario.by_layer):
        where = ("by_layer", index)
        try:
            numbers = selected_layers(settings.layers, scenario.layers)
        except SelectorError as error:
            report.add((*where, "layers"), *error.args)
            continue
        _check_entry(settings, where, report)
        made_dense = [n for n in numbers if n in dense]
        if not settings.dense and made_dense and settings.overrides():
            report.add(
                (*where, "layers"),
                f"layer {made_dense[0]} is dense (by_layer[{dense[made_dense[0]]}]): it has no "
                "router to set",
                "select only layers with a router",
            )
        for number in numbers if settings.dense else ():
            dense.setdefault(number, index)
    if len(dense) == scenario.layers:
        report.add(
            ("layers",),
            f"every one of the {scenario.layers} layer(s) is dense: nothing would be routed",
            "leave at least one layer without dense: true",
            near=("by_layer",),
        )
    if len(report.problems) == found:
        _check_layer_settings(scenario, report, validation_problems, check_layer)


def _check_entry(settings, where: tuple, report) -> None:
    """Nothing set on dense layers, nothing that every layer must share."""
    if settings.dense and settings.overrides():
        given = ", ".join(settings.overrides())
        report.add(
            (*where, "dense"),
            f"a dense layer has no router, so {given} would be ignored",
            "give the settings in an entry of their own, for layers with a router",
        )
    for path, reason in SAME_IN_EVERY_LAYER.items():
        section = settings.overrides().get(path[0]) or {}
        if path[1] in section:
            report.add(
                (*where, *path),
                f"cannot differ by layer: {reason}",
                f"set {'.'.join(path)} for the whole scenario",
            )


def _check_layer_settings(scenario: Scenario, report, validation_problems, check_layer) -> None:
    """The schema and the cross-field rules on each distinct layer's merged settings; a problem
    is reported at the last entry that set the key (else at the layer's first entry)."""
    base = scenario.model_dump(mode="json")
    seen: set[tuple[int, ...]] = set()
    for chosen in layer_entries(scenario):
        chosen = tuple(i for i in chosen if scenario.by_layer[i].overrides())
        if not chosen or chosen in seen:
            continue
        seen.add(chosen)
        located = _Located(report.source, scenario, chosen)
        try:
            layer = Scenario.model_validate(layer_data(scenario, chosen, base))
        except ValidationError as error:
            problems = validation_problems(error, located)
        else:
            layer_report = type(report)(located, ())
            check_layer(layer, layer_report)
            problems = layer_report.problems
        # Layers that share an entry share its problems: report each once.
        report.problems.extend(p for p in problems if p not in report.problems)


class _Located:
    """A ``Source`` that reports a layer's problem at the ``by_layer`` entry that set the key."""

    def __init__(self, source, scenario: Scenario, chosen: tuple[int, ...]):
        self.source = source
        self.scenario = scenario
        self.chosen = chosen

    def _prefix(self, path: tuple) -> tuple:
        for index in reversed(self.chosen):
            if has_path(self.scenario.by_layer[index].overrides(), path):
                return ("by_layer", index)
        return ("by_layer", self.chosen[0])

    def problem(self, path: tuple, message: str, hint=None, near=None) -> Problem:
        prefix = self._prefix(tuple(path))
        near = (*prefix, *near) if near else None
        return self.source.problem((*prefix, *path), message, hint, near)
