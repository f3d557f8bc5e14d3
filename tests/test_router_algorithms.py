"""Input jitter, expert choice and Sinkhorn routing against their NumPy twins, and their
invariants (docs/model.md §2.2-§2.4)."""

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moesim.kernels.expert_choice import _expert_sets_changed, expert_choice
from moesim.kernels.jitter import input_jitter
from moesim.kernels.sinkhorn import sinkhorn_route
from moesim.reference_routers import (
    expert_choice_reference,
    expert_sets_changed_reference,
    input_jitter_reference,
    sinkhorn_reference,
    sinkhorn_route_reference,
)

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _logits(seed, n_tokens, n_experts, scale, dtype):
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal((n_tokens, n_experts))).astype(dtype)


@SETTINGS
@given(
    n_tokens=st.integers(1, 300),
    dim=st.integers(1, 9),
    eps=st.sampled_from([0.0, 1e-2, 0.5]),
    key=st.integers(0, 2**64 - 1),
    step=st.integers(0, 10**6),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_jitter_matches_the_twin(n_tokens, dim, eps, key, step, dtype):
    tokens = _logits(key % 1000, n_tokens, dim, 1.0, dtype)
    out = input_jitter(tokens, eps, key=key, step=step)
    assert out.dtype == tokens.dtype
    np.testing.assert_array_equal(out, input_jitter_reference(tokens, eps, key, step))
    ratio = out.astype(np.float64) / np.where(tokens == 0, 1, tokens)
    assert np.all(np.abs(ratio[tokens != 0] - 1) <= eps * (1 + 1e-6) + 1e-7)


def test_jitter_is_fresh_each_step_and_uniform():
    tokens = np.ones((2000, 16), np.float64)
    a = input_jitter(tokens, 0.1, key=7, step=0)
    b = input_jitter(tokens, 0.1, key=7, step=1)
    assert not np.array_equal(a, b)
    # Uniform(0.9, 1.1): mean 1, std 0.2 / sqrt(12).
    assert abs(a.mean() - 1) < 3e-3 and abs(a.std() - 0.2 / np.sqrt(12)) < 2e-3
    with pytest.raises(ValueError, match="below 1"):
        input_jitter(tokens, 1.0, key=0)


@SETTINGS
@given(
    n_tokens=st.integers(1, 200),
    n_experts=st.integers(1, 24),
    top_k=st.integers(1, 4),
    factor=st.sampled_from([0.5, 1.0, 1.25, 2.0]),
    scale=st.sampled_from([0.1, 1.0, 5.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_expert_choice_matches_the_twin(n_tokens, n_experts, top_k, factor, scale, seed):
    logits = _logits(seed, n_tokens, n_experts, scale, np.float64)
    bucket = int(np.ceil(n_tokens * top_k / n_experts * factor))
    if bucket > n_tokens:
        with pytest.raises(ValueError, match="more than the"):
            expert_choice(logits, top_k=top_k, capacity_factor=factor)
        return
    indices, weights, keep, counts = expert_choice(logits, top_k=top_k, capacity_factor=factor)
    chosen, ref_counts = expert_choice_reference(logits, bucket)
    np.testing.assert_array_equal(counts, ref_counts)
    assert counts.sum() == bucket * n_experts  # every expert takes exactly k tokens
    for t in range(n_tokens):
        experts = [e for e, _ in chosen[t]]
        np.testing.assert_array_equal(indices[t][keep[t]], experts)
        np.testing.assert_allclose(weights[t][keep[t]], [g for _, g in chosen[t]], rtol=1e-12)


def test_expert_choice_picks_the_batch_not_the_token():
    """Two experts, one token strongly for expert 0: k = 1 gives expert 1 the other token."""
    logits = np.array([[5.0, 0.0], [4.0, 0.0]])
    indices, _, keep, counts = expert_choice(logits, top_k=1, capacity_factor=1.0)
    np.testing.assert_array_equal(counts, [1, 1])
    assert indices[0][keep[0]].tolist() == [0] and indices[1][keep[1]].tolist() == [1]


@SETTINGS
@given(
    n_tokens=st.integers(1, 300),
    n_experts=st.integers(2, 24),
    top_k=st.integers(1, 3),
    scale=st.sampled_from([0.1, 1.0, 4.0]),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_sinkhorn_matches_the_twin(n_tokens, n_experts, top_k, scale, seed, dtype):
    top_k = min(top_k, n_experts)
    logits = _logits(seed, n_tokens, n_experts, scale, dtype)
    indices, weights, iterations = sinkhorn_route(logits, top_k=top_k)
    ref_indices, ref_weights, ref_iterations = sinkhorn_route_reference(logits, top_k)
    assert abs(iterations - ref_iterations) <= 1  # summation order may move the last one
    balanced, _ = sinkhorn_reference(logits)
    ordered = -np.sort(-balanced, axis=1)[:, : top_k + 1]
    # Rows decided by more than rounding (a near-tie may fall either way).
    gaps = -np.diff(ordered, axis=1) if top_k < n_experts else np.ones((n_tokens, 1))
    decisive = (gaps > 1e-9 * ordered[:, :1]).all(axis=1)
    np.testing.assert_array_equal(indices[decisive], ref_indices[decisive])
    tolerance = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(weights[decisive], ref_weights[decisive], rtol=tolerance)


def test_sinkhorn_balances_columns_to_tolerance():
    logits = _logits(1, 512, 8, 2.0, np.float64)
    logits[:, 0] += 3.0  # every token prefers expert 0
    balanced, iterations = sinkhorn_reference(logits)
    np.testing.assert_allclose(balanced.sum(axis=0), 1 / 8, rtol=1e-2)
    indices, _, kernel_iterations = sinkhorn_route(logits, top_k=1)
    assert kernel_iterations > 1
    assert np.bincount(indices[:, 0], minlength=8).max() < 2 * 512 / 8


def test_new_kernels_are_the_same_for_any_thread_count():
    logits = _logits(5, 700, 16, 1.0, np.float32)  # three chunks of tokens
    before = numba.get_num_threads()
    outputs = []
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            outputs.append(
                (
                    *sinkhorn_route(logits, top_k=2),
                    *expert_choice(logits, top_k=2, capacity_factor=1.0),
                    input_jitter(logits, 0.01, key=3, step=2),
                )
            )
    finally:
        numba.set_num_threads(before)
    for a, b in zip(outputs[0], outputs[-1], strict=True):
        np.testing.assert_array_equal(a, b)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), width=st.integers(1, 4))
def test_expert_sets_changed_matches_the_twin(seed, width):
    rng = np.random.default_rng(seed)
    n_tokens, n_experts = 30, 6
    a = rng.integers(0, n_experts, (n_tokens, width))
    b = rng.integers(0, n_experts, (n_tokens, width))
    keep_a = rng.random((n_tokens, width)) < 0.7
    keep_b = rng.random((n_tokens, width)) < 0.7
    # Sets: repeated experts in a row would count twice in the kernel; make rows distinct.
    a = np.stack([rng.permutation(n_experts)[:width] for _ in range(n_tokens)])
    b[::2] = a[::2]
    keep_b[::2] = keep_a[::2]
    sets_a = [set(a[t][keep_a[t]]) for t in range(n_tokens)]
    sets_b = [set(b[t][keep_b[t]]) for t in range(n_tokens)]
    expected = expert_sets_changed_reference(sets_a, sets_b)
    if any(len(set(b[t][keep_b[t]])) != keep_b[t].sum() for t in range(n_tokens)):
        return  # rows of b with a repeated expert are not sets
    assert _expert_sets_changed(a, keep_a, b, keep_b, n_experts) == pytest.approx(expected)
