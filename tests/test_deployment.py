"""The deployment kernels against their NumPy twins, and the cost model's definitions
(docs/model.md §10)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim._jit import n_chunks_for
from moesim.deployment.cost import (
    Hardware,
    balanced_step,
    balancedness,
    imbalance_ratio,
    layer_times,
)
from moesim.deployment.placement import contiguous_placement, placement_from_phy2log
from moesim.deployment.reference import (
    device_drop_reference,
    device_losses_reference,
    dispatch_reference,
)
from moesim.deployment.traffic import dispatch_layer
from moesim.engine.deployment import device_capacity_keep
from moesim.kernels.learning import _aux_counts, _router_gradient, device_loss_coefficients
from moesim.kernels.routing import SCORE_SIGMOID, SCORE_SOFTMAX
from moesim.kernels.step import RoutingStep
from moesim.reference_learning import numerical_gradient


@st.composite
def layouts(draw):
    """A random layout, placement (every expert at least once) and routed batch."""
    nodes = draw(st.integers(1, 3))
    gpus_per_node = draw(st.integers(1, 3))
    n_gpus = nodes * gpus_per_node
    n_experts = draw(st.integers(2, 12))
    slots_per_gpu = draw(st.integers(-(-n_experts // n_gpus), -(-n_experts // n_gpus) + 2))
    n_slots = slots_per_gpu * n_gpus
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    phy2log = np.concatenate(
        [np.arange(n_experts), rng.integers(0, n_experts, n_slots - n_experts)]
    )
    rng.shuffle(phy2log)
    n_tokens = draw(st.integers(1, 40))
    top_k = draw(st.integers(1, min(4, n_experts)))
    indices = np.array([rng.choice(n_experts, top_k, replace=False) for _ in range(n_tokens)])
    keep = rng.random((n_tokens, top_k)) < 0.85
    return phy2log, n_gpus, gpus_per_node, n_experts, indices, keep


@settings(max_examples=60, deadline=None)
@given(layouts(), st.sampled_from(["round_robin", "least_loaded"]))
def test_dispatch_matches_its_twin(layout, choice):
    phy2log, n_gpus, gpus_per_node, n_experts, indices, keep = layout
    placement = placement_from_phy2log(phy2log, n_experts, n_gpus, gpus_per_node)
    got = dispatch_layer(indices, keep, placement, 0, choice)
    expected = dispatch_reference(indices, keep, phy2log, n_gpus, gpus_per_node, choice)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    # Every kept assignment is computed once; every copy sent is received.
    assert got.slot_loads.sum() == keep.sum()
    assert got.send_inter.sum() == got.recv_inter.sum()
    assert got.send_intra.sum() == got.recv_intra.sum()


def test_a_token_crosses_to_a_node_once_and_is_forwarded_over_nvlink():
    # 2 nodes x 2 GPUs, one expert per GPU; the token lives on GPU 0 (node 0, index 0).
    placement = contiguous_placement(1, 4, 4, 2)
    indices = np.array([[2, 3, 1]])  # GPUs 2 and 3 (node 1) and GPU 1 (node 0)
    d = dispatch_layer(indices, np.ones_like(indices, bool), placement, 0, "round_robin")
    assert d.send_inter.tolist() == [1, 0, 0, 0]  # once to node 1, not twice
    assert d.recv_inter.tolist() == [0, 0, 1, 0]  # to GPU 2, node 1's GPU of index 0
    assert d.send_intra.tolist() == [1, 0, 1, 0]  # GPU 0 -> 1, and GPU 2 forwards to 3
    assert d.recv_intra.tolist() == [0, 1, 0, 1]


def test_replica_choice_spreads_a_hot_expert():
    # Expert 0 has two replicas (slots 0 and 2, on GPUs 0 and 1); every token wants it.
    placement = placement_from_phy2log(np.array([0, 1, 0, 2]), 3, 2, 2)
    indices = np.zeros((10, 1), dtype=np.int64)
    keep = np.ones((10, 1), bool)
    for choice in ("round_robin", "least_loaded"):
        d = dispatch_layer(indices, keep, placement, 0, choice)
        assert d.slot_loads.tolist() == [5, 0, 5, 0]


@settings(max_examples=40, deadline=None)
@given(layouts(), st.integers(1, 30))
def test_device_dropping_matches_its_twin(layout, capacity):
    _, n_gpus, _, n_experts, indices, keep = layout
    rng = np.random.default_rng(capacity)
    weights = rng.choice([0.25, 0.5, 1.0], size=indices.shape).astype(np.float32)  # ties
    device_of_expert = np.arange(n_experts) % n_gpus
    demand = np.bincount(indices.ravel(), minlength=n_experts)
    routed = RoutingStep(indices, weights, keep, demand, demand)
    got = device_capacity_keep(routed, device_of_expert, n_gpus, capacity)
    expected = device_drop_reference(indices, weights, keep, device_of_expert, capacity)
    np.testing.assert_array_equal(got.keep, expected)
    np.testing.assert_array_equal(got.kept, np.bincount(indices[expected], minlength=n_experts))


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
def test_device_losses_have_exact_gradients(score):
    rng = np.random.default_rng(3)
    n_tokens, n_experts, top_k, n_devices, max_devices = 12, 8, 2, 4, 2
    logits = rng.normal(size=(n_tokens, n_experts))
    indices = np.argsort(-logits, axis=1)[:, :top_k]
    keep = rng.random(indices.shape) < 0.8
    device_of_expert = np.arange(n_experts) // (n_experts // n_devices)
    code = SCORE_SIGMOID if score == "sigmoid" else SCORE_SOFTMAX
    counts = np.zeros((1, n_experts), dtype=np.int64)
    _aux_counts(logits, code, top_k, n_tokens, counts, np.zeros((1, n_experts)))
    row, _ = device_loss_coefficients(
        counts[0],
        indices,
        keep,
        device_of_expert,
        n_devices,
        top_k,
        max_devices,
        0.05,
        0.02,
        n_tokens,
    )
    sent = np.zeros(n_devices)
    for t in range(n_tokens):
        for device in {device_of_expert[e] for e, k in zip(indices[t], keep[t], strict=True) if k}:
            sent[device] += 1

    def loss(z):
        return device_losses_reference(
            z, score, counts[0], sent, device_of_expert, top_k, max_devices, 0.05, 0.02
        )

    # The router's gradient kernel with identity tokens gives dJ/dz (J = -loss, no reward).
    chunks = np.zeros((n_chunks_for(n_tokens), n_experts, n_tokens))
    _router_gradient(
        logits,
        np.eye(n_tokens),
        indices,
        np.zeros(indices.shape),
        code,
        False,
        1.0,
        code,
        row,
        n_tokens,
        0.0,
        chunks,
        np.zeros(chunks.shape[0]),
    )
    kernel = -chunks.sum(axis=0).T
    np.testing.assert_allclose(kernel, numerical_gradient(loss, logits), rtol=1e-6, atol=1e-10)


def test_step_time_model_by_hand():
    hardware = Hardware(10, 1.0, 2.0, 100.0, 10.0, 4.0, 2.0, overlap=False)
    loads = np.array([[2, 6]])  # compute 2 * 4 / 2 = 4 s and 12 s
    zero = np.zeros((1, 2))
    inter = np.array([[1, 0]])  # 10 * 3 bytes / 10 B/s = 3 s on GPU 0 (send), on GPU 1 (recv)
    times = layer_times(loads, zero, zero, inter, inter[:, ::-1], hardware)
    np.testing.assert_allclose(times.compute, [[4, 12]])
    np.testing.assert_allclose(times.communication, [[3, 3]])
    np.testing.assert_allclose(times.step, [15])
    np.testing.assert_allclose(times.idle, [[8, 0]])
    np.testing.assert_allclose(balanced_step(times, False), [11])  # mean compute 8 + comm 3
    overlapped = layer_times(
        loads, zero, zero, inter, inter[:, ::-1], hardware._replace(overlap=True)
    )
    np.testing.assert_allclose(overlapped.step, [12])


def test_balancedness_and_imbalance_ratio_definitions():
    loads = np.array([[1.0, 3.0], [2.0, 2.0]])
    assert balancedness(loads) == pytest.approx((2 + 2) / (3 + 2))  # vLLM: sums over layers
    np.testing.assert_allclose(imbalance_ratio(loads), [0.5, 0.0])


def test_least_loaded_replicas_fill_the_idle_gpu():
    # GPU 0 holds experts 0 and 1, GPU 1 experts 0 and 2; six tokens want 1, then six want 0.
    placement = placement_from_phy2log(np.array([0, 1, 0, 2]), 3, 2, 2)
    indices = np.array([[1]] * 6 + [[0]] * 6)
    keep = np.ones_like(indices, dtype=bool)
    turns = dispatch_layer(indices, keep, placement, 0, "round_robin").slot_loads
    least = dispatch_layer(indices, keep, placement, 0, "least_loaded").slot_loads
    assert turns.tolist() == [3, 6, 3, 0]  # GPUs 9 and 3
    assert least.tolist() == [0, 6, 6, 0]  # GPUs 6 and 6
