"""Rebalancing over time, as serving systems do it: loads collected over a window of steps, a new
EPLB placement every interval, the cost of moving experts, and a plan judged on later traffic
(docs/eplb.md, "Rebalancing over time").

- vLLM (``--enable-eplb``): window 1000 steps, interval 3000, and the first plan comes early,
  after ``interval // 4`` steps (its counter starts three quarters of the way);
- SGLang: every 1000 forward passes, from the loads of those 1000 passes (window = interval).

Pure functions over a (steps, layers, experts) load sequence, and one small running object
(:class:`RebalanceSchedule`) for a caller that sees one step at a time. A placement is a slot
table ``phy2log`` (L, P); slot ``p`` is on GPU ``p // (P / G)``, GPU ``g`` on node
``g // (G / N)``. A GPU's load is the sum over its slots of each expert's load divided evenly
over the expert's replicas, EPLB's own assumption when it sizes replicas.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from moesim.deployment.cost import balancedness, imbalance_ratio
from moesim.deployment.eplb import rebalance_experts, replica_counts
from moesim.deployment.placement import gpu_loads_from_slots

VLLM_WINDOW, VLLM_INTERVAL = 1000, 3000
SGLANG_WINDOW, SGLANG_INTERVAL = 1000, 1000


def vllm_first_plan(interval: int) -> int:
    """Steps before vLLM's first plan: its rearrangement counter starts at
    ``interval - interval // 4``."""
    return interval // 4


def rebalance_points(n_steps: int, interval: int, first_after: int | None = None) -> np.ndarray:
    """Step counts after which a new plan is made, (n_plans,) int64: ``first_after`` (default
    ``interval``), then every ``interval`` steps, before ``n_steps``. The plan made after ``n``
    steps is in force from step index ``n`` on (a plan after the last step would serve none)."""
    if interval < 1:
        raise ValueError(f"rebalance interval {interval}; expected >= 1")
    first = interval if first_after is None else first_after
    if first < 1:
        raise ValueError(f"first plan after {first} steps; expected >= 1")
    return np.arange(first, n_steps, interval, dtype=np.int64)


def window_sums(loads: np.ndarray, window: int, points: np.ndarray) -> np.ndarray:
    """Loads summed over the ``window`` steps before each point (fewer at the start), (n, L, E).

    Parameters
    ----------
    loads : (S, L, E) array of token counts
    window : int, steps per window
    points : (n,) int, step counts (each in 1..S)
    """
    loads = np.asarray(loads)
    if window < 1:
        raise ValueError(f"window {window}; expected >= 1")
    running = np.concatenate([np.zeros_like(loads[:1]), np.cumsum(loads, axis=0)])
    points = np.asarray(points, dtype=np.int64)
    return running[points] - running[np.maximum(points - window, 0)]


class RebalanceSchedule:
    """The running window of one caller that sees a step at a time (the engine).

    ``observe(loads)`` after each step; when ``due(step)`` (``step`` the 0-based index of the
    step just observed), make a plan from ``window_loads()``. With ``n_steps``, the run's
    length, no plan is due after its last step (it would serve none), as in
    :func:`rebalance_points`.
    """

    def __init__(
        self,
        n_layers: int,
        n_experts: int,
        window: int = VLLM_WINDOW,
        interval: int = VLLM_INTERVAL,
        first_after: int | None = None,
        n_steps: int | None = None,
    ):
        if window < 1 or interval < 1:
            raise ValueError(f"window {window} and interval {interval} must be >= 1")
        self.window, self.interval = window, interval
        self.first_after = interval if first_after is None else first_after
        self.n_steps = n_steps
        self._ring = np.zeros((window, n_layers, n_experts), dtype=np.int64)
        self._total = np.zeros((n_layers, n_experts), dtype=np.int64)
        self.observed = 0

    def observe(self, loads: np.ndarray) -> None:
        """Add one step's loads (L, E)."""
        slot = self.observed % self.window
        self._total += loads - self._ring[slot]
        self._ring[slot] = loads
        self.observed += 1

    def due(self, step: int) -> bool:
        """Whether a new plan is made after step ``step`` (0-based)."""
        done = step + 1
        if self.n_steps is not None and done >= self.n_steps:
            return False
        return done >= self.first_after and (done - self.first_after) % self.interval == 0

    def window_loads(self) -> np.ndarray:
        """Loads of the last ``window`` observed steps (fewer at the start), (L, E) int64."""
        return self._total.copy()


class MoveCost(NamedTuple):
    """What it takes to go from one placement to another, per layer (L,).

    An expert is moved when a GPU holds it in the new placement and held it in none of its slots
    before; it comes over NVLink when another GPU of the same node held it before, else over the
    inter-node network. Each moved expert is ``expert_bytes`` of parameters.
    """

    experts_moved: np.ndarray  #: (L,) int64
    intra_node: np.ndarray  #: (L,) int64, of which fetched within the node
    inter_node: np.ndarray  #: (L,) int64, of which fetched from another node
    bytes_moved: float  #: over all layers
    max_gpu_bytes: float  #: the most any one GPU receives, over all layers


def _experts_on_gpus(phy2log: np.ndarray, num_gpus: int, num_experts: int) -> np.ndarray:
    """(L, G, E) bool: whether GPU g holds expert e in some slot."""
    layers, slots = phy2log.shape
    held = np.zeros((layers, num_gpus, num_experts), dtype=bool)
    gpu = np.arange(slots) // (slots // num_gpus)
    held[np.arange(layers)[:, None], gpu[None, :], phy2log] = True
    return held


def movement_cost(
    old_phy2log, new_phy2log, num_gpus: int, num_nodes: int, expert_bytes: float
) -> MoveCost:
    """The experts (and bytes) the GPUs must fetch to go from ``old`` to ``new`` (L, P)."""
    old, new = np.asarray(old_phy2log, np.int64), np.asarray(new_phy2log, np.int64)
    if old.shape != new.shape or old.ndim != 2 or old.shape[1] % num_gpus:
        raise ValueError(f"placements {old.shape} and {new.shape} on {num_gpus} GPUs")
    if num_gpus % num_nodes:
        raise ValueError(f"{num_gpus} GPUs do not divide equally over {num_nodes} nodes")
    num_experts = int(max(old.max(), new.max())) + 1
    had = _experts_on_gpus(old, num_gpus, num_experts)
    moved = _experts_on_gpus(new, num_gpus, num_experts) & ~had
    per_node = had.reshape(old.shape[0], num_nodes, -1, num_experts).any(axis=2)
    node_had = np.repeat(per_node, num_gpus // num_nodes, axis=1)
    intra = (moved & node_had).sum(axis=(1, 2))
    experts_moved = moved.sum(axis=(1, 2))
    return MoveCost(
        experts_moved=experts_moved,
        intra_node=intra,
        inter_node=experts_moved - intra,
        bytes_moved=float(experts_moved.sum()) * expert_bytes,
        max_gpu_bytes=float(moved.sum(axis=(0, 2)).max()) * expert_bytes,
    )


def moved_experts(old_phy2log, new_phy2log, num_gpus: int) -> np.ndarray:
    """Experts each layer's GPUs must fetch, (L,) int64 (see :class:`MoveCost`)."""
    return movement_cost(old_phy2log, new_phy2log, num_gpus, 1, 0.0).experts_moved


def slot_loads(phy2log: np.ndarray, expert_loads: np.ndarray) -> np.ndarray:
    """Per-slot loads (..., L, P) float64 of expert loads (..., L, E) under a placement (L, P),
    each expert's load split evenly over its replicas (EPLB's own assumption; round-robin
    replica choice gives the same to within one assignment per replica)."""
    phy2log = np.asarray(phy2log, np.int64)
    expert_loads = np.asarray(expert_loads, np.float64)
    share = expert_loads / replica_counts(phy2log, expert_loads.shape[-1])
    index = np.broadcast_to(phy2log, (*expert_loads.shape[:-1], phy2log.shape[-1]))
    return np.take_along_axis(share, index, axis=-1)


def gpu_loads(phy2log: np.ndarray, expert_loads: np.ndarray, num_gpus: int) -> np.ndarray:
    """Per-GPU loads (..., L, G) float64 of expert loads (..., L, E) under a placement (L, P),
    each expert's load split evenly over its replicas (:func:`slot_loads`)."""
    slots = slot_loads(phy2log, expert_loads)
    return gpu_loads_from_slots(slots, np.shape(phy2log)[-1] // num_gpus)


class EplbSizes(NamedTuple):
    """The arguments of :func:`~moesim.deployment.eplb.rebalance_experts` besides the loads."""

    num_replicas: int
    num_groups: int
    num_nodes: int
    num_gpus: int


class Replay(NamedTuple):
    """Plans made over a load sequence.

    ``plans[0]`` is the initial placement; ``plans[k]`` (k >= 1) was made after
    ``points[k - 1]`` steps. ``plan_of_step[s]`` is the plan in force at step ``s``.
    ``moves[k - 1]`` is the cost of going from plan k - 1 to plan k.
    """

    plans: np.ndarray  #: (n_plans + 1, L, P) int64
    points: np.ndarray  #: (n_plans,) int64
    plan_of_step: np.ndarray  #: (S,) int64
    moves: list


def replay_rebalancing(
    loads: np.ndarray,
    sizes: EplbSizes,
    initial_phy2log: np.ndarray,
    *,
    window: int = VLLM_WINDOW,
    interval: int = VLLM_INTERVAL,
    first_after: int | None = None,
    expert_bytes: float = 0.0,
) -> Replay:
    """Rebalance a (S, L, E) load sequence with EPLB every ``interval`` steps from the last
    ``window`` steps' loads, starting from ``initial_phy2log`` (L, P)."""
    loads = np.asarray(loads)
    n_steps = loads.shape[0]
    points = rebalance_points(n_steps, interval, first_after)
    plans = [np.asarray(initial_phy2log, np.int64)]
    moves = []
    for summed in window_sums(loads, window, points):
        plan = rebalance_experts(summed, *sizes)[0]
        moves.append(movement_cost(plans[-1], plan, sizes.num_gpus, sizes.num_nodes, expert_bytes))
        plans.append(plan)
    plan_of_step = np.searchsorted(points, np.arange(n_steps), side="right")
    return Replay(np.stack(plans), points, plan_of_step, moves)


def replay_gpu_loads(loads: np.ndarray, replay: Replay, num_gpus: int) -> np.ndarray:
    """Per-GPU loads (S, L, G) of every step under the plan in force at that step."""
    loads = np.asarray(loads)
    result = np.empty((loads.shape[0], loads.shape[1], num_gpus))
    for plan in np.unique(replay.plan_of_step):
        steps = replay.plan_of_step == plan
        result[steps] = gpu_loads(replay.plans[plan], loads[steps], num_gpus)
    return result


def balancedness_per_step(gpu_load: np.ndarray) -> np.ndarray:
    """vLLM's balancedness (:func:`~moesim.deployment.cost.balancedness`) of each step of
    per-GPU loads (S, L, G), (S,)."""
    return np.array([balancedness(step) for step in gpu_load])


def imbalance_per_step(gpu_load: np.ndarray) -> np.ndarray:
    """TensorRT-LLM's imbalance ratio by GPU (:func:`~moesim.deployment.cost.imbalance_ratio`),
    averaged over the layers of each step of per-GPU loads (S, L, G), (S,)."""
    return np.nanmean(imbalance_ratio(gpu_load), axis=-1)


class PlanJudgement(NamedTuple):
    """Per window ``k >= 1`` of a load sequence cut into windows, (n_windows - 1,) each: the
    balancedness with the ``initial`` placement, with the ``stale`` plan (EPLB on window
    ``k - 1``, as a deployment has it) and with a ``fresh`` plan (EPLB on window ``k`` itself, an
    oracle that knew the traffic in advance). Plain names are the mean over the window's steps
    of each step's balancedness (what the step time feels); ``*_summed`` are the balancedness of
    the window's summed loads (what EPLB optimises: per-step noise averages out there)."""

    initial: np.ndarray
    stale: np.ndarray
    fresh: np.ndarray
    initial_summed: np.ndarray
    stale_summed: np.ndarray
    fresh_summed: np.ndarray


def judge_stale_plans(
    loads: np.ndarray, window: int, sizes: EplbSizes, initial_phy2log: np.ndarray
) -> PlanJudgement:
    """:class:`PlanJudgement` of consecutive, non-overlapping windows of ``loads`` (S, L, E)."""
    loads = np.asarray(loads)
    n_windows = loads.shape[0] // window
    if n_windows < 2:
        raise ValueError(f"{loads.shape[0]} steps make fewer than two windows of {window}")
    cut = loads[: n_windows * window].reshape(n_windows, window, *loads.shape[1:])
    plans = [rebalance_experts(chunk.sum(axis=0), *sizes)[0] for chunk in cut]
    judged: dict[str, list[float]] = {name: [] for name in PlanJudgement._fields}
    for k in range(1, n_windows):
        for name, plan in (
            ("initial", initial_phy2log),
            ("stale", plans[k - 1]),
            ("fresh", plans[k]),
        ):
            per_step = balancedness_per_step(gpu_loads(plan, cut[k], sizes.num_gpus))
            judged[name].append(float(np.nanmean(per_step)))
            summed = balancedness(gpu_loads(plan, cut[k].sum(axis=0), sizes.num_gpus))
            judged[f"{name}_summed"].append(summed)
    return PlanJudgement(**{name: np.array(values) for name, values in judged.items()})
