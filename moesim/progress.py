"""Rich progress bars for long work (a run's steps, a sweep's points), or none at all."""

from __future__ import annotations

import contextlib


def progress_bar(enabled: bool, *, unit: str = "steps", console=None):
    """A context manager yielding a ``rich.progress.Progress`` (or None when not ``enabled``).

    Parameters
    ----------
    enabled : bool
        False gives a context that yields None, so callers write ``if bar is not None``.
    unit : str
        What the bar counts (``steps``, ``points``): shown as a rate and after the count.
    console : rich.console.Console, optional
        Where to draw (rich's default console when omitted).
    """
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:,.0f} {unit}/s" if task.speed else "", style="cyan")

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
