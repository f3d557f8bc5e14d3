"""Slow NumPy twins of noisy top-K gating and its losses (docs/model.md §2.1, §5.5), for tests.

Written from Shazeer et al. 2017 (arXiv 1701.06538), section 2.1 and appendix A, one formula
per function, on whole arrays; the noise ``eps`` (T, E) is an input (the kernels draw it from
their own stream, :func:`moesim.kernels.noisy.gate_noise`). The objective is a function of the
clean logits ``C = X W_g^T`` and the noise logits ``N = X W_noise^T`` with the routing decision
held fixed (selection is piecewise constant), so central finite differences of
:func:`noisy_objective` check :func:`noisy_objective_gradient`. Shares no code with the kernels.
"""

from __future__ import annotations

import math

import numpy as np

from moesim.reference_learning import aux_gradient, aux_loss, z_loss, z_loss_gradient


def softplus(x):
    """``log(1 + exp(x))`` elementwise."""
    return np.logaddexp(0.0, x)


def sigmoid(x):
    """``1 / (1 + exp(-x))`` elementwise."""
    return 1.0 / (1.0 + np.exp(-x))


def normal_cdf(z):
    """Phi(z) elementwise, from ``math.erf``."""
    return np.vectorize(lambda v: 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))))(z)


def normal_pdf(z):
    """phi(z) elementwise."""
    return np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def noisy_logits_reference(clean, noise_logits, eps):
    """``H = C + eps * softplus(N)``."""
    return clean + eps * softplus(noise_logits)


def chosen_mask(indices, n_experts):
    """(T, E) bool: expert ``e`` is among token ``t``'s chosen ``indices`` (T, K)."""
    mask = np.zeros((indices.shape[0], n_experts), dtype=bool)
    np.put_along_axis(mask, indices, True, axis=1)
    return mask


def kth_excluding_reference(selection, top_k, chosen):
    """``kth_excluding(selection, k, e)`` (T, E): the k-th largest of each row over the other
    experts; ``chosen`` (T, E) marks the row's top K."""
    ordered = -np.sort(-selection, axis=1)
    return np.where(chosen, ordered[:, [top_k]], ordered[:, [top_k - 1]])


def gates_reference(noisy, indices):
    """``G`` (T, E): softmax over each token's chosen ``H``, zero elsewhere."""
    gates = np.zeros(noisy.shape)
    selected = np.take_along_axis(noisy, indices, axis=1)
    weights = np.exp(selected - selected.max(axis=1, keepdims=True))
    np.put_along_axis(gates, indices, weights / weights.sum(axis=1, keepdims=True), axis=1)
    return gates


def load_probabilities_reference(clean, noise_logits, noisy, bias, indices):
    """``P(t, e) = Phi((C + b - kth_excluding(H + b, k, e)) / softplus(N))`` (T, E)."""
    top_k = indices.shape[1]
    chosen = chosen_mask(indices, clean.shape[1])
    threshold = kth_excluding_reference(noisy + bias, top_k, chosen)
    return normal_cdf((clean + bias - threshold) / softplus(noise_logits))


def cv_squared(values):
    """``CV^2 = var / mean^2`` with the population variance (0 for one expert)."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] < 2:
        return 0.0
    return float(values.var() / values.mean() ** 2)


def noisy_objective(
    clean, noise_logits, eps, bias, indices, rewards, route_scale, w_importance, w_load,
    aux_terms=(), seq_len=1, beta=0.0,
):  # fmt: skip
    """``J = R - L_aux - L_z - w_imp CV(Importance)^2 - w_load CV(Load)^2``.

    ``R = mean_t sum_k route_scale G_tk r_tk``; ``aux_terms`` are ``(kind, alpha, fractions)``
    of the softmax aux loss on the clean logits (``reference_learning.aux_loss``); ``beta`` the
    z-loss on the clean logits.
    """
    noisy = noisy_logits_reference(clean, noise_logits, eps)
    gates = gates_reference(noisy, indices)
    selected_gates = np.take_along_axis(gates, indices, axis=1)
    value = float((route_scale * selected_gates * rewards).sum(axis=1).mean())
    for kind, alpha, fractions in aux_terms:
        value -= aux_loss(clean, "softmax", alpha, None, kind, seq_len, fractions)
    value -= z_loss(clean, beta)
    value -= w_importance * cv_squared(gates.sum(axis=0))
    load = load_probabilities_reference(clean, noise_logits, noisy, bias, indices).sum(axis=0)
    return value - w_load * cv_squared(load)


def cv_squared_gradient(values, weight):
    """``d(weight CV(v)^2)/dv`` (E,), from ``CV^2 = E sum v^2 / (sum v)^2 - 1``."""
    n_experts = values.shape[0]
    total = values.sum()
    return weight * (
        2 * n_experts * values / total**2 - 2 * n_experts * (values**2).sum() / total**3
    )


def noisy_objective_gradient(
    clean, noise_logits, eps, bias, indices, rewards, route_scale, w_importance, w_load,
    aux_terms=(), seq_len=1, beta=0.0,
):  # fmt: skip
    """``(dJ/dC, dJ/dN)`` (T, E) each of :func:`noisy_objective`, by the chain rule."""
    n_tokens, n_experts = clean.shape
    top_k = indices.shape[1]
    rows = np.arange(n_tokens)[:, None]
    noisy = noisy_logits_reference(clean, noise_logits, eps)
    gates = gates_reference(noisy, indices)
    w = np.take_along_axis(gates, indices, axis=1)
    # Per-gate "rewards": the task's (a token mean) minus dL_importance/dG.
    a_importance = cv_squared_gradient(gates.sum(axis=0), w_importance)
    per_gate = route_scale * rewards / n_tokens - a_importance[indices]
    d_noisy = np.zeros(clean.shape)
    np.add.at(d_noisy, (rows, indices), w * (per_gate - (w * per_gate).sum(axis=1, keepdims=True)))
    d_clean = np.zeros(clean.shape)
    for kind, alpha, fractions in aux_terms:
        d_clean -= aux_gradient(clean, "softmax", alpha, kind, seq_len, fractions)
    d_clean -= z_loss_gradient(clean, beta)
    d_noise = np.zeros(clean.shape)
    if w_load:
        chosen = chosen_mask(indices, n_experts)
        selection = noisy + bias
        order = np.argsort(-selection, axis=1, kind="stable")
        threshold_expert = np.where(chosen, order[:, [top_k]], order[:, [top_k - 1]])
        threshold = np.take_along_axis(selection, threshold_expert, axis=1)
        spread = softplus(noise_logits)
        z = (clean + bias - threshold) / spread
        load = normal_cdf(z).sum(axis=0)
        a = cv_squared_gradient(load, w_load)[None, :] * normal_pdf(z) / spread
        d_clean -= a
        np.add.at(d_noisy, (np.broadcast_to(rows, a.shape), threshold_expert), a)
        d_noise += a * z * sigmoid(noise_logits)
    return d_clean + d_noisy, d_noise + d_noisy * eps * sigmoid(noise_logits)
