"""apply_capacity() / expert_capacity() against the reference, invariants and the analytic
drop rate of iid uniform routing (docs/model.md §3)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim import apply_capacity, expert_capacity, route
from moesim.reference import apply_capacity_reference, expert_capacity_reference


def _uniform_routing(rng, n_tokens, n_experts, top_k):
    """Each token picks K distinct experts uniformly at random.

    K iid uniform draws, redrawn for rows with a repeat: conditioned on being distinct they are
    uniform over ordered K-subsets (cheaper than an argsort of T x E random numbers).
    """
    indices = rng.integers(0, n_experts, size=(n_tokens, top_k))
    while True:
        ordered = np.sort(indices, axis=1)
        repeated = np.any(ordered[:, 1:] == ordered[:, :-1], axis=1)
        if not repeated.any():
            return indices.astype(np.int64)
        indices[repeated] = rng.integers(0, n_experts, size=(int(repeated.sum()), top_k))


@st.composite
def assignments(draw):
    n_experts = draw(st.integers(1, 12))
    top_k = draw(st.integers(1, n_experts))
    n_tokens = draw(st.integers(1, 60))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # Skewed routing so that some experts overflow; few distinct weights so that ties occur.
    indices = np.argsort(rng.random((n_tokens, n_experts)) * np.linspace(1, 4, n_experts), axis=1)[
        :, :top_k
    ]
    weights = rng.integers(0, draw(st.sampled_from([3, 1000])), size=(n_tokens, top_k)) / 7
    return indices.astype(np.int64), weights.astype(dtype), n_experts


FACTORS = st.sampled_from([None, 0.1, 0.5, 1.0, 1.25, 2.0, 100.0])


@settings(max_examples=80, deadline=None)
@given(case=assignments(), capacity_factor=FACTORS, policy=st.sampled_from(["probs", "position"]))
def test_apply_capacity_matches_reference(case, capacity_factor, policy):
    indices, weights, n_experts = case
    keep = apply_capacity(indices, weights, n_experts, capacity_factor, policy)
    expected = apply_capacity_reference(indices, weights, n_experts, capacity_factor, policy)
    assert keep.dtype == np.bool_
    assert keep.shape == indices.shape
    np.testing.assert_array_equal(keep, expected)


@settings(max_examples=50, deadline=None)
@given(case=assignments(), capacity_factor=FACTORS, policy=st.sampled_from(["probs", "position"]))
def test_capacity_invariants(case, capacity_factor, policy):
    indices, weights, n_experts = case
    n_tokens, top_k = indices.shape
    keep = apply_capacity(indices, weights, n_experts, capacity_factor, policy)
    demand = np.bincount(indices.ravel(), minlength=n_experts)
    kept = np.bincount(indices[keep], minlength=n_experts)
    if capacity_factor is None:
        assert keep.all()
        return
    capacity = expert_capacity(n_tokens, top_k, n_experts, capacity_factor)
    # Never over capacity, and nothing dropped from an expert that had room.
    np.testing.assert_array_equal(kept, np.minimum(demand, capacity))


@pytest.mark.parametrize(
    "n_tokens, top_k, n_experts, factor",
    [(4096, 4, 64, 1.0), (4096, 4, 64, 1.25), (10, 3, 7, 1.0), (10, 3, 7, 0.01), (1, 1, 8, 1.0)],
)
def test_expert_capacity(n_tokens, top_k, n_experts, factor):
    expected = expert_capacity_reference(n_tokens, top_k, n_experts, factor)
    assert expert_capacity(n_tokens, top_k, n_experts, factor) == expected
    assert expected == math.ceil(n_tokens * top_k / n_experts * factor)


def test_expert_capacity_known_values():
    assert expert_capacity(4096, 4, 64, 1.0) == 256
    assert expert_capacity(4096, 4, 64, 1.25) == 320
    assert expert_capacity(10, 3, 7, 1.0) == 5  # ceil(30/7 = 4.29)


def test_position_keeps_earliest_tokens():
    indices = np.zeros((6, 1), dtype=np.int64)  # every token to expert 0 of 2
    weights = np.array([[0.1], [0.9], [0.5], [0.7], [0.3], [0.8]])
    keep = apply_capacity(indices, weights, 2, 1.0, "position")  # capacity ceil(6/2) = 3
    np.testing.assert_array_equal(keep[:, 0], [True, True, True, False, False, False])


def test_probs_keeps_highest_weights_ties_to_earlier_token():
    indices = np.zeros((6, 1), dtype=np.int64)
    weights = np.array([[0.1], [0.5], [0.9], [0.5], [0.5], [0.2]], dtype=np.float32)
    keep = apply_capacity(indices, weights, 2, 1.0, "probs")  # capacity 3
    # 0.9 (token 2) then the three 0.5: tokens 1 and 3 win over token 4.
    np.testing.assert_array_equal(keep[:, 0], [False, True, True, True, False, False])


def test_none_keeps_everything_from_route():
    rng = np.random.default_rng(3)
    indices, weights = route(rng.standard_normal((100, 16)), top_k=4)
    assert apply_capacity(indices, weights, 16, None).all()
    assert apply_capacity(indices, weights, 16, None, "position").all()


def _expected_drop_rate(n_tokens, n_experts, top_k, capacity):
    """E[max(0, L - cap)] / (T*K/E) for L ~ Binomial(T, K/E), exact log-space pmf."""
    p = top_k / n_experts
    loads = np.arange(n_tokens + 1)
    log_comb = np.array(
        [
            math.lgamma(n_tokens + 1) - math.lgamma(k + 1) - math.lgamma(n_tokens - k + 1)
            for k in loads
        ]
    )
    pmf = np.exp(log_comb + loads * math.log(p) + (n_tokens - loads) * math.log1p(-p))
    assert abs(pmf.sum() - 1) < 1e-9
    return float(np.sum(pmf * np.maximum(0, loads - capacity))) / (n_tokens * p)


def test_expected_drop_rate_small_case_exact():
    # T=3, E=2, K=1, cap=2: only L=3 overflows by 1, P = 1/8; E[drop]/(T*K/E) = (1/8)/1.5.
    assert _expected_drop_rate(3, 2, 1, 2) == pytest.approx(1 / 12, rel=1e-12)
    # math.comb agrees with the log-space pmf.
    p, n = 4 / 64, 100
    direct = sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) * max(0, k - 8) for k in range(n + 1))
    assert _expected_drop_rate(n, 64, 4, 8) == pytest.approx(direct / (n * p), rel=1e-9)


@pytest.mark.parametrize(
    "n_tokens, capacity_factor, steps",
    [
        (4096, 1.0, 600),
        # At T=4096 a factor of 1.25 is 4 standard deviations above the mean load (drop rate
        # ~5e-7, unmeasurable); at T=256 the capacity is 20 for a mean load of 16.
        (256, 1.25, 4000),
    ],
)
def test_uniform_routing_drop_rate_matches_binomial(n_tokens, capacity_factor, steps):
    """Enough steps that 2% relative is at least 4 standard errors of the measured rate."""
    n_experts, top_k = 64, 4
    rng = np.random.default_rng(2024)
    capacity = expert_capacity(n_tokens, top_k, n_experts, capacity_factor)
    dropped = {"probs": 0, "position": 0}
    for _ in range(steps):
        indices = _uniform_routing(rng, n_tokens, n_experts, top_k)
        weights = rng.random((n_tokens, top_k)).astype(np.float32)
        for policy in dropped:
            keep = apply_capacity(indices, weights, n_experts, capacity_factor, policy)
            dropped[policy] += int((~keep).sum())
    # Which assignments drop depends on the policy, how many does not.
    assert dropped["probs"] == dropped["position"]
    measured = dropped["probs"] / (steps * n_tokens * top_k)
    expected = _expected_drop_rate(n_tokens, n_experts, top_k, capacity)
    assert measured == pytest.approx(expected, rel=0.02)
