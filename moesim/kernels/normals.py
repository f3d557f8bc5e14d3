"""Token noise of stream version 2: counter-based float32 Box-Muller in SIMD loops.

Stream version 1 (``moesim.tokens``) draws each normal pair from two float64 uniforms, one after
the other, and calls libm's ``log``, ``sqrt``, ``cos`` and ``sin``: about 50 ns a pair. Here every
pair comes from one 64-bit SplitMix64 output at a fixed position of the token's stream, so the
pairs of a token are independent of each other and computed in loops LLVM vectorises: the
uniforms, a polynomial ``log``, ``sqrt`` and a polynomial ``sincos``, all in float32.

Bits of the 64-bit output ``w`` of pair ``i``: ``w >> 33`` (31 bits) gives the radius uniform
``u = (n + 1/2) / 2**31``, bits 2..32 (31 bits) the angle ``phi`` in ``[0, pi/2]``, bits 0 and 1
the signs of the cosine and the sine, which spread the angle over the four quadrants. Normal
``i`` of the token is ``r cos(phi)`` and normal ``P + i`` is ``r sin(phi)`` (``P = ceil(d/2)``;
with an odd ``d`` the last sine is not used), so both halves are written contiguously.

Accuracy: ``log`` and ``sincos`` within a few float32 ulp; the largest radius is
``sqrt(2 * 32 ln 2) = 6.66`` (tail beyond it: 3e-11 per normal). Every operation is a plain
float32 ``+ - * /`` or ``sqrt`` (no fastmath, no fused multiply-add), so the values are the same
on every machine, thread count and vector width. The NumPy twin,
:func:`normal_pairs_v2_reference`, computes the same normals from the same bits with float64
libm functions.
"""

from __future__ import annotations

import numpy as np

from moesim._jit import njit_inline

_F = np.float32
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_LOW_31_BITS = np.uint64(0x7FFFFFFF)
#: Output number of a token's first normal pair: outputs 1 and 2 are its coherence and cluster
#: uniforms, as in stream version 1 (so both versions give every token the same cluster).
FIRST_NORMAL_DRAW = 3

_HALF = _F(0.5)
_ONE = _F(1.0)
_TWO = _F(2.0)
_MINUS_TWO = _F(-2.0)
_TWO_POW_MINUS_31 = _F(2.0**-31)
_SQRT_2 = _F(1.4142135)
_SQRT_HALF = _F(0.70710677)
_LN_2 = _F(0.6931472)
_HALF_PI = _F(1.5707964)
# log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716: 2 (s + s^3/3 + ... + s^9/9).
_ATANH_3 = _F(1.0 / 3.0)
_ATANH_5 = _F(1.0 / 5.0)
_ATANH_7 = _F(1.0 / 7.0)
_ATANH_9 = _F(1.0 / 9.0)
# sin and cos of |r| <= pi/4 by Taylor polynomials (truncation below 2e-9).
_SIN_3 = _F(-1.0 / 6.0)
_SIN_5 = _F(1.0 / 120.0)
_SIN_7 = _F(-1.0 / 5040.0)
_SIN_9 = _F(1.0 / 362880.0)
_COS_2 = _F(-0.5)
_COS_4 = _F(1.0 / 24.0)
_COS_6 = _F(-1.0 / 720.0)
_COS_8 = _F(1.0 / 40320.0)
_COS_10 = _F(-1.0 / 3628800.0)


@njit_inline
def _mix64(z):
    """SplitMix64 finaliser: a bijective avalanche of a 64-bit integer (both stream versions'
    counter streams, :mod:`moesim.tokens`, and the path noise use this one)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


@njit_inline
def normal_pairs_v2(stream_state, first, second, radius_work, angle_work):
    """Fill ``first[i]``, ``second[i]`` (float32, length P) with the token's normal pairs.

    ``stream_state`` is the token's initial SplitMix64 state; pair ``i`` uses its output number
    ``FIRST_NORMAL_DRAW + i``. ``radius_work`` (float32) and ``angle_work`` (float32) are scratch
    rows of length P.
    """
    n_pairs = first.shape[0]
    log_bits = radius_work.view(np.int32)
    for i in range(n_pairs):
        word = _mix64(stream_state + _GOLDEN * np.uint64(FIRST_NORMAL_DRAW + i))
        radius_work[i] = (_F(np.int32(word >> np.uint64(33))) + _HALF) * _TWO_POW_MINUS_31
        angle_work[i] = _F(np.int32((word >> np.uint64(2)) & _LOW_31_BITS)) * _TWO_POW_MINUS_31
        # The two sign bits, kept in the outputs until the last loop.
        first[i] = _ONE - _TWO * _F(np.int32(word & np.uint64(1)))
        second[i] = _ONE - _TWO * _F(np.int32((word >> np.uint64(1)) & np.uint64(1)))
    for i in range(n_pairs):
        # log(u) = e ln 2 + log(m), u = m 2^e with m in [sqrt(1/2), sqrt(2)).
        bits = log_bits[i]
        exponent = ((bits >> 23) & 0xFF) - 127
        log_bits[i] = (bits & 0x7FFFFF) | 0x3F800000  # m in [1, 2)
        mantissa = radius_work[i]
        high = mantissa > _SQRT_2
        mantissa = mantissa * _HALF if high else mantissa
        exponent = exponent + 1 if high else exponent
        s = (mantissa - _ONE) / (mantissa + _ONE)
        s2 = s * s
        series = (((_ATANH_9 * s2 + _ATANH_7) * s2 + _ATANH_5) * s2 + _ATANH_3) * s2 + _ONE
        log_u = _F(exponent) * _LN_2 + _TWO * s * series
        radius_work[i] = np.sqrt(_MINUS_TWO * log_u)
    for i in range(n_pairs):
        r = (angle_work[i] - _HALF) * _HALF_PI  # phi = pi/4 + r, |r| <= pi/4
        r2 = r * r
        sin_r = r * ((((_SIN_9 * r2 + _SIN_7) * r2 + _SIN_5) * r2 + _SIN_3) * r2 + _ONE)
        cos_poly = (((_COS_10 * r2 + _COS_8) * r2 + _COS_6) * r2 + _COS_4) * r2 + _COS_2
        cos_r = cos_poly * r2 + _ONE
        radius = radius_work[i] * _SQRT_HALF
        first[i] = first[i] * radius * (cos_r - sin_r)
        second[i] = second[i] * radius * (cos_r + sin_r)


def normal_pairs_v2_reference(stream_state: int, n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of :func:`normal_pairs_v2`: ``(first, second)``, float64 (P,) each, from the
    same 64-bit outputs with ``np.log``, ``np.sqrt``, ``np.cos`` and ``np.sin`` in float64."""
    mask = (1 << 64) - 1

    def mix(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    words = [
        mix((int(stream_state) + 0x9E3779B97F4A7C15 * (FIRST_NORMAL_DRAW + i)) & mask)
        for i in range(n_pairs)
    ]
    # The uniforms as the kernel forms them: the integer rounded to float32, then + 1/2 in float32.
    high = np.array([w >> 33 for w in words], dtype=np.float32)
    u = (high + np.float32(0.5)).astype(np.float64) / 2.0**31
    low = np.array([(w >> 2) & 0x7FFFFFFF for w in words], dtype=np.float32)
    phi = low.astype(np.float64) / 2.0**31 * (np.pi / 2)
    cos_sign = np.array([1.0 - 2.0 * (w & 1) for w in words])
    sin_sign = np.array([1.0 - 2.0 * ((w >> 1) & 1) for w in words])
    radius = np.sqrt(-2.0 * np.log(u))
    return cos_sign * radius * np.cos(phi), sin_sign * radius * np.sin(phi)
