"""Checks of what a run records and writes: the sweep's metric and grid, published points, the
memory a run needs, the output folder and the verdict bars.
"""

from __future__ import annotations

from moesim.errors import suggest
from moesim.results.metrics import metric_problem
from moesim.scenario import memory
from moesim.scenario.checks.problems import Report
from moesim.scenario.grid import SweepError, check_size
from moesim.scenario.schema import MetricsConfig, OutputConfig, Scenario, SweepConfig


def check_sweep_metric(sweep: SweepConfig, report: Report) -> None:
    """``sweep.metric`` names a summary metric."""
    if sweep.metric != SweepConfig.model_fields["metric"].default:
        problem = metric_problem(sweep.metric)
        if problem is not None:
            report.add(("sweep", "metric"), *problem)


def check_sweep_grid(scenario: Scenario, report: Report) -> None:
    """``sweep.grid`` reads as values and stays within the limit on points (counted only)."""
    sweep = scenario.sweep
    if report.prefix or not sweep.grid:
        return
    try:
        check_size(sweep.grid, sweep.zip, sweep.seeds, len(scenario.variants))
    except SweepError as error:
        for problem in error.problems:
            at = ("grid", problem.path) if problem.path in sweep.grid else ("grid",)
            report.add(("sweep", *at), problem.message)


def check_published(scenario: Scenario, report: Report) -> None:
    """Every published point names variants and a metric that exist, and has what it needs.

    Checked on the whole scenario only: a variant run carries its base's points unchanged.
    """
    if report.prefix:
        return
    names = [v.name for v in scenario.variants] or [scenario.name]
    for index, point in enumerate(scenario.published):
        at = ("published", index)
        for key in ("metric", "divide_by"):
            problem = metric_problem(getattr(point, key)) if getattr(point, key) else None
            if problem is not None:
                report.add((*at, key), *problem)
        if point.compare != "difference" and point.relative_to is None:
            report.add((*at, "compare"), f"compare: {point.compare} needs relative_to")
        trend = point.expect in ("increasing", "decreasing")
        if not trend and point.variant is None and scenario.variants:
            report.add((*at, "variant"), "name the variant this number is for", names[0])
        named = [("variant", point.variant)] if not trend and point.variant else []
        named += [("relative_to", point.relative_to)] if point.relative_to else []
        named += [(("variants", i), name) for i, name in enumerate(point.variants)]
        for key, name in named:
            if name not in names:
                path = (*at, *key) if isinstance(key, tuple) else (*at, key)
                message = f"no variant {name!r} (variants: {', '.join(names)})"
                report.add(path, message, suggest(name, names))
        if trend and len(point.variants) < 2:
            report.add((*at, "variants"), f"a trend ({point.expect}) needs two or more variants")
        if not trend and point.value is None and point.role != "pending":
            report.add((*at, "value"), f"expect: {point.expect} needs the published value")


def check_memory(scenario: Scenario, trace_shape, report: Report) -> None:
    """A run that cannot fit in memory should fail now, not after an hour of swapping; the
    problem is at the key of the largest part (:data:`memory.PART_FIXES`)."""
    needed = memory.estimated_memory(scenario, trace_shape)
    available = memory.physical_memory()
    if available is None or sum(needed.values()) <= 0.9 * available:
        return
    gib = 2.0**30
    parts = ", ".join(f"{name} {size / gib:.1f} GiB" for name, size in needed.items() if size)
    path, hint = memory.PART_FIXES[max(needed, key=needed.get)]
    report.add(
        path,
        f"the run would need about {sum(needed.values()) / gib:.1f} GiB ({parts}), more "
        f"than this machine's {available / gib:.1f} GiB",
        hint,
    )


def check_output(output: OutputConfig, report: Report) -> None:
    """``output.dir`` names a folder: not empty (the current folder by accident) and with any
    ``~`` expanded (loading expands it; what is left is a ``~user`` with no such user)."""
    if output.dir is None:
        return
    if not output.dir.strip():
        report.add(
            ("output", "dir"),
            "an empty path",
            "leave output.dir out (or null) for results/<name>, or write . for this folder",
        )
    elif output.dir.startswith("~"):
        user = output.dir[1:].split("/", 1)[0]
        report.add(("output", "dir"), f"cannot expand ~{user}: no such user", "write the path out")


def check_verdict_bars(metrics: MetricsConfig, report: Report) -> None:
    """The balanced bar is below the collapsed one (docs/model.md §6, the verdict)."""
    if metrics.balanced_max_vio > metrics.collapse_max_vio:
        report.add(
            ("metrics", "balanced_max_vio"),
            f"must be <= metrics.collapse_max_vio={metrics.collapse_max_vio:g} "
            f"(got {metrics.balanced_max_vio:g})",
            near=("metrics", "collapse_max_vio"),
        )
