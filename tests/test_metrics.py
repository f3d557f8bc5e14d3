"""load_stats() and the engine's per-step metrics (fidelity, assignment counts, specialisation,
the MaxVio noise floor) against their NumPy twins and known values (docs/model.md §6)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim import load_stats
from moesim.kernels.metrics import (
    _assignment_counts,
    _top_k_overlap,
    max_vio_noise_floor,
    specialization,
)
from moesim.reference import (
    assignment_counts_reference,
    load_stats_reference,
    max_vio_noise_floor_reference,
    specialization_reference,
    top_k_overlap_reference,
)

KEYS = {"max_vio", "cv", "entropy", "gini", "starved", "top10_share"}


@st.composite
def count_arrays(draw, two_dimensional):
    n_experts = draw(st.one_of(st.just(1), st.integers(2, 70)))
    rows = draw(st.integers(1, 6)) if two_dimensional else None
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (rows, n_experts) if two_dimensional else (n_experts,)
    kind = draw(st.sampled_from(["uniform", "skewed", "sparse"]))
    if kind == "uniform":
        counts = rng.integers(0, draw(st.sampled_from([1, 5, 1000])) + 1, size=shape)
    elif kind == "skewed":
        counts = np.floor(rng.pareto(1.0, size=shape) * 50)
    else:
        counts = rng.integers(0, 100, size=shape) * (rng.random(shape) < 0.2)
    counts = counts.astype(np.int64)
    if two_dimensional and draw(st.booleans()):
        counts[0] = 0  # an empty row
    return counts


def _assert_stats_equal(got, expected):
    assert set(got) == KEYS
    for key in KEYS:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12, atol=1e-12, err_msg=key)
        assert np.asarray(got[key]).dtype == np.float64, key


@settings(max_examples=80, deadline=None)
@given(counts=count_arrays(two_dimensional=False))
def test_load_stats_matches_reference_1d(counts):
    got = load_stats(counts)
    _assert_stats_equal(got, load_stats_reference(counts))
    for key in KEYS:
        assert np.ndim(got[key]) == 0


@settings(max_examples=50, deadline=None)
@given(counts=count_arrays(two_dimensional=True))
def test_load_stats_matches_reference_2d(counts):
    got = load_stats(counts)
    _assert_stats_equal(got, load_stats_reference(counts))
    for key in KEYS:
        assert np.shape(got[key]) == (counts.shape[0],)


@pytest.mark.parametrize("n_experts", [2, 8, 30, 64, 256])
def test_uniform_loads(n_experts):
    stats = load_stats(np.full(n_experts, 17, dtype=np.int64))
    assert stats["max_vio"] == pytest.approx(0, abs=1e-12)
    assert stats["cv"] == pytest.approx(0, abs=1e-12)
    assert stats["entropy"] == pytest.approx(1, abs=1e-12)
    assert stats["gini"] == pytest.approx(0, abs=1e-12)
    assert stats["starved"] == 0
    top = -(-n_experts // 10)
    assert stats["top10_share"] == pytest.approx(top / n_experts, rel=1e-12)


@pytest.mark.parametrize("n_experts", [2, 8, 30, 64, 256])
def test_one_hot_loads(n_experts):
    counts = np.zeros(n_experts, dtype=np.int64)
    counts[n_experts // 3] = 1000
    stats = load_stats(counts)
    assert stats["entropy"] == pytest.approx(0, abs=1e-12)
    assert stats["gini"] == pytest.approx((n_experts - 1) / n_experts, rel=1e-12)
    assert stats["starved"] == n_experts - 1
    assert stats["max_vio"] == pytest.approx(n_experts - 1, rel=1e-12)
    assert stats["cv"] == pytest.approx(np.sqrt(n_experts - 1), rel=1e-12)
    assert stats["top10_share"] == pytest.approx(1, rel=1e-12)


def test_known_small_values():
    counts = np.array([1, 2, 3, 4, 0, 0, 0, 0, 0, 10], dtype=np.int64)  # total 20, mean 2
    stats = load_stats(counts)
    assert stats["max_vio"] == pytest.approx(4)
    assert stats["starved"] == 5  # the five zeros (< 0.2)
    assert stats["top10_share"] == pytest.approx(0.5)  # ceil(0.1 * 10) = 1 expert
    x = counts.astype(float)
    gini = np.abs(x[:, None] - x[None, :]).sum() / (2 * 10**2 * 2)
    assert stats["gini"] == pytest.approx(gini)
    p = x[x > 0] / 20
    assert stats["entropy"] == pytest.approx(-(p * np.log(p)).sum() / np.log(10))


def test_top10_share_uses_ceil_of_a_tenth():
    # E = 30: ceil(0.1 * 30) = 3 experts (0.1 * 30 is 3.0000000000000004 in floating point).
    counts = np.arange(1, 31, dtype=np.int64)
    assert load_stats(counts)["top10_share"] == pytest.approx((28 + 29 + 30) / counts.sum())
    # E = 11: ceil(1.1) = 2.
    counts = np.arange(1, 12, dtype=np.int64)
    assert load_stats(counts)["top10_share"] == pytest.approx((10 + 11) / counts.sum())


def test_single_expert_is_perfectly_balanced():
    """E = 1: H / log E is 0/0; kernel and reference call it 1, as max_vio = cv = gini = 0."""
    for counts in (np.array([5]), np.array([[5], [0], [1]])):
        got = load_stats(counts)
        _assert_stats_equal(got, load_stats_reference(counts))
    stats = load_stats(np.array([5]))
    assert stats == {
        "max_vio": 0.0,
        "cv": 0.0,
        "entropy": 1.0,
        "gini": 0.0,
        "starved": 0.0,
        "top10_share": 1.0,
    }
    np.testing.assert_array_equal(load_stats(np.array([[5], [0]]))["entropy"], [1.0, np.nan])


def test_zero_row_is_nan():
    stats = load_stats(np.zeros(8, dtype=np.int64))
    for key in KEYS:
        assert np.isnan(stats[key]), key
    stats = load_stats(np.array([[0, 0, 0, 0], [1, 1, 1, 1]], dtype=np.int64))
    for key in KEYS:
        assert np.isnan(stats[key][0]), key
        assert not np.isnan(stats[key][1]), key


# ----------------------------------------------------------------------------------------------
# The engine's per-step metrics against their NumPy twins (docs/model.md §6)


@st.composite
def routings(draw, max_tokens=60):
    """Indices (T, K) with distinct experts per row, a keep mask and token clusters."""
    n_experts = draw(st.integers(1, 24))
    top_k = draw(st.integers(1, n_experts))
    n_tokens = draw(st.integers(1, max_tokens))
    n_clusters = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    indices = np.argsort(rng.random((n_tokens, n_experts)), axis=1)[:, :top_k]
    keep_share = draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    keep = rng.random((n_tokens, top_k)) < keep_share
    clusters = rng.integers(0, n_clusters, size=n_tokens)
    return indices.astype(np.int64), keep, clusters.astype(np.int64), n_clusters, n_experts


@settings(max_examples=80, deadline=None)
@given(case=routings(), overlap=st.sampled_from([0.0, 0.5, 1.0]), seed=st.integers(0, 2**16))
def test_top_k_overlap_matches_reference(case, overlap, seed):
    """Fidelity: a share of integers, so kernel and twin agree exactly."""
    indices_a, _, _, _, n_experts = case
    rng = np.random.default_rng(seed)
    indices_b = np.argsort(rng.random(indices_a.shape[:1] + (n_experts,)), axis=1)
    indices_b = indices_b[:, : indices_a.shape[1]].astype(np.int64)
    same = rng.random(indices_a.shape[0]) < overlap
    indices_b[same] = indices_a[same][:, ::-1]  # the same experts in another order
    got = _top_k_overlap(indices_a, indices_b, n_experts)
    assert got == top_k_overlap_reference(indices_a, indices_b)
    assert 0.0 <= got <= 1.0
    assert _top_k_overlap(indices_a, indices_a, n_experts) == 1.0


@settings(max_examples=80, deadline=None)
@given(case=routings())
def test_assignment_counts_match_reference(case):
    indices, keep, clusters, n_clusters, n_experts = case
    joint = np.zeros((n_clusters, n_experts), dtype=np.int64)
    any_dropped, all_dropped = _assignment_counts(indices, keep, clusters, joint)
    expected = assignment_counts_reference(indices, keep, clusters, n_clusters, n_experts)
    np.testing.assert_array_equal(joint, expected[0], strict=True)
    assert (any_dropped, all_dropped) == expected[1:]
    assert joint.sum() == keep.sum()
    # It accumulates: a second call doubles the counts.
    _assignment_counts(indices, keep, clusters, joint)
    np.testing.assert_array_equal(joint, 2 * expected[0])


@settings(max_examples=80, deadline=None)
@given(
    n_clusters=st.integers(1, 8),
    n_experts=st.integers(1, 16),
    sparsity=st.sampled_from([0.0, 0.5, 0.9]),
    seed=st.integers(0, 2**32 - 1),
)
def test_specialization_matches_reference(n_clusters, n_experts, sparsity, seed):
    rng = np.random.default_rng(seed)
    joint = rng.integers(0, 50, size=(n_clusters, n_experts)) * (
        rng.random((n_clusters, n_experts)) >= sparsity
    )
    got = specialization(joint)
    expected = specialization_reference(joint)
    if np.isnan(expected):
        assert np.isnan(got)
        return
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert -1e-12 <= got <= 1.0 + 1e-12


def test_specialization_known_values():
    assert specialization(np.eye(4, dtype=np.int64) * 7) == pytest.approx(1.0)  # expert = cluster
    independent = np.outer([1, 2, 3], [4, 1, 1, 2])  # expert independent of the cluster
    assert specialization(independent) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(specialization(np.zeros((3, 4))))
    assert np.isnan(specialization(np.array([[3, 1, 2]])))  # one cluster: H(C) = 0
    # Only one cluster with kept assignments: H(C) = 0 too (was 2.0, from rounding: 1e-16/1e-16).
    assert np.isnan(specialization(np.array([[0, 0, 0], [3, 1, 7]])))


@settings(max_examples=200, deadline=None)
@given(
    n_tokens=st.integers(1, 10**7),
    n_experts=st.integers(1, 1024),
    data=st.data(),
)
def test_max_vio_noise_floor_matches_reference(n_tokens, n_experts, data):
    top_k = data.draw(st.integers(1, n_experts))
    got = max_vio_noise_floor(n_tokens, top_k, n_experts)
    expected = max_vio_noise_floor_reference(n_tokens, top_k, n_experts)
    assert got == pytest.approx(expected, rel=1e-12, abs=0.0)


def test_max_vio_noise_floor_is_about_what_random_routing_shows():
    """The floor (sqrt(2 ln E) standard deviations) is near the mean MaxVio_batch of uniform
    random routing; for E = 64 it is a little above it (the largest of 64 loads is about 2.4
    standard deviations above the mean, not 2.9)."""
    n_tokens, top_k, n_experts = 4096, 8, 64
    rng = np.random.default_rng(0)
    max_vios = []
    for _ in range(20):
        indices = np.argsort(rng.random((n_tokens, n_experts)), axis=1)[:, :top_k]
        loads = np.bincount(indices.ravel(), minlength=n_experts)
        max_vios.append(loads.max() / loads.mean() - 1)
    ratio = np.mean(max_vios) / max_vio_noise_floor(n_tokens, top_k, n_experts)
    assert 0.7 < ratio < 1.0
