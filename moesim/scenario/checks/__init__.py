"""Validating a scenario: pydantic's errors as readable problems, then the checks that involve
several fields, each reported at the field to change.

:func:`validate` is the one entry point; :func:`cross_problems` runs the named checks
(``check_router``, ``check_token_stream``, ...), each a rule a reader can find by its name, in
the module of the section it checks: ``router``, ``algorithms`` (``router.algorithm``), ``tokens``,
``balance``, ``output``, ``layers`` (``by_layer``), ``deployment``; ``problems`` turns pydantic's
errors into problems.
"""

from __future__ import annotations

from pydantic import ValidationError

from moesim.errors import Problem, ScenarioError
from moesim.scenario.checks.algorithms import check_router_algorithm
from moesim.scenario.checks.balance import check_aux_losses, check_aux_needs_learning
from moesim.scenario.checks.deployment import check_deployment
from moesim.scenario.checks.layers import check_by_layer
from moesim.scenario.checks.output import (
    check_memory,
    check_output,
    check_published,
    check_sweep_grid,
    check_sweep_metric,
    check_verdict_bars,
)
from moesim.scenario.checks.problems import Report, validation_problems
from moesim.scenario.checks.router import check_noisy_top_k, check_router
from moesim.scenario.checks.tokens import (
    check_token_stream,
    check_trace_file,
    check_unused_settings,
)
from moesim.scenario.schema import Scenario
from moesim.scenario.source import Source


def cross_problems(scenario: Scenario, source: Source, prefix=()) -> list[Problem]:
    """Every check that involves several fields, in a fixed order.

    Parameters
    ----------
    scenario : Scenario
        A scenario that passed the schema.
    source : Source
        Where its keys are, to locate the problems.
    prefix : tuple
        ``("variants", i)`` for a variant, else empty.
    """
    report = Report(source, prefix)
    check_router(scenario.router, report)
    check_noisy_top_k(scenario, report)
    check_router_algorithm(scenario, report)
    check_token_stream(scenario.tokens, report)
    check_unused_settings(scenario.tokens, report)
    trace_shape = check_trace_file(scenario.tokens, report)
    check_sweep_metric(scenario.sweep, report)
    check_sweep_grid(scenario, report)
    check_published(scenario, report)
    check_output(scenario.output, report)
    check_memory(scenario, trace_shape, report)
    check_aux_losses(scenario.balance.aux, report)
    check_aux_needs_learning(scenario, report)
    check_verdict_bars(scenario.metrics, report)
    check_deployment(scenario, report.add)
    check_by_layer(scenario, report, validation_problems, _check_layer)
    return report.problems


def _check_layer(layer: Scenario, report: Report) -> None:
    """The cross-field rules of the sections a ``by_layer`` entry may change, on one layer."""
    check_router(layer.router, report)
    check_noisy_top_k(layer, report)
    check_aux_losses(layer.balance.aux, report)
    check_aux_needs_learning(layer, report)


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    """Problems sorted by position; those without one (overrides) last, in the order found."""
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0, p.column or 0))


def validate(data: dict, source: Source, prefix=()) -> Scenario:
    """The scenario ``data`` describes, or every problem with it.

    Parameters
    ----------
    data : dict
        A scenario as nested mappings (a file's content, overrides applied).
    source : Source
        Where its keys came from, to locate the problems.
    prefix : tuple
        ``("variants", i)`` when ``data`` is a variant merged into the base, else empty.

    Raises
    ------
    ScenarioError
        The schema's problems, or else the cross-field checks', in file order.
    """
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        problems = validation_problems(error, source, prefix)
        raise ScenarioError(_in_file_order(problems)) from None
    problems = cross_problems(scenario, source, prefix)
    if problems:
        raise ScenarioError(_in_file_order(problems))
    return scenario
