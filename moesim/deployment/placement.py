"""Where the experts live: physical expert slots on GPUs, GPUs on nodes (docs/model.md §10).

A deployment has ``N`` nodes of ``G_n`` GPUs (``G = N * G_n`` GPUs) and ``P = E + R`` physical
expert slots per layer (``R`` redundant experts), ``P / G`` consecutive slots per GPU: slot
``p`` is on GPU ``p // (P / G)``, GPU ``g`` on node ``g // G_n``. A placement is the logical
expert of every slot, ``phy2log[L, P]`` (deepseek-ai/EPLB's name); every logical expert has at
least one slot, and the slots of one expert are its replicas, numbered in slot order.

Plain NumPy on small arrays: nothing here is per token.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Placement(NamedTuple):
    """Experts on slots, slots on GPUs, GPUs on nodes, for ``L`` layers.

    Attributes
    ----------
    phy2log : ndarray (L, P) int64
        Logical expert held by each physical slot.
    replica_slots : ndarray (L, E, R_max) int64
        Slots of each logical expert in slot order, padded with -1.
    replica_count : ndarray (L, E) int64
        Replicas (slots) of each logical expert, at least 1.
    slots_per_gpu : int
        ``P / G``.
    gpus_per_node : int
        ``G_n``.
    """

    phy2log: np.ndarray
    replica_slots: np.ndarray
    replica_count: np.ndarray
    slots_per_gpu: int
    gpus_per_node: int

    @property
    def n_gpus(self) -> int:
        return self.phy2log.shape[1] // self.slots_per_gpu

    @property
    def n_nodes(self) -> int:
        return self.n_gpus // self.gpus_per_node

    @property
    def n_experts(self) -> int:
        return self.replica_count.shape[1]

    def gpu_of_expert_slots(self) -> np.ndarray:
        """GPU of every slot, (P,) int64."""
        return np.arange(self.phy2log.shape[1]) // self.slots_per_gpu


def placement_from_phy2log(
    phy2log: np.ndarray, n_experts: int, n_gpus: int, gpus_per_node: int
) -> Placement:
    """The :class:`Placement` of a slot table ``phy2log`` (L, P).

    Raises
    ------
    ValueError
        When ``P`` is not a multiple of ``n_gpus``, a slot names no expert of ``[0, E)``, or an
        expert has no slot.
    """
    phy2log = np.asarray(phy2log, dtype=np.int64)
    if phy2log.ndim == 1:
        phy2log = phy2log[None, :]
    n_layers, n_slots = phy2log.shape
    if n_slots % n_gpus or n_gpus % gpus_per_node:
        raise ValueError(
            f"{n_slots} physical experts do not split evenly over {n_gpus} GPUs of "
            f"{gpus_per_node} per node"
        )
    if phy2log.min() < 0 or phy2log.max() >= n_experts:
        raise ValueError(f"phy2log names experts outside [0, {n_experts})")
    replica_count = np.zeros((n_layers, n_experts), dtype=np.int64)
    for layer in range(n_layers):
        replica_count[layer] = np.bincount(phy2log[layer], minlength=n_experts)
    if replica_count.min() < 1:
        layer, expert = np.argwhere(replica_count < 1)[0]
        raise ValueError(f"expert {expert} of layer {layer} has no physical slot")
    replica_slots = np.full((n_layers, n_experts, int(replica_count.max())), -1, dtype=np.int64)
    for layer in range(n_layers):
        filled = np.zeros(n_experts, dtype=np.int64)
        for slot, expert in enumerate(phy2log[layer]):
            replica_slots[layer, expert, filled[expert]] = slot
            filled[expert] += 1
    return Placement(phy2log, replica_slots, replica_count, n_slots // n_gpus, gpus_per_node)


def contiguous_placement(
    n_layers: int, n_experts: int, n_gpus: int, gpus_per_node: int
) -> Placement:
    """Expert ``e`` on GPU ``e // (E / G)`` in every layer, no replicas (the default)."""
    phy2log = np.tile(np.arange(n_experts, dtype=np.int64), (n_layers, 1))
    return placement_from_phy2log(phy2log, n_experts, n_gpus, gpus_per_node)


def gpu_loads_from_slots(slot_loads: np.ndarray, slots_per_gpu: int) -> np.ndarray:
    """Per-GPU loads (..., G) from per-slot loads (..., P): the sum of each GPU's slots."""
    shape = slot_loads.shape
    return slot_loads.reshape(*shape[:-1], shape[-1] // slots_per_gpu, slots_per_gpu).sum(-1)
