"""What a run records and writes: metrics, output, the sweep and published points."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from moesim.scenario.schema.base import _Section


class MetricsConfig(_Section):
    """Recording and verdict thresholds (docs/model.md §6)."""

    record_every: int | None = Field(
        None,
        ge=1,
        le=100_000_000,
        description="Steps between recorded rows; null = about 1000 rows per run.",
    )
    window: int | None = Field(
        None,
        ge=1,
        le=100_000_000,
        description="Final window in steps (MaxVio_global, the verdict); null = last 10%.",
    )
    balance_threshold: float = Field(
        0.2,
        gt=0,
        le=65536,
        description="Steps to balance: the first step after which the MaxVio of the loads summed "
        "over the trailing `balance_window` steps stays below this.",
    )
    balance_window: int = Field(
        20, ge=1, le=100_000, description="Trailing steps summed to judge balance."
    )
    starved_fraction: float = Field(
        0.1, ge=0, le=1, description="An expert below this fraction of the mean load is starved."
    )
    balanced_max_vio: float = Field(
        0.1,
        gt=0,
        le=65536,
        description="Verdict: MaxVio_global (final window) below which, with no starved expert, "
        "the run is called balanced (docs/model.md §6).",
    )
    collapse_max_vio: float = Field(
        1.0,
        gt=0,
        le=65536,
        description="Verdict: MaxVio_global above which the run is called collapsed.",
    )
    collapse_starved_fraction: float = Field(
        0.25, ge=0, le=1, description="Verdict: or more than this fraction of experts starved."
    )
    fidelity: bool = Field(
        True, description="Measure routing fidelity (biased vs unbiased top-K) when recording."
    )


class OutputConfig(_Section):
    """Where results go."""

    dir: str | None = Field(
        None,
        description="Results folder, relative to where moesim runs; `~` is your home folder; "
        "null = results/<name>. Not empty; `moesim run -o` overrides it.",
    )
    save_loads: bool = Field(True, description="Write per-expert loads and biases (loads.npz).")


class SweepConfig(_Section):
    """Parameter sweep of `moesim sweep` (docs/sweeps.md); `moesim run` ignores it."""

    grid: dict[str, list | str] = Field(
        default_factory=dict,
        description="Key path -> list of values, or logspace(a,b,n), linspace(a,b,n), "
        "range(a,b[,step]).",
    )
    zip: list[list[str]] = Field(
        default_factory=list,
        description="Groups of grid keys varied together (equal lengths) instead of crossed.",
    )
    seeds: int = Field(1, ge=1, le=1_000_000, description="Seeds per point: seed, seed+1, ...")
    metric: str = Field("max_vio_global", description="Summary metric that picks the best point.")
    minimize: bool = Field(True, description="Best is the smallest metric (false: the largest).")


class PublishedPoint(_Section):
    """A number a paper published for this scenario's setting (docs/fidelity.md, `moesim papers`).

    moesim's value is the summary ``metric`` of ``variant`` (minus that of ``relative_to`` when
    given), averaged over seeds; a trend compares the means over ``variants`` in their order.
    """

    source: str = Field(..., min_length=1, description="Paper and where: table, figure, model.")
    setting: str = Field(..., min_length=1, description="The setting in the paper's words.")
    variant: str | None = Field(
        None, description="The variant that has this setting (none: a scenario without variants)."
    )
    metric: str = Field(..., description="The summary metric the number corresponds to.")
    value: float | None = Field(
        None, allow_inf_nan=False, description="The published number (none for a trend)."
    )
    value_text: str | None = Field(
        None, description="How the table shows the published value (default: the number)."
    )
    relative_to: str | None = Field(
        None, description="Compare with this variant's metric: a published difference."
    )
    compare: Literal["difference", "perplexity_gap"] = Field(
        "difference",
        description="With `relative_to`: difference = metric(variant) - metric(relative_to); "
        "perplexity_gap = exp(that difference) - 1, for a loss in nats against a published "
        "PPL ratio minus one.",
    )
    divide_by: str | None = Field(
        None,
        description="Divide the metric by this other summary metric of the same variant (e.g. "
        "MaxVio over the final window by the final per-batch MaxVio).",
    )
    expect: Literal["value", "at_least", "at_most", "increasing", "decreasing"] = Field(
        "value",
        description="value: within 2x / right order / miss; at_least, at_most: a bound; "
        "increasing, decreasing: the trend over `variants`.",
    )
    variants: list[str] = Field(
        default_factory=list, description="Variants of a trend, in the published order."
    )
    role: Literal["fit", "predicted", "pending"] = Field(
        "predicted",
        description="fit: a calibration constant was chosen on it; predicted: nothing was "
        "tuned on it; pending: needs a model moesim does not have yet.",
    )
    note: str | None = Field(None, description="A short qualifier shown after the metric.")
