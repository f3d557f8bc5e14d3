"""Expert-parallel dispatch of one layer: replicas chosen, loads per slot, all-to-all traffic.

Tokens start spread evenly over the GPUs (token ``t`` of ``T`` on GPU ``t * G // T``: data
parallel attention). Each kept assignment goes to one replica of its expert; the token is then
dispatched as DeepSeek-V3 does (docs/model.md §10.2):

* to every other node holding one of its experts, **once per node**, over InfiniBand, to the GPU
  of that node with the source GPU's in-node index (the gateway);
* from there (or from the source GPU, on its own node) to every other GPU holding one of its
  experts, **once per GPU**, over NVLink.

Combine sends the same tokens back the same way. Counted in tokens; bytes and times are
:mod:`moesim.deployment.cost`'s. Serial on purpose: the replica choice of a token depends on the
tokens before it (round-robin turns, running loads), and a layer's ``T * K`` assignments take
microseconds; results cannot depend on the thread count.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from moesim._jit import njit
from moesim.deployment.placement import Placement

REPLICA_ROUND_ROBIN = 0
REPLICA_LEAST_LOADED = 1
REPLICA_CHOICES = {"round_robin": REPLICA_ROUND_ROBIN, "least_loaded": REPLICA_LEAST_LOADED}


class Dispatch(NamedTuple):
    """One layer's dispatch (tokens; combine is the same traffic in reverse).

    slot_loads : (P,) int64, kept assignments each physical slot computes.
    send_intra, recv_intra : (G,) int64, token copies sent / received over NVLink.
    send_inter, recv_inter : (G,) int64, token copies sent / received over InfiniBand.
    """

    slot_loads: np.ndarray
    send_intra: np.ndarray
    recv_intra: np.ndarray
    send_inter: np.ndarray
    recv_inter: np.ndarray


@njit
def _choose_slot(expert, replica_slots, replica_count, choice_code, turns, gpu_running, per_gpu):
    """The slot that computes one assignment to ``expert``: its only one, the next in turn, or
    the one on the GPU with the fewest assignments so far (ties: the earlier replica)."""
    count = replica_count[expert]
    if count == 1:
        return replica_slots[expert, 0]
    if choice_code == REPLICA_ROUND_ROBIN:
        slot = replica_slots[expert, turns[expert] % count]
        turns[expert] += 1
        return slot
    best = replica_slots[expert, 0]
    for r in range(1, count):
        slot = replica_slots[expert, r]
        if gpu_running[slot // per_gpu] < gpu_running[best // per_gpu]:
            best = slot
    return best


@njit
def _dispatch_layer(
    indices,
    keep,
    replica_slots,
    replica_count,
    slots_per_gpu,
    gpus_per_node,
    choice_code,
    slot_loads,
    send_intra,
    recv_intra,
    send_inter,
    recv_inter,
):
    """Fill one layer's :class:`Dispatch` arrays (zeroed by the caller), token by token."""
    n_tokens, top_k = indices.shape
    n_gpus = send_intra.shape[0]
    n_nodes = n_gpus // gpus_per_node
    turns = np.zeros(replica_count.shape[0], dtype=np.int64)
    gpu_seen = np.full(n_gpus, -1, dtype=np.int64)  # last token that reached each GPU
    node_seen = np.full(n_nodes, -1, dtype=np.int64)
    targets = np.empty(top_k, dtype=np.int64)
    gpu_running = np.zeros(n_gpus, dtype=np.int64)  # assignments each GPU has so far
    for t in range(n_tokens):
        source = (t * n_gpus) // n_tokens
        source_node = source // gpus_per_node
        local = source % gpus_per_node
        n_targets = 0
        for k in range(top_k):
            if not keep[t, k]:
                continue
            slot = _choose_slot(
                indices[t, k], replica_slots, replica_count, choice_code, turns, gpu_running,
                slots_per_gpu,
            )  # fmt: skip
            slot_loads[slot] += 1
            gpu = slot // slots_per_gpu
            gpu_running[gpu] += 1
            if gpu_seen[gpu] != t:
                gpu_seen[gpu] = t
                targets[n_targets] = gpu
                n_targets += 1
        for i in range(n_targets):
            gpu = targets[i]
            node = gpu // gpus_per_node
            forwarder = source
            if node != source_node:
                forwarder = node * gpus_per_node + local
                if node_seen[node] != t:
                    node_seen[node] = t
                    send_inter[source] += 1
                    recv_inter[forwarder] += 1
            if gpu != forwarder:
                send_intra[forwarder] += 1
                recv_intra[gpu] += 1


def dispatch_layer(
    indices, keep, placement: Placement, layer: int, replica_choice: str
) -> Dispatch:
    """Dispatch one layer's routed tokens onto ``placement`` (docs/model.md §10.2).

    Parameters
    ----------
    indices : ndarray (T, K) int64
        Logical experts chosen per token (in ``[0, E)``).
    keep : ndarray (T, K) bool
        Assignments that survived capacity and device limits; dropped ones go nowhere.
    placement : Placement
        Slots, replicas and GPUs.
    layer : int
        Which layer of ``placement`` to use.
    replica_choice : {"round_robin", "least_loaded"}
        How an assignment picks among its expert's replicas.
    """
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    keep = np.ascontiguousarray(keep, dtype=np.bool_)
    if indices.shape != keep.shape or indices.ndim != 2:
        raise ValueError(f"indices {indices.shape} and keep {keep.shape} must both be (T, K)")
    if indices.size and (indices.min() < 0 or indices.max() >= placement.n_experts):
        raise ValueError(f"indices name experts outside [0, {placement.n_experts})")
    n_gpus = placement.n_gpus
    dispatch = Dispatch(
        np.zeros(placement.phy2log.shape[1], dtype=np.int64),
        *(np.zeros(n_gpus, dtype=np.int64) for _ in range(4)),
    )
    if indices.shape[0]:
        _dispatch_layer(
            indices,
            keep,
            placement.replica_slots[layer],
            placement.replica_count[layer],
            placement.slots_per_gpu,
            placement.gpus_per_node,
            REPLICA_CHOICES[replica_choice],
            *dispatch,
        )
    return dispatch
