"""The fidelity table: moesim's value of every published number it claims to reproduce.

Each file of ``scenarios/papers/`` is one published setup: an ordinary scenario (its variants are
the paper's settings) with a ``published:`` section that lists the paper's numbers, each with the
variant and summary metric it corresponds to and whether it was *fit* (a calibration constant
was chosen on it), is *predicted* (nothing was tuned on it) or is *pending* (a model moesim does
not have yet). :func:`run_fidelity` runs every file at several seeds and :func:`render_fidelity`
writes the table of ``docs/fidelity.md``: published value, moesim's mean with its spread, and a
verdict that anyone can regenerate with ``moesim papers``.

Verdicts of a number (``expect: value``): *within 2x* when moesim's mean is within a factor of
two of the published value (and of the same sign), *right order* within a factor of ten, else
*miss*. A lower bound (``expect: at_least``, e.g. "collapses": MaxVio above a level) is *hit* or
*miss*. A trend (``expect: increasing`` / ``decreasing`` over ``variants``) is *hit* when the
means move that way at every step, else *miss*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from moesim.results.folder import package_versions, write_atomic
from moesim.results.metrics import format_number, metric_spec
from moesim.scenario import load_scenario
from moesim.statistics import mean_interval
from moesim.sweep import plan_sweep, run_sweep

#: Where the paper scenarios live and where the table goes (relative to the repository).
PAPERS_FOLDER = Path("scenarios/papers")
FIDELITY_PAGE = Path("docs/fidelity.md")
RESULTS_FOLDER = Path("results/papers")
#: Seeds per paper scenario: three, as the table's spread is over seeds.
DEFAULT_SEEDS = 3


@dataclass
class Row:
    """One published number against moesim's: a row of the fidelity table."""

    scenario: str
    source: str
    setting: str
    metric: str
    expect: str
    role: str
    published: float | None
    published_text: str
    values: list[float] = field(default_factory=list)  # moesim, one per seed (or per variant)
    mean: float = math.nan
    half_width: float = math.nan
    verdict: str = ""
    note: str = ""
    percent: bool = False  # shown in % (a percent metric, or a perplexity gap)


def paper_scenarios(
    folder: Path = PAPERS_FOLDER, overrides: list[str] | None = None
) -> list[tuple[Path, object]]:
    """``(path, scenario)`` of every ``*.yaml`` of ``folder`` (by name) with ``published:`` points.

    Raises
    ------
    FileNotFoundError
        When ``folder`` holds no scenario file.
    moesim.ScenarioError
        When a file is not a valid scenario (file, line, key path and what was expected).
    """
    paths = sorted(Path(folder).glob("*.yaml"))
    if not paths:
        raise FileNotFoundError(f"no paper scenarios (*.yaml) in {folder}")
    loaded = [(path, load_scenario(path, overrides or [])) for path in paths]
    return [(path, scenario) for path, scenario in loaded if scenario.published]


def run_fidelity(
    folder: Path = PAPERS_FOLDER,
    *,
    seeds: int = DEFAULT_SEEDS,
    jobs: int = 1,
    overrides: list[str] | None = None,
    progress: bool = False,
    results_dir: Path = RESULTS_FOLDER,
) -> tuple[list[Row], dict]:
    """Run every paper scenario of ``folder`` at ``seeds`` seeds; the table's rows and metadata.

    Each scenario runs as a sweep of its variants x seeds (:func:`moesim.sweep.run_sweep`) into
    ``results_dir/<name>-<sweep hash>``: an interrupted call resumes where it stopped, and a
    changed scenario gets a folder of its own instead of replacing another's runs.

    Parameters
    ----------
    seeds : int
        Seeds ``seed .. seed+seeds-1`` of each scenario.
    jobs : int
        Worker processes (each single-threaded). Results do not depend on it.
    overrides : list of str, optional
        ``--set`` overrides applied to every scenario (e.g. ``steps=50`` for a quick check).

    Raises
    ------
    FileNotFoundError
        ``folder`` holds no scenario.
    moesim.ScenarioError
        A scenario, or its published points, is not valid.
    KeyboardInterrupt
        Interrupted: the finished runs are stored and the next call resumes.
    """
    overrides = list(overrides or [])
    rows: list[Row] = []
    folders = []
    for _, scenario in paper_scenarios(folder, overrides):
        if all(point.role == "pending" for point in scenario.published):
            rows += evaluate(scenario, [])  # nothing to measure yet: do not run it
            continue
        # The runs do not depend on the published numbers: editing them keeps the stored runs.
        runs_only = scenario.model_copy(update={"published": []})
        plan = plan_sweep(runs_only, grid={}, zip_groups=[], seeds=seeds)
        output = Path(results_dir) / f"{scenario.name}-{plan.identity[:8]}"
        result = run_sweep(plan, output, jobs=jobs, progress=progress, figures=False)
        if result.partial:
            raise KeyboardInterrupt(f"{output} is partial: run the same command to resume")
        runs: dict[int, list[dict]] = {}
        for record in result.records:
            runs.setdefault(record["seed"], []).append(record["summary"])
        rows += evaluate(scenario, [runs[seed] for seed in sorted(runs)])
        folders.append(str(output))
    meta = {
        "seeds": seeds,
        "overrides": overrides,
        "folders": folders,
        "versions": package_versions(),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return rows, meta


def evaluate(scenario, runs: list[list[dict]]) -> list[Row]:
    """The rows of one paper scenario from its runs (one list of variant summaries per seed)."""
    by_variant = [{summary["variant"]: summary for summary in run} for run in runs]
    rows = []
    for point in scenario.published:
        row = Row(
            scenario=scenario.name,
            source=point.source,
            setting=point.setting,
            metric=point.metric,
            expect=point.expect,
            role=point.role,
            published=point.value,
            published_text=point.value_text or _published_text(point),
            note=point.note or "",
            percent=point.compare == "perplexity_gap"
            or (metric_spec(point.metric).percent and point.divide_by is None),
        )
        if point.role == "pending":
            row.verdict = "pending"
            rows.append(row)
            continue
        if point.expect in ("increasing", "decreasing"):
            _judge_trend(row, point, by_variant)
        else:
            variant = point.variant or scenario.name
            values = [_metric_of(run, variant, point) for run in by_variant]
            row.values = values
            row.mean, row.half_width, _ = mean_interval(values)
            row.verdict = _judge_value(row.mean, point.value, point.expect)
        rows.append(row)
    return rows


def _metric_of(run: dict, variant: str, point) -> float:
    """moesim's value of ``point`` in one run (a seed): the metric of ``variant``, divided by
    ``divide_by``, compared with ``relative_to`` as ``compare`` says; NaN when missing."""

    def value_of(name: str) -> float:
        number = run[name].get(point.metric)
        number = math.nan if number is None else float(number)
        if point.divide_by is not None:
            divisor = run[name].get(point.divide_by)
            number = number / float(divisor) if divisor else math.nan
        return number

    value = value_of(variant)
    if point.relative_to is not None:
        value -= value_of(point.relative_to)
        if point.compare == "perplexity_gap":
            value = math.expm1(value)
    return value


def _judge_value(mean: float, published: float, expect: str) -> str:
    if not math.isfinite(mean):
        return "miss (no value)"
    if expect == "at_least":
        return "hit" if mean >= published else "miss"
    if expect == "at_most":
        return "hit" if mean <= published else "miss"
    if published == 0 or mean == 0 or (mean > 0) != (published > 0):
        return "miss (sign)" if mean != published else "within 2x"
    ratio = max(mean / published, published / mean)
    if ratio <= 2:
        return "within 2x"
    if ratio <= 10:
        return "right order"
    return f"miss ({ratio:.0f}x too {'small' if abs(mean) < abs(published) else 'large'})"


def _judge_trend(row: Row, point, by_variant: list[dict]) -> None:
    means = []
    for variant in point.variants:
        mean, _, _ = mean_interval([_metric_of(run, variant, point) for run in by_variant])
        means.append(mean)
    row.values = means
    steps = [b - a for a, b in zip(means, means[1:], strict=False)]
    rising = point.expect == "increasing"
    moved = [step > 0 if rising else step < 0 for step in steps]
    row.verdict = "hit" if steps and all(moved) else f"miss ({sum(moved)}/{len(steps)} steps)"
    row.mean = means[-1] if means else math.nan


def _published_text(point) -> str:
    if point.expect in ("increasing", "decreasing"):
        return f"{point.expect} over {', '.join(point.variants)}"
    bound = {"at_least": ">= ", "at_most": "<= "}.get(point.expect, "")
    return bound + format_number(point.value)


# ----------------------------------------------------------------------------------------------
# The page


def verdict_counts(rows: list[Row]) -> dict[str, int]:
    """How many rows of each kind of verdict (``within 2x``, ``miss``, ``pending``, ...)."""
    counts: dict[str, int] = {}
    for row in rows:
        key = row.verdict.split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
    return counts


def moesim_text(row: Row) -> str:
    if row.verdict == "pending":
        return "-"
    scale = 100.0 if row.percent else 1.0
    unit = "%" if row.percent else ""
    if row.expect in ("increasing", "decreasing"):
        return " -> ".join(format_number(v * scale) + unit for v in row.values)
    spread = f" ± {format_number(row.half_width * scale)}{unit}" if len(row.values) > 1 else ""
    return f"{format_number(row.mean * scale)}{unit}{spread}"


def render_fidelity(rows: list[Row], meta: dict, *, command: str) -> str:
    """``docs/fidelity.md``: the table, how to regenerate it, and the verdict counts."""
    counts = verdict_counts(rows)
    lines = [
        "# Fidelity: published numbers against moesim",
        "",
        f"Generated by `{command}` from `scenarios/papers/` (do not edit by hand).",
        "Every row is a number a paper published and moesim's value for the same setting: the",
        f"mean over {meta['seeds']} seed(s) ± the 95% Student's t interval (a trend shows the",
        "means in order). *fit* rows chose one of the two calibration constants (docs/model.md",
        "§5.3); *predicted* rows had nothing tuned on them; *pending* rows need a model moesim",
        "does not have yet. A value is *within 2x* or of the *right order* (within 10x) of the",
        "published one, else a *miss*; a bound or a trend is a *hit* when it holds at the means.",
        "",
        "Verdicts: " + ", ".join(f"{key} {count}" for key, count in sorted(counts.items())) + ".",
        "",
        "| paper, where | setting | metric | published | moesim | fit or predicted | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        metric = row.metric if row.note == "" else f"{row.metric} ({row.note})"
        cells = [
            row.source,
            row.setting,
            metric,
            row.published_text,
            moesim_text(row),
            row.role,
            row.verdict,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    versions = meta["versions"]
    lines += [
        "",
        f"Runs kept in {', '.join(f'`{f}`' for f in meta['folders'])}.",
        "",
        f"Written {meta['written_at']} with moesim {versions.get('moesim')}, numpy "
        f"{versions.get('numpy')}, numba {versions.get('numba')}"
        + (f"; overrides {' '.join(meta['overrides'])}" if meta["overrides"] else "")
        + ".",
        "",
    ]
    return "\n".join(lines)


def write_fidelity(rows: list[Row], meta: dict, path: Path, *, command: str) -> Path:
    """Write the page atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, render_fidelity(rows, meta, command=command))
    return path
