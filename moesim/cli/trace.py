"""``moesim trace``: per-expert load traces (docs/eplb.md): turn a run's routing demand into a
trace, and place a trace's experts on GPUs with EPLB, rebalanced over time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from moesim.cli.common import EXIT_REFUSED, cannot_write, console, fail

trace_app = typer.Typer(
    help="Per-expert load traces: export a run's loads, place a trace with EPLB.",
    no_args_is_help=True,
)

FormatOption = Annotated[
    str, typer.Option("--format", help="Trace format: auto, megatron, npy or csv.")
]
ExpertParallelOption = Annotated[
    int | None,
    typer.Option(
        "--expert-parallel",
        min=1,
        help="Megatron traces: expert-parallel ranks (default: every rank file is one).",
    ),
]


def _run_demand(results: Path, variant: str | None) -> tuple[np.ndarray, np.ndarray]:
    """A run's routing demand as (steps, layers, experts) and its recorded step numbers."""
    from moesim.results.files import NotResultsError, read_loads

    try:
        variants = read_loads(results)
    except (NotResultsError, OSError) as error:
        raise fail(f"{results}: not a moesim results folder with loads.npz ({error})") from None
    if variant is None:
        if len(variants) != 1:
            raise fail(f"{results} holds variants {sorted(variants)}; choose one with --variant")
        variant = next(iter(variants))
    if variant not in variants:
        raise fail(f"{results} has no variant {variant!r}; it holds {sorted(variants)}")
    demand = variants[variant]["demand"]
    # One MoE layer: (records, experts); several: (layers, records, experts).
    demand = demand[:, None, :] if demand.ndim == 2 else np.moveaxis(demand, 0, 1)
    return demand.astype(np.int64), variants[variant]["steps"].astype(np.int64)


@trace_app.command("export")
def export_command(
    results: Annotated[Path, typer.Argument(help="A moesim results folder.")],
    output: Annotated[
        Path,
        typer.Argument(help="A .npy or .csv file, or a folder for Megatron rank{r}.jsonl files."),
    ],
    variant: Annotated[
        str | None, typer.Option(help="The variant (when there are several).")
    ] = None,
    expert_parallel: Annotated[
        int, typer.Option("--expert-parallel", min=1, help="Megatron output: rank files.")
    ] = 1,
) -> None:
    """Write a run's routing demand (per recorded step, layer and expert) as a load trace."""
    from moesim.deployment import traces

    loads, steps = _run_demand(results, variant)
    try:
        if output.suffix == ".npy":
            np.save(output, loads)
        elif output.suffix == ".csv":
            traces.write_csv_trace(loads, output, steps=steps)
        else:
            traces.write_megatron_trace(loads, output, expert_parallel, iterations=steps)
    except ValueError as error:
        raise fail(str(error)) from None
    except OSError as error:
        raise fail(cannot_write(output, error), EXIT_REFUSED) from None
    shape = " x ".join(str(n) for n in loads.shape)
    console.print(f"wrote {escape(str(output))}: {shape} (steps x layers x experts)")


@trace_app.command("eplb")
def eplb_command(
    trace: Annotated[Path, typer.Argument(help="A load trace (docs/eplb.md, 'Load traces').")],
    gpus: Annotated[int, typer.Option(min=1, help="GPUs (expert-parallel ranks).")],
    nodes: Annotated[int, typer.Option(min=1, help="Nodes (GPUs divide equally).")] = 1,
    redundant: Annotated[int, typer.Option(min=0, help="Redundant experts per layer.")] = 0,
    groups: Annotated[
        int, typer.Option(min=1, help="Expert groups (EPLB keeps them on a node).")
    ] = 1,
    window: Annotated[int, typer.Option(min=1, help="Steps of loads behind each plan.")] = 1000,
    interval: Annotated[int, typer.Option(min=1, help="Steps between plans.")] = 3000,
    first_after: Annotated[
        int | None, typer.Option(min=1, help="Steps before the first plan [default: interval].")
    ] = None,
    expert_bytes: Annotated[float, typer.Option(min=0, help="Parameter bytes of one expert.")] = 0,
    format: FormatOption = "auto",
    expert_parallel: ExpertParallelOption = None,
) -> None:
    """Place a trace's experts on GPUs: as they come, and with EPLB rebalanced over time."""
    from moesim.deployment import eplb, rebalance, traces

    try:
        layout = traces.MegatronLayout(expert_parallel=expert_parallel)
        loads = traces.read_load_trace(trace, format, layout)
    except traces.LoadTraceError as error:
        raise fail(str(error)) from None
    n_steps, _, n_experts = loads.shape
    sizes = rebalance.EplbSizes(n_experts + redundant, groups, nodes, gpus)
    problem = eplb.check_eplb_sizes(n_experts, *sizes)
    if problem:
        raise fail(f"{problem} (the trace has {n_experts} experts)")
    initial = np.tile(np.arange(sizes.num_replicas) % n_experts, (loads.shape[1], 1))
    replay = rebalance.replay_rebalancing(
        loads,
        sizes,
        initial,
        window=window,
        interval=interval,
        first_after=first_after,
        expert_bytes=expert_bytes,
    )
    started = int(replay.points[0]) if len(replay.points) else 0
    table = Table(title=f"{escape(str(trace))}: {n_steps} steps", box=box.SIMPLE_HEAD)
    headers = ("placement", "balancedness per step", "of the summed loads", "imbalance ratio")
    for header in (*headers, "judged on"):
        table.add_column(header)
    judged = f"steps {started}-{n_steps - 1}"
    placed = {"experts in order": rebalance.gpu_loads(initial, loads[started:], gpus)}
    if len(replay.points):
        name = f"EPLB every {interval} steps from the last {window}"
        placed[name] = rebalance.replay_gpu_loads(loads, replay, gpus)[started:]
    for name, gpu_load in placed.items():
        balance = np.nanmean(rebalance.balancedness_per_step(gpu_load))
        imbalance = np.nanmean(rebalance.imbalance_per_step(gpu_load))
        table.add_row(name, f"{balance:.3f}", "", f"{imbalance:.3f}", judged)
    if n_steps >= 2 * window:
        plans = rebalance.judge_stale_plans(loads, window, sizes, initial)
        windows = f"windows 1-{len(plans.stale)} of {window} steps"
        for name, label in (
            ("initial", "experts in order"),
            ("stale", "EPLB on the window before (stale)"),
            ("fresh", "EPLB on the window itself (oracle)"),
        ):
            per_step, summed = getattr(plans, name), getattr(plans, f"{name}_summed")
            table.add_row(label, f"{per_step.mean():.3f}", f"{summed.mean():.3f}", "", windows)
    console.print(table)
    if not len(replay.points):
        console.print(f"no plan within {n_steps} steps (first after {first_after or interval})")
        return
    moved = [int(move.experts_moved.sum()) for move in replay.moves]
    gigabytes = sum(move.bytes_moved for move in replay.moves) / 1e9
    console.print(
        f"{len(moved)} plan(s); experts moved per plan: {', '.join(map(str, moved[:10]))}"
        f"{' ...' if len(moved) > 10 else ''}; {gigabytes:.3g} GB moved in all",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``moesim trace`` to the main app."""
    app.add_typer(trace_app, name="trace")
