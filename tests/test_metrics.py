"""load_stats() against the reference and known values (docs/model.md section 2)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim import load_stats
from moesim.reference import load_stats_reference

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
