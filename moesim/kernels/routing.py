"""Scores, group-limited top-K selection and gate weights (docs/model.md §2).

Three layers, as in the rest of ``moesim.kernels``:

* ``_route_chunk``: a fixed chunk of tokens, serial, one token at a time: the whole of the
  routing semantics in one place (the top-K helpers are ``selection.py``'s);
* ``_route_chunks``: the parallel driver, ``prange`` over fixed chunks of tokens, each chunk with
  its own scratch buffers and its own row of per-expert counts (no shared mutable state);
* ``route`` (public): validates arguments (``router_spec.py``: the options, their defaults and
  the kernels' ``RouterSpec``), allocates outputs and calls the driver.

The logits ``Z = X W^T`` that come before are ``logits.py``'s.

Numerics: scores are stored in the input's dtype, so a float32 router compares float32 scores,
as a float32 model would. Sigmoid scores of float32 logits are computed in float32
(``RouterSpec.float32_scores``: ``moesim.route`` and token stream version 2 on; within 2 ulp of
the correctly rounded sigmoid); otherwise, and for stream version 1, scores are computed with
float64 intermediates and rounded. The bias is added in the input's
dtype. Gate weights are gathered from the stored scores and normalised in float64, then rounded
to the input's dtype. The score math (sigmoid, softmax, the row ``exp``) lives in
``moesim.kernels.numerics``, shared with learning: ``exp`` over a row is the package's own
vectorisable one, within 3 ulp of libm's in float64; rounded to float32 the scores agree with
libm-based ones.

Speed (docs/performance.md): the per-token routines are inlined by Numba (``njit_inline``) and
take few arrays each (see ``_route_chunk``), the exponentials of a row are computed in SIMD
loops, and the top-K search only ranks the few experts at or above a cheap lower bound of the
K-th best score.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import prange

from moesim._jit import (
    CHUNK_TOKENS,
    n_chunks_for,
    njit,
    njit_inline,
    njit_parallel,
    quiet_blas_threads,
)

# Shared with the other kernels; check_integer and check_finite stay importable from here too.
from moesim.kernels.checks import check_finite, check_integer, check_real  # noqa: F401

# router_logits and the routing options live in their own modules; importable from here too.
from moesim.kernels.logits import router_logits  # noqa: F401
from moesim.kernels.numerics import (
    NORMALIZE_EPS,
    shifted_exp,
    sigmoid_row,
    sigmoid_row_float32,
    softmax_normalizer_at,
    softmax_row,
)
from moesim.kernels.router_spec import (  # noqa: F401
    ROUTER_OPTIONS,
    SCORE_CODES,
    SCORE_SIGMOID,
    SCORE_SOFTMAX,
    SCORE_SOFTMAX_AFTER_TOPK,
    RouterSpec,
    prepare_routing,
    resolve_router_spec,
)
from moesim.kernels.selection import (
    _RANKED_CANDIDATES_MAX,
    _compact_at_least,
    _gather_at_least,
    _group_top_two,
    _insert_descending,
    _keep_groups,
    _lower_bound_of_kth,
    _rank_candidates,
    _select_row_nan_fallback,
)


@njit_inline
def _scores_row(logit_row, score_code, scores, work, exponent_bits):
    """Router scores of one token, written into ``scores``.

    sigmoid: ``1 / (1 + exp(-z))``; softmax: over all experts, max-shifted;
    softmax_after_topk: the logits themselves (the softmax comes after selection).
    ``work`` (float64) and ``exponent_bits`` (int64) are scratch rows of length E; ``work`` may
    be ``scores`` itself when ``scores`` is float64.
    """
    if score_code == SCORE_SIGMOID:
        sigmoid_row(logit_row, scores, work, exponent_bits)
    elif score_code == SCORE_SOFTMAX:
        softmax_row(logit_row, scores, work, exponent_bits)
    else:
        for e in range(logit_row.shape[0]):
            scores[e] = logit_row[e]


@njit_inline
def _gate_weights(logit_row, scores, indices, score_code, normalize, route_scale, weights_out):
    """Gate weights of the selected experts (the bias never enters here).

    ``weights_out[k] = S[indices[k]]``, or the softmax over the selected logits for
    softmax_after_topk; optionally normalised to sum to one; then multiplied by ``route_scale``.
    """
    top_k = indices.shape[0]
    total = 0.0
    if score_code == SCORE_SOFTMAX_AFTER_TOPK:
        shift, exp_total = softmax_normalizer_at(logit_row, indices)
        for k in range(top_k):
            weights_out[k] = shifted_exp(logit_row[indices[k]], shift) / exp_total
    else:
        for k in range(top_k):
            weights_out[k] = scores[indices[k]]
    if normalize:
        for k in range(top_k):
            total += np.float64(weights_out[k])
        total += NORMALIZE_EPS
        for k in range(top_k):
            weights_out[k] = np.float64(weights_out[k]) / total * route_scale
    elif route_scale != 1.0:
        for k in range(top_k):
            weights_out[k] = np.float64(weights_out[k]) * route_scale


class _Scratch(NamedTuple):
    scores: np.ndarray
    selection: np.ndarray
    exp_work: np.ndarray
    exponent_bits: np.ndarray
    exp_work32: np.ndarray
    exponent_bits32: np.ndarray
    best_values: np.ndarray
    cand_values: np.ndarray
    cand_ids: np.ndarray
    group_values: np.ndarray
    group_members: np.ndarray
    group_first: np.ndarray
    group_second: np.ndarray
    group_scores: np.ndarray
    kept_group_scores: np.ndarray
    kept_groups: np.ndarray
    ranked_ids: np.ndarray


@njit
def _make_scratch(dtype_example, n_experts, top_k, n_groups, group_score_topk):
    """Per-worker buffers for ``_route_row`` (allocated once per chunk, never shared)."""
    dtype = dtype_example.dtype
    return _Scratch(
        np.empty(n_experts, dtype),
        np.empty(n_experts, dtype),
        np.empty(n_experts, np.float64),
        np.empty(n_experts, np.int64),
        np.empty(n_experts, np.float32),
        np.empty(n_experts, np.int32),
        np.empty(top_k, dtype),
        np.empty(n_experts, dtype),
        np.empty(n_experts, np.int64),
        np.empty(max(group_score_topk, 1), dtype),
        np.empty(max(group_score_topk, 1), np.int64),
        np.empty(n_groups, dtype),
        np.empty(n_groups, dtype),
        np.empty(n_groups, dtype),
        np.empty(n_groups, dtype),
        np.empty(n_groups, np.int64),
        np.empty(n_experts, np.int64),
    )


@njit
def _route_chunk(logits, bias, has_bias, spec, indices, weights, counts, start, stop):
    """Route tokens ``start..stop-1`` serially and add their assignments to ``counts`` (E,).

    The whole of the routing semantics, one token at a time: scores, selection scores
    ``S' = S + b`` (or ``S * b``), group-limited top-K, gate weights.

    Selection: with ``n_groups > 1`` a group's score is the sum of its ``group_score_topk``
    best values of ``S'``; the ``topk_groups`` best groups are kept and every expert outside
    them is out of the race (equivalent to masking with -inf). Experts are written in
    descending order of ``S'``, ties to the lower id. Rather than offering all experts to a
    sorted buffer (a mispredicted branch on most inserts), a cheap lower bound of the K-th best
    value filters the candidates first; only the few experts at or above it, in increasing id,
    are ranked. The result is the same, ties included, since every expert of the top K is at or
    above the bound.

    Speed: the per-token code is written out here, its helpers take only a few arrays each,
    and the scratch buffers are unpacked once, before the loop. Every array an inlined
    per-token routine receives costs two atomic reference-count updates per token when its
    body branches (Numba's pruning of them gives up); a routine taking the tuple of buffers,
    or a dozen of them, spent a third to a half of the routing time on those updates.
    """
    scratch = _make_scratch(
        logits[0, :1], logits.shape[1], spec.top_k, spec.n_groups, spec.group_score_topk
    )
    scores = scratch.scores
    selection = scratch.selection
    exp_work = scratch.exp_work
    exponent_bits = scratch.exponent_bits
    exp_work32 = scratch.exp_work32
    exponent_bits32 = scratch.exponent_bits32
    cand_values = scratch.cand_values
    cand_ids = scratch.cand_ids
    ranked_ids = scratch.ranked_ids
    best_values = scratch.best_values
    group_first = scratch.group_first
    group_second = scratch.group_second
    group_scores = scratch.group_scores
    kept_group_scores = scratch.kept_group_scores
    kept_groups = scratch.kept_groups
    group_values = scratch.group_values
    group_members = scratch.group_members
    n_experts = logits.shape[1]
    top_k = spec.top_k
    n_groups = spec.n_groups
    topk_groups = spec.topk_groups
    group_score_topk = spec.group_score_topk
    for t in range(start, stop):
        logit_row = logits[t]
        out_indices = indices[t]
        if spec.float32_scores and spec.score_code == SCORE_SIGMOID:
            sigmoid_row_float32(logit_row, scores, exp_work32, exponent_bits32)
        else:
            _scores_row(logit_row, spec.score_code, scores, exp_work, exponent_bits)
        if has_bias and spec.multiplicative_bias:
            for e in range(n_experts):
                selection[e] = scores[e] * bias[e]
        elif has_bias:
            for e in range(n_experts):
                selection[e] = scores[e] + bias[e]
        else:
            for e in range(n_experts):
                selection[e] = scores[e]
        if n_groups == 1:
            threshold = _lower_bound_of_kth(selection, n_experts, top_k)
            n_candidates = _gather_at_least(
                selection, 0, n_experts, threshold, cand_values, cand_ids, 0
            )
        else:
            group_size = n_experts // n_groups
            if group_size >= 2:
                _group_top_two(selection, n_groups, group_size, group_first, group_second)
            else:
                for g in range(n_groups):
                    group_first[g] = selection[g]
            if group_score_topk == 1:
                for g in range(n_groups):
                    group_scores[g] = group_first[g]
            elif group_score_topk == 2:
                for g in range(n_groups):
                    group_scores[g] = group_first[g] + group_second[g]
            else:
                for g in range(n_groups):
                    filled = 0
                    for e in range(g * group_size, (g + 1) * group_size):
                        filled = _insert_descending(
                            selection[e],
                            e,
                            group_values,
                            group_members,
                            filled,
                            group_score_topk,
                        )
                    group_score = group_values[0]
                    for j in range(1, group_score_topk):
                        group_score += group_values[j]
                    group_scores[g] = group_score
            _keep_groups(group_scores, topk_groups, kept_groups, kept_group_scores)
            if group_size >= 2 and 2 * topk_groups >= top_k:
                # The best two of every kept group are 2 * topk_groups >= K distinct experts.
                threshold = group_second[kept_groups[0]]
                for j in range(1, topk_groups):
                    threshold = min(threshold, group_second[kept_groups[j]])
            elif topk_groups >= top_k:
                threshold = group_first[kept_groups[0]]
                for j in range(1, topk_groups):
                    threshold = min(threshold, group_first[kept_groups[j]])
            else:
                # No bound from the groups: take every kept expert, then bound them by blocks.
                threshold = group_first[kept_groups[0]]
                for j in range(topk_groups):
                    g = kept_groups[j]
                    for e in range(g * group_size, (g + 1) * group_size):
                        threshold = min(threshold, selection[e])
            n_candidates = 0
            for j in range(topk_groups):
                g = kept_groups[j]
                n_candidates = _gather_at_least(
                    selection,
                    g * group_size,
                    (g + 1) * group_size,
                    threshold,
                    cand_values,
                    cand_ids,
                    n_candidates,
                )
            if not (2 * topk_groups >= top_k and group_size >= 2) and topk_groups < top_k:
                threshold = _lower_bound_of_kth(cand_values, n_candidates, top_k)
                n_candidates = _compact_at_least(cand_values, cand_ids, n_candidates, threshold)
        if n_candidates <= _RANKED_CANDIDATES_MAX:
            _rank_candidates(cand_values, cand_ids, n_candidates, ranked_ids)
            filled = min(n_candidates, top_k)
            for k in range(filled):
                out_indices[k] = ranked_ids[k]
        else:
            filled = 0
            for i in range(n_candidates):
                filled = _insert_descending(
                    cand_values[i], cand_ids[i], best_values, out_indices, filled, top_k
                )
        if filled < top_k:
            # Only NaN scores get here (no bound holds for them; the public API rejects NaN, the
            # engine's hot path does not check). A call, not inlined: a rare path.
            _select_row_nan_fallback(
                selection, top_k, n_groups, topk_groups, kept_groups, best_values, out_indices
            )
        _gate_weights(
            logit_row,
            scores,
            out_indices,
            spec.score_code,
            spec.normalize,
            spec.route_scale,
            weights[t],
        )
        for k in range(top_k):
            counts[out_indices[k]] += 1


@njit_parallel
def _route_chunks(logits, bias, has_bias, spec, indices, weights, chunk_counts):
    """Route every token; ``chunk_counts[c, e]`` counts chunk ``c``'s assignments to expert ``e``.

    Chunks are fixed blocks of ``CHUNK_TOKENS`` tokens, so counts and outputs are the same
    whatever the number of threads. The loop body is one call: Numba's parallel passes then
    work on a small function (compiling the routing inline here took four times as long).
    """
    n_tokens = logits.shape[0]
    for c in prange(chunk_counts.shape[0]):
        start = c * CHUNK_TOKENS
        stop = min(n_tokens, start + CHUNK_TOKENS)
        _route_chunk(logits, bias, has_bias, spec, indices, weights, chunk_counts[c], start, stop)


def route(
    logits,
    bias=None,
    *,
    top_k: int,
    score: str = "sigmoid",
    n_groups: int = 1,
    topk_groups: int = 1,
    group_score_topk: int | None = None,
    normalize: bool | None = None,
    route_scale: float = 1.0,
    bias_mode: str = "additive",
) -> tuple[np.ndarray, np.ndarray]:
    """Route tokens to experts (docs/model.md §2; DeepSeek-V3 ``Gate`` / Megatron-Core semantics).

    Parameters
    ----------
    logits : ndarray, shape (T, E), float32 or float64
        Router logits ``Z = X W^T``. Computation happens in this dtype.
    bias : ndarray, shape (E,), optional
        Expert bias added to the scores for selection only.
    top_k : int
        Experts per token, K.
    score : {"sigmoid", "softmax", "softmax_after_topk"}
        Score function (DeepSeek-V3, DeepSeek-V2 / Switch, Mixtral / Megatron default).
    n_groups, topk_groups : int
        Group-limited routing: E/n_groups consecutive experts per group, keep ``topk_groups``.
    group_score_topk : int, optional
        Values summed for a group's score; ``None`` is DeepSeek-V3's rule (2 with a bias, else
        1). Megatron-Core uses ``top_k // topk_groups``.
    normalize : bool, optional
        Normalise the selected weights to sum to one; default true for sigmoid only.
    route_scale : float
        Multiplier of the final weights (DeepSeek-V3: 2.5).
    bias_mode : {"additive", "multiplicative"}
        Selection by ``S + b`` (DeepSeek-V3) or by ``S * b`` (Loss-Free Table 4; the bias then
        starts at 1; needs sigmoid or softmax scores).

    Returns
    -------
    indices : ndarray, shape (T, K), int64
        Chosen experts, by descending selection score ``S + b`` (or ``S * b``; ties: lower id).
    weights : ndarray, shape (T, K), dtype of ``logits``
        Gate weights of the chosen experts.
    """
    logits, bias, has_bias, spec = prepare_routing(
        logits,
        bias,
        top_k=top_k,
        score=score,
        n_groups=n_groups,
        topk_groups=topk_groups,
        group_score_topk=group_score_topk,
        normalize=normalize,
        route_scale=route_scale,
        bias_mode=bias_mode,
    )
    n_tokens, n_experts = logits.shape
    indices = np.empty((n_tokens, spec.top_k), dtype=np.int64)
    weights = np.empty((n_tokens, spec.top_k), dtype=logits.dtype)
    chunk_counts = np.zeros((n_chunks_for(n_tokens), n_experts), dtype=np.int64)
    quiet_blas_threads()  # logits from a NumPy matmul leave OpenBLAS's threads spinning
    _route_chunks(logits, bias, has_bias, spec, indices, weights, chunk_counts)
    return indices, weights
