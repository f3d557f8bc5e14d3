"""The design-review report of a results folder: ``report.html`` and ``report.md``.

``report.html`` is self-contained (inline CSS, figures as base64 PNG data URIs, no script, no
network), so it opens from a file or an e-mail attachment. ``report.md`` links the PNG files in
``figures/``, which this module writes too. Every piece of text from the results is escaped.

A sweep's table follows the sweep: its chosen metric comes first and the best point that
``moesim sweep`` recorded in ``sweep_summary.json`` (lowest or highest mean) is highlighted.
"""

from __future__ import annotations

import base64
import html
import json
import shlex
from pathlib import Path

from moesim.figures import FIGURES, figure_bytes, render_figures
from moesim.results import ResultsData, group_rows, load_results, same_value, write_atomic
from moesim.results.layers import layer_summaries
from moesim.results.metrics import format_metric, format_value, metric_spec
from moesim.statistics import mean_interval

#: Columns of a run's summary table (headers, units and formats from
#: :data:`moesim.results.metrics.METRICS`).
RUN_COLUMNS = (
    "max_vio_global",
    "mean_max_vio_batch",
    "final_max_vio_batch",
    "cv",
    "gini",
    "starved",
    "drop_rate",
    "token_drop_rate",
    "steps_to_balance",
    "specialization",
    "quality",
)
#: Added to the run table when the scenario has a deployment (docs/model.md §10).
DEPLOYMENT_RUN_COLUMNS = (
    "gpu_imbalance",
    "slot_imbalance",
    "balancedness",
    "step_efficiency",
    "imbalance_lost",
    "step_time_ms",
    "experts_moved",
)

#: Metrics of the aggregated sweep table (mean ± 95% interval over seeds), after the chosen one.
SWEEP_COLUMNS = ("max_vio_global", "starved", "drop_rate", "specialization", "quality")

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1a1a1a;
       max-width: 1180px; margin: 2em auto; padding: 0 1.5em; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
.subtitle { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.8em 0; }
th, td { border: 1px solid #d0d0d0; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td.text, th.text { text-align: left; }
tr.best td { background: #eef6fb; font-weight: 600; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.15em 1.2em; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; font-family: monospace; }
pre { background: #f7f7f7; border: 1px solid #e2e2e2; padding: 0.8em; font-size: 0.82em;
      overflow-x: auto; max-height: 32em; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #333; font-size: 0.92em; margin-top: 0.3em; }
.verdict { display: inline-block; padding: 0.05em 0.55em; border-radius: 0.8em; font-size: 0.9em;
           font-weight: 600; }
.balanced { background: #d7efe6; color: #00573f; }
.imbalanced { background: #fbe7c6; color: #7a4a00; }
.collapsed { background: #f6d2c2; color: #8a2c00; }
.other { background: #e6e6e6; color: #333; }
.note { color: #666; font-size: 0.9em; }
"""


def write_report(results_dir: Path | ResultsData) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (and the PNGs in ``figures/``) for a folder.

    Works for a run folder (``summary.json``), a sweep folder (``sweep.csv``) or one with both;
    ``results_dir`` may be the folder already read (:func:`moesim.results.load_results`).

    Returns
    -------
    (html_path, md_path)

    Raises
    ------
    moesim.results.NotResultsError
        When the folder is not a results folder, or one of its files is damaged.
    OSError
        When the folder cannot be written.
    """
    data = results_dir if isinstance(results_dir, ResultsData) else load_results(results_dir)
    plots, skipped = render_figures(data)
    figures_dir = data.path / "figures"
    figures_dir.mkdir(exist_ok=True)
    figures = []
    for plot in plots:
        png = figure_bytes(plot.figure, "png")
        write_atomic(figures_dir / f"{plot.name}.png", png)
        figures.append((plot.name, plot.caption, png))
    html_path = data.path / "report.html"
    md_path = data.path / "report.md"
    write_atomic(html_path, render_html(data, figures, skipped))
    write_atomic(md_path, render_markdown(data, figures, skipped))
    return html_path, md_path


# -------------------------------------------------------------------------------- content


def run_rows(data: ResultsData) -> tuple[list[str], list[list[str]], list[dict]]:
    """Header and formatted rows of the run summary table (columns present in the summary)."""
    variants = data.variants
    columns = [key for key in RUN_COLUMNS if any(key in s for s in variants)]
    if any(isinstance(s.get("gpu_imbalance"), (int, float)) for s in variants):
        columns += DEPLOYMENT_RUN_COLUMNS  # null (not measured) without a deployment
    header = ["variant", *[metric_spec(key).title for key in columns], "verdict"]
    rows = []
    for s in variants:
        name = str(s.get("variant", "?")) + (" (partial)" if s.get("partial") else "")
        rows.append([name, *[format_metric(key, s.get(key)) for key in columns]])
    return header, rows, variants


#: Columns of the per-layer table of a run with several MoE layers.
LAYER_COLUMNS = (
    "max_vio_global",
    "final_max_vio_batch",
    "cv",
    "starved",
    "drop_rate",
    "steps_to_balance",
    "co_routing",
    "co_routing_independent",
)


def layer_rows(summary: dict) -> tuple[list[str], list[list[str]], list[dict]]:
    """Header and formatted rows of one variant's per-layer table (one row per MoE layer)."""
    layers = layer_summaries(summary)
    columns = [key for key in LAYER_COLUMNS if any(key in s for s in layers)]
    header = ["layer", *[metric_spec(key).title for key in columns], "verdict"]
    rows = [[str(s.get("layer")), *[format_metric(key, s.get(key)) for key in columns]]
            for s in layers]  # fmt: skip
    return header, rows, layers


def layer_note(summary: dict) -> str:
    """The spread of MaxVio_global over a variant's layers, in words."""
    spread = [
        f"{name} {format_metric('max_vio_global', summary.get(key))}"
        for name, key in (
            ("mean", "max_vio_global"),
            ("p50", "max_vio_global_p50"),
            ("p90", "max_vio_global_p90"),
            ("max", "max_vio_global_max"),
        )
    ]
    lift = ""
    co, independent = summary.get("co_routing"), summary.get("co_routing_independent")
    if isinstance(co, (int, float)) and isinstance(independent, (int, float)) and independent:
        lift = (f"; token pairs sharing an expert share one in the next layer {co:.1%} of the "
                f"time, against {independent:.1%} for independent layers")  # fmt: skip
    return (f"{summary.get('layers')} MoE layers; MaxVio global over layers: "
            f"{', '.join(spread)}; worst layer {summary.get('worst_layer')}{lift}.")  # fmt: skip


def _layered_variants(data: ResultsData) -> list[dict]:
    """Variants with several MoE layers, when the report shows every layer (no --layer)."""
    if data.layer is not None:
        return []
    return [s for s in data.variants if len(layer_summaries(s)) > 1]


def sweep_rows(data: ResultsData) -> tuple[list[str], list[list[str]], int | None]:
    """Aggregated sweep table: one row per point, mean ± 95% interval over seeds.

    The sweep's chosen metric is the first metric column. Returns the header, the formatted
    rows and the index of the best row as recorded by the sweep (``sweep_summary.json``), or
    None when it recorded none.
    """
    sweep = data.sweep
    keys = data.sweep_keys
    chosen = [data.sweep_metric[0]] if data.sweep_metric else []
    metrics = [
        key
        for key in dict.fromkeys(chosen + list(SWEEP_COLUMNS))
        if key in sweep and sweep[key].dtype != object and mean_interval(sweep[key])[2] > 0
    ]
    header = [*keys, "seeds", *[f"{metric_spec(m).title} (mean ± 95%)" for m in metrics]]
    has_verdict = "verdict" in sweep
    if has_verdict:
        header.append("verdicts")
    best = data.best_point()
    rows, best_index = [], None
    for combo, indices in group_rows(sweep, keys):
        if best is not None and all(same_value(best["values"].get(k), v) for k, v in combo):
            best_index = len(rows)
        row = [format_value(value) for _, value in combo]
        row.append(str(len(indices)))
        for key in metrics:
            mean, half, n = mean_interval(sweep[key][indices])
            if n == 0:
                row.append("-")
                continue
            row.append(f"{format_metric(key, mean, 3)} ± {format_metric(key, half, 3)}")
        if has_verdict:
            counts: dict[str, int] = {}
            for verdict in sweep["verdict"][indices]:
                counts[str(verdict)] = counts.get(str(verdict), 0) + 1
            row.append(", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
        rows.append(row)
    return header, rows, best_index


def sweep_note(data: ResultsData, best_index: int | None) -> str:
    """What the highlighted row of the sweep table is (or why there is none)."""
    if data.sweep_metric is None:
        return "No sweep_summary.json: the sweep's chosen metric is unknown, no row is highlighted."
    metric, minimize = data.sweep_metric
    title = metric_spec(metric).title
    if best_index is None:
        return (
            f"The sweep ranks points by {title} but recorded no best point "
            "(interrupted, or no finite value), so no row is highlighted."
        )
    direction = "lowest" if minimize else "highest"
    return (
        f"Highlighted: the best point by {title} ({direction} mean over seeds), as chosen by "
        "the sweep. Intervals are mean ± t·s/√n over seeds (Student's t, 95%)."
    )


def sweep_command(data: ResultsData) -> str | None:
    """A ``moesim sweep`` command that reruns this sweep into its folder (finished points are
    found there and skipped), rebuilt from ``sweep_summary.json`` and the resolved scenario."""
    summary = data.sweep_summary or {}
    grid = summary.get("grid")
    if not isinstance(grid, dict) or not grid or not data.resolved_yaml:
        return None
    parts = ["moesim", "sweep", str(data.path / "scenario.resolved.yaml")]
    for key, spec in grid.items():
        if isinstance(spec, list):
            # JSON is YAML flow syntax, which is how --grid reads each value.
            spec = ",".join(json.dumps(value) for value in spec)
        elif not isinstance(spec, str):
            spec = json.dumps(spec)
        parts += ["--grid", f"{key}={spec}"]
    for group in summary.get("zip") or []:
        parts += ["--zip", ",".join(group)]
    if isinstance(summary.get("seeds"), int):
        parts += ["--seeds", str(summary["seeds"])]
    if data.sweep_metric:
        # Always explicit: the resolved scenario holds the file's sweep.minimize, which a
        # --minimize/--maximize on the original command line may have overridden.
        parts += ["--metric", data.sweep_metric[0]]
        parts.append("--minimize" if data.sweep_metric[1] else "--maximize")
    parts += ["--output", str(data.path)]
    return shlex.join(parts)


def _metadata(data: ResultsData) -> list[tuple[str, str]]:
    if data.is_sweep and not data.variants:
        return _sweep_metadata(data)
    manifest = data.manifest or {}
    items = [("results folder", str(data.path))]
    for key, title in (
        ("scenario", "scenario"),
        ("seed", "seed"),
        ("moesim", "moesim version"),
        ("written_at", "written at"),
        ("seconds", "run time (s)"),
        ("platform", "platform"),
        ("numba_threads", "numba threads"),
    ):
        if manifest.get(key) is not None:
            value = manifest[key]
            items.append((title, format_metric(key, value) if key == "seconds" else str(value)))
    # From the folder as a whole, not a flag in one file: a killed run's manifest may be gone.
    note = data.partial_note()
    items.append(("partial (interrupted)", "True: " + note.split(": ", 1)[1] if note else "False"))
    command = manifest.get("command")
    if command:
        items.append(("command", " ".join(str(part) for part in command)))
    items += _versions(manifest)
    if data.is_sweep:
        items += _sweep_metadata(data)[2:]  # the folder and scenario are listed already
    return items


def _versions(source: dict) -> list[tuple[str, str]]:
    versions = source.get("versions")
    if not isinstance(versions, dict):
        return []
    return [("versions", ", ".join(f"{k} {v}" for k, v in versions.items()))]


def _sweep_metadata(data: ResultsData) -> list[tuple[str, str]]:
    """Folder, scenario, grid, seeds, metric, point counts, command and versions of a sweep."""
    summary = data.sweep_summary or {}
    items = [("results folder", str(data.path)), ("scenario", data.scenario)]
    n_rows = len(next(iter(data.sweep.values())))
    seeds = data.seeds
    items.append(
        ("sweep", f"{n_rows} runs over {', '.join(data.sweep_params)}; {len(seeds)} seeds each")
    )
    base = data.scenario_value("seed")
    seed_text = ", ".join(format_value(s) for s in seeds)
    if base is not None:
        seed_text += f" (the scenario's seed {base}, then +1 per seed)"
    items.append(("seeds", seed_text))
    if data.sweep_metric:
        metric, minimize = data.sweep_metric
        items.append(("metric", f"{metric} ({'lowest' if minimize else 'highest'} is best)"))
    if "ok" in summary:
        counts = f"{summary.get('ok')} finished, {summary.get('failed', 0)} failed"
        counts += f", {summary.get('missing', 0)} not run"
        items.append(("points", counts + (" (partial)" if summary.get("partial") else "")))
    if isinstance(summary.get("seconds"), (int, float)):
        # The time of the last `moesim sweep` call: a resumed sweep counts only what it ran.
        items.append(("last run time (s)", format_metric("seconds", summary["seconds"])))
    if summary.get("executor"):
        items.append(("executor", str(summary["executor"])))
    command = summary.get("command")
    if command:
        items.append(("command (as run)", shlex.join(str(part) for part in command)))
    # Always a rerun command too: the one as run may name a scenario file since changed or a
    # relative folder; this one resumes into this folder from its own resolved scenario.
    if (rebuilt := sweep_command(data)) is not None:
        items.append(("command (to rerun or extend)", rebuilt))
    return items + _versions(summary)


def _summary_heading(data: ResultsData) -> str:
    """ "Summary", with the layer shown or "mean over layers" for several MoE layers."""
    if data.layer is not None:
        return f"Summary (layer {data.layer})"
    if data.is_multi_layer:
        return f"Summary (mean over {len(data.layer_numbers)} MoE layers)"
    return "Summary"


def _verdict_class(verdict: str) -> str:
    return verdict if verdict in ("balanced", "imbalanced", "collapsed") else "other"


# ----------------------------------------------------------------------------------- HTML


def _html_table(header: list[str], rows: list[list[str]], text_columns: int, best=None) -> str:
    out = ["<table>", "<thead><tr>"]
    for j, title in enumerate(header):
        klass = ' class="text"' if j < text_columns else ""
        out.append(f"<th{klass}>{html.escape(title)}</th>")
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        out.append('<tr class="best">' if i == best else "<tr>")
        for j, cell in enumerate(row):
            klass = ' class="text"' if j < text_columns else ""
            out.append(f"<td{klass}>{cell}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _with_badges(rows: list[list[str]], summaries: list[dict]) -> list[list[str]]:
    """Table rows escaped for HTML, each ending with its summary's verdict badge."""
    escaped = []
    for row, summary in zip(rows, summaries, strict=True):
        verdict = str(summary.get("verdict", "-"))
        badge = f'<span class="verdict {_verdict_class(verdict)}">{html.escape(verdict)}</span>'
        escaped.append([html.escape(cell) for cell in row] + [badge])
    return escaped


def render_html(data: ResultsData, figures: list[tuple[str, str, bytes]], skipped: dict) -> str:
    """The self-contained HTML report. ``figures`` are ``(name, caption, png bytes)``."""
    e = html.escape
    kind = "sweep" if data.is_sweep and not data.variants else "run"
    title = f"moesim {kind} report: {data.scenario}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="subtitle">Design-review report of <code>{e(str(data.path))}</code></p>',
        f"<h2>{kind.capitalize()}</h2>",
        '<dl class="meta">',
    ]
    for key, value in _metadata(data):
        parts.append(f"<dt>{e(key)}</dt><dd>{e(value)}</dd>")
    parts.append("</dl>")

    if data.variants:
        header, rows, variants = run_rows(data)
        escaped = _with_badges(rows, variants)
        parts += [f"<h2>{e(_summary_heading(data))}</h2>", _html_table(header, escaped, 1)]
        parts.append(
            '<p class="note">MaxVio = max load / mean load − 1 (0 is perfect balance); '
            "MaxVio global is over the final window; drop rates are run averages.</p>"
        )
    for summary in _layered_variants(data):
        header, rows, layers = layer_rows(summary)
        parts.append(f"<h2>Layers: {e(str(summary.get('variant')))}</h2>")
        parts.append(f'<p class="note">{e(layer_note(summary))}</p>')
        parts.append(_html_table(header, _with_badges(rows, layers), 1))
    if data.is_sweep:
        header, rows, best = sweep_rows(data)
        n_keys = len(data.sweep_keys)
        escaped = [[e(cell) for cell in row] for row in rows]
        parts += ["<h2>Sweep summary</h2>", _html_table(header, escaped, n_keys, best)]
        parts.append(f'<p class="note">{e(sweep_note(data, best))}</p>')

    parts.append("<h2>Figures</h2>")
    for name, caption, png in figures:
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure id="{e(name)}"><img src="data:image/png;base64,{encoded}" '
            f'alt="{e(name)}: {e(caption)}"><figcaption><b>{e(name)}.</b> {e(caption)}'
            "</figcaption></figure>"
        )
    if skipped:
        parts.append('<p class="note">Not drawn for this folder:</p><ul class="note">')
        for name, reason in skipped.items():
            parts.append(f"<li><b>{e(name)}</b>: {e(reason)}</li>")
        parts.append("</ul>")

    if data.variants:
        parts += ["<h2>Verdicts</h2>", "<ul>"]
        for s in data.variants:
            verdict = str(s.get("verdict", "-"))
            parts.append(
                f"<li><b>{e(str(s.get('variant', '?')))}</b>: "
                f'<span class="verdict {_verdict_class(verdict)}">{e(verdict)}</span> '
                f"{e(str(s.get('verdict_reason', '')))}</li>"
            )
        parts.append("</ul>")

    if data.resolved_yaml:
        parts += [
            "<h2>Scenario (resolved)</h2>",
            f"<pre>{e(data.resolved_yaml)}</pre>",
        ]
    parts.append("</body></html>\n")
    return "\n".join(parts)


# ------------------------------------------------------------------------------- Markdown


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(data: ResultsData, figures: list[tuple[str, str, bytes]], skipped: dict) -> str:
    """The Markdown report; figures are linked as ``figures/<name>.png``."""
    kind = "sweep" if data.is_sweep and not data.variants else "run"
    lines = [f"# moesim {kind} report: {data.scenario}", "", f"## {kind.capitalize()}", ""]
    lines += [f"- **{key}**: `{value}`" for key, value in _metadata(data)]
    if data.variants:
        header, rows, variants = run_rows(data)
        rows = [row + [str(s.get("verdict", "-"))] for row, s in zip(rows, variants, strict=True)]
        lines += ["", f"## {_summary_heading(data)}", "", *_md_table(header, rows)]
    for summary in _layered_variants(data):
        header, rows, layers = layer_rows(summary)
        rows = [row + [str(s.get("verdict", "-"))] for row, s in zip(rows, layers, strict=True)]
        lines += ["", f"## Layers: {summary.get('variant')}", "", layer_note(summary), ""]
        lines += _md_table(header, rows)
    if data.is_sweep:
        header, rows, best = sweep_rows(data)
        if best is not None:
            rows[best] = [f"**{cell}**" for cell in rows[best]]
        lines += ["", "## Sweep summary", "", *_md_table(header, rows)]
        lines += ["", sweep_note(data, best).replace("Highlighted:", "Bold:", 1)]
    lines += ["", "## Figures", ""]
    for name, caption, _ in figures:
        lines += [f"![{name}](figures/{name}.png)", "", f"*{name}.* {caption}", ""]
    if skipped:
        lines += ["Not drawn for this folder:", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in skipped.items()]
        lines.append("")
    if data.variants:
        lines += ["## Verdicts", ""]
        for s in data.variants:
            lines.append(
                f"- **{s.get('variant', '?')}**: {s.get('verdict', '-')}: "
                f"{s.get('verdict_reason', '')}"
            )
        lines.append("")
    if data.resolved_yaml:
        lines += ["## Scenario (resolved)", "", "```yaml", data.resolved_yaml.rstrip(), "```", ""]
    return "\n".join(lines) + "\n"


__all__ = ["FIGURES", "render_html", "render_markdown", "write_report"]
