"""The ``moesim`` app: the typer application and every command registered on it.

Imported by :func:`moesim.cli.main` inside its Ctrl-C guard, so an interrupt while typer, rich
and the command modules load is a clean exit 130, not a traceback.
"""

from __future__ import annotations

from typing import Annotated

import typer

from moesim._version import __version__
from moesim.cli import bench, figures, papers, run, show, sweep, trace
from moesim.cli.common import console

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


for module in (run, show, figures, sweep, papers, bench, trace):
    module.register(app)
