"""Router logits ``Z = X W^T`` (docs/model.md §2), summed in a fixed order by Numba."""

from __future__ import annotations

import numpy as np
from numba import prange

from moesim._jit import CHUNK_TOKENS, has_avx512, njit_inline, njit_parallel, quiet_blas_threads

#: Bytes of one token's row of a register tile. A tile of 4 tokens then fills half the vector
#: registers: 16 of AVX-512's 32 (256 bytes: 64 float32 or 32 float64 experts), 8 of AVX2's 16
#: (64 bytes), which leaves room for a centroid row segment and the 4 token values. A wider
#: tile spills: compiled for AVX2, 256 bytes were 13% slower than accumulating in memory.
TILE_ROW_BYTES = 256 if has_avx512() else 64


@njit_inline
def _tile_experts(itemsize):
    """Experts of a tile row for values of ``itemsize`` bytes; at least 16, since LLVM unrolls
    a loop of 8 into scalar code instead of vectorising it (float64 with AVX2: 3.7x slower).
    A float64 tile of 16 fills AVX2's 16 registers and spills: 15% slower there than the
    memory accumulator it replaced (docs/performance.md)."""
    return max(16, TILE_ROW_BYTES // itemsize)


@njit_parallel
def _logits_chunks(tokens, centroids_t, logits):
    """``logits = tokens @ centroids_t[:, :E]`` for tokens (T, d), logits (T, E) and
    centroids_t (d, E') zero-padded to ``E'`` a multiple of ``_tile_experts(itemsize)``.

    Every logit is the sum over ``j = 0 .. d-1`` of ``tokens[t, j] * centroids_t[j, e]`` in that
    order, a multiply then an add (no fastmath, so no fused multiply-add), whatever the chunking
    or the number of threads. The work is cut into tiles of 4 tokens by a row of experts (64
    float32 with AVX-512): the tile is summed over the whole ``j`` loop in registers and stored
    once, so each step of ``j`` loads one centroid row segment and 4 token values and does
    nothing but arithmetic (the tile, an accumulator in memory, used to be loaded and stored at
    every ``j``: 2-3x slower at T=4096, d=64, E=256, docs/performance.md). LLVM keeps the tile in
    registers only because its loops have a trip count known when compiling and it cannot alias
    the inputs; the padded centroid columns let every tile be full (the padding's logits are
    computed, and not stored). The 4 tokens are spelled out, not a parameter.
    No BLAS in the step loop: OpenBLAS's spinning threads would compete with Numba's for the
    cores, and its sums are not promised to be the same for every thread count.
    """
    n_tokens, dim = tokens.shape
    n_experts = logits.shape[1]
    for c in prange((n_tokens + CHUNK_TOKENS - 1) // CHUNK_TOKENS):
        # Worked out inside the parallel body, where it is a constant of the compiled code (an
        # empty array's itemsize is); outside, it would reach the body as a run-time argument.
        width = _tile_experts(np.empty(0, logits.dtype).itemsize)
        # Private accumulators: the compiler need not fear aliasing with the inputs.
        tile = np.empty((4, width), dtype=logits.dtype)
        start = c * CHUNK_TOKENS
        stop = min(n_tokens, start + CHUNK_TOKENS)
        t = start
        while t + 4 <= stop:
            first = 0  # the tile's first expert
            while first < n_experts:
                for e in range(width):
                    tile[0, e] = 0.0
                    tile[1, e] = 0.0
                    tile[2, e] = 0.0
                    tile[3, e] = 0.0
                for j in range(dim):
                    x0 = tokens[t, j]
                    x1 = tokens[t + 1, j]
                    x2 = tokens[t + 2, j]
                    x3 = tokens[t + 3, j]
                    for e in range(width):
                        weight = centroids_t[j, first + e]
                        tile[0, e] += x0 * weight
                        tile[1, e] += x1 * weight
                        tile[2, e] += x2 * weight
                        tile[3, e] += x3 * weight
                stored = min(width, n_experts - first)
                for i in range(4):
                    for e in range(stored):
                        logits[t + i, first + e] = tile[i, e]
                first += width
            t += 4
        while t < stop:  # the chunk's last tokens, one at a time, in a tile of one row
            first = 0
            while first < n_experts:
                for e in range(width):
                    tile[0, e] = 0.0
                for j in range(dim):
                    x0 = tokens[t, j]
                    for e in range(width):
                        tile[0, e] += x0 * centroids_t[j, first + e]
                for e in range(min(width, n_experts - first)):
                    logits[t, first + e] = tile[0, e]
                first += width
            t += 1


def router_logits(
    tokens: np.ndarray, centroids: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Router logits ``Z = X W^T`` (T, E) in the tokens' dtype, computed by Numba.

    Tokens in Fortran order (a layer's inputs made by fancy indexing of the previous layer's,
    ``engine/paths.py``) are read in place: the kernel reads four tokens' ``j``-th values at a
    time, which sit side by side there; copying them to C order cost 0.8 ms at T=4096, d=64.
    ``out``, a C-contiguous (T, E) array of the tokens' dtype, is written and returned when given
    (the step loop keeps one per layer: see :func:`moesim.kernels.paths.run_advance_tokens`).
    """
    n_experts, dim = centroids.shape
    tile_width = _tile_experts(tokens.dtype.itemsize)
    centroids_t = np.zeros((dim, -(-n_experts // tile_width) * tile_width), dtype=tokens.dtype)
    centroids_t[:, :n_experts] = centroids.T
    shape = (tokens.shape[0], n_experts)
    reusable = out is not None and out.shape == shape and out.dtype == tokens.dtype
    logits = out if reusable and out.flags.c_contiguous else np.empty(shape, dtype=tokens.dtype)
    if not tokens.flags.f_contiguous:
        tokens = np.ascontiguousarray(tokens)
    quiet_blas_threads()
    _logits_chunks(tokens, centroids_t, logits)
    return logits
