"""The numbers of a sweep: rows of sweep.csv, the aggregate over seeds, the best row, the table.

Rows are ordered by the swept values with :func:`moesim.results.metrics.sort_key` (numbers,
then text, then null last), the order of the report and the figures. The aggregate's intervals
are Student's t 95% intervals over the seeds (:func:`moesim.statistics.mean_interval`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moesim.results.folder import to_jsonable
from moesim.results.metrics import NOT_METRICS, format_metric, format_value, sort_key
from moesim.statistics import mean_interval
from moesim.sweep.plan import Point

#: Columns of sweep.csv between the swept parameters and the metrics.
BOOKKEEPING_COLUMNS = ("seed", "variant", "status", "point")
#: Metrics shown in the aggregate table next to the chosen one.
KEY_METRICS = ("max_vio_global", "final_max_vio_batch", "starved", "quality")


@dataclass
class SweepResult:
    """What a sweep left on disk: the rows of sweep.csv and the aggregate, best row included.

    Attributes
    ----------
    records : list[dict]
        One stored point each (``points/<id>.json``), in plan order.
    aggregate : list[dict]
        :func:`aggregate_rows`: one row per combination and variant.
    best : dict or None
        The aggregate row with the best mean of ``metric`` (:func:`best_row`).
    partial : bool
        Some points have no stored result (interrupted, or failed points only).
    ran, skipped : int
        Points run by this call, and points already stored before it.
    """

    output_dir: Path
    records: list[dict]
    aggregate: list[dict]
    parameters: list[str]
    metric: str
    minimize: bool
    best: dict | None
    partial: bool
    ran: int
    skipped: int
    interrupted: bool = False

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] != "ok"]


def metric_names(records: list[dict]) -> list[str]:
    """Summary keys of the finished points, in summary order (a many-layer run's per-layer
    summaries and spreads, lists and mappings, are not columns)."""
    names: dict[str, None] = {}
    for record in records:
        for key, value in (record.get("summary") or {}).items():
            if key not in NOT_METRICS and not isinstance(value, (list, dict)):
                names[key] = None
    return list(names)


def _variant_order(points: list[Point]) -> dict[str, int]:
    """Variants in the scenario's order (the order of the points)."""
    return {name: i for i, name in enumerate(dict.fromkeys(p.variant for p in points))}


def _number(value) -> float:
    if isinstance(value, (bool, int, float)):
        return float(value)
    return float("nan")


def sweep_rows(points: list[Point], records: list[dict]) -> tuple[list[str], list[list]]:
    """Header and rows of sweep.csv, sorted by params (:func:`sort_key`), seed, variant order."""
    parameters = list(points[0].params) if points else []
    variant_order = _variant_order(points)
    metrics = metric_names(records)
    header = [*parameters, *BOOKKEEPING_COLUMNS, *metrics, "error"]
    records = sorted(
        records,
        key=lambda r: (
            tuple(sort_key(r["params"].get(k)) for k in parameters),
            r["seed"],
            variant_order.get(r["variant"], len(variant_order)),
        ),
    )
    rows = []
    for r in records:
        summary = r.get("summary") or {}
        rows.append(
            [
                *(r["params"].get(k) for k in parameters),
                r["seed"],
                r["variant"],
                r["status"],
                r["id"],
                *(summary.get(m) for m in metrics),
                r.get("error") or "",
            ]
        )
    return header, rows


def aggregate_rows(points: list[Point], records: list[dict]) -> list[dict]:
    """Per parameter combination and variant: n and mean, std, ci95 of each numeric metric.

    ``ci95`` is the half-width of the 95% interval, ``t_{0.975, n-1} * std / sqrt(n)`` (Student's
    t, std with ddof=1, over the seeds whose value is finite; 0 for one seed). Rows are sorted
    by the swept values (:func:`sort_key`), then by variant order.
    """
    parameters = list(points[0].params) if points else []
    metrics = metric_names(records)
    out = []
    for group in _groups(points, records):
        row = {**{k: group["params"].get(k) for k in parameters}, "variant": group["variant"]}
        row["n"] = len(group["summaries"])
        for metric in metrics:
            row.update(_statistics(metric, [s.get(metric) for s in group["summaries"]]))
        out.append(row)
    variant_order = _variant_order(points)
    out.sort(
        key=lambda r: (
            tuple(sort_key(r[k]) for k in parameters),
            variant_order.get(r["variant"], 0),
        )
    )
    return out


def _groups(points: list[Point], records: list[dict]) -> list[dict]:
    """``{params, variant, summaries}`` per combination and variant: every planned one (a
    combination whose points all failed has n = 0), with the summaries of its ok points."""
    groups: dict[str, dict] = {}

    def group(params: dict, variant: str) -> dict:
        key = json.dumps([to_jsonable(params), variant])
        return groups.setdefault(key, {"params": params, "variant": variant, "summaries": []})

    for point in points:
        group(point.params, point.variant)
    for r in records:
        if r["status"] == "ok":
            group(r["params"], r["variant"])["summaries"].append(r["summary"])
    return list(groups.values())


def _statistics(metric: str, values: list) -> dict[str, float]:
    """``<metric>_mean``, ``_std`` (ddof 1) and ``_ci95`` over the finite values; none for text."""
    if any(isinstance(v, str) for v in values):
        return {}
    finite = np.array([_number(v) for v in values], dtype=float)
    finite = finite[np.isfinite(finite)]
    mean, half_width, n = mean_interval(finite)
    return {
        f"{metric}_mean": mean,
        f"{metric}_std": float(finite.std(ddof=1)) if n > 1 else (0.0 if n else math.nan),
        f"{metric}_ci95": half_width,
    }


def best_row(aggregate: list[dict], metric: str, minimize: bool = True) -> dict | None:
    """The aggregate row with the best finite mean of ``metric`` (None if there is none)."""
    column = f"{metric}_mean"
    candidates = [
        r for r in aggregate if isinstance(r.get(column), float) and math.isfinite(r[column])
    ]
    if not candidates:
        return None
    pick = min if minimize else max
    return pick(candidates, key=lambda r: r[column])


# ----------------------------------------------------------------------------------------------
# The table printed at the end of ``moesim sweep``


def aggregate_table(result: SweepResult, max_rows: int = 40):
    """Rich table of the aggregate: parameters, n, the chosen metric, key metrics.

    The chosen metric shows its mean ± 95% interval (Student's t) and its std over the seeds;
    the key metrics their means. Values are shown as the report shows them
    (:func:`~moesim.results.metrics.format_value` for swept values, ``format_metric`` for
    metrics: a fraction such as a drop rate in %).
    Headers break after ``_`` and ``.`` (:func:`_header`), so the table fits 80 columns and
    names are never cut. The best row is bold green; long sweeps show the ``max_rows`` best
    rows.
    """
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    metric, rows = result.metric, result.aggregate
    shown_rows = _best_rows(result, max_rows)
    direction = "lowest" if result.minimize else "highest"
    title = f"sweep: {metric}, {direction} is best"
    if len(shown_rows) < len(rows):
        title += f" (the {len(shown_rows)} best of {len(rows)} rows)"
    extra = [m for m in KEY_METRICS if m != metric and any(f"{m}_mean" in r for r in rows)]
    caption = "mean ± 95% interval (Student's t), sd over the n seeds"
    if extra:
        caption += "; others: means"
    table = Table(
        title=title,
        caption=caption,
        title_style="bold",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    show_variant = len({r["variant"] for r in rows}) > 1
    columns = [*result.parameters, *(["variant"] if show_variant else []), "n"]
    columns += [f"{metric} mean ± ci", "sd", *extra]
    for name in columns:
        # Fold rather than cut with "…" when even the short headers do not fit.
        left = name == "variant"
        table.add_column(_header(name), overflow="fold", justify="left" if left else "right")
    for row in shown_rows:
        # Swept values and variant names are the user's text: shown as is, not as markup.
        cells = [escape(format_value(row[key])) for key in result.parameters]
        if show_variant:
            cells.append(escape(str(row["variant"])))
        cells.append(str(row["n"]))
        mean, ci = row.get(f"{metric}_mean", math.nan), row.get(f"{metric}_ci95", math.nan)
        finite = mean is not None and math.isfinite(mean)
        cells.append(
            f"{format_metric(metric, mean)} ± {format_metric(metric, ci)}" if finite else "-"
        )
        cells.append(format_metric(metric, row.get(f"{metric}_std")))
        cells.extend(format_metric(m, row.get(f"{m}_mean")) for m in extra)
        table.add_row(*cells, style="bold green" if row is result.best else None)
    return table


def _best_rows(result: SweepResult, max_rows: int) -> list[dict]:
    """Every row in the aggregate's order, or the ``max_rows`` best ones, best first."""
    rows = result.aggregate
    if len(rows) <= max_rows:
        return rows
    column = f"{result.metric}_mean"
    sign = 1 if result.minimize else -1
    return sorted(
        rows,
        key=lambda r: sign * r[column] if math.isfinite(r.get(column, math.nan)) else math.inf,
    )[:max_rows]


def _header(name: str, width: int = 10) -> str:
    """``name`` on lines of about ``width`` characters, broken after ``_``, ``.`` or a space.

    ``final_max_vio_batch`` -> ``final_max_`` / ``vio_batch``: narrow columns that still show the
    whole name (the one ``--metric`` takes). A part longer than ``width`` keeps its own line.
    """
    parts = re.findall(r"[^_. ]+[_. ]?|[_. ]", name)
    lines = [""]
    for part in parts:
        if lines[-1] and len(lines[-1]) + len(part.rstrip()) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(line.rstrip(" ") for line in lines)
