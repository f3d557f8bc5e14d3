"""A result over many MoE layers (docs/model.md §1.1): each layer's summary, and the summary of
the whole model built from them.

A single-layer run's summary is its layer's, unchanged. A run with several MoE layers has:

- ``per_layer``: every layer's own summary (every summary metric, its verdict), with its
  ``layer`` number (0-based, dense layers counted);
- the summary metrics of :data:`~moesim.results.metrics.METRICS` as the mean over the layers,
  what the papers report (a value every layer shares, such as ``steps``, stays as it is;
  ``steps_to_balance`` is the step from which every layer is balanced);
- :data:`~moesim.results.metrics.LAYER_METRICS`: the number of layers, the worst layer by
  MaxVio_global and its p50/p90/max over the layers, the co-routing of consecutive layers;
- ``over_layers``: for every summary metric, its p50, p90, min, max over the layers and the
  worst layer (by the metric's direction, when it has one);
- the verdict of the worst layer, its reason naming the layer.
"""

from __future__ import annotations

import math

import numpy as np

from moesim.results.metrics import (
    LAYER_COLUMN,
    LAYER_METRICS,
    METRICS,
    WORSE_WHEN_HIGHER,
    WORSE_WHEN_LOWER,
)
from moesim.results.verdict import VERDICTS

#: The history column and summary key of a layer's number.
LAYER = LAYER_COLUMN
#: Summary keys of a many-layer run: every layer's summary, and each metric over the layers.
PER_LAYER = "per_layer"
OVER_LAYERS = "over_layers"
#: The run's timing: in the model's summary, not in its layers'.
TIMING_KEYS = ("seconds", "steps_per_second")
#: Summary values every layer of a run shares (taken from the first, not averaged).
SHARED_KEYS = ("steps", "steps_done", "final_window_steps", "balance_threshold",
               "balance_window", "seconds", "steps_per_second")  # fmt: skip


def _number(value) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def layer_values(summaries: list[dict], key: str) -> np.ndarray:
    """``key`` of every layer summary as floats (missing or null: NaN), shape (L,)."""
    return np.array([_number(summary.get(key)) for summary in summaries])


def _mean_over_layers(summaries: list[dict], key: str):
    """The model's value of ``key``: shared, the latest balance, or the mean of the finite."""
    values = [summary.get(key) for summary in summaries]
    if all(value == values[0] for value in values[1:]) and not (
        isinstance(values[0], float) and math.isnan(values[0])
    ):
        return values[0]
    if key == "steps_to_balance":
        # The model is balanced once its last layer is.
        return None if any(value is None for value in values) else max(values)
    numbers = layer_values(summaries, key)
    finite = numbers[np.isfinite(numbers)]
    return float(finite.mean()) if finite.size else None


def _spread(values: np.ndarray, numbers: list[int], worst_is_high: bool | None) -> dict:
    """p50, p90, min, max of ``values`` over the layers and the worst layer's number."""
    finite = np.isfinite(values)
    if not finite.any():
        return {"p50": None, "p90": None, "min": None, "max": None, "worst_layer": None}
    kept = values[finite]
    spread = {
        "p50": float(np.percentile(kept, 50)),
        "p90": float(np.percentile(kept, 90)),
        "min": float(kept.min()),
        "max": float(kept.max()),
        "worst_layer": None,
    }
    if worst_is_high is not None:
        masked = np.where(finite, values, -np.inf if worst_is_high else np.inf)
        index = int(np.argmax(masked) if worst_is_high else np.argmin(masked))
        spread["worst_layer"] = int(numbers[index])
    return spread


def worst_direction(metric: str) -> bool | None:
    """True when a higher value of ``metric`` is worse, False when lower, None when neither."""
    if metric in WORSE_WHEN_HIGHER:
        return True
    if metric in WORSE_WHEN_LOWER:
        return False
    return None


def _worst_verdict(summaries: list[dict]) -> tuple[str, str]:
    """The verdict of the layer whose verdict is worst (the first of equals), naming it."""
    rank = {verdict: i for i, verdict in enumerate(VERDICTS)}
    worst = max(summaries, key=lambda s: rank.get(s.get("verdict"), -1))
    same = sum(1 for s in summaries if s.get("verdict") == worst.get("verdict"))
    reason = f"layer {worst[LAYER]}: {worst.get('verdict_reason')}"
    if len(summaries) > 1:
        reason += f" ({same} of {len(summaries)} layers {worst.get('verdict')})"
    return worst.get("verdict"), reason


def model_summary(summaries: list[dict], co_routing: dict | None = None) -> dict:
    """The summary of a run from its layers' summaries (module docs); one layer's as it is.

    Parameters
    ----------
    summaries : list of dict
        Every MoE layer's summary in layer order, each with its ``layer`` number.
    co_routing : dict, optional
        ``co_routing`` and ``co_routing_independent`` over the layers (see
        :data:`~moesim.results.metrics.LAYER_METRICS`).
    """
    if len(summaries) == 1:
        return {key: value for key, value in summaries[0].items() if key != LAYER}
    numbers = [int(summary[LAYER]) for summary in summaries]
    first = summaries[0]
    model: dict = {}
    for key, value in first.items():
        if key == LAYER:
            continue
        if key in METRICS and key not in SHARED_KEYS:
            model[key] = _mean_over_layers(summaries, key)
        else:
            model[key] = value
    model["partial"] = any(bool(summary.get("partial")) for summary in summaries)
    max_vio = layer_values(summaries, "max_vio_global")
    spread = _spread(max_vio, numbers, True)
    layer_metrics = {
        "layers": len(summaries),
        "worst_layer": spread["worst_layer"],
        "max_vio_global_p50": spread["p50"],
        "max_vio_global_p90": spread["p90"],
        "max_vio_global_max": spread["max"],
        "co_routing": (co_routing or {}).get("co_routing"),
        "co_routing_independent": (co_routing or {}).get("co_routing_independent"),
    }
    assert tuple(layer_metrics) == tuple(LAYER_METRICS)
    model.update(layer_metrics)
    model["verdict"], model["verdict_reason"] = _worst_verdict(summaries)
    # Timing is the run's, not a layer's: keep it last, as a single layer's summary has it.
    for key in ("seconds", "steps_per_second"):
        if key in model:
            model[key] = model.pop(key)
    model[OVER_LAYERS] = {
        key: _spread(layer_values(summaries, key), numbers, worst_direction(key))
        for key in METRICS
        if key in first and key not in SHARED_KEYS
    }
    # A layer has no time of its own: the run's timing is the model's, above.
    model[PER_LAYER] = [
        {key: value for key, value in summary.items() if key not in TIMING_KEYS}
        for summary in summaries
    ]
    return model


def layer_summaries(summary: dict) -> list[dict]:
    """Every layer's summary of a variant's summary: its ``per_layer`` list, or the summary
    itself as layer 0 when the run had one MoE layer (as every moesim 0.1 run had)."""
    per_layer = summary.get(PER_LAYER)
    if isinstance(per_layer, list) and per_layer:
        return per_layer
    return [{**summary, LAYER: summary.get(LAYER, 0)}]


def layer_numbers(summary: dict) -> list[int]:
    """The numbers of the MoE layers a variant's summary covers."""
    return [int(entry.get(LAYER, 0)) for entry in layer_summaries(summary)]


def summary_of_layer(summary: dict, layer: int) -> dict:
    """Layer ``layer``'s summary (KeyError naming the layers there are)."""
    for entry in layer_summaries(summary):
        if int(entry.get(LAYER, 0)) == layer:
            return entry
    raise KeyError(
        f"no layer {layer}; {summary.get('variant', 'the run')} has layers "
        f"{layer_ranges(layer_numbers(summary))}"
    )


def layer_ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``'0-2, 5'``."""
    parts, start = [], None
    for i, number in enumerate(numbers):
        if start is None:
            start = number
        if i + 1 == len(numbers) or numbers[i + 1] != number + 1:
            parts.append(str(start) if start == number else f"{start}-{number}")
            start = None
    return ", ".join(parts)
