"""What every ``moesim`` command shares: the consoles, exit codes, ``--set``, loading a
scenario into a clean exit, and Ctrl-C handling."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
errors = Console(stderr=True)

EXIT_INVALID = 2
EXIT_REFUSED = 1
EXIT_INTERRUPTED = 130
#: A sweep ran but some of its points failed.
EXIT_FAILED_POINTS = 1

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a scenario field, e.g. --set router.score=softmax (repeatable).",
    ),
]


def fail(message: str, code: int = EXIT_INVALID) -> typer.Exit:
    # User text (paths, values) may contain [brackets]: escape it so rich prints it as is.
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_or_exit(path: Path, overrides: list[str] | None, steps: int | None = None, seed=None):
    """Load and validate a scenario, turning every input problem into a clean exit."""
    from moesim.errors import ScenarioError
    from moesim.scenario import load_scenario

    extra = list(overrides or [])
    if steps is not None:
        extra.append(f"steps={steps}")
    if seed is not None:
        extra.append(f"seed={seed}")
    try:
        return load_scenario(path, extra)
    except ScenarioError as error:
        raise fail(str(error)) from None


def cannot_write(target: Path, error: OSError) -> str:
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(target) else ""
    return f"cannot write the results folder {target}: {reason}{where}"


@contextlib.contextmanager
def stop_on_interrupt():
    """First Ctrl-C: finish the current step, keep everything, mark it partial. Second: abort."""
    requested = threading.Event()

    def handler(signum, frame):
        if requested.is_set():
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        requested.set()
        errors.print(
            "[yellow]stopping: finishing the work in progress (Ctrl-C again to abort)...[/]"
        )

    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
    try:
        yield requested.is_set
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)
