"""The deployment's measurements of one variant (docs/model.md §10.4): per step and MoE layer
from the layer's dispatch and times, and per step over the layers (the model); averaged over
each record window (history rows, one per layer) and over the final window (summaries: each
layer's, and the model's). Names and units: docs/metrics.md.
"""

from __future__ import annotations

import numpy as np

from moesim.deployment.cost import (
    Hardware,
    balanced_step,
    balancedness,
    imbalance_ratio,
    layer_times,
    traffic_bytes,
)
from moesim.deployment.placement import Placement, gpu_loads_from_slots
from moesim.deployment.traffic import Dispatch
from moesim.results.metrics import DEPLOYMENT_COLUMNS as STEP_METRICS
from moesim.results.metrics import REBALANCE_METRICS

#: Per-GPU arrays of the final window (``deployment.npz``; the figures draw them).
GPU_ARRAYS = (
    "gpu_layer_loads",
    "sent_intra_mb",
    "sent_inter_mb",
    "received_intra_mb",
    "received_inter_mb",
    "compute_ms",
    "comm_ms",
    "idle_ms",
)
#: What needs token-level routing (which experts each token chose): NaN when a load trace is
#: replayed, which holds per-expert counts only (docs/model.md §10.8).
TRAFFIC_METRICS = ("comm_ms", "intra_node_mb", "inter_node_mb")
TRAFFIC_ARRAYS = ("sent_intra_mb", "sent_inter_mb", "received_intra_mb", "received_inter_mb")


def step_values(slot_loads, traffic, slots_per_gpu: int, gpus_per_node: int, hardware) -> tuple:
    """The step metrics of ``L`` layers together (one layer: that layer's), and the arrays
    behind them.

    Parameters
    ----------
    slot_loads : ndarray (L, P)
    traffic : ndarray (4, L, G)
        Token copies sent/received over NVLink and IB (:class:`Dispatch` order).

    Returns
    -------
    values : dict
        :data:`STEP_METRICS`: imbalance ratios averaged over the layers, times summed over them
        (layers run in turn), vLLM's balancedness, efficiency and lost share over the layers.
    times : LayerTimes
    gpu_loads : ndarray (L, G)
    intra, inter : (sent, received) bytes per GPU (G,), layers summed
    """
    gpu_loads = gpu_loads_from_slots(slot_loads, slots_per_gpu)
    node_loads = gpu_loads.reshape(gpu_loads.shape[0], -1, gpus_per_node).sum(-1)
    times = layer_times(gpu_loads, *traffic, hardware)
    balanced = balanced_step(times, hardware.overlap)
    step_time = float(times.step.sum())
    send_intra, recv_intra, send_inter, recv_inter = traffic.sum(axis=1)
    intra = traffic_bytes(send_intra, recv_intra, hardware)
    inter = traffic_bytes(send_inter, recv_inter, hardware)
    busy = float(times.busy.mean(axis=1).sum())
    values = {
        "gpu_imbalance": float(np.nanmean(imbalance_ratio(gpu_loads))),
        "slot_imbalance": float(np.nanmean(imbalance_ratio(slot_loads))),
        "node_imbalance": float(np.nanmean(imbalance_ratio(node_loads))),
        "balancedness": balancedness(gpu_loads),
        "step_time_ms": 1e3 * step_time,
        "compute_ms": 1e3 * float(times.compute.mean(axis=1).sum()),
        "comm_ms": 1e3 * float(times.communication.mean(axis=1).sum()),
        "idle_ms": 1e3 * float(times.idle.mean(axis=1).sum()),
        "step_efficiency": busy / step_time if step_time > 0 else np.nan,
        "imbalance_lost": 1.0 - float(balanced.sum()) / step_time if step_time > 0 else np.nan,
        "intra_node_mb": float(intra[0].mean()) / 1e6,
        "inter_node_mb": float(inter[0].mean()) / 1e6,
    }
    return values, times, gpu_loads, intra, inter


class WindowMeans:
    """Sums of step metrics over a record window and over the final window."""

    def __init__(self, final_start: int):
        self.final_start = final_start
        self.record_sums = dict.fromkeys(STEP_METRICS, 0.0)
        self.record_steps = 0
        self.final_sums = dict.fromkeys(STEP_METRICS, 0.0)
        self.final_steps = 0

    def add(self, step: int, values: dict) -> bool:
        """Count one step's ``values``; returns whether the step is in the final window."""
        for name, value in values.items():
            self.record_sums[name] += value
        self.record_steps += 1
        if step < self.final_start:
            return False
        for name, value in values.items():
            self.final_sums[name] += value
        self.final_steps += 1
        return True

    def record(self) -> dict:
        """Means over the steps since the last record, then a new record window."""
        steps = max(1, self.record_steps)
        row = {name: total / steps for name, total in self.record_sums.items()}
        self.record_sums = dict.fromkeys(STEP_METRICS, 0.0)
        self.record_steps = 0
        return row

    def summary(self) -> dict:
        """Means over the final window's steps (NaN before it)."""
        steps = self.final_steps
        return {name: total / steps if steps else np.nan for name, total in self.final_sums.items()}


class StepMetrics:
    """The open step's layer buffers, each layer's windows, and the model's."""

    def __init__(
        self,
        n_layers: int,
        placement: Placement,
        final_start: int,
        hardware: Hardware,
        traffic_known: bool = True,
    ):
        n_gpus, n_slots = placement.n_gpus, placement.phy2log.shape[1]
        self.hardware = hardware
        self.slots_per_gpu = placement.slots_per_gpu
        self.gpus_per_node = placement.gpus_per_node
        # Without traffic (a replayed trace) the step time is its compute part: communication
        # counts as 0 in the times, and its own metrics are NaN, not 0.
        self.traffic_known = traffic_known
        # float64: a replayed load splits evenly over replicas (sums of whole counts are exact).
        self.slot_loads = np.zeros((n_layers, n_slots))
        self.traffic = np.zeros((4, n_layers, n_gpus), dtype=np.int64)  # Dispatch order
        self.layers = [WindowMeans(final_start) for _ in range(n_layers)]
        self.model = WindowMeans(final_start)
        self.final_gpu = {
            "gpu_layer_loads": np.zeros((n_layers, n_gpus)),
            **{name: np.zeros(n_gpus) for name in GPU_ARRAYS[1:]},
        }

    def _values(self, layers: slice) -> tuple:
        values, *arrays = step_values(
            self.slot_loads[layers],
            self.traffic[:, layers],
            self.slots_per_gpu,
            self.gpus_per_node,
            self.hardware,
        )
        if not self.traffic_known:
            values.update(dict.fromkeys(TRAFFIC_METRICS, np.nan))
        return (values, *arrays)

    def observe_layer(self, step: int, layer: int, dispatch: Dispatch) -> None:
        """Take in one layer's dispatch and count that layer's step metrics."""
        self.slot_loads[layer] = dispatch.slot_loads
        for i, array in enumerate(dispatch[1:]):
            self.traffic[i, layer] = array
        values = self._values(slice(layer, layer + 1))[0]
        self.layers[layer].add(step, values)

    def close_step(self, step: int) -> None:
        """The model's step metrics, over every layer of the step."""
        values, times, gpu_loads, intra, inter = self._values(slice(None))
        if self.model.add(step, values):
            gpu = self.final_gpu
            gpu["gpu_layer_loads"] += gpu_loads
            gpu["sent_intra_mb"] += intra[0] / 1e6
            gpu["received_intra_mb"] += intra[1] / 1e6
            gpu["sent_inter_mb"] += inter[0] / 1e6
            gpu["received_inter_mb"] += inter[1] / 1e6
            gpu["compute_ms"] += 1e3 * times.compute.sum(axis=0)
            gpu["comm_ms"] += 1e3 * times.communication.sum(axis=0)
            gpu["idle_ms"] += 1e3 * times.idle.sum(axis=0)

    @staticmethod
    def empty_summary() -> dict:
        return dict.fromkeys((*STEP_METRICS, *REBALANCE_METRICS), np.nan)

    def arrays(self) -> dict:
        """Per-GPU means per step over the final window (loads: sums per layer)."""
        steps = max(1, self.model.final_steps)
        arrays = {
            name: array if name == "gpu_layer_loads" else array / steps
            for name, array in self.final_gpu.items()
        }
        if not self.traffic_known:
            for name in (*TRAFFIC_ARRAYS, "comm_ms"):
                arrays[name] = np.full_like(arrays[name], np.nan)
        return arrays
