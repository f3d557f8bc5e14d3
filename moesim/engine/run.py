"""Running a whole scenario: every variant on one token stream, in memory or into a folder."""

from __future__ import annotations

import time
from pathlib import Path

from rich import get_console
from rich.markup import escape

from moesim.engine.loop import simulate_variant
from moesim.progress import progress_bar
from moesim.results.folder import (
    ResultsWriter,
    default_output_dir,
    moesim_files,
    prepare_output_dir,
)
from moesim.results.model import Result
from moesim.scenario import expand_variants, load_scenario


def simulate(scenario, *, progress: bool = False, on_variant=None, should_stop=None) -> Result:
    """Run every variant of a scenario on one shared token stream.

    Parameters
    ----------
    scenario : Scenario, dict or path
        Anything :func:`moesim.load_scenario` accepts.
    progress : bool
        Say that the kernels compile, then show a rich progress bar per variant.
    on_variant : callable(Result), optional
        Called after each variant finishes (:func:`run_scenario` saves results there, so an
        interrupted run keeps the variants it finished).
    should_stop : callable() -> bool, optional
        Polled every step; see :func:`simulate_variant`.

    Returns
    -------
    Result
        ``.summary`` (per variant) and ``.history`` (tidy columns), plus per-expert arrays.
    """
    scenario = load_scenario(scenario)
    variants = expand_variants(scenario)
    result = Result(scenario=scenario)
    if progress:
        get_console().print("[dim]compiling kernels (first run only)...[/]", highlight=False)
    with progress_bar(progress) as bar:
        for name, variant in variants:
            # Every variant's stream comes from the scenario's one seed, so variants with the
            # same tokens config see the same tokens (common random numbers).
            task = bar.add_task(escape(name), total=variant.steps) if bar is not None else None

            def on_step(done, task=task):
                if bar is not None:
                    bar.update(task, completed=done)

            try:
                outcome = simulate_variant(variant, name, on_step=on_step, should_stop=should_stop)
            except KeyboardInterrupt:
                result.partial = True
                break
            result.variants.append(outcome)
            if outcome.partial:
                result.partial = True
            if on_variant is not None:
                on_variant(result)
            if outcome.partial:
                break
    return result


def run_scenario(
    scenario,
    output_dir=None,
    *,
    force: bool = False,
    progress: bool = False,
    should_stop=None,
    command=None,
) -> tuple[Result, Path]:
    """Run every variant of a scenario into a results folder, as ``moesim run`` does.

    The folder is checked first: one that already holds results is refused unless ``force``.
    The folder says partial from the start; each finished variant is saved on its own (a cost
    that does not grow with the variants before it), and the whole run is written at the end,
    ``manifest.json`` last: so a run stopped early, or killed at any moment, keeps the variants
    it finished and reads as partial (see :mod:`moesim.results.folder`). With ``force`` the new
    run replaces every file of the old one only once it ends; until then, and after an error,
    the old results stay as they were.

    Parameters
    ----------
    scenario : Scenario, dict or path
        Anything :func:`moesim.load_scenario` accepts.
    output_dir : str or Path, optional
        The results folder; ``output.dir`` of the scenario or ``results/<name>`` when omitted.
    force : bool
        Overwrite the results already in ``output_dir``.
    progress : bool
        Show a progress bar per variant.
    should_stop : callable() -> bool, optional
        Polled every step: a true value ends the run there, marked partial, and the finished
        steps and variants are saved. So does an interrupt (KeyboardInterrupt: Ctrl-C, a
        notebook's stop button).
    command : list of str, optional
        The command recorded in ``manifest.json`` (``sys.argv`` when omitted).

    Returns
    -------
    (Result, Path)
        The result, as :func:`simulate` returns it, and the results folder.

    Raises
    ------
    ScenarioError
        The scenario is invalid.
    OutputExistsError
        ``output_dir`` already holds results and ``force`` is off; nothing was written.
    OSError
        The folder cannot be made or written; files written before the error stay.
    TraceError
        A replayed trace (``tokens.source: file``) cannot be read.
    """
    scenario = load_scenario(scenario)
    folder = default_output_dir(scenario) if output_dir is None else Path(output_dir)
    replace = force and bool(moesim_files(folder))
    folder = prepare_output_dir(folder, force=force)
    planned = [name for name, _ in expand_variants(scenario)]
    writer = ResultsWriter(folder, scenario, planned, replace=replace, command=command)
    started = time.perf_counter()
    try:
        writer.start()

        def save(result: Result) -> None:
            writer.add_variant(len(result.variants) - 1, result.variants[-1])

        result = simulate(scenario, progress=progress, on_variant=save, should_stop=should_stop)
        writer.finish(result, seconds=time.perf_counter() - started)
    except BaseException:
        writer.abandon()
        raise
    return result, folder
