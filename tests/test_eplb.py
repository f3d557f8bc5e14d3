"""EPLB (moesim/deployment/eplb.py): the README's example, invariants, and the slow twin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.deployment import eplb, reference_eplb

# deepseek-ai/EPLB README: two layers of 12 experts, 4 groups, 16 replicas, 2 nodes, 8 GPUs.
README_WEIGHT = np.array(
    [
        [90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
        [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27],
    ]
)
README_PHY2LOG = np.array(
    [
        [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
        [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
    ]
)


def test_readme_example_gives_the_printed_placement():
    phy2log, log2phy, logcnt = eplb.rebalance_experts(README_WEIGHT, 16, 4, 2, 8)
    np.testing.assert_array_equal(phy2log, README_PHY2LOG)
    # The README prints only phy2log; the original (PyTorch 2.13, CPU) also gives these.
    np.testing.assert_array_equal(logcnt[0], [1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1])
    np.testing.assert_array_equal(log2phy[0, 1], [15, 13])
    np.testing.assert_array_equal(log2phy[1, 6], [2, 4])
    np.testing.assert_array_equal(
        reference_eplb.rebalance_experts(README_WEIGHT, 16, 4, 2, 8), README_PHY2LOG
    )


def test_readme_example_keeps_groups_on_their_node():
    phy2log, _, _ = eplb.rebalance_experts(README_WEIGHT, 16, 4, 2, 8)
    node_groups = phy2log.reshape(2, 2, 8) // 3  # layer, node, slot -> group
    for layer in range(2):
        first, second = (set(node.tolist()) for node in node_groups[layer])
        assert len(first) == len(second) == 2 and not first & second


@st.composite
def eplb_inputs(draw):
    """Small random loads and sizes, integer loads (many ties) or spread-out floats."""
    num_nodes = draw(st.integers(1, 3))
    num_gpus = num_nodes * draw(st.integers(1, 3))
    hierarchical = draw(st.booleans())
    num_groups = num_nodes * draw(st.integers(1, 3)) if hierarchical else draw(st.integers(1, 6))
    num_experts = num_groups * draw(st.integers(1, 4))
    num_replicas = num_gpus * draw(st.integers(1, 4))
    while num_replicas < num_experts:
        num_replicas += num_gpus
    layers = draw(st.integers(1, 3))
    if draw(st.booleans()):
        values = st.integers(0, 9)
    else:
        values = st.floats(0, 1e4, allow_nan=False, width=32)
    cells = draw(st.lists(values, min_size=layers * num_experts, max_size=layers * num_experts))
    weight = np.array(cells, dtype=np.float64).reshape(layers, num_experts)
    return weight, num_replicas, num_groups, num_nodes, num_gpus


@settings(max_examples=60, deadline=None)
@given(eplb_inputs())
def test_placement_invariants(case):
    weight, num_replicas, num_groups, num_nodes, num_gpus = case
    layers, num_experts = weight.shape
    phy2log, log2phy, logcnt = eplb.rebalance_experts(*case)
    assert phy2log.shape == (layers, num_replicas)
    assert (logcnt >= 1).all() and (logcnt.sum(axis=1) == num_replicas).all()
    np.testing.assert_array_equal(logcnt, eplb.replica_counts(phy2log, num_experts))
    # log2phy lists each expert's slots, -1 past its count, and each slot once.
    assert log2phy.shape == (layers, num_experts, logcnt.max())
    for layer in range(layers):
        for expert in range(num_experts):
            slots = log2phy[layer, expert]
            held = slots[: logcnt[layer, expert]]
            assert (slots[logcnt[layer, expert] :] == -1).all()
            assert (phy2log[layer, held] == expert).all()
        listed = np.sort(log2phy[layer][log2phy[layer] >= 0])
        np.testing.assert_array_equal(listed, np.arange(num_replicas))
    if num_groups % num_nodes == 0:  # hierarchical: a group's replicas never leave its node
        group_size = num_experts // num_groups
        node_of_slot = np.arange(num_replicas) // (num_replicas // num_nodes)
        for layer in range(layers):
            nodes_of_group = {}
            for slot, expert in enumerate(phy2log[layer]):
                nodes_of_group.setdefault(expert // group_size, set()).add(node_of_slot[slot])
            assert all(len(nodes) == 1 for nodes in nodes_of_group.values())


@settings(max_examples=60, deadline=None)
@given(eplb_inputs())
def test_matches_the_slow_twin(case):
    phy2log, _, _ = eplb.rebalance_experts(*case)
    np.testing.assert_array_equal(phy2log, reference_eplb.rebalance_experts(*case))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=12),
    st.integers(1, 4),
)
def test_packing_matches_the_slow_twin(loads, num_packs):
    loads = loads * num_packs  # a length the packs divide
    pack_index, rank = eplb.balanced_packing(np.array([loads], dtype=np.float32), num_packs)
    for pack, items in enumerate(reference_eplb.pack_greedily(loads, num_packs)):
        assert pack_index[0, items].tolist() == [pack] * len(items)
        assert rank[0, items].tolist() == list(range(len(items)))


def test_replication_lowers_the_heaviest_load_per_copy():
    weight = np.array([[100.0, 10.0, 10.0, 10.0]], dtype=np.float32)
    phy2log, rank, count = eplb.replicate_experts(weight, 7)
    np.testing.assert_array_equal(count, [[4, 1, 1, 1]])  # 100/4 = 25 > 10
    np.testing.assert_array_equal(phy2log, [[0, 1, 2, 3, 0, 0, 0]])
    np.testing.assert_array_equal(rank, [[0, 0, 0, 0, 1, 2, 3]])


def test_global_policy_when_groups_do_not_split_over_nodes():
    weight = np.array([[5.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    # 3 groups on 2 nodes: global policy; the hot expert gets the spare slots across nodes.
    phy2log, _, logcnt = eplb.rebalance_experts(weight, 8, 3, 2, 4)
    assert logcnt[0, 0] == 3
    np.testing.assert_array_equal(phy2log, reference_eplb.rebalance_experts(weight, 8, 3, 2, 4))


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ((12, 15, 4, 2, 5), "5 GPUs do not divide equally over 2 nodes"),
        ((12, 18, 4, 2, 8), "18 physical experts do not divide equally over 8 GPUs"),
        ((12, 8, 4, 2, 8), "fewer than the 12 experts"),
        ((12, 16, 8, 2, 8), "12 experts do not divide into 8 groups"),
    ],
)
def test_impossible_sizes_are_refused(sizes, message):
    num_experts, *rest = sizes
    with pytest.raises(ValueError, match=message):
        eplb.rebalance_experts(np.ones((1, num_experts)), *rest)


def test_bad_loads_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        eplb.rebalance_experts(np.array([[1.0, -1.0]]), 2, 1, 1, 1)
    with pytest.raises(ValueError, match="expected \\(layers, experts\\)"):
        eplb.rebalance_experts(np.ones(4), 4, 1, 1, 1)
