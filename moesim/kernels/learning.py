"""Router learning (docs/model.md §5): reward and loss gradients with respect to the logits.

The router is trained by gradient ascent on ``J = R - L_aux - L_z`` with

* ``R = mean_t sum_k w_tk r_tk``: the reward of the chosen experts, through the gate weights of
  the selected experts only (and their normalisation when it is on); dropped assignments earn
  nothing (their ``r`` is 0);
* ``L_aux = alpha * sum_i f_i P_i`` (Switch / DeepSeek form; ``f`` is a constant): affinities
  ``p`` are the softmax, or ``s / sum(s)`` for sigmoid, over all experts, and ``f`` counts a plain
  top-K of ``p`` that ignores bias, groups and drops (Megatron-Core semantics);
* ``L_z = beta * mean_t logsumexp(Z_t)^2`` (ST-MoE).

``dJ/dZ`` is written per token, already divided by ``T`` (the objectives are token means), so
``dJ/dW = (dJ/dZ)^T X`` and the update is ``W += learning_rate * dJ/dW``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from moesim._jit import CHUNK_TOKENS, njit, njit_parallel
from moesim.kernels.numerics import (
    NORMALIZE_EPS,
    log_sum_exp,
    shifted_exp,
    sigmoid,
    softmax_normalizer,
    softmax_normalizer_at,
)
from moesim.kernels.routing import (
    SCORE_SIGMOID,
    SCORE_SOFTMAX,
    SCORE_SOFTMAX_AFTER_TOPK,
    _insert_descending,
    _scores_row,
)

AUX_NONE = 0
AUX_BATCH = 1
AUX_SEQUENCE = 2
AUX_GLOBAL = 3
AUX_CODES = {"none": AUX_NONE, "batch": AUX_BATCH, "sequence": AUX_SEQUENCE, "global": AUX_GLOBAL}


@njit
def _affinities_row(logit_row, score_code, out, exponent_bits):
    """Aux-loss affinities ``p`` of one token into ``out`` (float64).

    Softmax over all experts, or the sigmoid scores normalised to sum to one; the score math
    is the router's own (``_scores_row``). Returns the sigmoid sum plus its guard for the
    sigmoid case, 1.0 for softmax. ``exponent_bits`` is int64 scratch of length E.
    """
    _scores_row(logit_row, score_code, out, out, exponent_bits)
    if score_code != SCORE_SIGMOID:
        return 1.0
    total = out.sum() + NORMALIZE_EPS
    for e in range(out.shape[0]):
        out[e] /= total
    return total


@njit_parallel
def _aux_counts(logits, score_code, top_k, seq_len, counts, affinity_sums):
    """Per sequence: plain top-K counts of the affinities and their sums.

    ``counts[s, e]`` (int64) and ``affinity_sums[s, e]`` (float64) for sequence ``s`` of
    ``seq_len`` consecutive tokens. Each sequence owns its row: no shared writes.
    """
    n_tokens, n_experts = logits.shape
    n_sequences = counts.shape[0]
    for s in prange(n_sequences):
        p = np.empty(n_experts)
        exponent_bits = np.empty(n_experts, np.int64)
        best_values = np.empty(top_k)
        best_indices = np.empty(top_k, dtype=np.int64)
        for t in range(s * seq_len, min(n_tokens, (s + 1) * seq_len)):
            _affinities_row(logits[t], score_code, p, exponent_bits)
            filled = 0
            for e in range(n_experts):
                filled = _insert_descending(p[e], e, best_values, best_indices, filled, top_k)
                affinity_sums[s, e] += p[e]
            for k in range(top_k):
                counts[s, best_indices[k]] += 1


@njit
def _reward_gradient_row(logit_row, indices, rewards, score_code, normalize, route_scale, g):
    """Add ``dR_t/dz`` (for one token, before the 1/T) to ``g`` (float64, length E)."""
    top_k = indices.shape[0]
    if score_code == SCORE_SOFTMAX_AFTER_TOPK or (score_code == SCORE_SOFTMAX and normalize):
        # Weights are a softmax over the selected logits: w'_k (r_k - sum_m w'_m r_m).
        shift, total = softmax_normalizer_at(logit_row, indices)
        mean_reward = 0.0
        for k in range(top_k):
            mean_reward += shifted_exp(logit_row[indices[k]], shift) / total * rewards[k]
        for k in range(top_k):
            weight = shifted_exp(logit_row[indices[k]], shift) / total
            g[indices[k]] += route_scale * weight * (rewards[k] - mean_reward)
    elif score_code == SCORE_SIGMOID:
        total = 0.0
        if normalize:
            for k in range(top_k):
                total += sigmoid(np.float64(logit_row[indices[k]]))
            total += NORMALIZE_EPS
            mean_reward = 0.0
            for k in range(top_k):
                s = sigmoid(np.float64(logit_row[indices[k]]))
                mean_reward += s / total * rewards[k]
        for k in range(top_k):
            s = sigmoid(np.float64(logit_row[indices[k]]))
            if normalize:
                d_score = route_scale * (rewards[k] - mean_reward) / total
            else:
                d_score = route_scale * rewards[k]
            g[indices[k]] += d_score * s * (1.0 - s)
    else:
        # softmax over all experts, unnormalised: w_k = scale * p_{i_k}.
        shift, total = softmax_normalizer(logit_row)
        weighted = 0.0
        for k in range(top_k):
            p = shifted_exp(logit_row[indices[k]], shift) / total
            weighted += route_scale * rewards[k] * p
            g[indices[k]] += route_scale * rewards[k] * p
        for e in range(logit_row.shape[0]):
            g[e] -= shifted_exp(logit_row[e], shift) / total * weighted


@njit
def _aux_gradient_row(logit_row, score_code, coefficients, p, exponent_bits, g):
    """Subtract ``d(sum_i a_i p_i)/dz`` from ``g``; ``coefficients`` a_i = alpha f_i / T."""
    n_experts = logit_row.shape[0]
    total = _affinities_row(logit_row, score_code, p, exponent_bits)
    weighted = 0.0
    for e in range(n_experts):
        weighted += coefficients[e] * p[e]
    if score_code == SCORE_SIGMOID:
        for e in range(n_experts):
            s = p[e] * total  # the sigmoid score
            g[e] -= (coefficients[e] - weighted) / total * s * (1.0 - s)
    else:
        for e in range(n_experts):
            g[e] -= p[e] * (coefficients[e] - weighted)


@njit
def _z_loss_gradient_row(logit_row, coefficient, g):
    """Subtract ``d(coefficient * logsumexp(z)^2)/dz`` from ``g``; returns logsumexp(z)."""
    lse, shift, total = log_sum_exp(logit_row)
    for e in range(logit_row.shape[0]):
        # In this order (coefficient * 2 lse * exp, then / total): the results' bits depend on it.
        g[e] -= coefficient * 2.0 * lse * shifted_exp(logit_row[e], shift) / total
    return lse


@njit
def _aux_and_z_loss_row(
    logit_row, token, aux_score_code, aux_coefficients, seq_len, z_loss_per_token, p,
    exponent_bits, g,
):  # fmt: skip
    """Subtract token ``token``'s aux-loss and z-loss gradients from ``g``; returns its squared
    logsumexp (0 without a z-loss). ``aux_coefficients`` as for :func:`_router_gradient` (empty:
    no aux loss); ``z_loss_per_token`` is beta / T (0: no z-loss)."""
    if aux_coefficients.shape[0] > 0:
        row = 0 if aux_coefficients.shape[0] == 1 else token // seq_len
        _aux_gradient_row(logit_row, aux_score_code, aux_coefficients[row], p, exponent_bits, g)
    if z_loss_per_token > 0:
        lse = _z_loss_gradient_row(logit_row, z_loss_per_token, g)
        return lse * lse
    return 0.0


@njit_parallel
def _router_gradient(
    logits,
    tokens,
    indices,
    rewards,
    score_code,
    normalize,
    route_scale,
    aux_score_code,
    aux_coefficients,
    seq_len,
    z_loss,
    chunk_gradients,
    chunk_logsumexp_sq,
):
    """Per chunk ``c``: ``chunk_gradients[c] = sum_t (dJ/dz_t) x_t^T`` (E, d) over its tokens.

    ``rewards[t, k]`` already 0 for dropped assignments; ``aux_coefficients[s, e]`` =
    alpha f_e / T for the token's sequence ``s = t // seq_len`` (a single row for batch and
    global kinds; an empty array for no aux loss). ``z_loss`` is beta (0 disables).
    """
    n_tokens, n_experts = logits.shape
    dim = tokens.shape[1]
    inv_tokens = 1.0 / n_tokens
    for c in prange(chunk_gradients.shape[0]):
        g = np.zeros(n_experts)
        p = np.empty(n_experts)
        exponent_bits = np.empty(n_experts, np.int64)
        lse_sq = 0.0
        for t in range(c * CHUNK_TOKENS, min(n_tokens, (c + 1) * CHUNK_TOKENS)):
            g[:] = 0.0
            _reward_gradient_row(
                logits[t], indices[t], rewards[t], score_code, normalize, route_scale, g
            )
            for e in range(n_experts):
                g[e] *= inv_tokens
            lse_sq += _aux_and_z_loss_row(
                logits[t], t, aux_score_code, aux_coefficients, seq_len, z_loss * inv_tokens, p,
                exponent_bits, g,
            )  # fmt: skip
            for e in range(n_experts):
                if g[e] != 0.0:
                    for j in range(dim):
                        chunk_gradients[c, e, j] += g[e] * tokens[t, j]
        chunk_logsumexp_sq[c] = lse_sq


def aux_coefficients(
    kind: str,
    alpha: float,
    top_k: int,
    counts,
    n_tokens: int,
    seq_len: int,
    window_counts=None,
    window_tokens: int = 0,
):
    """``a_e = alpha f_e / T`` rows for the aux-loss gradient, and ``f`` for the loss value.

    Parameters
    ----------
    counts : ndarray (n_sequences, E) int64
        Plain top-K counts of this step per sequence (see ``_aux_counts``).
    window_counts, window_tokens
        For ``global``: counts and tokens over the update window (this step included).

    Returns
    -------
    coefficients : ndarray (rows, E) float64
        One row (batch, global) or one per sequence (sequence kind).
    fractions : ndarray (rows, E) float64
        ``f`` itself, ``E/(K T) c``.
    """
    n_experts = counts.shape[1]
    if kind == "sequence":
        fractions = n_experts / (top_k * seq_len) * counts.astype(np.float64)
        n_sequences = counts.shape[0]
        # Loss is the mean over sequences of alpha sum_i f_i P_i, P over the sequence's tokens.
        return alpha * fractions / (seq_len * n_sequences), fractions
    if kind == "global":
        fractions = n_experts / (top_k * window_tokens) * window_counts[None, :].astype(np.float64)
    else:
        fractions = n_experts / (top_k * n_tokens) * counts.sum(axis=0)[None, :].astype(np.float64)
    return alpha * fractions / n_tokens, fractions


def combined_aux_coefficients(
    terms, top_k: int, counts, n_tokens: int, seq_len: int, window_counts=None, window_tokens=0
):
    """Coefficient rows of a sum of aux losses (Megatron-Core's list of balancing types).

    The aux gradient of a token is linear in its coefficient row, so the gradient of
    ``sum_k L_aux_k`` is the gradient of one loss whose row is the sum of the kinds' rows (a
    batch or global row is added to every sequence's row).

    Parameters
    ----------
    terms : list of (kind, alpha)
        The losses, in the scenario's order (``AuxConfig.terms``).
    counts, window_counts, window_tokens
        As for :func:`aux_coefficients`.

    Returns
    -------
    coefficients : ndarray (rows, E) float64
        One row, or one per sequence when a ``sequence`` kind is among the terms.
    fractions : list of ndarray (rows_k, E) float64
        ``f`` of each term, for its loss value.
    """
    coefficients = None
    fractions = []
    for kind, alpha in terms:
        rows, term_fractions = aux_coefficients(
            kind, alpha, top_k, counts, n_tokens, seq_len, window_counts, window_tokens
        )
        # A single kind keeps its own array: the one-kind form stays bit-identical.
        coefficients = rows if coefficients is None else coefficients + rows
        fractions.append(term_fractions)
    return coefficients, fractions


# ----------------------------------------------------------------------------------------------
# The reward model: competence (rich get richer) x specialisation (affinity to what was learnt)


def reusable_zeros(previous: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """float64 zeros of ``shape``: ``previous`` refilled when it has that shape, else new.

    The per-chunk sums of a step are megabytes. Allocated afresh every step, glibc serves them
    from new mmap pages and unmaps them on free, so every step pays a page fault per 4 KB on
    first touch: that made the gradient kernel five times slower (1.1 -> 5.9 ms at T=4096,
    E=256, d=64, measured on a 2-core VM). Refilling one buffer costs a memset.
    """
    if previous is not None and previous.shape == tuple(shape):
        previous.fill(0.0)
        return previous
    return np.zeros(shape)


def device_loss_coefficients(
    counts,
    indices,
    keep,
    device_of_expert,
    n_devices: int,
    top_k: int,
    max_devices: int,
    device_alpha: float,
    comm_alpha: float,
    n_tokens: int,
):
    """DeepSeek-V2's device-level and communication balance losses as one aux coefficient row.

    ``L_DevBal = alpha2 sum_i f'_i P'_i`` and ``L_CommBal = alpha3 sum_i f''_i P''_i`` over the
    D devices, with ``f'_i`` the mean of ``f_j = E/(K T) c_j`` over device ``i``'s experts,
    ``f''_i = D/(M T)`` times the tokens sent to device ``i`` (those with a kept assignment
    there) and ``P'_i = P''_i = sum_{j on i} P_j`` (docs/model.md §10.5). Both are ``sum_j
    w_j P_j`` with ``w_j`` constant, which is the expert aux loss's form: the aux gradient
    kernel takes the row ``w / T`` as it is.

    Parameters
    ----------
    counts : ndarray (E,) int64
        Plain top-K counts of the affinities (the expert aux loss's ``c``).
    indices, keep : ndarray (T, K)
        The step's routed experts and the assignments kept.
    device_of_expert : ndarray (E,) int64
        Device of every expert.

    Returns
    -------
    coefficients : ndarray (1, E) float64
        ``w / T``.
    weights : ndarray (E,) float64
        ``w``: the loss is ``sum_j w_j P_j``.
    """
    n_experts = counts.shape[0]
    fractions = n_experts / (top_k * n_tokens) * counts.astype(np.float64)
    per_device = np.bincount(device_of_expert, minlength=n_devices)
    device_fractions = np.bincount(device_of_expert, fractions, n_devices) / per_device
    reached = np.zeros((indices.shape[0], n_devices), dtype=np.bool_)
    rows = np.broadcast_to(np.arange(indices.shape[0])[:, None], indices.shape)
    reached[rows[keep], device_of_expert[indices[keep]]] = True
    sent_fractions = n_devices / (max_devices * n_tokens) * reached.sum(axis=0)
    weights = (
        device_alpha * device_fractions[device_of_expert]
        + comm_alpha * sent_fractions[device_of_expert]
    )
    return (weights / n_tokens)[None, :], weights
