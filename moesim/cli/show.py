"""``moesim show``: the summary table of a results folder, the mean over layers, one layer, or
every layer of a variant."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moesim.cli.common import LayerOption, console, fail, summaries_of_layer, table_title


def show(
    results_dir: Annotated[Path, typer.Argument(help="Results folder of `moesim run`.")],
    layer: LayerOption = None,
    layers: Annotated[
        bool,
        typer.Option("--layers", help="One row per MoE layer of each variant."),
    ] = False,
) -> None:
    """Print the summary table of a results folder (as `moesim run` printed it)."""
    from moesim.cli.figures import read_or_exit
    from moesim.cli.run import summary_table
    from moesim.results.layers import layer_summaries

    data = read_or_exit(results_dir)
    summaries = data.variants
    if not summaries:
        raise fail(f"{results_dir} holds no finished variant of a run")
    if layers and layer is not None:
        raise fail("--layer N shows one layer and --layers every layer: give one of them")
    if not layers:
        title = table_title(data.scenario, summaries, layer)
        console.print(summary_table(title, summaries_of_layer(summaries, layer)))
        return
    for summary in summaries:
        title = f"moesim: {data.scenario}, {summary['variant']}, by layer"
        console.print(summary_table(title, layer_summaries(summary), rows="layer"))


def register(app: typer.Typer) -> None:
    """Add the ``show`` command to ``app``."""
    app.command("show")(show)
