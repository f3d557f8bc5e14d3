"""Input jitter (Switch Transformer; Megatron-Core ``moe_input_jitter_eps``; docs/model.md §2.2).

The router input is multiplied element-wise by ``Uniform(1 - eps, 1 + eps)``:
``X~[t, j] = X[t, j] * (1 - eps + 2 eps u[t, j])``. The uniforms come from the package's
counter-based SplitMix64 streams (``moesim.tokens``), one stream per ``(key, step, token)``, so a
step's jitter is the same whatever the number of threads and any step can be drawn without the
steps before it.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from moesim._jit import CHUNK_TOKENS, n_chunks_for, njit_parallel
from moesim.kernels.checks import check_integer, check_real
from moesim.tokens import _next_uniform, _stream_state

#: Stream tag of the jitter: a token's jitter stream never equals its noise or sequence stream.
TAG_JITTER = np.uint64(3)


@njit_parallel
def _jitter_tokens(tokens, key, step, eps, n_chunks, out):
    """``out[t, j] = tokens[t, j] * (1 - eps + 2 eps u)``, ``u`` from token ``t``'s stream.

    Fixed chunks of ``CHUNK_TOKENS`` tokens, each token with its own stream: any thread count
    gives the same bits. The factor is computed in float64 and the product rounded once to the
    output's dtype.
    """
    n_tokens, dim = tokens.shape
    for c in prange(n_chunks):
        state = np.empty(1, dtype=np.uint64)
        for t in range(c * CHUNK_TOKENS, min(n_tokens, (c + 1) * CHUNK_TOKENS)):
            state[0] = _stream_state(key, step, TAG_JITTER, t)
            for j in range(dim):
                factor = 1.0 - eps + 2.0 * eps * _next_uniform(state)
                out[t, j] = np.float64(tokens[t, j]) * factor


def run_input_jitter(tokens: np.ndarray, key: np.uint64, step: int, eps: float) -> np.ndarray:
    """The jittered router input of one step, on checked inputs (the engine's path)."""
    out = np.empty_like(tokens)
    _jitter_tokens(tokens, np.uint64(key), step, eps, n_chunks_for(tokens.shape[0]), out)
    return out


def input_jitter(tokens, eps: float, *, key: int, step: int = 0) -> np.ndarray:
    """Multiply the router input element-wise by ``Uniform(1 - eps, 1 + eps)``.

    Parameters
    ----------
    tokens : ndarray, shape (T, d), float32 or float64
        Router input ``X``.
    eps : float
        Jitter half-width, ``0 <= eps < 1`` (Switch Transformer and Megatron-Core: 1e-2).
    key : int
        Stream key, ``0 <= key < 2**64`` (a scenario derives it from its seed).
    step : int
        Step number: each step draws fresh factors.

    Returns
    -------
    ndarray, shape (T, d), dtype of ``tokens``
        ``X * (1 - eps + 2 eps u)``, ``u`` uniform in (0, 1).
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.dtype not in (np.float32, np.float64):
        raise ValueError(
            f"tokens has shape {tokens.shape} and dtype {tokens.dtype}; it must be a 2-D "
            "float32 or float64 array [tokens, dim]"
        )
    eps = check_real("eps", eps, minimum=0)
    if eps >= 1:
        raise ValueError(f"eps is {eps}; it must be below 1 (the factor stays positive)")
    key = check_integer("key", key)
    step = check_integer("step", step)
    if not 0 <= key < 2**64 or step < 0:
        raise ValueError(f"key {key} must be in [0, 2**64) and step {step} >= 0")
    return run_input_jitter(np.ascontiguousarray(tokens), np.uint64(key), step, eps)
