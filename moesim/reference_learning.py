"""Slow NumPy twins of the router-learning objectives (docs/model.md §5), for tests.

Each objective is a plain function of the logits ``Z`` (T, E) with the routing decision held
fixed (selection is piecewise constant, so the gradient flows through the gate weights only),
and each has an explicit NumPy gradient. Tests check the gradients against central finite
differences and the Numba kernel against these gradients. Like ``moesim.reference``, it shares
no code with the kernels, only the guard ``NORMALIZE_EPS`` (one value everywhere).
"""

from __future__ import annotations

import numpy as np

from moesim.kernels.numerics import NORM_EPS, NORMALIZE_EPS


def sigmoid(z):
    """``1 / (1 + exp(-z))`` elementwise."""
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z, axis=-1):
    """Softmax along ``axis``, max-shifted."""
    shifted = np.exp(z - z.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def log_sum_exp(z):
    """``log sum_e exp(z_te)`` of each row of ``z`` (T, E), shape (T,), max-shifted."""
    shift = z.max(axis=1, keepdims=True)
    return (shift + np.log(np.exp(z - shift).sum(axis=1, keepdims=True)))[:, 0]


def gate_weights(logits, indices, score, normalize, route_scale):
    """Gate weights (T, K) of fixed ``indices`` as a smooth function of the logits."""
    selected = np.take_along_axis(logits, indices, axis=1)
    if score == "softmax_after_topk" or (score == "softmax" and normalize):
        weights = softmax(selected)
    elif score == "sigmoid":
        weights = sigmoid(selected)
        if normalize:
            weights = weights / (weights.sum(axis=1, keepdims=True) + NORMALIZE_EPS)
    else:
        weights = np.take_along_axis(softmax(logits), indices, axis=1)
    return weights * route_scale


def reward_objective(logits, indices, rewards, score, normalize, route_scale):
    """``R = mean_t sum_k w_tk r_tk``."""
    return float(
        (gate_weights(logits, indices, score, normalize, route_scale) * rewards).sum(axis=1).mean()
    )


def reward_gradient(logits, indices, rewards, score, normalize, route_scale):
    """``dR/dZ`` (T, E), written from the chain rule one case at a time."""
    n_tokens, n_experts = logits.shape
    gradient = np.zeros_like(logits)
    rows = np.arange(n_tokens)[:, None]
    selected = np.take_along_axis(logits, indices, axis=1)
    if score == "softmax_after_topk" or (score == "softmax" and normalize):
        w = softmax(selected)
        mean_reward = (w * rewards).sum(axis=1, keepdims=True)
        np.add.at(gradient, (rows, indices), route_scale * w * (rewards - mean_reward))
    elif score == "sigmoid":
        s = sigmoid(selected)
        if normalize:
            total = s.sum(axis=1, keepdims=True) + NORMALIZE_EPS
            mean_reward = (s / total * rewards).sum(axis=1, keepdims=True)
            d_score = route_scale * (rewards - mean_reward) / total
        else:
            d_score = route_scale * rewards
        np.add.at(gradient, (rows, indices), d_score * s * (1 - s))
    else:
        p = softmax(logits)
        p_selected = np.take_along_axis(p, indices, axis=1)
        weighted = (route_scale * rewards * p_selected).sum(axis=1, keepdims=True)
        np.add.at(gradient, (rows, indices), route_scale * rewards * p_selected)
        gradient -= p * weighted
    return gradient / n_tokens


def aux_affinities(logits, score):
    """Aux-loss affinities over all experts: softmax, or sigmoid normalised (Megatron)."""
    if score == "sigmoid":
        s = sigmoid(logits)
        return s / (s.sum(axis=1, keepdims=True) + NORMALIZE_EPS)
    return softmax(logits)


def aux_top_k_counts(logits, score, top_k):
    """Plain top-K counts (T, E) one-hot of the affinities: no bias, no groups, no drops."""
    p = aux_affinities(logits, score)
    order = np.argsort(-p, axis=1, kind="stable")[:, :top_k]
    one_hot = np.zeros(p.shape, dtype=np.int64)
    np.put_along_axis(one_hot, order, 1, axis=1)
    return one_hot


def aux_loss(logits, score, alpha, top_k, kind, seq_len, fractions):
    """``alpha * sum_i f_i P_i`` with the given constant ``f`` (one row, or one per sequence)."""
    p = aux_affinities(logits, score)
    n_tokens = logits.shape[0]
    if kind == "sequence":
        per_sequence = p.reshape(n_tokens // seq_len, seq_len, -1).mean(axis=1)
        return float(alpha * (fractions * per_sequence).sum(axis=1).mean())
    return float(alpha * (fractions[0] * p.mean(axis=0)).sum())


def aux_fractions(logits, score, top_k, kind, seq_len, earlier_counts=None, earlier_tokens=0):
    """``f_i = E/(K T) c_i`` per batch (1, E), per sequence (n_sequences, E), or for ``global``
    over the update window (1, E): the ``earlier_counts`` (E,) of the window's earlier steps and
    their ``earlier_tokens``, plus this step's counts and tokens."""
    counts = aux_top_k_counts(logits, score, top_k)
    n_tokens, n_experts = logits.shape
    if kind == "sequence":
        per_sequence = counts.reshape(n_tokens // seq_len, seq_len, -1).sum(axis=1)
        return n_experts / (top_k * seq_len) * per_sequence
    if kind == "global":
        window = counts.sum(axis=0, keepdims=True) + np.asarray(earlier_counts)[None, :]
        return n_experts / (top_k * (n_tokens + earlier_tokens)) * window
    return n_experts / (top_k * n_tokens) * counts.sum(axis=0, keepdims=True)


def aux_affinity_jacobian(logits, score):
    """``J[t, i, j] = d p_ti / d z_tj`` (T, E, E), written out element by element."""
    n_tokens, n_experts = logits.shape
    p = aux_affinities(logits, score)
    identity = np.eye(n_experts)[None, :, :]
    if score == "sigmoid":
        # p_i = s_i / S: d p_i / d z_j = (delta_ij - p_i) s_j (1 - s_j) / S.
        s = sigmoid(logits)
        total = s.sum(axis=1) + NORMALIZE_EPS
        column = s * (1 - s) / total[:, None]
        return (identity - p[:, :, None]) * column[:, None, :]
    # softmax: d p_i / d z_j = p_i (delta_ij - p_j).
    return p[:, :, None] * (identity - p[:, None, :])


def aux_gradient(logits, score, alpha, kind, seq_len, fractions):
    """``dL_aux/dZ`` (T, E) of :func:`aux_loss` with the same constant ``fractions``."""
    n_tokens = logits.shape[0]
    if kind == "sequence":
        per_token = np.repeat(fractions, seq_len, axis=0)
    else:
        per_token = np.broadcast_to(fractions[0], logits.shape)
    # Every kind is a mean of f . p over T tokens (sequences of seq_len tokens, averaged).
    return (
        alpha / n_tokens * np.einsum("ti,tij->tj", per_token, aux_affinity_jacobian(logits, score))
    )


def z_loss(logits, beta):
    """``beta * mean_t logsumexp(Z_t)^2``."""
    return float(beta * (log_sum_exp(logits) ** 2).mean())


def z_loss_gradient(logits, beta):
    """``dL_z/dZ`` (T, E) = ``2 beta logsumexp(Z_t) softmax(Z_t) / T``."""
    lse = log_sum_exp(logits)[:, None]
    return 2 * beta * lse * softmax(logits) / logits.shape[0]


def aux_score(score):
    """Affinities of the aux loss: normalised sigmoid for a sigmoid router, else softmax."""
    return "sigmoid" if score == "sigmoid" else "softmax"


def objective(logits, indices, rewards, score, normalize, route_scale, aux_terms, seq_len, beta):
    """``J = R - sum_k L_aux_k - L_z``; ``aux_terms`` is a list of ``(kind, alpha, fractions)``."""
    value = reward_objective(logits, indices, rewards, score, normalize, route_scale)
    for kind, alpha, fractions in aux_terms:
        value -= aux_loss(logits, aux_score(score), alpha, None, kind, seq_len, fractions)
    return value - z_loss(logits, beta)


def objective_gradient(
    logits, indices, rewards, score, normalize, route_scale, aux_terms, seq_len, beta
):
    """``dJ/dZ`` (T, E) of :func:`objective`, term by term."""
    gradient = reward_gradient(logits, indices, rewards, score, normalize, route_scale)
    for kind, alpha, fractions in aux_terms:
        gradient = gradient - aux_gradient(
            logits, aux_score(score), alpha, kind, seq_len, fractions
        )
    return gradient - z_loss_gradient(logits, beta)


def numerical_gradient(function, logits, step=1e-6):
    """Central finite differences of a scalar function of the logits."""
    gradient = np.zeros_like(logits)
    for index in np.ndindex(logits.shape):
        plus = logits.copy()
        minus = logits.copy()
        plus[index] += step
        minus[index] -= step
        gradient[index] = (function(plus) - function(minus)) / (2 * step)
    return gradient


def capacity_match(tokens, competence, knowledge):
    """``q`` (T, E) of the capacity_nats model: ``c_e * max(0, <x_t/|x_t|, k_e>)``."""
    tokens = np.asarray(tokens, dtype=np.float64)
    unit = tokens / (np.linalg.norm(tokens, axis=1, keepdims=True) + NORM_EPS)
    return competence[None, :] * np.maximum(0.0, unit @ knowledge.T)


def capacity_token_losses(
    logits, tokens, indices, keep, competence, knowledge, sensitivity, score, normalize, route_scale
):
    """``l_t = D (1 - sum_k (w_tk / scale) q_{t, i_k})`` (T,) nats, dropped assignments q = 0.

    A smooth function of the logits for fixed ``indices`` (the twin of
    ``CapacityNatsLoss.token_losses``).
    """
    q = np.take_along_axis(capacity_match(tokens, competence, knowledge), indices, axis=1)
    q = np.where(keep, q, 0.0)
    weights = gate_weights(logits, indices, score, normalize, route_scale) / route_scale
    return sensitivity * (1.0 - (weights * q).sum(axis=1))


def capacity_observe(knowledge, processed, tokens, indices, keep, ema):
    """One ``observe`` of the capacity_nats model: unnormalised EMA of mean unit directions."""
    tokens = np.asarray(tokens, dtype=np.float64)
    unit = tokens / (np.linalg.norm(tokens, axis=1, keepdims=True) + NORM_EPS)
    knowledge = knowledge.copy()
    counts = np.zeros(knowledge.shape[0])
    sums = np.zeros_like(knowledge)
    for t, k in zip(*np.nonzero(keep), strict=True):
        counts[indices[t, k]] += 1
        sums[indices[t, k]] += unit[t]
    active = counts > 0
    knowledge[active] = (1 - ema) * knowledge[active] + ema * sums[active] / counts[active, None]
    return knowledge, processed + counts
