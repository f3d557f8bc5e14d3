"""Running a whole scenario: every variant on one token stream."""

from __future__ import annotations

from moesim.engine.loop import simulate_variant
from moesim.progress import progress_bar
from moesim.results.model import Result
from moesim.scenario import expand_variants, load_scenario


def simulate(scenario, *, progress: bool = False, on_variant=None, should_stop=None) -> Result:
    """Run every variant of a scenario on one shared token stream.

    Parameters
    ----------
    scenario : Scenario, dict or path
        Anything :func:`moesim.load_scenario` accepts.
    progress : bool
        Show a rich progress bar per variant.
    on_variant : callable(Result), optional
        Called after each variant finishes (the CLI saves results there, so an interrupted run
        keeps the variants it finished).
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
    with progress_bar(progress) as bar:
        for name, variant in variants:
            # Every variant's stream comes from the scenario's one seed, so variants with the
            # same tokens config see the same tokens (common random numbers).
            task = bar.add_task(name, total=variant.steps) if bar is not None else None

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
