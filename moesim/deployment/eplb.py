"""DeepSeek's expert-parallel load balancer (EPLB): redundant experts and their placement on GPUs.

The same policy and the same greedy choices as deepseek-ai/EPLB's ``rebalance_experts``, in
NumPy with one small Numba kernel, so that for the same loads it gives the same placement:

- **hierarchical** (when the nodes divide the expert groups): the groups are packed onto nodes
  so that node loads balance, each node replicates its own experts (every new replica goes to
  the expert with the highest load per replica), and each node's physical experts are packed
  onto its GPUs;
- **global** (otherwise): the same with one group and one node, replicas chosen over all
  experts and packed onto all GPUs.

Packing ("balanced packing") takes the items by decreasing load and puts each on the lightest
pack that still has room, every pack taking the same number of items.

Exactness. Loads are rounded to float32 and pack loads are summed in float32, as the original
does. Equal loads are taken lower id first (a stable sort). The original sorts with PyTorch's
unstable ``sort``, whose order among equal loads depends on the PyTorch build and the CPU; with
no equal loads (or PyTorch's ``stable=True``) the two agree, which ``tests/test_eplb.py`` checks
on the README's example and docs/eplb.md reports for random loads.

Layout. Physical slot ``p`` is on GPU ``p // (num_replicas // num_gpus)``, GPU ``g`` on node
``g // (num_gpus // num_nodes)``.
"""

from __future__ import annotations

import numpy as np

from moesim._jit import njit


@njit
def _pack_in_order(order, weight, num_packs, pack_index, rank_in_pack):
    """Greedy packing of each row's items, taken in ``order``, onto ``num_packs`` equal packs.

    order : (X, n) int64, the items of each row by decreasing weight
    weight : (X, n) float32
    pack_index, rank_in_pack : (X, n) int64, filled in
    """
    rows, n = weight.shape
    per_pack = n // num_packs
    for row in range(rows):
        pack_load = np.zeros(num_packs, np.float32)
        pack_items = np.zeros(num_packs, np.int64)
        for position in range(n):
            item = order[row, position]
            best = -1
            for pack in range(num_packs):
                if pack_items[pack] < per_pack and (best < 0 or pack_load[pack] < pack_load[best]):
                    best = pack
            pack_index[row, item] = best
            rank_in_pack[row, item] = pack_items[best]
            pack_load[best] += weight[row, item]
            pack_items[best] += 1


def balanced_packing(weight: np.ndarray, num_packs: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack each row's ``n`` items onto ``num_packs`` packs of ``n / num_packs`` items each.

    Items go by decreasing weight (equal weights: lower index first) to the lightest pack with
    room (equal pack loads: lower pack first).

    Parameters
    ----------
    weight : (X, n) array of float, non-negative; rounded to float32
    num_packs : int, dividing ``n``

    Returns
    -------
    pack_index : (X, n) int64, the pack of each item
    rank_in_pack : (X, n) int64, the item's position in its pack (0 for the first placed)
    """
    weight = np.asarray(weight, dtype=np.float32)
    rows, n = weight.shape
    if num_packs < 1 or n % num_packs:
        raise ValueError(f"{n} items cannot fill {num_packs} packs equally")
    if n == num_packs:  # one item a pack: item i in pack i, as the original does
        return (
            np.broadcast_to(np.arange(n, dtype=np.int64), (rows, n)).copy(),
            np.zeros((rows, n), dtype=np.int64),
        )
    order = np.argsort(-weight, axis=1, kind="stable").astype(np.int64)
    pack_index = np.full((rows, n), -1, dtype=np.int64)
    rank_in_pack = np.full((rows, n), -1, dtype=np.int64)
    _pack_in_order(order, weight, num_packs, pack_index, rank_in_pack)
    return pack_index, rank_in_pack


def replicate_experts(weight: np.ndarray, num_physical: int):
    """Add replicas one at a time, each to the expert with the highest load per replica.

    Parameters
    ----------
    weight : (X, num_logical) float32
    num_physical : int, at least ``num_logical``

    Returns
    -------
    phy2log : (X, num_physical) int64, the logical expert of each physical one (the first
        ``num_logical`` are the experts themselves, in order)
    replica_rank : (X, num_physical) int64, 0 for an expert's first copy, 1 for its second, ...
    count : (X, num_logical) int64, the replicas of each logical expert
    """
    rows, num_logical = weight.shape
    if num_physical < num_logical:
        raise ValueError(f"{num_physical} physical experts cannot hold {num_logical} experts")
    phy2log = np.empty((rows, num_physical), dtype=np.int64)
    phy2log[:, :num_logical] = np.arange(num_logical)
    replica_rank = np.zeros((rows, num_physical), dtype=np.int64)
    count = np.ones((rows, num_logical), dtype=np.int64)
    every_row = np.arange(rows)
    for slot in range(num_logical, num_physical):
        heaviest = np.argmax(weight / count.astype(np.float32), axis=1)  # first of equal maxima
        phy2log[:, slot] = heaviest
        replica_rank[:, slot] = count[every_row, heaviest]
        count[every_row, heaviest] += 1
    return phy2log, replica_rank, count


def _inverse(permutation: np.ndarray) -> np.ndarray:
    """Row-wise inverse of a (X, n) permutation."""
    inverse = np.empty_like(permutation)
    np.put_along_axis(inverse, permutation, np.arange(permutation.shape[1]), axis=1)
    return inverse


def _rebalance_hierarchical(weight, num_physical, num_groups, num_nodes, num_gpus):
    """phy2log, replica_rank (L, P) and count (L, E) of the hierarchical policy; see module."""
    layers, num_logical = weight.shape
    group_size = num_logical // num_groups
    groups_per_node = num_groups // num_nodes
    experts_per_node = num_logical // num_nodes
    slots_per_gpu = num_physical // num_gpus

    # 1. Groups onto nodes. "mlog" numbers the experts node by node, in packing order.
    group_load = weight.reshape(layers, num_groups, group_size).sum(axis=-1, dtype=np.float32)
    group_node, group_rank = balanced_packing(group_load, num_nodes)
    group_start = (group_node * groups_per_node + group_rank) * group_size
    log2mlog = (group_start[:, :, None] + np.arange(group_size)).reshape(layers, num_logical)
    mlog2log = _inverse(log2mlog)

    # 2. Replicas within each node: one row per (layer, node).
    mlog_load = np.take_along_axis(weight, mlog2log, axis=1).reshape(-1, experts_per_node)
    phy2mlog, phy_rank, mlog_count = replicate_experts(mlog_load, num_physical // num_nodes)

    # 3. Each node's physical experts onto its GPUs, by load per replica.
    phy_load = np.take_along_axis(mlog_load / mlog_count.astype(np.float32), phy2mlog, axis=1)
    gpu_index, rank_on_gpu = balanced_packing(phy_load, num_gpus // num_nodes)
    pphy2phy = _inverse(gpu_index * slots_per_gpu + rank_on_gpu)

    pphy2mlog = np.take_along_axis(phy2mlog, pphy2phy, axis=1).reshape(layers, num_nodes, -1)
    pphy2mlog = pphy2mlog + (np.arange(num_nodes) * experts_per_node)[None, :, None]
    phy2log = np.take_along_axis(mlog2log, pphy2mlog.reshape(layers, -1), axis=1)
    replica_rank = np.take_along_axis(phy_rank, pphy2phy, axis=1).reshape(layers, -1)
    count = np.take_along_axis(mlog_count.reshape(layers, -1), log2mlog, axis=1)
    return phy2log, replica_rank, count


def check_eplb_sizes(
    num_experts: int, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int
) -> str | None:
    """What is wrong with these sizes for :func:`rebalance_experts`, or None."""
    if min(num_experts, num_replicas, num_groups, num_nodes, num_gpus) < 1:
        return "experts, replicas, groups, nodes and GPUs must all be at least 1"
    if num_gpus % num_nodes:
        return f"{num_gpus} GPUs do not divide equally over {num_nodes} nodes"
    if num_replicas % num_gpus:
        return f"{num_replicas} physical experts do not divide equally over {num_gpus} GPUs"
    if num_replicas < num_experts:
        return f"{num_replicas} physical experts are fewer than the {num_experts} experts"
    if num_groups % num_nodes == 0 and num_experts % num_groups:
        return f"{num_experts} experts do not divide into {num_groups} groups"
    return None


def rebalance_experts(
    weight: np.ndarray, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EPLB's placement of ``num_replicas`` physical experts on ``num_gpus`` GPUs.

    Hierarchical policy when ``num_nodes`` divides ``num_groups``, global policy otherwise.

    Parameters
    ----------
    weight : (L, E) array, the load of each logical expert of each layer (tokens), >= 0
    num_replicas : int, physical experts per layer, a multiple of ``num_gpus``, >= E
    num_groups : int, expert groups (experts ``[g E/G, (g+1) E/G)`` form group ``g``)
    num_nodes : int, nodes (the fast intra-node links are why groups are kept together)
    num_gpus : int, a multiple of ``num_nodes``

    Returns
    -------
    phy2log : (L, num_replicas) int64, the logical expert held by each physical slot
    log2phy : (L, E, max replicas) int64, the slots of each logical expert by replica rank,
        -1 past its count
    logcnt : (L, E) int64, replicas of each logical expert (>= 1, each row sums to
        ``num_replicas``)
    """
    weight = np.asarray(weight)
    if weight.ndim != 2 or 0 in weight.shape:
        raise ValueError(f"weight has shape {weight.shape}; expected (layers, experts), non-empty")
    weight = weight.astype(np.float32)
    if not np.isfinite(weight).all() or (weight < 0).any():
        raise ValueError("weight must be finite and non-negative (loads in float32)")
    layers, num_experts = weight.shape
    problem = check_eplb_sizes(num_experts, num_replicas, num_groups, num_nodes, num_gpus)
    if problem:
        raise ValueError(problem)
    if num_groups % num_nodes == 0:
        placement = _rebalance_hierarchical(weight, num_replicas, num_groups, num_nodes, num_gpus)
    else:
        placement = _rebalance_hierarchical(weight, num_replicas, 1, 1, num_gpus)
    phy2log, replica_rank, logcnt = placement
    log2phy = np.full((layers, num_experts, int(logcnt.max())), -1, dtype=np.int64)
    layer_of_slot = np.repeat(np.arange(layers), num_replicas)
    log2phy[layer_of_slot, phy2log.ravel(), replica_rank.ravel()] = np.tile(
        np.arange(num_replicas), layers
    )
    return phy2log, log2phy, logcnt


def replica_counts(phy2log: np.ndarray, num_experts: int) -> np.ndarray:
    """Replicas of each logical expert, (L, E) int64, from a (L, P) placement."""
    phy2log = np.asarray(phy2log, dtype=np.int64)
    layers = phy2log.shape[0]
    counts = np.zeros((layers, num_experts), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(layers), phy2log.shape[1]), phy2log.ravel()), 1)
    return counts
