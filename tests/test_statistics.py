import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moesim.statistics import mean_interval, t_quantile_975


@pytest.mark.parametrize(
    ("df", "expected"), [(1, 12.7062), (2, 4.3027), (10, 2.2281), (30, 2.0423), (40, 2.0211),
                         (60, 2.0003), (120, 1.9799), (10**6, 1.9600)]
)  # fmt: skip
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile_975(df) == pytest.approx(expected, abs=2e-4)


def test_t_quantile_decreases_to_the_normal_quantile():
    values = [t_quantile_975(df) for df in range(1, 500)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] > 1.959963984540054


def test_three_seeds_use_t_with_two_degrees_of_freedom():
    mean, half, n = mean_interval([1.0, 2.0, 3.0, float("nan")])
    assert (mean, n) == (2.0, 3)
    assert half == pytest.approx(4.3027 * 1.0 / math.sqrt(3), rel=1e-4)


def test_degenerate_counts():
    assert mean_interval([5.0]) == (5.0, 0.0, 1)
    mean, half, n = mean_interval([float("nan")])
    assert math.isnan(mean) and math.isnan(half) and n == 0
    with pytest.raises(ValueError, match="degrees_of_freedom"):
        t_quantile_975(0)


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=40))
def test_interval_covers_the_mean_of_the_values(values):
    mean, half, n = mean_interval(values)
    assert n == len(values)
    assert mean == pytest.approx(np.mean(values), abs=1e-6)
    assert half >= 0
