"""Intervals over seeds: the mean and its 95% confidence half-width (Student's t).

Sweeps typically run 3 seeds; with so few, the normal quantile 1.96 would give an interval about
half as wide as it should be (the t quantile for 2 degrees of freedom is 4.30). No SciPy: the
quantiles for 1-30 degrees of freedom are tabulated, and above that an expansion in 1/df
(Abramowitz & Stegun 26.7.5) is accurate to better than 1e-4.
"""

from __future__ import annotations

import math

import numpy as np

#: Two-sided 95% quantiles t_{0.975, df} for df = 1..30.
_T_975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
_Z_975 = 1.959963984540054


def t_quantile_975(degrees_of_freedom: int) -> float:
    """The 0.975 quantile of Student's t with ``degrees_of_freedom`` (>= 1) degrees of freedom."""
    if degrees_of_freedom < 1:
        raise ValueError(f"degrees_of_freedom is {degrees_of_freedom}; it must be at least 1")
    if degrees_of_freedom <= len(_T_975):
        return _T_975[degrees_of_freedom - 1]
    z, n = _Z_975, float(degrees_of_freedom)
    return (
        z
        + (z**3 + z) / (4 * n)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * n**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * n**3)
    )


def mean_interval(values) -> tuple[float, float, int]:
    """Mean, 95% confidence half-width and count of the finite ``values`` (NaNs are skipped).

    The half-width is ``t_{0.975, n-1} * std / sqrt(n)`` with the sample std (ddof=1); 0 for a
    single value (no spread to show), and mean and half-width are NaN for none.
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    n = int(finite.size)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(finite[0]), 0.0, 1
    half_width = t_quantile_975(n - 1) * float(finite.std(ddof=1)) / math.sqrt(n)
    return float(finite.mean()), half_width, n
