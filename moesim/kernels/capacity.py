"""Expert capacity and token dropping (docs/model.md §3; Megatron-Core semantics).

Each expert keeps at most ``ceil((T*K/E) * capacity_factor)`` assignments per step. Policy
``probs`` keeps its highest gate weights (ties: earlier token), ``position`` its earliest tokens.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from moesim._jit import CHUNK_TOKENS, n_chunks_for, njit, njit_parallel
from moesim.kernels.checks import check_choice, check_finite, check_integer, check_real

POLICY_PROBS = 0
POLICY_POSITION = 1
POLICY_CODES = {"probs": POLICY_PROBS, "position": POLICY_POSITION}


def expert_capacity(n_tokens: int, top_k: int, n_experts: int, capacity_factor: float) -> int:
    """Assignments one expert may keep per step: ``ceil((T*K/E) * capacity_factor)``.

    Megatron-Core's ``get_capacity`` with ``num_tokens = T*K``; computed in the same order so
    the rounding agrees, in float64 (a NumPy float32 ``capacity_factor`` is widened first, so
    :func:`apply_capacity` and ``routing_step`` agree whichever form they are given).
    """
    return math.ceil((n_tokens * top_k / n_experts) * float(capacity_factor))


@njit_parallel
def _count_chunks(indices, n_experts, chunk_counts):
    """``chunk_counts[c, e]``: assignments of chunk ``c``'s tokens to expert ``e``."""
    n_tokens, top_k = indices.shape
    for c in prange(chunk_counts.shape[0]):
        stop = min(n_tokens, (c + 1) * CHUNK_TOKENS)
        for t in range(c * CHUNK_TOKENS, stop):
            for k in range(top_k):
                chunk_counts[c, indices[t, k]] += 1


@njit
def _chunk_offsets(chunk_counts):
    """Exclusive prefix over chunks: assignments to each expert made by earlier chunks."""
    n_chunks, n_experts = chunk_counts.shape
    offsets = np.empty_like(chunk_counts)
    running = np.zeros(n_experts, dtype=np.int64)
    for c in range(n_chunks):
        for e in range(n_experts):
            offsets[c, e] = running[e]
            running[e] += chunk_counts[c, e]
    return offsets, running


@njit_parallel
def _capacity_keep(indices, weights, chunk_counts, capacity, policy_code, keep):
    """Fill ``keep[T, K]`` (True = assignment kept) under a per-expert ``capacity``.

    ``chunk_counts`` are the per-chunk demands from the routing pass; the positions they imply
    make the result independent of the number of threads.
    """
    n_tokens, top_k = indices.shape
    n_chunks, n_experts = chunk_counts.shape
    offsets, demand = _chunk_offsets(chunk_counts)
    if capacity >= n_tokens:
        keep[:, :] = True  # an expert can receive each token at most once
        return
    if policy_code == POLICY_POSITION:
        for c in prange(n_chunks):
            seen = offsets[c].copy()
            for t in range(c * CHUNK_TOKENS, min(n_tokens, (c + 1) * CHUNK_TOKENS)):
                for k in range(top_k):
                    e = indices[t, k]
                    keep[t, k] = seen[e] < capacity
                    seen[e] += 1
        return
    # probs: lay each expert's assignments out contiguously, in token order, then rank them.
    starts = np.zeros(n_experts + 1, dtype=np.int64)
    for e in range(n_experts):
        starts[e + 1] = starts[e] + demand[e]
    slot_token = np.empty(starts[n_experts], dtype=np.int64)
    slot_k = np.empty(starts[n_experts], dtype=np.int64)
    for c in prange(n_chunks):
        position = starts[:n_experts] + offsets[c]
        for t in range(c * CHUNK_TOKENS, min(n_tokens, (c + 1) * CHUNK_TOKENS)):
            for k in range(top_k):
                e = indices[t, k]
                slot_token[position[e]] = t
                slot_k[position[e]] = k
                position[e] += 1
    for e in prange(n_experts):
        first, count = starts[e], demand[e]
        if count <= capacity:
            for j in range(first, first + count):
                keep[slot_token[j], slot_k[j]] = True
            continue
        negative_weight = np.empty(count, dtype=np.float64)
        for j in range(count):
            negative_weight[j] = -np.float64(weights[slot_token[first + j], slot_k[first + j]])
        # Stable sort: among equal weights the earlier token (earlier slot) ranks first.
        order = np.argsort(negative_weight, kind="mergesort")
        for rank in range(count):
            j = first + order[rank]
            keep[slot_token[j], slot_k[j]] = rank < capacity


def check_assignments(indices, weights, n_experts: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a routing result ``(indices[T,K], weights[T,K])`` against ``n_experts``.

    Each row's experts must lie in ``[0, n_experts)`` and be distinct (the kernel relies on an
    expert receiving a token at most once), and the weights must be finite real numbers.
    """
    indices = np.asarray(indices)
    weights = np.asarray(weights)
    if indices.ndim != 2:
        raise ValueError(f"indices is {indices.ndim}-dimensional and must be 2-dimensional [T, K]")
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices has dtype {indices.dtype}; it must be an integer array")
    if weights.shape != indices.shape:
        raise ValueError(
            f"weights has shape {weights.shape}; it must match indices {indices.shape}"
        )
    if not (np.issubdtype(weights.dtype, np.floating) or np.issubdtype(weights.dtype, np.integer)):
        raise ValueError(f"weights has dtype {weights.dtype}; it must be a real-valued array")
    check_finite("weights", weights)
    outside = ((indices < 0) | (indices >= n_experts)).any(axis=1)
    if outside.any():
        t = int(np.argmax(outside))
        raise ValueError(
            f"indices[{t}] is {indices[t].tolist()}; experts must lie in [0, n_experts={n_experts})"
        )
    ordered = np.sort(indices, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    if repeated.any():
        t = int(np.argmax(repeated))
        raise ValueError(
            f"indices[{t}] is {indices[t].tolist()}; the experts of a token must be distinct"
        )
    return np.ascontiguousarray(indices, dtype=np.int64), np.ascontiguousarray(weights)


def check_capacity_args(capacity_factor, policy: str) -> float | None:
    """Check the capacity options; returns ``capacity_factor`` as a float (or None).

    Raises
    ------
    ValueError
        Unless ``policy`` is one of :data:`POLICY_CODES` and ``capacity_factor`` is None or a
        positive finite real number (not a bool or str).
    """
    check_choice("policy", policy, POLICY_CODES)
    if capacity_factor is None:
        return None
    return check_real("capacity_factor", capacity_factor, positive=True)


def apply_capacity(indices, weights, n_experts: int, capacity_factor, policy: str = "probs"):
    """Which assignments survive the experts' capacity.

    Parameters
    ----------
    indices : ndarray, shape (T, K), int
        Chosen experts, in ``[0, E)`` and distinct in each row, as returned by
        :func:`moesim.route`.
    weights : ndarray, shape (T, K), float
        Their gate weights, finite (used by the ``probs`` policy).
    n_experts : int
        E, a positive integer.
    capacity_factor : float or None
        Capacity as a multiple of the fair share ``T*K/E``, a positive finite real number (not
        a bool or str); ``None`` drops nothing.
    policy : {"probs", "position"}
        Keep the highest weights or the earliest tokens.

    Returns
    -------
    keep : ndarray, shape (T, K), bool

    Raises
    ------
    ValueError
        Naming the argument and the constraint it breaks (and the first offending row of
        ``indices`` or entry of ``weights``).
    """
    n_experts = check_integer("n_experts", n_experts)
    if n_experts < 1:
        raise ValueError(f"n_experts is {n_experts}; it must be at least 1")
    indices, weights = check_assignments(indices, weights, n_experts)
    capacity_factor = check_capacity_args(capacity_factor, policy)
    n_tokens, top_k = indices.shape
    keep = np.zeros((n_tokens, top_k), dtype=np.bool_)
    if capacity_factor is None or n_tokens == 0:
        keep[:] = True
        return keep
    chunk_counts = np.zeros((n_chunks_for(n_tokens), n_experts), dtype=np.int64)
    _count_chunks(indices, n_experts, chunk_counts)
    capacity = expert_capacity(n_tokens, top_k, n_experts, capacity_factor)
    _capacity_keep(indices, weights, chunk_counts, capacity, POLICY_CODES[policy], keep)
    return keep
