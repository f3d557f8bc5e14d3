"""``moesim papers``: run the paper scenarios and write the fidelity table (docs/fidelity.md)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from moesim.cli.common import EXIT_INTERRUPTED, EXIT_REFUSED, SetOption, console, errors, fail

VERDICT_STYLE = {"within 2x": "green", "hit": "green", "right order": "yellow", "miss": "red"}


def papers_command(
    folder: Annotated[
        Path, typer.Argument(help="Folder of paper scenarios (their published: sections).")
    ] = Path("scenarios/papers"),
    seeds: Annotated[int, typer.Option(min=1, max=100, help="Seeds 0..N-1 per scenario.")] = 3,
    jobs: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    set_: SetOption = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The fidelity page to write.")
    ] = Path("docs/fidelity.md"),
    results: Annotated[
        Path,
        typer.Option(help="Where the runs are kept (one resumable sweep folder per scenario)."),
    ] = Path("results/papers"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run every paper scenario at several seeds and write the fidelity table."""
    from moesim.errors import ScenarioError
    from moesim.papers import moesim_text, run_fidelity, verdict_counts, write_fidelity

    try:
        rows, meta = run_fidelity(
            folder,
            seeds=seeds,
            jobs=jobs,
            overrides=set_,
            progress=not quiet,
            results_dir=results,
        )
    except (ScenarioError, FileNotFoundError) as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        errors.print(
            "[yellow]interrupted:[/] finished runs are kept; run the same command to resume",
            highlight=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    command = shlex.join(["moesim", *sys.argv[1:]]) if sys.argv[1:2] == ["papers"] else None
    try:
        write_fidelity(rows, meta, output, command=command or "moesim papers")
    except OSError as error:
        raise fail(f"cannot write {output}: {error.strerror or error}", EXIT_REFUSED) from None
    table = Table(title="moesim papers", box=box.SIMPLE_HEAD, header_style="bold")
    for header in ("source", "setting", "metric", "published", "moesim", "role", "verdict"):
        table.add_column(header, overflow="fold")
    for row in rows:
        style = VERDICT_STYLE.get(row.verdict.split(" (")[0], "")
        verdict = f"[{style}]{escape(row.verdict)}[/]" if style else escape(row.verdict)
        cells = [row.source, row.setting, row.metric, row.published_text, moesim_text(row)]
        table.add_row(*map(escape, cells), row.role, verdict)
    console.print(table)
    counts = ", ".join(f"{key} {n}" for key, n in sorted(verdict_counts(rows).items()))
    console.print(f"{counts}; table in [bold]{escape(str(output))}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``moesim papers`` to the main app."""
    app.command("papers")(papers_command)
