"""The token-path update of stream version 2 (docs/model.md §1.1), one pass over the tokens.

    out[t, j] = rho * (signs[j] * tokens[t, permutation[j]]) + s_t * xi[t, j]
    s_t = sqrt(1 - rho^2) * sqrt(sum_j tokens[t, j]^2 / d)

``xi[t]`` are ``d`` standard normals from :func:`moesim.kernels.normals.normal_pairs_v2`, laid
out as the tokens of stream version 2 lay theirs: the pairs' first normals fill the first
``ceil(d/2)`` coordinates, their second normals the rest. Token ``t``'s pairs come from its own
counter-based SplitMix64 stream,

    layer_key = mix64(mix64(key + G (layer + 1)) + G (stream + 1))
    state     = _stream_state(layer_key, step, TAG_PATH_NOISE, t)

with ``mix64`` SplitMix64's finaliser, ``G`` its golden-ratio increment and ``_stream_state`` the
token stream's own derivation (:mod:`moesim.tokens`: three more ``mix64`` rounds over the step,
the tag and the token). A token's noise is therefore a function of ``(key, stream, layer, step,
t)`` alone: the same whatever the number of threads, the split into chunks, or which other
tokens share the block.

Arithmetic: the sum of squares in float64, coordinate by coordinate in order, then ``/ d``,
``sqrt`` and ``* sqrt(1 - rho^2)`` in float64, rounded once to the tokens' dtype (``s_t``); every
coordinate then takes a multiply by the sign (exact), one by ``rho``, the noise's multiply by
``s_t`` and one add, each rounded to the dtype (no fastmath, so no fused multiply-add): the
operations of stream version 1's NumPy update (``moesim/engine/paths.py``), on other noise.
The NumPy twin is :func:`moesim.reference_paths.advance_tokens_reference`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from moesim._jit import CHUNK_TOKENS, n_chunks_for, njit, njit_parallel
from moesim.kernels.checks import check_integer, check_real
from moesim.kernels.normals import _GOLDEN, _mix64, normal_pairs_v2
from moesim.tokens import _stream_state

#: Stream tag of the path noise. Its key is the paths' own, so its streams are apart from the
#: token stream's anyway; the tag keeps them apart from the other tagged kinds all the same.
TAG_PATH_NOISE = np.uint64(4)


@njit
def path_noise_state(key, stream, layer, step, token):
    """Initial SplitMix64 state (uint64) of token ``token``'s noise at layer boundary ``layer``
    (``layer`` to ``layer + 1``), step ``step``, noise stream ``stream`` (training or held-out
    batch), for the paths' ``key`` (uint64)."""
    layer_key = _mix64(
        _mix64(key + _GOLDEN * np.uint64(layer + 1)) + _GOLDEN * np.uint64(stream + 1)
    )
    return _stream_state(layer_key, step, TAG_PATH_NOISE, token)


@njit_parallel
def _advance_tokens(tokens, permutation, signs, correlation, noise_scale, key, stream, layer,
                    step, n_chunks, out):  # fmt: skip
    """Fill ``out`` (T, d), the next layer's inputs, from ``tokens`` (T, d), both of one dtype.

    ``signs`` (d,) are of that dtype, ``correlation`` a scalar of it and ``noise_scale``
    (``sqrt(1 - rho^2)``) a float64. Fixed chunks of ``CHUNK_TOKENS`` tokens, each with its own
    scratch rows; every token is computed from its own row and stream only.
    """
    n_tokens, dim = tokens.shape
    n_pairs = (dim + 1) // 2
    with_noise = noise_scale != 0.0
    for c in prange(n_chunks):
        first = np.empty(n_pairs, dtype=np.float32)
        second = np.empty(n_pairs, dtype=np.float32)
        radius_work = np.empty(n_pairs, dtype=np.float32)
        angle_work = np.empty(n_pairs, dtype=np.float32)
        scale = np.zeros(1, dtype=out.dtype)  # s_t, rounded to the dtype by the store
        for t in range(c * CHUNK_TOKENS, min(n_tokens, (c + 1) * CHUNK_TOKENS)):
            if with_noise:
                squares = 0.0
                for j in range(dim):
                    value = np.float64(tokens[t, j])
                    squares += value * value
                scale[0] = noise_scale * math.sqrt(squares / dim)
                normal_pairs_v2(
                    path_noise_state(key, stream, layer, step, t),
                    first,
                    second,
                    radius_work,
                    angle_work,
                )
            else:  # rho = 1: a pure signed permutation
                first[:] = 0.0
                second[:] = 0.0
            s = scale[0]
            for j in range(n_pairs):
                moved = correlation * (signs[j] * tokens[t, permutation[j]])
                out[t, j] = moved + s * first[j]
            for i in range(dim - n_pairs):
                j = n_pairs + i
                moved = correlation * (signs[j] * tokens[t, permutation[j]])
                out[t, j] = moved + s * second[i]


def run_advance_tokens(tokens, permutation, signs, correlation, key, stream, layer, step,
                       out=None):  # fmt: skip
    """The next layer's inputs on checked inputs (the engine's path): ``tokens`` C-contiguous
    (T, d) float32 or float64, ``permutation`` (d,) int64, ``signs`` (d,) of the tokens' dtype,
    ``key`` a uint64.

    ``out``, an array like ``tokens`` that is not ``tokens``, is written and returned when
    given. The step loop keeps one per layer boundary: allocated afresh, a many-layer step's
    megabytes of arrays outgrew glibc's heap and came back as new pages every step (267 page
    faults a layer and step at T=4096; 4 layers took 22 ms a step instead of 15).
    """
    dtype = tokens.dtype.type
    if out is None or out.shape != tokens.shape or out.dtype != tokens.dtype or out is tokens:
        out = np.empty_like(tokens)
    noise_scale = math.sqrt(max(0.0, 1.0 - float(correlation) ** 2))
    _advance_tokens(tokens, permutation, signs, dtype(correlation), noise_scale, key,
                    np.int64(stream), np.int64(layer), np.int64(step),
                    n_chunks_for(tokens.shape[0]), out)  # fmt: skip
    return out


def advance_tokens(tokens, permutation, signs, correlation: float, *, key: int, stream: int = 0,
                   layer: int = 0, step: int = 0) -> np.ndarray:  # fmt: skip
    """Router inputs of layer ``layer + 1`` from those of layer ``layer`` (docs/model.md §1.1).

    Parameters
    ----------
    tokens : ndarray, shape (T, d), float32 or float64
        Layer ``layer``'s router inputs ``X_l``.
    permutation : ndarray, shape (d,), integer
        ``P_l`` as a permutation of ``0 .. d-1``: coordinate ``j`` of the output is coordinate
        ``permutation[j]`` of the input.
    signs : ndarray, shape (d,)
        The signs of ``P_l`` (-1 or 1).
    correlation : float
        ``rho`` in [0, 1].
    key : int
        The paths' noise key, ``0 <= key < 2**64``.
    stream, layer, step : int
        Noise stream (0 the training batch, 1 the held-out one), layer boundary and step, all
        >= 0: each combination draws fresh noise.

    Returns
    -------
    ndarray, shape (T, d), dtype of ``tokens``, C order
        ``X_{l+1} = rho P_l X_l + sqrt(1 - rho^2) rms(X_l) xi``.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.dtype not in (np.float32, np.float64):
        raise ValueError(
            f"tokens has shape {tokens.shape} and dtype {tokens.dtype}; it must be a 2-D "
            "float32 or float64 array [tokens, dim]"
        )
    dim = tokens.shape[1]
    permutation = np.asarray(permutation)
    if (
        permutation.shape != (dim,)
        or not np.issubdtype(permutation.dtype, np.integer)
        or not np.array_equal(np.sort(permutation), np.arange(dim))
    ):
        raise ValueError(f"permutation must be a permutation of 0 .. {dim - 1} (shape ({dim},))")
    signs = np.asarray(signs)
    if signs.shape != (dim,) or not np.isin(signs, (-1, 1)).all():
        raise ValueError(f"signs must have shape ({dim},) and hold only -1 and 1")
    correlation = check_real("correlation", correlation, minimum=0, maximum=1)
    key = check_integer("key", key)
    counters = {"stream": stream, "layer": layer, "step": step}
    counters = {name: check_integer(name, value) for name, value in counters.items()}
    if not 0 <= key < 2**64:
        raise ValueError(f"key is {key}; it must be in [0, 2**64)")
    for name, value in counters.items():
        if value < 0:
            raise ValueError(f"{name} is {value}; it must be >= 0")
    return run_advance_tokens(
        np.ascontiguousarray(tokens),
        permutation.astype(np.int64),
        signs.astype(tokens.dtype),
        correlation,
        np.uint64(key),
        **counters,
    )
