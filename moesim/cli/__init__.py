"""``moesim`` command line: a thin typer + rich layer over the Python API.

Every command forwards to a library function; bad input becomes a readable message and exit
code 2, never a traceback. Importing this package (``moesim --help``, ``--version``) loads no
Numba: each command imports the library inside its body.

- :mod:`moesim.cli.common`: consoles, exit codes, ``--set``, scenario loading, Ctrl-C.
- :mod:`moesim.cli.run`: ``run``, ``validate``, ``schema``, ``init``.
- :mod:`moesim.cli.sweep`, :mod:`moesim.cli.figures`, :mod:`moesim.cli.bench`: the rest.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from moesim._version import __version__
from moesim.cli import bench, figures, papers, run, sweep
from moesim.cli.common import EXIT_INTERRUPTED, console, errors
from moesim.cli.run import summary_table

app = typer.Typer(
    name="moesim",
    help="Simulate Mixture-of-Experts routing and load-balancing dynamics.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"moesim {__version__}")
        raise typer.Exit()


@app.callback()
def _callback(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show version."),
    ] = False,
) -> None:
    """Simulate Mixture-of-Experts routing and load-balancing dynamics."""


for module in (run, figures, sweep, papers, bench):
    module.register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        errors.print("[yellow]interrupted[/]")
        sys.exit(EXIT_INTERRUPTED)


__all__ = ["app", "main", "summary_table"]
