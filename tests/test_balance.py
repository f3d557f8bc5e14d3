"""update_bias() against the reference and the loss-free balancing rules (docs/model.md §4)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim import update_bias
from moesim.reference import update_bias_reference


@st.composite
def bias_cases(draw):
    n_experts = draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    high = draw(st.sampled_from([1, 3, 100, 10**6]))
    counts = rng.integers(0, high + 1, size=n_experts).astype(np.int64)
    if draw(st.booleans()):
        counts[:] = counts[0]  # balanced
    bias = (rng.standard_normal(n_experts) * draw(st.sampled_from([0.0, 0.01, 1.0]))).astype(
        np.float32
    )
    return bias, counts


RATES = st.sampled_from([1e-4, 1e-3, 1e-2, 0.5])


@settings(max_examples=100, deadline=None)
@given(
    case=bias_cases(),
    rate=RATES,
    rule=st.sampled_from(["sign", "proportional"]),
    center=st.booleans(),
)
def test_update_bias_matches_reference(case, rate, rule, center):
    bias, counts = case
    new = update_bias(bias, counts, rate, rule=rule, center=center)
    expected = update_bias_reference(bias, counts, rate, rule=rule, center=center)
    assert new.dtype == np.float32
    assert new.shape == bias.shape
    # Same float64 update; the kernel may round once or twice on the way to float32.
    np.testing.assert_allclose(new, expected, rtol=2e-7, atol=1e-9)
    # The input is left alone.
    assert bias is not new


def _loaded(counts):
    """Masks of the over-, under- and exactly balanced experts, decided on exact integers."""
    total, n_experts = int(counts.sum()), counts.size
    over = total < n_experts * counts  # c_i > mean(c)
    under = total > n_experts * counts
    return over, under, ~over & ~under


@settings(max_examples=100, deadline=None)
@given(
    case=bias_cases(),
    rate=RATES,
    rule=st.sampled_from(["sign", "proportional"]),
    center=st.booleans(),
)
def test_update_directions(case, rate, rule, center):
    """Every over-loaded expert's update is below the mean update, every under-loaded one above.

    Without centering, d_i = u sign(mean - c_i) or u (mean - c_i) / mean: negative exactly for
    the over-loaded. Centering subtracts mean(d) from every update, so each update relative to
    the mean update is d_i - mean(d) either way. For the proportional rule mean(d) = 0. For the
    sign rule mean(d) = u (#under - #over) / E lies strictly inside (-u, u) (an over-loaded expert
    implies an under-loaded one), so d_i - mean(d) is at most -2u/E for the over-loaded: they move
    down in absolute terms too, and the under-loaded up. Balanced experts get d_i = 0, so with
    centering they all move by -mean(d), which is not zero when the sign rule sees more
    under- than over-loaded experts or the reverse.

    The update is measured from a zero bias: rounding it to float32 keeps its sign and the order
    of updates (from a bias of 1, a proportional update of 1e-12 rounds away entirely).
    """
    bias, counts = case
    update = update_bias(np.zeros_like(bias), counts, rate, rule=rule, center=center)
    update = update.astype(np.float64)
    over, under, equal = _loaded(counts)
    mean = update.mean()
    # Each update was rounded to float32 once (relative error 2**-24); so may be the mean.
    slack = 2.0**-24 * np.abs(update).mean()
    assert np.all(update[over] < mean + slack)
    assert np.all(update[under] > mean - slack)
    assert np.all(update[over] < 0)
    assert np.all(update[under] > 0)
    # Centering shifts every update by one value: it cannot reorder over, balanced and under.
    assert update[over].max(initial=-np.inf) < update[equal].min(initial=np.inf)
    assert update[equal].max(initial=-np.inf) < update[under].min(initial=np.inf)
    if equal.any():
        assert np.all(update[equal] == update[equal][0])  # one shared update
    if not center:
        np.testing.assert_array_equal(update[equal], 0.0)
        # From the drawn bias the rounding to float32 may swallow a small step, never turn it.
        step = update_bias(bias, counts, rate, rule=rule).astype(np.float64) - bias
        assert np.all(step[over] <= 0)
        assert np.all(step[under] >= 0)
        np.testing.assert_array_equal(step[equal], 0.0)


@settings(max_examples=50, deadline=None)
@given(case=bias_cases(), rate=RATES)
def test_sign_rule_directions(case, rate):
    """From any drawn bias the sign rule's step (at least 1e-4) survives rounding to float32."""
    bias, counts = case
    new = update_bias(bias, counts, rate, rule="sign").astype(np.float64)
    step = new - bias.astype(np.float64)
    over, under, equal = _loaded(counts)
    assert np.all(step[over] < 0)
    assert np.all(step[under] > 0)
    np.testing.assert_array_equal(new[equal], bias[equal].astype(np.float64))


def test_center_moves_balanced_experts_with_the_sign_rule():
    # mean(c) = 2: four balanced experts, two under (+u), one over (-u); mean update u/7.
    counts = np.array([2, 2, 2, 2, 0, 0, 6], dtype=np.int64)
    rate = 0.5
    new = update_bias(np.zeros(7, np.float32), counts, rate, rule="sign", center=True)
    expected = rate * np.array([0, 0, 0, 0, 1, 1, -1]) - rate / 7
    np.testing.assert_allclose(new, expected, rtol=1e-6)
    assert np.all(new[:4] < 0)  # balanced, yet moved down: -mean(update)


@pytest.mark.parametrize("rule", ["sign", "proportional"])
@pytest.mark.parametrize("n_experts", [1, 3, 8, 160])
def test_balanced_counts_leave_bias_unchanged(rule, n_experts):
    """sign(0) = 0 exactly, even when mean(c) is not representable (e.g. 7/3)."""
    bias = np.linspace(-0.5, 0.5, n_experts).astype(np.float32)
    for value in (0, 1, 7, 123456789):
        counts = np.full(n_experts, value, dtype=np.int64)
        new = update_bias(bias, counts, 1e-3, rule=rule)
        np.testing.assert_array_equal(new, bias)


def test_sign_exact_integer_comparison():
    # mean = 7/3 is not exact in floats; c_i = 2 is under, 3 is over, nothing is equal.
    counts = np.array([2, 2, 3], dtype=np.int64)
    new = update_bias(np.zeros(3, np.float32), counts, 0.5, rule="sign")
    np.testing.assert_array_equal(new, np.array([0.5, 0.5, -0.5], np.float32))
    # Huge counts where float64 mean - c_i would round to 0 but the integers differ.
    big = 2**53
    counts = np.array([big, big, big + 2], dtype=np.int64)
    new = update_bias(np.zeros(3, np.float32), counts, 1.0, rule="sign")
    np.testing.assert_array_equal(new, np.array([1.0, 1.0, -1.0], np.float32))


def test_proportional_rule_values():
    counts = np.array([0, 10, 20, 30], dtype=np.int64)  # mean 15
    new = update_bias(np.zeros(4, np.float32), counts, 0.1, rule="proportional")
    np.testing.assert_allclose(new, 0.1 * (15 - counts) / 15, rtol=1e-6)
    # All-zero counts: no change (mean 0).
    bias = np.array([0.25, -0.5, 1.0], np.float32)
    new = update_bias(bias, np.zeros(3, np.int64), 0.1, rule="proportional")
    np.testing.assert_array_equal(new, bias)


@settings(max_examples=50, deadline=None)
@given(case=bias_cases(), rate=RATES, rule=st.sampled_from(["sign", "proportional"]))
def test_center_keeps_mean_update_zero(case, rate, rule):
    bias, counts = case
    new = update_bias(bias, counts, rate, rule=rule, center=True)
    step = new.astype(np.float64) - bias.astype(np.float64)
    scale = float(np.abs(bias).max(initial=0)) + rate
    assert abs(step.mean()) <= 4 * np.finfo(np.float32).eps * scale


def test_output_is_float32_for_float64_bias():
    new = update_bias(np.zeros(4, np.float64), np.array([1, 2, 3, 4]), 1e-3)
    assert new.dtype == np.float32


@pytest.mark.parametrize(
    "counts", [np.array([1.5, 2.0, 3.0]), np.array([1.0, 2.0, 3.0], dtype=np.float16)]
)
def test_non_integer_counts_rejected(counts):
    with pytest.raises(ValueError, match="counts"):
        update_bias(np.zeros(3, np.float32), counts, 1e-3)
