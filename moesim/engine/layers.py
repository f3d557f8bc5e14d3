"""What the layers of a run measure together: the co-routing of consecutive layers, and the
run's result put together from its layers' (docs/model.md §1.1)."""

from __future__ import annotations

import numpy as np

from moesim.results.layers import LAYER, model_summary
from moesim.results.model import VariantResult

#: Tokens of a recorded step whose pairs the co-routing is measured on (S (S - 1) / 2 pairs).
CO_ROUTING_TOKENS = 256


def shared_expert_pairs(indices: np.ndarray, n_experts: int) -> np.ndarray:
    """Whether tokens i and j (i < j) chose a common expert: bool (S (S - 1) / 2,).

    ``indices`` (S, K) are the tokens' chosen experts.
    """
    n_tokens = indices.shape[0]
    chosen = np.zeros((n_tokens, n_experts), dtype=np.float32)
    np.put_along_axis(chosen, indices.astype(np.int64), 1.0, axis=1)
    common = chosen @ chosen.T  # (S, S): experts two tokens share
    upper = np.triu_indices(n_tokens, k=1)
    return common[upper] > 0


class CoRouting:
    """How often two tokens that share an expert in one MoE layer share one in the next.

    At every recorded step, on the first :data:`CO_ROUTING_TOKENS` tokens: among the pairs of
    tokens that chose a common expert in layer l, the share that chose a common expert in the
    next MoE layer too (``co_routing``), against the share of all pairs that share one there
    (``co_routing_independent``: what the first would be if the layers routed independently).

    Attributes
    ----------
    counts : dict[int, ndarray (3,) int64]
        Per MoE layer after the first: pairs sharing in the layer before, pairs sharing in both,
        pairs sharing in this layer; and ``pairs``, the pairs seen per layer.
    """

    def __init__(self, layers):
        self.n_experts = {layer.number: layer.scenario.router.experts for layer in layers}
        self.previous: dict[int, int] = {}
        numbers = [layer.number for layer in layers]
        for before, after in zip(numbers, numbers[1:], strict=False):
            self.previous[after] = before
        self.counts = {number: np.zeros(3, dtype=np.int64) for number in numbers[1:]}
        self.pairs = {number: 0 for number in numbers[1:]}
        self._shared: dict[int, np.ndarray] = {}

    def observe(self, number: int, indices: np.ndarray) -> None:
        """Take in layer ``number``'s chosen experts (T, K) of a recorded step."""
        shared = shared_expert_pairs(indices[:CO_ROUTING_TOKENS], self.n_experts[number])
        before = self._shared.get(self.previous.get(number, -1))
        if before is not None:
            counts = self.counts[number]
            counts[0] += int(before.sum())
            counts[1] += int((before & shared).sum())
            counts[2] += int(shared.sum())
            self.pairs[number] += shared.size
        self._shared = {number: shared}

    def of_layer(self, number: int) -> dict:
        """``co_routing`` and ``co_routing_independent`` of layer ``number`` (NaN for the first
        MoE layer, or before any recorded step)."""
        nan = float("nan")
        if number not in self.counts:
            return {"co_routing": nan, "co_routing_independent": nan}
        before, both, shared = self.counts[number]
        pairs = self.pairs[number]
        return {
            "co_routing": float(both / before) if before else nan,
            "co_routing_independent": float(shared / pairs) if pairs else nan,
        }

    def overall(self) -> dict:
        """Both measures over every pair of consecutive MoE layers."""
        before, both, shared = np.sum(list(self.counts.values()), axis=0)
        pairs = sum(self.pairs.values())
        nan = float("nan")
        return {
            "co_routing": float(both / before) if before else nan,
            "co_routing_independent": float(shared / pairs) if pairs else nan,
        }


def variant_result(
    scenario, name, layers, steps_done, *, partial, seconds, co_routing, deployment=None
) -> VariantResult:
    """Close every MoE layer's recorder and put the run's result together.

    Arrays gain a leading layer axis (``loads`` (L, R, E), ``final_loads`` (L, E), ...), the
    history a ``layer`` column, and the summary is :func:`~moesim.results.layers.model_summary`
    of the layers' summaries (one layer's summary unchanged). A ``deployment``
    (:class:`~moesim.engine.deployment.DeploymentTracker`) adds each layer's deployment metrics
    to its summary and the model's, over every layer of a step (docs/model.md §10.4), to the
    run's.
    """
    # A run that one layer's overflow stopped is finished, in every layer: not partial.
    diverged = any(layer.recorder.diverged is not None for layer in layers)
    partial = partial or (steps_done < scenario.steps and not diverged)
    outcomes = []
    summaries = []
    for layer in layers:
        outcome = layer.recorder.result(
            name, steps_done, partial=partial, bias=layer.balancer.bias, seconds=seconds
        )
        outcome.summary["partial"] = partial
        if deployment is not None:
            outcome.summary.update(deployment.layer_summary(len(outcomes)))
        outcomes.append(outcome)
        if len(layers) > 1:
            extra = co_routing.of_layer(layer.number) if co_routing is not None else {}
            summaries.append({LAYER: layer.number, **outcome.summary, **extra})
        else:
            summaries.append({LAYER: layer.number, **outcome.summary})
    overall = co_routing.overall() if co_routing is not None else None
    summary = model_summary(summaries, overall)
    if deployment is not None and deployment.enabled:
        summary.update(deployment.summary())  # times add up over layers: not a mean
    histories = []
    for layer, outcome in zip(layers, outcomes, strict=True):
        rows = len(outcome.history["step"])
        histories.append({LAYER: np.full(rows, layer.number, dtype=np.int64), **outcome.history})
    history = {key: np.concatenate([h[key] for h in histories]) for key in histories[0]}

    def stacked(field: str) -> np.ndarray:
        return np.stack([getattr(outcome, field) for outcome in outcomes])

    return VariantResult(
        name=name,
        scenario=scenario,
        summary=summary,
        history=history,
        loads=stacked("loads"),
        demand=stacked("demand"),
        bias=stacked("bias"),
        final_loads=stacked("final_loads"),
        final_bias=stacked("final_bias"),
        partial=summary["partial"],
        layers=np.array([layer.number for layer in layers], dtype=np.int64),
        deployment=deployment.arrays() if deployment is not None else None,
    )
