"""Numba options, declared once for every kernel in the package.

`cache=True` keeps compiled machine code on disk, so only the first run pays for compilation.
No `fastmath`: the router masks dropped groups with -inf and compares scores for ties, and
fastmath's `ninf`/`nnan` would make those comparisons undefined; reassociation would also make
sums depend on the compiler's vectorisation, which we do not want in values that feed the bias.
"""

from __future__ import annotations

import numba

JIT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}

#: Serial kernels: small per-row routines called from the parallel drivers.
njit = numba.njit(**JIT_OPTIONS)


def njit_parallel(function):
    """Compile ``function`` as a parallel (``prange``) driver with the package's options."""
    return numba.njit(parallel=True, **JIT_OPTIONS)(function)


#: Tokens per work item of the parallel drivers. Work is split into fixed chunks, never by the
#: number of threads, so that results do not depend on ``NUMBA_NUM_THREADS``.
CHUNK_TOKENS = 256


def n_chunks_for(n_tokens: int) -> int:
    """Number of fixed work chunks for ``n_tokens`` tokens."""
    return max(1, -(-n_tokens // CHUNK_TOKENS))
