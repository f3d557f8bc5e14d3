"""``moesim bench``: the benchmark suite of ``make bench`` (see docs/performance.md).

Registered on the main app by :func:`register`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from moesim.cli.common import EXIT_INVALID, console, errors


def bench_command(
    quick: Annotated[
        bool, typer.Option("--quick", help="CI-sized smoke run (about a minute).")
    ] = False,
    tiny: Annotated[
        bool, typer.Option("--tiny", help="Seconds: checks the harness, numbers meaningless.")
    ] = False,
    threads: Annotated[
        int, typer.Option(min=1, help="Threads for Numba and torch (scaling runs 1 and 2).")
    ] = 2,
    sections: Annotated[
        str,
        typer.Option(
            help="Comma-separated subset of routing,step,routers,scaling,startup,memory,layers,"
            "noisy."
        ),
    ] = "routing,step,routers,scaling,startup,memory,layers,noisy",
    memory_steps: Annotated[
        int | None,
        typer.Option(min=1, help="Steps of the memory run (1000000 measures the goal itself)."),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="JSON file for the results.")
    ] = Path("benchmarks/results/latest.json"),
) -> None:
    """Benchmark routing, the full step, scaling, start-up, memory and many layers; PASS/MISS.

    OpenBLAS fixes its threads when NumPy is imported, so the BLAS baseline uses the default
    here; ``make bench`` (benchmarks/run.py) sets it to --threads first.
    """
    from moesim.bench import SECTIONS, render, run_suite

    if quick and tiny:
        errors.print("[bold red]error:[/] --quick and --tiny exclude each other")
        raise typer.Exit(EXIT_INVALID)
    chosen = [s.strip() for s in sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        errors.print(
            f"[bold red]error:[/] unknown --sections {escape(', '.join(unknown))}; "
            f"choose from {', '.join(SECTIONS)}",
            highlight=False,
        )
        raise typer.Exit(EXIT_INVALID)
    mode = "tiny" if tiny else "quick" if quick else "full"
    results = run_suite(
        mode=mode,
        threads=threads,
        sections=chosen,
        output=output,
        console=console,
        memory_steps=memory_steps,
    )
    render(results, console)
    console.print(f"results in [bold]{escape(str(output))}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``bench`` to the main ``moesim`` app."""
    app.command("bench")(bench_command)
