"""The result of a run in memory: one :class:`VariantResult` per variant, gathered in a
:class:`Result`. What the engine returns and the results folder writes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from moesim.results.metrics import HISTORY_COLUMNS


@dataclass
class VariantResult:
    """Outcome of one variant: summary, per-record history and per-expert arrays.

    Attributes
    ----------
    history : dict[str, ndarray (R,)]
        One entry per recorded step, columns :data:`HISTORY_COLUMNS`.
    loads, demand : ndarray (R, E) int64
        Kept / demanded assignments per expert summed over each record window.
    bias : ndarray (R, E) float32
        Bias at each recorded step.
    final_loads : ndarray (E,) int64
        Demand per expert summed over the final window (basis of MaxVio_global).
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
        """Tidy history: one row per variant and recorded step, a ``variant`` column first."""
        columns: dict[str, list] = {"variant": []}
        for v in self.variants:
            columns["variant"].extend([v.name] * len(v.history["step"]))
        for name in HISTORY_COLUMNS:
            parts = [v.history[name] for v in self.variants]
            columns[name] = np.concatenate(parts) if parts else np.empty(0)
        columns["variant"] = np.asarray(columns["variant"], dtype=object)
        return columns

    def __getitem__(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r}; variants are {[v.name for v in self.variants]}")
