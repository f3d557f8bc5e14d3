"""The fused routing step: logits -> indices, weights, kept mask and per-expert counts.

One parallel pass routes every token and counts assignments per fixed chunk of tokens; when a
capacity is set, a second pass (which needs every expert's full demand first) marks the drops.
The score-to-weight math is the same code as :func:`moesim.route`'s.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from moesim._jit import n_chunks_for, quiet_blas_threads
from moesim.kernels.capacity import (
    POLICY_CODES,
    _capacity_keep,
    check_capacity_args,
    expert_capacity,
)
from moesim.kernels.routing import RouterSpec, _route_chunks, prepare_routing

NO_CAPACITY = -1


class RoutingStep(NamedTuple):
    """Result of one routing step (T tokens, E experts, K per token)."""

    indices: np.ndarray  #: (T, K) int64, chosen experts by descending selection score
    weights: np.ndarray  #: (T, K) logits' dtype, gate weights
    keep: np.ndarray  #: (T, K) bool, assignment survived the capacity limit
    demand: np.ndarray  #: (E,) int64, assignments per expert before drops
    kept: np.ndarray  #: (E,) int64, assignments per expert after drops


def run_routing_step(
    logits: np.ndarray,
    bias: np.ndarray,
    has_bias: bool,
    spec: RouterSpec,
    capacity: int,
    policy_code: int,
) -> RoutingStep:
    """Fused step on already-validated inputs (the engine's hot path; no checks)."""
    n_tokens, n_experts = logits.shape
    indices = np.empty((n_tokens, spec.top_k), dtype=np.int64)
    weights = np.empty((n_tokens, spec.top_k), dtype=logits.dtype)
    chunk_counts = np.zeros((n_chunks_for(n_tokens), n_experts), dtype=np.int64)
    quiet_blas_threads()  # a BLAS call just before leaves OpenBLAS's threads spinning
    _route_chunks(logits, bias, has_bias, spec, indices, weights, chunk_counts)
    return finish_routing_step(indices, weights, chunk_counts, capacity, policy_code)


def finish_routing_step(
    indices: np.ndarray,
    weights: np.ndarray,
    chunk_counts: np.ndarray,
    capacity: int,
    policy_code: int,
) -> RoutingStep:
    """The capacity pass and the loads of routed tokens: ``indices``, ``weights`` (T, K) and
    their assignments per fixed chunk of tokens ``chunk_counts`` (chunks, E) (no checks)."""
    keep = np.empty(indices.shape, dtype=np.bool_)
    demand = chunk_counts.sum(axis=0)
    if capacity < 0:
        keep[:, :] = True
        return RoutingStep(indices, weights, keep, demand, demand.copy())
    # Compiled only when a scenario has a capacity (its sort is a good part of a cold start).
    _capacity_keep(indices, weights, chunk_counts, capacity, policy_code, keep)
    # An expert keeps min(demand, capacity) under either policy.
    return RoutingStep(indices, weights, keep, demand, np.minimum(demand, capacity))


def routing_step(
    logits,
    bias=None,
    *,
    capacity_factor: float | None = None,
    capacity_policy: str = "probs",
    **router_options,
) -> RoutingStep:
    """Route a batch, apply capacity and count loads in one fused kernel call.

    Equals ``route`` + ``apply_capacity`` + ``bincount`` exactly, whatever
    ``NUMBA_NUM_THREADS`` is.

    Parameters
    ----------
    logits, bias
        As for :func:`moesim.route`.
    capacity_factor, capacity_policy
        As ``capacity_factor`` and ``policy`` of :func:`moesim.apply_capacity`.
    **router_options
        The routing options of :func:`moesim.route` (``top_k``, ``score``, ``n_groups``,
        ``topk_groups``, ``group_score_topk``, ``normalize``, ``route_scale``), declared once
        with their defaults by :func:`moesim.kernels.routing.resolve_router_spec`.

    Raises
    ------
    ValueError
        Naming the argument and the constraint it breaks.
    """
    logits, bias, has_bias, spec = prepare_routing(logits, bias, **router_options)
    n_tokens, n_experts = logits.shape
    capacity_factor = check_capacity_args(capacity_factor, capacity_policy)
    capacity = (
        NO_CAPACITY
        if capacity_factor is None
        else expert_capacity(n_tokens, spec.top_k, n_experts, capacity_factor)
    )
    return run_routing_step(logits, bias, has_bias, spec, capacity, POLICY_CODES[capacity_policy])
