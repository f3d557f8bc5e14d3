"""Loss-free balancing: the expert-bias update (docs/model.md §4).

``e_i = mean(c) - c_i``; rule ``sign``: ``b_i += u * sign(e_i)`` with ``sign(0) = 0``
(Loss-Free Balancing, Megatron-Core); rule ``proportional``: ``b_i += u * e_i / mean(c)``.
``center`` subtracts the mean of the update (torchtitan) so the bias does not drift.
"""

from __future__ import annotations

import numpy as np

from moesim._jit import njit
from moesim.kernels.checks import check_bool, check_choice, check_float_array, check_real

RULE_SIGN = 0
RULE_PROPORTIONAL = 1
RULE_CODES = {"sign": RULE_SIGN, "proportional": RULE_PROPORTIONAL}


@njit
def _bias_update(bias, counts, rate, rule_code, center, out):
    """Write the updated bias into ``out`` (float32).

    The sign is decided on exact integers, ``sign(sum(c) - E * c_i)``, so a perfectly balanced
    expert gets exactly zero: float or low-precision counts would flip it (a known bug).
    """
    n_experts = counts.shape[0]
    total = np.int64(0)
    for e in range(n_experts):
        total += counts[e]
    delta = np.empty(n_experts, dtype=np.float64)
    for e in range(n_experts):
        if rule_code == RULE_SIGN:
            excess = total - n_experts * counts[e]
            delta[e] = rate * (int(excess > 0) - int(excess < 0))
        elif total > 0:
            mean = total / n_experts
            delta[e] = rate * (mean - counts[e]) / mean
        else:
            delta[e] = 0.0
    if center:
        delta -= delta.mean()
    for e in range(n_experts):
        out[e] = np.float64(bias[e]) + delta[e]


def update_bias(bias, counts, rate: float, rule: str = "sign", center: bool = False) -> np.ndarray:
    """One expert-bias update from per-expert assignment counts.

    Parameters
    ----------
    bias : ndarray, shape (E,), float
        Current bias, finite (kept as float32, as in DeepSeek-V3 and Megatron-Core).
    counts : ndarray, shape (E,), integer
        Assignments per expert over the update window (exact, non-negative integers).
    rate : float
        Update rate u (bias units per update), a finite real number >= 0 (not a bool or str).
    rule : {"sign", "proportional"}
    center : bool
        Subtract the mean of the update so that ``sum(b)`` stays constant. A bool (Python or
        NumPy): ``0`` or ``"false"`` are refused, not coerced (``bool("false")`` is True).

    Returns
    -------
    ndarray, shape (E,), float32
        The new bias (a new array; the input is not modified).

    Raises
    ------
    ValueError
        Naming the argument and the constraint it breaks (e.g. a NaN or infinite bias).
    """
    bias = np.asarray(bias)
    counts = np.asarray(counts)
    if bias.ndim != 1:
        raise ValueError(f"bias is {bias.ndim}-dimensional and must be 1-dimensional [E]")
    bias32 = check_float_array("bias", bias, np.float32, "the bias's dtype")
    if counts.shape != bias.shape:
        raise ValueError(f"counts has shape {counts.shape}; it must match bias {bias.shape}")
    if not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(
            f"counts has dtype {counts.dtype}; it must hold exact integers (int64), "
            "not floats: low-precision counts flip the sign of balanced experts"
        )
    if counts.size and counts.min() < 0:
        e = int(np.argmax(counts < 0))
        raise ValueError(f"counts[{e}] is {counts[e]}; counts must be non-negative")
    rule = check_choice("rule", rule, RULE_CODES)
    rate = check_real("rate", rate, minimum=0)
    center = check_bool("center", center)
    out = np.empty(bias.shape, dtype=np.float32)
    _bias_update(
        bias32,
        np.ascontiguousarray(counts, dtype=np.int64),
        rate,
        RULE_CODES[rule],
        center,
        out,
    )
    return out
