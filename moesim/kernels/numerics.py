"""Shared kernel math: exp of a row, sigmoid, softmax, log-sum-exp and the two guards.

Routing (``routing.py``) and learning (``learning.py``) compute the same scores; this module is
the one place that math is written. Every helper is inlined into its caller by Numba
(``njit_inline``), so sharing it costs nothing at run time, and each one fixes its order of
operations: the same inputs give the same bits in every kernel that uses it.

Two exponentials, on purpose:

* :func:`exp_inplace` is the package's own vectorisable ``exp`` for a whole row (the router's
  scores over all experts, the hot path); within 3 ulp of libm's in float64.
* :func:`sigmoid` and the softmax helpers over a few values (the K selected experts, the
  learning gradients) call libm's ``math.exp`` per value.

A softmax is written as a *normaliser* ``(shift, total)``: ``shift`` is the largest value (in
float64) and ``total = sum_e exp(v_e - shift)``, so that ``softmax_e = exp(v_e - shift) / total``
and ``logsumexp = shift + log(total)``.
"""

from __future__ import annotations

import math

import numpy as np

from moesim._jit import njit_inline

#: Added to a sum of sigmoid scores before dividing by it: the selected gate weights when
#: ``normalize`` is on (routing, and the reward gradient through them), and the aux loss's
#: sigmoid affinities over all experts. Megatron-Core's guard (its ``1e-20``); a sum of
#: sigmoids is positive, so it only matters for scores that underflow to 0.
NORMALIZE_EPS = 1e-20

#: Added to a token's Euclidean norm, and the least norm a learnt direction is divided by (the
#: reward model's cosines). A different guard from :data:`NORMALIZE_EPS` on purpose: it guards
#: a length, not a sum of probabilities, and 1e-20 here would change the rewards' bits.
NORM_EPS = 1e-30

# exp(x) for a whole row at once (Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, then a
# degree-13 Taylor polynomial for exp(r) and 2**k built from its exponent bits). Unlike a call to
# libm's exp per element, these loops contain only arithmetic, so LLVM vectorises them without
# fastmath. Accuracy: within 3 ulp of libm in float64 (rounded to float32 the scores agree with
# libm's); the result is the same on every call and every thread.
_LOG2_E = 1.4426950408889634
_LN2_HIGH = 6.93147180369123816490e-01  # ln 2 split so that k * _LN2_HIGH is exact
_LN2_LOW = 1.90821492927058770002e-10
_EXP_ARGUMENT_LIMIT = 708.0  # exp(+-708) is a normal float64; beyond it the scores saturate


@njit_inline
def exp_inplace(values, exponent_bits):
    """``values[e] = exp(values[e])`` for a float64 row; ``exponent_bits`` is int64 scratch."""
    powers_of_two = exponent_bits.view(np.float64)
    for e in range(values.shape[0]):
        x = min(max(values[e], -_EXP_ARGUMENT_LIMIT), _EXP_ARGUMENT_LIMIT)
        k = math.floor(x * _LOG2_E + 0.5)
        r = (x - k * _LN2_HIGH) - k * _LN2_LOW
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        values[e] = p * r + 1.0
        exponent_bits[e] = (np.int64(k) + 1023) << 52
    for e in range(values.shape[0]):
        values[e] *= powers_of_two[e]


@njit_inline
def sigmoid(z):
    """``1 / (1 + exp(-z))`` of one float64 value (libm's exp)."""
    return 1.0 / (1.0 + math.exp(-z))


@njit_inline
def sigmoid_row(values, out, work, exponent_bits):
    """``out[e] = sigmoid(values[e])`` for a row, with :func:`exp_inplace`.

    ``work`` (float64) and ``exponent_bits`` (int64) are scratch rows of the row's length;
    ``work`` may be ``out`` itself when ``out`` is float64.
    """
    for e in range(values.shape[0]):
        work[e] = -np.float64(values[e])
    exp_inplace(work, exponent_bits)
    for e in range(values.shape[0]):
        out[e] = 1.0 / (1.0 + work[e])


@njit_inline
def row_max(values):
    """The largest of ``values`` as float64 (the shift of a softmax over the row)."""
    shift = np.float64(values[0])
    for e in range(1, values.shape[0]):
        shift = max(shift, np.float64(values[e]))
    return shift


@njit_inline
def softmax_row(values, out, work, exponent_bits):
    """``out = softmax(values)`` over the whole row, max-shifted, with :func:`exp_inplace`.

    Scratch as for :func:`sigmoid_row`.
    """
    shift = row_max(values)
    for e in range(values.shape[0]):
        work[e] = np.float64(values[e]) - shift
    exp_inplace(work, exponent_bits)
    total = 0.0
    for e in range(values.shape[0]):
        total += work[e]
    for e in range(values.shape[0]):
        out[e] = work[e] / total


@njit_inline
def shifted_exp(value, shift):
    """``exp(value - shift)`` in float64 (libm's exp): a softmax numerator."""
    return math.exp(np.float64(value) - shift)


@njit_inline
def softmax_normalizer(values):
    """``(shift, total)`` of a softmax over the whole row (libm's exp).

    ``softmax_e = shifted_exp(values[e], shift) / total``; sums run in increasing ``e``.
    """
    shift = row_max(values)
    total = 0.0
    for e in range(values.shape[0]):
        total += shifted_exp(values[e], shift)
    return shift, total


@njit_inline
def softmax_normalizer_at(values, indices):
    """``(shift, total)`` of a softmax over ``values[indices]`` only (e.g. the K selected)."""
    shift = np.float64(values[indices[0]])
    for k in range(1, indices.shape[0]):
        shift = max(shift, np.float64(values[indices[k]]))
    total = 0.0
    for k in range(indices.shape[0]):
        total += shifted_exp(values[indices[k]], shift)
    return shift, total


@njit_inline
def log_sum_exp(values):
    """``log sum_e exp(values[e])`` in float64, and the ``(shift, total)`` it is made of.

    Returns ``(lse, shift, total)``, so a caller that also needs the softmax does not compute
    the exponentials twice.
    """
    shift, total = softmax_normalizer(values)
    return shift + math.log(total), shift, total


# The float32 sigmoid of a row (the router's scores from token stream version 2 on, and of
# ``moesim.route`` on float32 logits): the same Cody-Waite reduction in float32, a degree-7
# Taylor polynomial (truncation below 1e-8 relative on |r| <= ln2/2) and 2**k from its exponent
# bits. Every operation is a float32 ``+ - * /`` (no fastmath, no fused multiply-add), so the
# scores are the same on every machine and vector width; they are within 2 ulp of
# ``1 / (1 + exp(-z))`` computed in float64 and rounded.
_F32 = np.float32
_LOG2_E_F32 = _F32(1.442695)
_LN2_HIGH_F32 = _F32(0.693359375)  # 8 significant bits: k * _LN2_HIGH_F32 is exact for |k| < 2**16
_LN2_LOW_F32 = _F32(-2.12194440e-4)
_EXP_ARGUMENT_LOW_F32 = _F32(-87.0)  # exp(-87) and exp(88) are normal float32 numbers
_EXP_ARGUMENT_HIGH_F32 = _F32(88.0)
_EXP_TAYLOR_F32 = tuple(_F32(1.0 / math.factorial(n)) for n in range(8))
_HALF_F32 = _F32(0.5)
_ONE_F32 = _F32(1.0)


@njit_inline
def sigmoid_row_float32(values, out, work, exponent_bits):
    """``out[e] = 1 / (1 + exp(-values[e]))`` computed in float32 for a float32 row.

    ``work`` (float32) and ``exponent_bits`` (int32) are scratch rows of the row's length.
    """
    powers_of_two = exponent_bits.view(np.float32)
    c0, c1, c2, c3, c4, c5, c6, c7 = _EXP_TAYLOR_F32
    for e in range(values.shape[0]):
        x = min(max(-values[e], _EXP_ARGUMENT_LOW_F32), _EXP_ARGUMENT_HIGH_F32)
        k = np.floor(x * _LOG2_E_F32 + _HALF_F32)
        r = (x - k * _LN2_HIGH_F32) - k * _LN2_LOW_F32
        p = ((((((c7 * r + c6) * r + c5) * r + c4) * r + c3) * r + c2) * r + c1) * r + c0
        work[e] = p
        exponent_bits[e] = (np.int32(k) + np.int32(127)) << np.int32(23)
    for e in range(values.shape[0]):
        out[e] = _ONE_F32 / (_ONE_F32 + work[e] * powers_of_two[e])
