"""``moesim`` command line: a thin typer + rich layer over the Python API.

Every command forwards to a library function; bad input becomes a readable message and exit
code 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import moesim

app = typer.Typer(
    name="moesim",
    help="Simulate Mixture-of-Experts routing and load-balancing dynamics.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

EXIT_INVALID = 2
EXIT_REFUSED = 1
EXIT_INTERRUPTED = 130

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a scenario field, e.g. --set router.score=softmax (repeatable).",
    ),
]


def _fail(message: str, code: int = EXIT_INVALID) -> typer.Exit:
    # User text (paths, values) may contain [brackets]: escape it so rich prints it as is.
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _load(path: Path, overrides: list[str] | None, steps: int | None = None, seed=None):
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
        raise _fail(str(error)) from None


def _cannot_write(target: Path, error: OSError) -> str:
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(target) else ""
    return f"cannot write the results folder {target}: {reason}{where}"


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"moesim {moesim.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show version."),
    ] = False,
) -> None:
    """Simulate Mixture-of-Experts routing and load-balancing dynamics."""


def _format(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def _percent(value) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2%}"


VERDICT_STYLE = {"balanced": "green", "imbalanced": "yellow", "collapsed": "bold red"}


def summary_table(title: str, summaries: list[dict]) -> Table:
    """One row per variant: balance, drops (when a capacity is set), convergence, verdict."""
    table = Table(
        title=title,
        title_style="bold",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=0,  # the box already puts a space between columns: the table fits 80 columns
    )
    show_drops = any(s.get("capacity") is not None for s in summaries)
    headers = ["MaxVio\nglobal", "MaxVio\nbatch", "final\nbatch", "CV", "starved"]
    headers += ["dropped\nassign.", "dropped\ntokens"] * show_drops + ["balanced\nat step"]
    # On a narrow terminal long variant names fold; the numbers and the verdict never do.
    table.add_column("variant", overflow="fold")
    for header in headers:
        table.add_column(header, justify="right", min_width=max(map(len, header.split("\n"))))
    table.add_column("verdict", no_wrap=True)
    for s in summaries:
        style = VERDICT_STYLE.get(s["verdict"], "")
        partial = " [dim](partial)[/]" if s.get("partial") else ""
        drops = [_percent(s.get("drop_rate")), _percent(s.get("token_drop_rate"))]
        table.add_row(
            s["variant"] + partial,
            _format(s["max_vio_global"]),
            _format(s["mean_max_vio_batch"], 2),
            _format(s["final_max_vio_batch"], 2),
            _format(s["cv"]),
            str(s["starved"]),
            *(drops if show_drops else []),
            _format(s["steps_to_balance"]),
            f"[{style}]{s['verdict']}[/]" if style else s["verdict"],
        )
    return table


@contextlib.contextmanager
def _stop_on_interrupt():
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


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Results folder (default results/<scenario name>)."),
    ] = None,
    set_: SetOption = None,
    steps: Annotated[int | None, typer.Option(help="Override the number of steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing results.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    plot: Annotated[bool, typer.Option("--plot", help="Also write figures/ at the end.")] = False,
) -> None:
    """Run a scenario (every variant), print the summary table and save the results."""
    from moesim.engine import simulate
    from moesim.results import (
        OutputExistsError,
        default_output_dir,
        prepare_output_dir,
        write_results,
    )
    from moesim.tokens import TraceError

    resolved = _load(scenario, set_, steps, seed)
    target = output if output is not None else default_output_dir(resolved)
    try:
        target = prepare_output_dir(target, force=force)
    except OutputExistsError as error:
        raise _fail(str(error), EXIT_REFUSED) from None
    except OSError as error:
        raise _fail(_cannot_write(target, error), EXIT_REFUSED) from None
    started = time.perf_counter()
    command = ["moesim", *sys.argv[1:]]

    def save(result) -> None:
        try:
            write_results(result, target, seconds=time.perf_counter() - started, command=command)
        except OSError as error:
            # Whatever was written before stays; say what could not be, and stop.
            raise _fail(_cannot_write(target, error), EXIT_REFUSED) from None

    if not quiet:
        console.print("[dim]compiling kernels (first run only)...[/]", highlight=False)
    try:
        with _stop_on_interrupt() as stop_requested:
            result = simulate(
                resolved, progress=not quiet, on_variant=save, should_stop=stop_requested
            )
    except TraceError as error:
        raise _fail(str(error)) from None
    save(result)
    console.print(summary_table(f"moesim: {resolved.name}", [v.summary for v in result.variants]))
    if plot and result.variants:
        from moesim.cli_figures import plot_after_run

        plot_after_run(target)
    console.print(f"results in [bold]{target}[/]", highlight=False)
    if result.partial:
        errors.print(
            "[yellow]interrupted:[/] kept the finished steps and variants, marked partial in "
            "summary.json",
            highlight=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
def validate(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    set_: SetOption = None,
) -> None:
    """Check a scenario and print it fully resolved (every default filled in)."""
    from rich.syntax import Syntax

    from moesim.scenario import dump_yaml, expand_variants

    resolved = _load(scenario, set_)
    console.print(Syntax(dump_yaml(resolved), "yaml", background_color="default"))
    names = [name for name, _ in expand_variants(resolved)]
    console.print(f"[green]valid:[/] {scenario} ({len(names)} variant(s): {', '.join(names)})")


@app.command()
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


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Scenario name; writes NAME.yaml.")] = "scenario",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented example scenario to NAME.yaml."""
    from moesim.results import write_atomic
    from moesim.scenario import example_scenario_yaml

    path = Path(name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if path.exists() and not force:
        raise _fail(f"{path} exists; pass --force to overwrite it", EXIT_REFUSED)
    write_atomic(path, example_scenario_yaml(path.stem))
    console.print(f"wrote [bold]{path}[/]; run it with: moesim run {path}", highlight=False)


def _register_commands() -> None:
    """Commands that live in their own modules (figures, sweeps, benchmarks)."""
    import importlib

    for module in ("moesim.cli_figures", "moesim.cli_sweep", "moesim.cli_bench"):
        try:
            importlib.import_module(module).register(app)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


_register_commands()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        errors.print("[yellow]interrupted[/]")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
