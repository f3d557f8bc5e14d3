"""The result of a run in memory: one :class:`VariantResult` per variant, gathered in a
:class:`Result`. What the engine returns and the results folder writes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from moesim.results.metrics import HISTORY_COLUMNS, LAYER_COLUMN


@dataclass
class VariantResult:
    """Outcome of one variant: summary, per-record history and per-expert arrays, per MoE
    layer (docs/model.md §1.1; one layer for a single-layer run).

    Attributes
    ----------
    summary : dict
        The run's summary (:func:`moesim.results.layers.model_summary`: a single layer's as it
        is; with several layers, means over them, their spread and ``per_layer``).
    history : dict[str, ndarray (L * R,)]
        One entry per layer and recorded step (layer by layer), columns ``layer`` and
        :data:`HISTORY_COLUMNS`.
    loads, demand : ndarray (L, R, E) int64
        Kept / demanded assignments per expert summed over each record window.
    bias : ndarray (L, R, E) float32
        Bias at each recorded step.
    final_loads : ndarray (L, E) int64
        Demand per expert summed over the final window (basis of MaxVio_global).
    final_bias : ndarray (L, E) float32
        Bias at the end of the run.
    layers : ndarray (L,) int64
        The MoE layers' numbers in the model (0-based, dense layers counted).
    """

    name: str
    scenario: object
    summary: dict
    history: dict
    loads: np.ndarray
    demand: np.ndarray
    bias: np.ndarray
    final_loads: np.ndarray
    final_bias: np.ndarray
    partial: bool = False
    layers: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    #: Per-GPU arrays of the final window when the scenario has a deployment (docs/metrics.md).
    deployment: dict | None = None


@dataclass
class Result:
    """All variants of a scenario, in scenario order."""

    scenario: object
    variants: list[VariantResult] = field(default_factory=list)
    partial: bool = False

    @property
    def summary(self) -> dict[str, dict]:
        """Summary metrics per variant name."""
        return {v.name: v.summary for v in self.variants}

    @property
    def history(self) -> dict[str, np.ndarray]:
        """Tidy history: one row per variant, layer and recorded step; ``variant`` and
        ``layer`` columns first."""
        columns: dict[str, list] = {"variant": []}
        for v in self.variants:
            columns["variant"].extend([v.name] * len(v.history["step"]))
        for name in (LAYER_COLUMN, *HISTORY_COLUMNS):
            parts = [_column(v.history, name) for v in self.variants]
            columns[name] = np.concatenate(parts) if parts else np.empty(0)
        columns["variant"] = np.asarray(columns["variant"], dtype=object)
        return columns

    def __getitem__(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r}; variants are {[v.name for v in self.variants]}")


def _column(history: dict, name: str) -> np.ndarray:
    """A history column; ``layer`` is 0 when the history has none (one layer)."""
    if name == LAYER_COLUMN and name not in history:
        return np.zeros(len(history["step"]), dtype=np.int64)
    return history[name]
