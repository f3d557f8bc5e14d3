"""``moesim run``, ``validate``, ``schema`` and ``init``: a scenario in, results out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from moesim.cli.common import (
    EXIT_INVALID,
    EXIT_REFUSED,
    LayerOption,
    SetOption,
    cannot_write,
    check_layer_option,
    console,
    errors,
    fail,
    load_or_exit,
    moe_layers_of,
    stop_on_interrupt,
    summaries_of_layer,
    table_title,
)
from moesim.results.metrics import format_metric

VERDICT_STYLE = {
    "balanced": "green",
    "imbalanced": "yellow",
    "collapsed": "bold red",
    "diverged": "bold magenta",
}
#: Columns of the summary table: (summary metric, header, decimals or None for the metric's
#: default). The headers are short and tiny values are rounded (``0.000``, not ``4.00e-04``), so
#: the table fits 80 columns; values are formatted by :func:`moesim.results.metrics.format_metric`,
#: as in the report.
SUMMARY_COLUMNS = (
    ("max_vio_global", "MaxVio\nglobal", None),
    ("mean_max_vio_batch", "MaxVio\nbatch", 2),
    ("final_max_vio_batch", "final\nbatch", 2),
    ("cv", "CV", None),
    ("starved", "starved", None),
    ("drop_rate", "dropped\nassign.", None),
    ("token_drop_rate", "dropped\ntokens", None),
    ("steps_to_balance", "balanced\nat step", None),
    ("no_expert_share", "no\nexpert", 1),
    ("batch_dependence", "batch\ndep.", 1),
)
#: Drop columns, shown only when some variant has a capacity.
DROP_COLUMNS = ("drop_rate", "token_drop_rate")
#: Columns of an expert-parallel deployment, shown instead of the per-batch MaxVio and the CV
#: when some variant has one (docs/model.md §10), so the table still fits 80 columns.
DEPLOYMENT_COLUMNS = (
    ("gpu_imbalance", "GPU\nimbal.", 2),
    ("balancedness", "balanced-\nness", 2),
    ("step_efficiency", "effi-\nciency", 2),
    ("step_time_ms", "step\nms", 3),
)
MAKE_WAY_FOR_DEPLOYMENT = ("mean_max_vio_batch", "final_max_vio_batch", "cv")
#: Columns of a run with several MoE layers, after MaxVio_global (then the mean over layers).
WORST_LAYER_COLUMNS = (
    ("max_vio_global_max", "MaxVio\nworst", None),
    ("worst_layer", "worst\nlayer", None),
)
#: The first column: a variant's name, or a layer's number in a table of one variant's layers.
ROW_NAME = {"variant": "variant", "layer": "layer"}
#: Columns of the whole-batch routers (expert choice, Sinkhorn), shown only when some variant
#: measured its batch dependence. They take the place of the final per-batch MaxVio and of the
#: drop columns (tokens with no expert include the fully dropped ones), so that the table still
#: fits 80 columns.
BATCH_ROUTER_COLUMNS = ("no_expert_share", "batch_dependence")
BATCH_ROUTER_HIDES = ("final_max_vio_batch", *DROP_COLUMNS)


def summary_table(title: str, summaries: list[dict], rows: str = "variant") -> Table:
    """One row per variant: balance, drops (when a capacity is set), convergence, verdict.

    With several MoE layers the values are means over the layers, and the worst layer and its
    MaxVio_global follow MaxVio_global. ``rows="layer"`` names the rows by their ``layer``
    (one variant's layers). ``title`` and the variant names are shown as given (escaped, not
    read as rich markup).
    """
    table = Table(
        title=escape(title),
        title_style="bold",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=0,  # the box already puts a space between columns: the table fits 80 columns
    )
    show_drops = any(s.get("capacity") is not None for s in summaries)
    show_batch = any(_measured(s.get("batch_dependence")) for s in summaries)
    hidden = set() if show_drops else set(DROP_COLUMNS)
    hidden |= set(BATCH_ROUTER_HIDES if show_batch else BATCH_ROUTER_COLUMNS)
    columns = [c for c in SUMMARY_COLUMNS if c[0] not in hidden]
    if any(_measured(s.get("gpu_imbalance")) for s in summaries):
        columns = [c for c in columns if c[0] not in MAKE_WAY_FOR_DEPLOYMENT]
        columns[1:1] = DEPLOYMENT_COLUMNS
    if any("layers" in s for s in summaries):
        columns[1:1] = WORST_LAYER_COLUMNS
    # On a narrow terminal long variant names fold; the numbers and the verdict never do.
    table.add_column(ROW_NAME[rows], overflow="fold")
    for _, header, _ in columns:
        table.add_column(header, justify="right", min_width=max(map(len, header.split("\n"))))
    table.add_column("verdict", no_wrap=True)
    for s in summaries:
        style = VERDICT_STYLE.get(s["verdict"], "")
        partial = " [dim](partial)[/]" if s.get("partial") else ""
        table.add_row(
            escape(str(s[rows])) + partial,
            *(format_metric(n, s.get(n), digits, scientific=False) for n, _, digits in columns),
            f"[{style}]{s['verdict']}[/]" if style else s["verdict"],
        )
    return table


def _measured(value) -> bool:
    """Whether a summary value is a number that was measured (not None or NaN)."""
    return isinstance(value, (int, float)) and value == value


def output_option(text: str | None) -> Path | None:
    """The folder ``-o`` names (``~`` expanded), or None when not given; an empty path is
    refused rather than taken as the current folder."""
    if text is None:
        return None
    if not text.strip():
        raise fail(
            f"-o {text!r}: an empty path; give the results folder (-o . for this folder)",
            EXIT_INVALID,
        )
    try:
        return Path(text).expanduser()
    except RuntimeError:  # ~name of a user this machine does not know
        raise fail(
            f"-o {text!r}: no such user's home folder (~ alone is yours)", EXIT_INVALID
        ) from None


def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Results folder (default results/<scenario name>); ~ is your home folder.",
        ),
    ] = None,
    set_: SetOption = None,
    steps: Annotated[int | None, typer.Option(help="Override the number of steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing results.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    plot: Annotated[bool, typer.Option("--plot", help="Also write figures/ at the end.")] = False,
    layer: LayerOption = None,
) -> None:
    """Run a scenario (every variant), print the summary table and save the results."""
    from moesim.engine import run_scenario
    from moesim.results import OutputExistsError, default_output_dir
    from moesim.tokens import TraceError

    chosen = output_option(output)
    resolved = load_or_exit(scenario, set_, steps, seed)
    if layer is not None:
        check_layer_option(layer, moe_layers_of(resolved))
    target = chosen if chosen is not None else default_output_dir(resolved)
    try:
        with stop_on_interrupt() as stop_requested:
            result, target = run_scenario(
                resolved,
                target,
                force=force,
                progress=not quiet,
                should_stop=stop_requested,
                command=["moesim", *sys.argv[1:]],
            )
    except OutputExistsError as error:
        raise fail(str(error), EXIT_REFUSED) from None
    except OSError as error:
        # Whatever was written before stays; say what could not be.
        raise fail(cannot_write(target, error), EXIT_REFUSED) from None
    except TraceError as error:
        raise fail(str(error)) from None
    summaries = [v.summary for v in result.variants]
    console.print(summary_table(table_title(resolved.name, summaries, layer),
                                summaries_of_layer(summaries, layer)))  # fmt: skip
    if plot and result.variants:
        from moesim.cli.figures import plot_after_run

        plot_after_run(target)
    for s in result.variants:
        if s.summary["verdict"] == "diverged":
            errors.print(
                f"[bold magenta]diverged:[/] {escape(str(s.summary['variant']))}: "
                f"{escape(s.summary['verdict_reason'])}",
                highlight=False,
            )
    console.print(f"results in [bold]{escape(str(target))}[/]", highlight=False)
    if result.partial:
        errors.print(
            "[yellow]interrupted:[/] kept the finished steps and variants, marked partial in "
            "summary.json and manifest.json",
            highlight=False,
        )
        raise typer.Exit(stop_requested.exit_code)


def validate(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    set_: SetOption = None,
) -> None:
    """Check a scenario and print it fully resolved (every default filled in)."""
    from rich.syntax import Syntax

    from moesim.scenario import dump_yaml, expand_variants

    resolved = load_or_exit(scenario, set_)
    console.print(Syntax(dump_yaml(resolved), "yaml", background_color="default"))
    names = [name for name, _ in expand_variants(resolved)]
    console.print(
        f"[green]valid:[/] {escape(str(scenario))} "
        f"({len(names)} variant(s): {escape(', '.join(names))})",
        highlight=False,
    )


def schema(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the field reference (docs/scenarios.md).")
    ] = False,
) -> None:
    """Print the scenario JSON Schema (for editor completion and validation)."""
    import json

    from moesim.scenario import render_scenario_docs, scenario_json_schema

    if markdown:
        typer.echo(render_scenario_docs(), nl=False)
        return
    typer.echo(json.dumps(scenario_json_schema(), indent=2))


#: Longest file name most file systems take (ext4, APFS, NTFS: 255 bytes; kept to ASCII's count).
MAX_FILE_NAME = 255


def init(
    name: Annotated[str, typer.Argument(help="Scenario name; writes NAME.yaml.")] = "scenario",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented example scenario to NAME.yaml."""
    import re

    from moesim.results import write_atomic
    from moesim.scenario import example_scenario_yaml
    from moesim.scenario.schema import NAME_PATTERN

    path = Path(name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    # The file's name is the scenario's: refuse one its own validate would reject.
    if not name.strip() or not re.fullmatch(NAME_PATTERN, path.stem):
        raise fail(
            f"{name!r} is not a scenario name: use letters, digits and _ . + -, not starting "
            "with . (e.g. moesim init my-scenario)",
            EXIT_INVALID,
        )
    if len(path.name) > MAX_FILE_NAME:
        raise fail(
            f"{name[:40]!r}...: a name of {len(path.stem)} characters; a file name may have "
            f"at most {MAX_FILE_NAME}",
            EXIT_INVALID,
        )
    try:
        if path.exists() and not force:
            raise fail(f"{path} exists; pass --force to overwrite it", EXIT_REFUSED)
        write_atomic(path, example_scenario_yaml(path.stem))
    except OSError as error:
        folder = path.parent if str(path.parent) != "." else Path.cwd()
        reason = "no such folder" if not folder.is_dir() else error.strerror or str(error)
        raise fail(f"cannot write {path}: {reason} ({folder})", EXIT_REFUSED) from None
    shown = escape(str(path))
    console.print(f"wrote [bold]{shown}[/]; run it with: moesim run {shown}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the commands of this module to the main app."""
    for command in (run, validate, schema, init):
        app.command()(command)
