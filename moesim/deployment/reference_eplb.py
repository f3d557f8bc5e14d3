"""Slow, obviously-correct twin of :mod:`moesim.deployment.eplb`: one layer at a time, plain
Python lists, the policy written out as DeepSeek's README describes it. Tests only."""

from __future__ import annotations

import numpy as np


def pack_greedily(loads: list, num_packs: int) -> list[list[int]]:
    """Items (by index) of each pack: heaviest item first (equal: lower index first) into the
    lightest pack that is not full (equal: lower pack first); pack loads summed in float32.
    With one item a pack, item i goes to pack i (the original's shortcut, not the greedy)."""
    per_pack = len(loads) // num_packs
    if per_pack == 1:
        return [[item] for item in range(len(loads))]
    packs: list[list[int]] = [[] for _ in range(num_packs)]
    pack_load = [np.float32(0)] * num_packs
    for item in sorted(range(len(loads)), key=lambda i: (-float(loads[i]), i)):
        open_packs = [p for p in range(num_packs) if len(packs[p]) < per_pack]
        pack = min(open_packs, key=lambda p: (pack_load[p], p))
        packs[pack].append(item)
        pack_load[pack] = np.float32(pack_load[pack] + np.float32(loads[item]))
    return packs


def add_replicas(loads: list, num_physical: int) -> tuple[list[int], list[int]]:
    """(expert of each physical copy, replica count of each expert): the first copies are the
    experts in order; each extra copy goes to the highest float32 load per copy (equal: lower
    expert)."""
    counts = [1] * len(loads)
    copies = list(range(len(loads)))
    while len(copies) < num_physical:
        per_copy = [
            np.float32(np.float32(load) / np.float32(n))
            for load, n in zip(loads, counts, strict=True)
        ]
        heaviest = max(range(len(loads)), key=lambda e: (per_copy[e], -e))
        copies.append(heaviest)
        counts[heaviest] += 1
    return copies, counts


def rebalance_layer(loads, num_replicas, num_groups, num_nodes, num_gpus) -> list[int]:
    """The logical expert of each physical slot, for one layer's loads (E,)."""
    loads = [np.float32(x) for x in loads]
    if num_groups % num_nodes:  # global policy
        num_groups = num_nodes = 1
    group_size = len(loads) // num_groups
    groups = [list(range(g * group_size, (g + 1) * group_size)) for g in range(num_groups)]
    group_loads = [np.float32(np.sum(np.array([loads[e] for e in g], np.float32))) for g in groups]
    gpus_per_node = num_gpus // num_nodes
    slots_per_gpu = num_replicas // num_gpus
    placement: list[int] = []
    for node_groups in pack_greedily(group_loads, num_nodes):
        # The node's experts: its groups in the order they were packed, each in id order.
        experts = [e for g in node_groups for e in groups[g]]
        copies, counts = add_replicas([loads[e] for e in experts], num_replicas // num_nodes)
        copy_loads = [np.float32(loads[experts[c]] / np.float32(counts[c])) for c in copies]
        for gpu_copies in pack_greedily(copy_loads, gpus_per_node):
            assert len(gpu_copies) == slots_per_gpu
            placement.extend(experts[copies[c]] for c in gpu_copies)
    return placement


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus) -> np.ndarray:
    """phy2log (L, num_replicas) int64, layer by layer."""
    return np.array(
        [
            rebalance_layer(row, num_replicas, num_groups, num_nodes, num_gpus)
            for row in np.asarray(weight, dtype=np.float32)
        ],
        dtype=np.int64,
    )
