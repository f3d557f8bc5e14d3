"""The expert-parallel deployment of a variant (docs/model.md §10): the routing limit that
follows the placement, DeepSeek-V2's device dropping and losses, and per step the dispatch,
traffic, step time and rebalancing.

Inert when ``deployment.enabled`` is off: the loop's hooks then change nothing, so a scenario
without a deployment gives the results it gave before, bit for bit.
"""

from __future__ import annotations

import numpy as np

from moesim._jit import n_chunks_for
from moesim.deployment.cost import Hardware
from moesim.deployment.eplb import rebalance_experts
from moesim.deployment.placement import Placement, contiguous_placement, placement_from_phy2log
from moesim.deployment.rebalance import RebalanceSchedule, moved_experts, slot_loads
from moesim.deployment.traffic import Dispatch, dispatch_layer
from moesim.engine.deployment_metrics import StepMetrics
from moesim.engine.recorder import final_window_for
from moesim.kernels.capacity import POLICY_PROBS, _capacity_keep, _count_chunks
from moesim.kernels.learning import device_loss_coefficients
from moesim.kernels.routing import RouterSpec
from moesim.kernels.step import RoutingStep


def hardware_of(deployment) -> Hardware:
    """The cost model's constants from the ``deployment`` section (GB/s and TFLOP/s to SI)."""
    return Hardware(
        hidden_size=deployment.hidden_size,
        dispatch_bytes=deployment.dispatch_bytes,
        combine_bytes=deployment.combine_bytes,
        nvlink_bytes_per_second=deployment.nvlink_gbps * 1e9,
        ib_bytes_per_second=deployment.ib_gbps * 1e9,
        expert_flops_per_token=deployment.expert_flops_per_token,
        gpu_flops_per_second=deployment.gpu_tflops * 1e12,
        overlap=deployment.overlap,
    )


def limited_router_spec(deployment, spec: RouterSpec) -> RouterSpec:
    """``spec`` with the node or device limit as groups (docs/model.md §10.1).

    With contiguous placement a node (or GPU) holds a block of consecutive experts, which is a
    router group: DeepSeek-V3's node limit is group routing with ``G = nodes``, ``M`` groups
    kept, a group scored by its top ``K/M``; DeepSeek-V2's device limit is ``G = GPUs``, a
    group scored by its best expert.
    """
    if not deployment.enabled or deployment.limit == "none":
        return spec
    if deployment.limit == "nodes":
        n_groups, group_score_topk = deployment.nodes, spec.top_k // deployment.max_targets
    else:
        n_groups, group_score_topk = deployment.nodes * deployment.gpus_per_node, 1
    return spec._replace(
        n_groups=n_groups, topk_groups=deployment.max_targets, group_score_topk=group_score_topk
    )


def device_capacity_keep(routed: RoutingStep, device_of_expert, n_devices: int, capacity: int):
    """DeepSeek-V2's device-level dropping: each device keeps at most ``capacity`` of the
    assignments routed to it (already kept by the experts' own capacity), its lowest gate
    weights dropped first (ties: the earlier token). Returns the new RoutingStep.

    Every assignment is treated as a row of its own (T*K rows of one assignment), so the
    experts' capacity kernel applies to devices as it is, a device being able to receive
    several assignments of one token.
    """
    n_tokens, top_k = routed.indices.shape
    devices = device_of_expert[routed.indices].reshape(-1, 1)
    # Assignments already dropped do not use the budget: route them to a device of their own.
    devices[~routed.keep.reshape(-1, 1)] = n_devices
    weights = np.ascontiguousarray(routed.weights.reshape(-1, 1))
    chunk_counts = np.zeros((n_chunks_for(devices.shape[0]), n_devices + 1), dtype=np.int64)
    _count_chunks(devices, n_devices + 1, chunk_counts)
    keep = np.empty_like(devices, dtype=np.bool_)
    _capacity_keep(devices, weights, chunk_counts, capacity, POLICY_PROBS, keep)
    keep = keep.reshape(n_tokens, top_k) & routed.keep
    kept = np.bincount(routed.indices[keep], minlength=routed.demand.shape[0]).astype(np.int64)
    return routed._replace(keep=keep, kept=kept)


class DeploymentTracker:
    """A variant's deployment: placement, per-step dispatch and costs, rebalancing.

    ``observe`` takes a layer's routed step, ``end_step`` closes the step (its metrics, and a
    new placement when one is due), ``record`` gives the history columns of the record window
    and ``summary`` the final window's. Per-GPU arrays of the final window (for the figures)
    are in ``arrays()``.
    """

    def __init__(self, scenario, n_layers: int = 1):
        config = self.config = scenario.deployment
        self.enabled = bool(config.enabled)
        if not self.enabled:
            return
        self.n_layers = n_layers
        self.n_experts = scenario.router.experts
        self.top_k = scenario.router.top_k
        self.n_tokens = scenario.tokens.tokens_per_step
        self.n_gpus = config.nodes * config.gpus_per_node
        self.n_groups = scenario.router.groups
        self.hardware = hardware_of(config)
        # DeepSeek-V2's devices: contiguous placement without replicas (checked).
        self.device_of_expert = np.arange(self.n_experts) // max(1, self.n_experts // self.n_gpus)
        self.device_capacity = (
            None
            if config.device_capacity_factor is None
            else int(
                np.ceil(self.n_tokens * self.top_k / self.n_gpus * config.device_capacity_factor)
            )
        )
        if config.placement == "eplb":
            uniform = np.ones((n_layers, self.n_experts))
            self.placement = self._plan(uniform)
        else:
            self.placement = contiguous_placement(
                n_layers, self.n_experts, self.n_gpus, config.gpus_per_node
            )
        # The first placement as soon as a window of loads exists, then one every interval
        # (never again without one: a stale plan).
        window = min(config.rebalance_window, scenario.steps)
        self.schedule = RebalanceSchedule(
            n_layers,
            self.n_experts,
            window,
            config.rebalance_interval or scenario.steps + 1,
            first_after=window,
            n_steps=scenario.steps,
        )
        self.step_demand = np.zeros((n_layers, self.n_experts), dtype=np.int64)
        self.rebalances = 0
        self.experts_moved = np.zeros(n_layers, dtype=np.int64)  # per layer, over the run
        final_start = scenario.steps - final_window_for(scenario)
        # A replayed load trace has per-expert counts, not tokens: no traffic (§10.8).
        self.replayed = config.load_trace is not None
        self.metrics = StepMetrics(
            n_layers, self.placement, final_start, self.hardware, traffic_known=not self.replayed
        )

    # -- routing -------------------------------------------------------------------------------

    def limit_devices(self, routed: RoutingStep) -> RoutingStep:
        """Apply DeepSeek-V2's device-level dropping when it is set."""
        if not self.enabled or self.device_capacity is None:
            return routed
        return device_capacity_keep(
            routed, self.device_of_expert, self.n_gpus, self.device_capacity
        )

    def learner_losses(self):
        """The learner's hook for DeepSeek-V2's device and communication losses
        (:meth:`loss_coefficients`), or None when both are off."""
        config = self.config
        if not self.enabled or not (config.device_balance_alpha or config.comm_balance_alpha):
            return None
        return self.loss_coefficients

    def loss_coefficients(self, counts, routed, n_tokens: int):
        """DeepSeek-V2's device and communication balance losses as an aux coefficient row
        (1, E) and the per-expert weights of the loss's value (docs/model.md §10.5)."""
        config = self.config
        max_devices = (
            config.max_targets if config.limit == "devices" else min(self.top_k, self.n_gpus)
        )
        return device_loss_coefficients(
            counts,
            routed.indices,
            routed.keep,
            self.device_of_expert,
            self.n_gpus,
            self.top_k,
            max_devices,
            config.device_balance_alpha,
            config.comm_balance_alpha,
            n_tokens,
        )

    # -- per step ------------------------------------------------------------------------------

    def observe(self, step: int, routed: RoutingStep, layer: int = 0) -> None:
        """Dispatch MoE layer ``layer``'s routed tokens onto the placement in force."""
        if not self.enabled:
            return
        dispatch = dispatch_layer(
            routed.indices, routed.keep, self.placement, layer, self.config.replica_choice
        )
        self.metrics.observe_layer(step, layer, dispatch)
        self.step_demand[layer] = routed.demand

    def observe_counts(self, step: int, demand: np.ndarray, layer: int = 0) -> None:
        """Place MoE layer ``layer``'s replayed per-expert loads ``demand`` (E,) on the placement
        in force, each expert's load split evenly over its replicas (docs/model.md §10.8). No
        traffic: which experts each token chose is not in a trace."""
        phy2log = self.placement.phy2log[layer : layer + 1]
        loads = slot_loads(phy2log, demand[None, :])[0]
        no_traffic = np.zeros(self.n_gpus, dtype=np.int64)
        self.metrics.observe_layer(step, layer, Dispatch(loads, *(no_traffic,) * 4))
        self.step_demand[layer] = demand

    def end_step(self, step: int) -> None:
        """Price the step over its layers, and rebalance when due."""
        if not self.enabled:
            return
        self.metrics.close_step(step)
        if self.config.placement == "eplb":
            self.schedule.observe(self.step_demand)
            if self.schedule.due(step):
                self._rebalance(self.schedule.window_loads())

    def _plan(self, weight) -> Placement:
        config = self.config
        phy2log, _, _ = rebalance_experts(
            np.asarray(weight, np.float64),
            self.n_experts + config.redundant_experts,
            self.n_groups,
            config.nodes,
            self.n_gpus,
        )
        return placement_from_phy2log(
            np.asarray(phy2log), self.n_experts, self.n_gpus, config.gpus_per_node
        )

    def _rebalance(self, weight) -> None:
        old = self.placement
        self.placement = self._plan(weight)
        self.rebalances += 1
        self.experts_moved += moved_experts(old.phy2log, self.placement.phy2log, self.n_gpus)

    # -- results -------------------------------------------------------------------------------

    def record(self, layer: int = 0) -> dict:
        """History columns of MoE layer ``layer``'s record window (means over its steps);
        empty when off."""
        return self.metrics.layers[layer].record() if self.enabled else {}

    def _rebalance_summary(self, moved) -> dict:
        return {
            "rebalances": self.rebalances,
            "experts_moved": int(np.sum(moved)),
            "migration_gb": float(np.sum(moved)) * self.config.expert_bytes / 1e9,
        }

    def layer_summary(self, layer: int) -> dict:
        """MoE layer ``layer``'s summary metrics over the final window; NaN when off."""
        if not self.enabled:
            return StepMetrics.empty_summary()
        return {
            **self.metrics.layers[layer].summary(),
            **self._rebalance_summary(self.experts_moved[layer]),
        }

    def summary(self) -> dict:
        """The model's summary metrics over the final window (every layer of each step);
        NaN when off."""
        if not self.enabled:
            return StepMetrics.empty_summary()
        return {**self.metrics.model.summary(), **self._rebalance_summary(self.experts_moved)}

    def arrays(self) -> dict | None:
        """Per-GPU arrays of the final window for the figures (None when off)."""
        return self.metrics.arrays() if self.enabled else None
