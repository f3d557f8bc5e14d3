"""Slow, obviously-correct NumPy twins of the deployment kernels (docs/model.md §10).

Written from the specification with Python sets and loops, sharing no code with the kernels:
the dispatch of a layer (replica choice, token copies per node and per GPU), DeepSeek-V2's
device-level dropping and its two balance losses (for finite differences of their gradients).
Nothing here validates its arguments.
"""

from __future__ import annotations

import numpy as np


def dispatch_reference(indices, keep, phy2log, n_gpus, gpus_per_node, replica_choice):
    """One layer's dispatch: (slot_loads (P,), send_intra, recv_intra, send_inter, recv_inter
    (G,)), as :func:`moesim.deployment.traffic.dispatch_layer` defines it."""
    n_tokens = indices.shape[0]
    n_slots = len(phy2log)
    slots_per_gpu = n_slots // n_gpus
    replicas = {}
    for slot, expert in enumerate(phy2log):
        replicas.setdefault(int(expert), []).append(slot)
    turns = dict.fromkeys(replicas, 0)
    slot_loads = np.zeros(n_slots, dtype=np.int64)
    send_intra, recv_intra, send_inter, recv_inter = (np.zeros(n_gpus, np.int64) for _ in range(4))
    for t in range(n_tokens):
        source = t * n_gpus // n_tokens
        gpus = set()
        for expert, kept in zip(indices[t], keep[t], strict=True):
            if not kept:
                continue
            options = replicas[int(expert)]
            if replica_choice == "round_robin":
                slot = options[turns[int(expert)] % len(options)]
                turns[int(expert)] += 1
            else:  # the replica on the GPU with the fewest assignments so far
                gpu_loads = slot_loads.reshape(n_gpus, slots_per_gpu).sum(axis=1)
                slot = min(options, key=lambda s: (gpu_loads[s // slots_per_gpu], s))
            slot_loads[slot] += 1
            gpus.add(slot // slots_per_gpu)
        nodes = {gpu // gpus_per_node for gpu in gpus} - {source // gpus_per_node}
        for node in nodes:  # one InfiniBand copy per other node, to the same in-node index
            gateway = node * gpus_per_node + source % gpus_per_node
            send_inter[source] += 1
            recv_inter[gateway] += 1
        for gpu in gpus:  # one NVLink copy per GPU, from the token's copy on that node
            node = gpu // gpus_per_node
            holder = (
                source
                if node == source // gpus_per_node
                else node * gpus_per_node + (source % gpus_per_node)
            )
            if gpu != holder:
                send_intra[holder] += 1
                recv_intra[gpu] += 1
    return slot_loads, send_intra, recv_intra, send_inter, recv_inter


def device_drop_reference(indices, weights, keep, device_of_expert, capacity):
    """DeepSeek-V2's device-level dropping: per device, its kept assignments sorted by weight
    (descending, ties to the earlier token then the earlier slot k), the first ``capacity``
    kept. Returns the new keep mask (T, K)."""
    result = keep.copy()
    n_tokens, top_k = indices.shape
    by_device = {}
    for t in range(n_tokens):
        for k in range(top_k):
            if keep[t, k]:
                by_device.setdefault(int(device_of_expert[indices[t, k]]), []).append((t, k))
    for assignments in by_device.values():
        ranked = sorted(assignments, key=lambda tk: (-float(weights[tk]), tk[0], tk[1]))
        for t, k in ranked[capacity:]:
            result[t, k] = False
    return result


def device_losses_reference(
    logits, score, counts, sent_tokens, device_of_expert, top_k, max_devices, alpha2, alpha3
):
    """``L_DevBal + L_CommBal`` of DeepSeek-V2 (arXiv 2405.04434 §2.2-3.1) at ``logits``
    (T, E), with the counts ``c`` (E,) and the tokens sent to each device (D,) held constant.

    ``P_j`` is the mean over tokens of the affinities (softmax, or sigmoid normalised to sum
    to one); ``f_j = E/(K T) c_j``, ``f'_i`` its mean over device ``i``, ``P'_i`` the sum of
    ``P_j`` over device ``i``; ``f''_i = D/(M T) sent_i``.
    """
    n_tokens, n_experts = logits.shape
    n_devices = len(sent_tokens)
    z = logits.astype(np.float64)
    if score == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-z))
        p = s / s.sum(axis=1, keepdims=True)
    else:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
    affinity = p.mean(axis=0)
    f = n_experts / (top_k * n_tokens) * np.asarray(counts, np.float64)
    total = 0.0
    for i in range(n_devices):
        members = np.flatnonzero(device_of_expert == i)
        device_affinity = affinity[members].sum()
        total += alpha2 * f[members].mean() * device_affinity
        total += alpha3 * n_devices / (max_devices * n_tokens) * sent_tokens[i] * device_affinity
    return total
