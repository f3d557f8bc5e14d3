"""What every ``moesim`` command shares: the consoles, exit codes, ``--set``, loading a
scenario into a clean exit, and Ctrl-C handling."""

from __future__ import annotations

import contextlib
import os
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
#: Stopped by SIGTERM (128 + 15), after saving what it finished, marked partial.
EXIT_TERMINATED = 143
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


LayerOption = Annotated[
    int | None,
    typer.Option(
        "--layer",
        metavar="N",
        help="Show MoE layer N (0-based, dense layers counted) instead of the mean over layers.",
    ),
]


def moe_layers_of(scenario) -> list[int]:
    """The numbers of a scenario's MoE layers (every variant's)."""
    from moesim.scenario import expand_variants, moe_layer_numbers

    numbers: set[int] = set()
    for _, variant in expand_variants(scenario):
        numbers.update(moe_layer_numbers(variant))
    return sorted(numbers)


def check_layer_option(layer: int, numbers: list[int]) -> None:
    """Exit 2 unless ``--layer`` names one of the MoE layers ``numbers``, saying which exist."""
    if layer in numbers:
        return
    from moesim.results.layers import layer_ranges

    closest = min(numbers, key=lambda n: (abs(n - layer), n))
    raise fail(
        f"--layer {layer}: not an MoE layer of this run (MoE layers: {layer_ranges(numbers)}); "
        f"did you mean --layer {closest}?"
    )


def summaries_of_layer(summaries: list[dict], layer: int | None) -> list[dict]:
    """The variants' summaries, or their layer ``layer``'s (exit 2 when a variant lacks it)."""
    if layer is None:
        return summaries
    from moesim.results.layers import layer_numbers, summary_of_layer

    check_layer_option(layer, sorted({n for s in summaries for n in layer_numbers(s)}))
    try:
        return [summary_of_layer(summary, layer) for summary in summaries]
    except KeyError as error:
        raise fail(str(error.args[0])) from None


def table_title(name: str, summaries: list[dict], layer: int | None) -> str:
    """The summary table's title: the run, and which layer or how many layers it shows."""
    if layer is not None:
        return f"moesim: {name}, layer {layer}"
    counts = {s.get("layers") for s in summaries if s.get("layers")}
    if counts:
        return f"moesim: {name}, mean over {max(counts)} MoE layers"
    return f"moesim: {name}"


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


class StopRequest:
    """What :func:`stop_on_interrupt` yields: call it to ask whether to stop; ``exit_code`` is
    130 after Ctrl-C (SIGINT) and 143 after SIGTERM."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.event.is_set()

    @property
    def exit_code(self) -> int:
        return EXIT_TERMINATED if self.signum == signal.SIGTERM else EXIT_INTERRUPTED


@contextlib.contextmanager
def stop_on_interrupt():
    """First Ctrl-C or SIGTERM: finish the current step, keep everything, mark it partial.
    Second: abort (KeyboardInterrupt)."""
    request = StopRequest()
    signals = (signal.SIGINT, signal.SIGTERM)
    on_main_thread = threading.current_thread() is threading.main_thread()

    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:
            # A forked worker (a sweep's process pool) inherited this handler: it must still
            # die of SIGTERM, or the pool could not stop it.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if request.event.is_set():
            restore()
            raise KeyboardInterrupt
        request.signum = signum
        request.event.set()
        errors.print(
            "[yellow]stopping: finishing the work in progress (Ctrl-C again to abort)...[/]"
        )

    previous = {number: signal.getsignal(number) for number in signals}

    def restore() -> None:
        for number, action in previous.items():
            signal.signal(number, action)

    if on_main_thread:
        for number in signals:
            signal.signal(number, handler)
    try:
        yield request
    finally:
        if on_main_thread:
            restore()
