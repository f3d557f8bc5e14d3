"""``moesim plot`` and ``moesim report``: figures and the design-review report of a results folder.

Registered on the main app by :func:`register`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from moesim.cli.common import EXIT_REFUSED, LayerOption, console, errors, fail


def _skipped(name: str, reason: str) -> None:
    console.print(f"[dim]skipped {escape(name)}: {escape(str(reason))}[/]", highlight=False)


def _cannot_write(results_dir: Path, error: OSError) -> typer.Exit:
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename else ""
    if isinstance(error, (FileExistsError, NotADirectoryError)) and error.filename:
        reason += ": something that is not a folder is in the way; move it and try again"
    return fail(f"cannot write into {results_dir}: {reason}{where}", EXIT_REFUSED)


def read_or_exit(results_dir: Path, layer: int | None = None):
    """The folder, read and checked (exit 2 naming the damaged file), its partial state said;
    its views set to MoE layer ``layer`` (exit 2 when the run has no such layer)."""
    from moesim.results import NotResultsError, load_results

    try:
        data = load_results(results_dir)
    except NotResultsError as error:
        raise fail(str(error)) from None
    if layer is not None:
        from moesim.cli.common import check_layer_option

        check_layer_option(layer, data.layer_numbers)
        data.layer = layer
    note = data.partial_note()
    if note is not None:
        errors.print(f"[yellow]note:[/] {escape(str(data.path))} is {escape(note)}",
                     highlight=False)  # fmt: skip
    return data


def plot_command(
    results_dir: Annotated[Path, typer.Argument(help="Results folder of `moesim run` or `sweep`.")],
    format_: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help="Image format: png, svg or pdf (repeatable; default png).",
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Draw only this figure (repeatable), e.g. --only max_vio."),
    ] = None,
    layer: LayerOption = None,
) -> None:
    """Draw the figures of a results folder into RESULTS_DIR/figures/."""
    data = read_or_exit(results_dir, layer)  # first: a damaged folder is refused before matplotlib
    from moesim.figures import FIGURES, FORMATS, write_figures
    from moesim.results import NotResultsError

    formats = format_ or ["png"]
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise fail(f"unknown format {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    unknown = [name for name in only or [] if name not in FIGURES]
    if unknown:
        raise fail(f"unknown figure {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    try:
        written = write_figures(data, formats=formats, only=only, on_skip=_skipped)
    except NotResultsError as error:
        raise fail(str(error)) from None
    except OSError as error:
        raise _cannot_write(results_dir, error) from None
    if not written:
        raise fail(f"no figure could be drawn from {results_dir}")
    console.print(
        f"wrote {len(written)} file(s) in [bold]{escape(str(Path(results_dir) / 'figures'))}[/]",
        highlight=False,
    )


def report_command(
    results_dir: Annotated[Path, typer.Argument(help="Results folder of `moesim run` or `sweep`.")],
    layer: LayerOption = None,
) -> None:
    """Write a self-contained report.html and a report.md for a results folder."""
    data = read_or_exit(results_dir, layer)  # first: a damaged folder is refused before matplotlib
    from moesim.report import write_report

    try:
        html_path, md_path = write_report(data)
    except OSError as error:
        raise _cannot_write(results_dir, error) from None
    console.print(
        f"wrote [bold]{escape(str(html_path))}[/] and [bold]{escape(str(md_path))}[/]",
        highlight=False,
    )


def plot_after_run(results_dir: Path) -> list[Path]:
    """Figures at the end of ``moesim run --plot`` (PNG; skipped figures are mentioned)."""
    from moesim.figures import write_figures

    written = write_figures(results_dir, on_skip=_skipped)
    console.print(
        f"figures in [bold]{escape(str(Path(results_dir) / 'figures'))}[/] ({len(written)})",
        highlight=False,
    )
    return written


def register(app: typer.Typer) -> None:
    """Add the ``plot`` and ``report`` commands to ``app``."""
    app.command("plot")(plot_command)
    app.command("report")(report_command)
