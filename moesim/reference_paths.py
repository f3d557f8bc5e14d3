"""Slow NumPy twin of the token-path update of stream version 2 (docs/model.md §1.1), for tests.

Written from the formula, one token at a time:

    X_{l+1} = rho * P_l X_l + sqrt(1 - rho^2) * rms(X_l) * xi,    xi ~ N(0, I_d)

The stream state of each token is derived with Python integers (SplitMix64's finaliser written
out), and its normals come from :func:`moesim.kernels.normals.normal_pairs_v2_reference`
(float64 libm ``log``, ``sqrt``, ``cos``, ``sin`` on the same 64-bit outputs). Shares no code with
the kernel (:mod:`moesim.kernels.paths`).
"""

from __future__ import annotations

import math

import numpy as np

from moesim.kernels.normals import normal_pairs_v2_reference

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_TAG_PATH_NOISE = 4
_TAG_TIMES_MIX_1 = (_TAG_PATH_NOISE * 0xBF58476D1CE4E5B9) & _MASK


def mix64(z: int) -> int:
    """SplitMix64's finaliser on a Python integer in [0, 2**64)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def path_noise_state_reference(key: int, stream: int, layer: int, step: int, token: int) -> int:
    """Token ``token``'s stream state: ``key`` mixed with the layer, the noise stream, the step,
    the tag of the path noise and the token, in that order."""
    layer_key = mix64(
        (mix64((key + _GOLDEN * (layer + 1)) & _MASK) + _GOLDEN * (stream + 1)) & _MASK
    )
    z = mix64((layer_key + _GOLDEN * (step + 1)) & _MASK)
    z = mix64(z ^ _TAG_TIMES_MIX_1)
    return mix64((z + _GOLDEN * (token + 1)) & _MASK)


def path_noise_reference(key: int, stream: int, layer: int, step: int, n_tokens: int, dim: int):
    """``xi`` (T, d) float64: per token, the cosine normals in the first ``ceil(d/2)``
    coordinates and the sine normals in the rest."""
    n_pairs = (dim + 1) // 2
    noise = np.empty((n_tokens, dim))
    for t in range(n_tokens):
        first, second = normal_pairs_v2_reference(
            path_noise_state_reference(key, stream, layer, step, t), n_pairs
        )
        noise[t] = np.concatenate([first, second])[:dim]
    return noise


def advance_tokens_reference(tokens, permutation, signs, correlation, *, key, stream=0, layer=0,
                             step=0, noise=None) -> np.ndarray:  # fmt: skip
    """``rho * signs * tokens[:, permutation] + sqrt(1 - rho^2) * rms(tokens) * xi`` in the
    tokens' dtype (T, d): the moved tokens and the scaled noise each rounded to the dtype, then
    added, as the kernel does; the RMS in float64.

    ``xi`` is :func:`path_noise_reference` (float64, rounded to the dtype), or ``noise`` (T, d)
    when given: with the kernel's own normals the twin must give the kernel's bits.
    """
    tokens = np.asarray(tokens)
    dtype = tokens.dtype.type
    moved = tokens[:, permutation] * np.asarray(signs).astype(dtype) * dtype(correlation)
    noise_scale = math.sqrt(max(0.0, 1.0 - correlation**2))
    if noise_scale == 0.0:
        return moved
    # The sum of squares coordinate by coordinate, in order (the kernel's order: float64 tokens
    # then agree to the last bit, which a pairwise np.sum would not promise).
    squares = np.zeros((tokens.shape[0], 1))
    for j in range(tokens.shape[1]):
        squares[:, 0] += tokens[:, j].astype(np.float64) ** 2
    rms = np.sqrt(squares / tokens.shape[1])
    scale = (noise_scale * rms).astype(dtype)
    if noise is None:
        noise = path_noise_reference(key, stream, layer, step, *tokens.shape)
    noise = np.asarray(noise).astype(dtype)
    return moved + scale * noise
