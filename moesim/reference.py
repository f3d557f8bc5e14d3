"""Slow, obviously-correct NumPy twins of the routing kernels.

This module is the reference the tests and benchmarks compare the Numba kernels of
``moesim.kernels`` against. It is written straight from the specification (docs/model.md §2-§4
and §6) with plain loops and obvious NumPy, favouring clarity over speed, and it shares no code
with the kernels, so that the two are independent implementations. The one thing it takes from
them is a constant of the specification, ``NORMALIZE_EPS`` (Megatron-Core's guard of a sum of
scores), so that the guard has one value everywhere.

Numerical convention (the same as the kernels'): scores are computed with float64 arithmetic on
``logits.astype(float64)`` and rounded to the input dtype; selection compares those rounded scores
plus the bias cast to the input dtype; gate weights are the gathered rounded scores, normalized
and scaled in float64, then rounded to the input dtype.

Nothing here validates its arguments: callers pass well-formed arrays.
"""

from __future__ import annotations

import math

import numpy as np

from moesim.kernels.numerics import NORMALIZE_EPS

SCORE_FUNCTIONS = ("sigmoid", "softmax", "softmax_after_topk")


def logits_reference(tokens: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Router logits ``Z = X W^T`` (T, E) in the tokens' dtype, summed over ``d`` in order.

    Each logit is ``sum_j tokens[t, j] * centroids[e, j]`` accumulated from ``j = 0`` upwards in
    the tokens' dtype, one rounded product and one rounded sum at a time (the kernel's order, so
    the two agree to the bit; BLAS sums in another order and agrees to rounding only).
    """
    dtype = tokens.dtype
    centroids = centroids.astype(dtype)
    logits = np.zeros((tokens.shape[0], centroids.shape[0]), dtype=dtype)
    for j in range(tokens.shape[1]):
        logits = logits + tokens[:, j : j + 1] * centroids[:, j]
    return logits


def scores_reference(logits: np.ndarray, score: str) -> np.ndarray:
    """Per-expert scores ``S`` before the bias, in the dtype of ``logits``.

    Parameters
    ----------
    logits : ndarray, shape [T, E], float32 or float64
        Router logits ``Z``.
    score : {"sigmoid", "softmax", "softmax_after_topk"}
        ``sigmoid(Z)``; ``softmax(Z)`` over all experts; or ``Z`` itself (the softmax is then
        taken over the K selected logits only, see :func:`route_reference`).

    Returns
    -------
    ndarray, shape [T, E], dtype of ``logits``
    """
    z = logits.astype(np.float64)
    if score == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-z))
    elif score == "softmax":
        shifted = np.exp(z - z.max(axis=1, keepdims=True))
        s = shifted / shifted.sum(axis=1, keepdims=True)
    elif score == "softmax_after_topk":
        s = z
    else:
        raise ValueError(f"score is {score!r} and must be one of {SCORE_FUNCTIONS}")
    return s.astype(logits.dtype)


def default_group_score_topk(bias: np.ndarray | None) -> int:
    """DeepSeek-V3's rule: a group scores the sum of its top 2 with a bias, its max without."""
    return 1 if bias is None else 2


def group_scores_reference(selection: np.ndarray, n_groups: int, group_score_topk: int):
    """Group scores: the sum of the ``group_score_topk`` largest selection scores of each group.

    Parameters
    ----------
    selection : ndarray, shape [T, E]
        Selection scores ``S' = S + b``.
    n_groups : int
        ``G``; group ``g`` holds experts ``[g*E/G, (g+1)*E/G)``.
    group_score_topk : int
        How many of a group's best scores are summed.

    Returns
    -------
    ndarray, shape [T, G], float64
        Sums of the input-dtype values, accumulated in float64 from the largest down.
    """
    n_tokens, n_experts = selection.shape
    size = n_experts // n_groups
    out = np.zeros((n_tokens, n_groups), dtype=np.float64)
    for t in range(n_tokens):
        for g in range(n_groups):
            members = np.sort(selection[t, g * size : (g + 1) * size].astype(np.float64))[::-1]
            total = 0.0
            for value in members[:group_score_topk]:
                total += value
            out[t, g] = total
    return out


def _descending_order(values: np.ndarray) -> np.ndarray:
    """Indices sorting ``values`` by descending value, ties to the lower index."""
    # A stable sort of the negated values keeps equal values in index order.
    return np.argsort(-values, kind="stable")


def selection_reference(
    logits: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    score: str = "sigmoid",
    n_groups: int = 1,
    topk_groups: int = 1,
    group_score_topk: int | None = None,
    bias_mode: str = "additive",
):
    """Scores, selection scores and the group mask, step by step.

    Returns
    -------
    scores : ndarray, shape [T, E], dtype of ``logits``
        ``S`` (the logits themselves for ``softmax_after_topk``).
    selection : ndarray, shape [T, E], dtype of ``logits``
        ``S' = S + b`` (``S * b`` for ``bias_mode="multiplicative"``) with the experts of
        dropped groups set to ``-inf``.
    group_scores : ndarray, shape [T, G], float64, or None when ``n_groups == 1``
        The score of every group (before masking).
    """
    dtype = logits.dtype
    scores = scores_reference(logits, score)
    if bias is None:
        selection = scores.copy()
    elif bias_mode == "multiplicative":
        selection = scores * bias.astype(dtype)
    else:
        selection = scores + bias.astype(dtype)
    if n_groups == 1:
        return scores, selection, None
    if group_score_topk is None:
        group_score_topk = default_group_score_topk(bias)
    n_tokens, n_experts = logits.shape
    size = n_experts // n_groups
    group_scores = group_scores_reference(selection, n_groups, group_score_topk)
    for t in range(n_tokens):
        kept_groups = _descending_order(group_scores[t])[:topk_groups]
        for g in range(n_groups):
            if g not in kept_groups:
                # -inf, never 0: with negative biases a 0 would let masked experts win.
                selection[t, g * size : (g + 1) * size] = -np.inf
    return scores, selection, group_scores


def route_reference(
    logits: np.ndarray,
    bias: np.ndarray | None = None,
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
    """Top-K routing with optional bias and group-limited selection (reference of ``route``).

    Parameters
    ----------
    logits : ndarray, shape [T, E], float32 or float64
        Router logits.
    bias : ndarray, shape [E], or None
        Expert bias; it changes which experts are selected, never the weights.
    top_k : int
        ``K``, experts per token.
    score : {"sigmoid", "softmax", "softmax_after_topk"}
        Score function (see :func:`scores_reference`).
    n_groups, topk_groups : int
        ``G`` groups of ``E/G`` consecutive experts, of which the ``topk_groups`` best are kept.
    group_score_topk : int or None
        How many top scores sum to a group score; None is DeepSeek-V3's rule (2 with a bias,
        1 without).
    normalize : bool or None
        Divide the weights by their sum (+ ``NORMALIZE_EPS``); None means True for sigmoid only.
    route_scale : float
        Factor applied to the weights last.
    bias_mode : {"additive", "multiplicative"}
        Selection by ``S + b`` or by ``S * b`` (Loss-Free Table 4).

    Returns
    -------
    indices : ndarray, shape [T, K], int64
        Selected experts per token by descending ``S'`` (ties: lower index first).
    weights : ndarray, shape [T, K], dtype of ``logits``
        Gate weights.
    """
    if normalize is None:
        normalize = score == "sigmoid"
    scores, selection, _ = selection_reference(
        logits,
        bias,
        score=score,
        n_groups=n_groups,
        topk_groups=topk_groups,
        group_score_topk=group_score_topk,
        bias_mode=bias_mode,
    )
    n_tokens = logits.shape[0]
    indices = np.zeros((n_tokens, top_k), dtype=np.int64)
    weights = np.zeros((n_tokens, top_k), dtype=logits.dtype)
    for t in range(n_tokens):
        chosen = _descending_order(selection[t])[:top_k]
        indices[t] = chosen
        w = scores[t, chosen].astype(np.float64)
        if score == "softmax_after_topk":
            w = np.exp(w - w.max())
            w = (w / w.sum()).astype(logits.dtype).astype(np.float64)
        if normalize:
            w = w / (w.sum() + NORMALIZE_EPS)
        weights[t] = (w * route_scale).astype(logits.dtype)
    return indices, weights


def expert_capacity_reference(
    n_tokens: int, top_k: int, n_experts: int, capacity_factor: float
) -> int:
    """Per-expert capacity ``ceil(T*K/E * capacity_factor)`` (Megatron-Core ``get_capacity``)."""
    return math.ceil((n_tokens * top_k / n_experts) * capacity_factor)


def apply_capacity_reference(
    indices: np.ndarray,
    weights: np.ndarray,
    n_experts: int,
    capacity_factor: float | None,
    policy: str = "probs",
) -> np.ndarray:
    """Which assignments survive the per-expert capacity (reference of ``apply_capacity``).

    Parameters
    ----------
    indices : ndarray, shape [T, K], int
        Selected experts.
    weights : ndarray, shape [T, K], float
        Gate weights.
    n_experts : int
        ``E``.
    capacity_factor : float or None
        None keeps every assignment.
    policy : {"probs", "position"}
        Per expert keep the highest weights (ties: earlier token) or the earliest tokens.

    Returns
    -------
    ndarray, shape [T, K], bool
        True for kept assignments.
    """
    n_tokens, top_k = indices.shape
    keep = np.ones((n_tokens, top_k), dtype=bool)
    if capacity_factor is None:
        return keep
    capacity = expert_capacity_reference(n_tokens, top_k, n_experts, capacity_factor)
    keep[:] = False
    for expert in range(n_experts):
        # (token, slot) pairs in token order, so stable sorts break ties to the earlier token.
        assignments = [
            (t, k) for t in range(n_tokens) for k in range(top_k) if indices[t, k] == expert
        ]
        if policy == "probs":
            assignments.sort(key=lambda tk: -weights[tk[0], tk[1]])  # list.sort is stable
        elif policy != "position":
            raise ValueError(f"policy is {policy!r} and must be 'probs' or 'position'")
        for t, k in assignments[:capacity]:
            keep[t, k] = True
    return keep


def update_bias_reference(
    bias: np.ndarray, counts: np.ndarray, rate: float, rule: str = "sign", center: bool = False
) -> np.ndarray:
    """One loss-free balancing update of the expert bias (reference of ``update_bias``).

    Parameters
    ----------
    bias : ndarray, shape [E], float
        Current bias.
    counts : ndarray, shape [E], int
        Expert loads ``c`` over the update window.
    rate : float
        ``u``.
    rule : {"sign", "proportional"}
        ``u * sign(mean(c) - c_i)`` (sign(0) = 0) or ``u * (mean(c) - c_i) / mean(c)``.
    center : bool
        Subtract the mean of the update vector.

    Returns
    -------
    ndarray, shape [E], float32
        The updated bias, computed in float64 and rounded once.
    """
    counts = [int(c) for c in counts]
    n_experts = len(counts)
    total = sum(counts)
    update = np.zeros(n_experts, dtype=np.float64)
    for i, c in enumerate(counts):
        if rule == "sign":
            # mean(c) - c_i has the sign of sum(c) - E*c_i, exact in integers.
            excess = total - n_experts * c
            update[i] = rate * ((excess > 0) - (excess < 0))
        elif rule == "proportional":
            if total != 0:
                mean = total / n_experts
                update[i] = rate * (mean - c) / mean
        else:
            raise ValueError(f"rule is {rule!r} and must be 'sign' or 'proportional'")
    if center:
        update = update - update.mean()
    return (np.asarray(bias, dtype=np.float64) + update).astype(np.float32)


def _load_stats_row(loads: np.ndarray, starved_fraction: float) -> dict:
    x = [float(c) for c in loads]
    n = len(x)
    total = sum(x)
    keys = ("max_vio", "cv", "entropy", "gini", "starved", "top10_share")
    if total == 0:
        return dict.fromkeys(keys, math.nan)
    mean = total / n
    variance = sum((xi - mean) ** 2 for xi in x) / n
    entropy = 0.0
    for xi in x:
        if xi > 0:
            p = xi / total
            entropy -= p * math.log(p)
    pair_differences = sum(abs(xi - xj) for xi in x for xj in x)
    n_top = -(-n // 10)  # ceil(0.1 * E) in exact integer arithmetic
    return {
        "max_vio": max(x) / mean - 1.0,
        "cv": math.sqrt(variance) / mean,
        # One expert: H / log E is 0/0; it is perfectly balanced, so 1 (max_vio = cv = gini = 0).
        "entropy": entropy / math.log(n) if n > 1 else 1.0,
        "gini": pair_differences / (2.0 * n * n * mean),
        "starved": float(sum(1 for xi in x if xi < starved_fraction * mean)),
        "top10_share": sum(sorted(x, reverse=True)[:n_top]) / total,
    }


def load_stats_reference(counts: np.ndarray, starved_fraction: float = 0.1) -> dict:
    """Balance metrics of expert loads (reference of ``load_stats``).

    Parameters
    ----------
    counts : ndarray, shape [E] or [S, E], int
        Loads per expert (one row per step for 2-D input).
    starved_fraction : float
        An expert is starved when its load is below this fraction of the mean.

    Returns
    -------
    dict of str to float64 (scalars for [E], arrays of shape [S] for [S, E])
        ``max_vio`` (max/mean - 1), ``cv`` (population std / mean), ``entropy`` (H(c/sum c) /
        log E; 1 when E = 1, where it is 0/0 and the one expert is perfectly balanced), ``gini``
        (sum_ij |x_i - x_j| / (2 E^2 mean)), ``starved`` (experts below
        ``starved_fraction * mean``), ``top10_share`` (load share of the ceil(E/10) most loaded
        experts). All NaN for a row whose total is 0.
    """
    counts = np.asarray(counts)
    if counts.ndim == 1:
        return {k: np.float64(v) for k, v in _load_stats_row(counts, starved_fraction).items()}
    rows = [_load_stats_row(row, starved_fraction) for row in counts]
    keys = ("max_vio", "cv", "entropy", "gini", "starved", "top10_share")
    return {k: np.array([row[k] for row in rows], dtype=np.float64) for k in keys}


# ----------------------------------------------------------------------------------------------
# Per-step metrics of the engine (docs/model.md §6): fidelity, specialisation, the noise floor


def top_k_overlap_reference(indices_a: np.ndarray, indices_b: np.ndarray) -> float:
    """Routing fidelity: the share of the experts of ``indices_a`` also chosen in ``indices_b``.

    Parameters
    ----------
    indices_a, indices_b : ndarray, shape [T, K], int
        Two routings of the same tokens (the engine: with the bias, and without it).

    Returns
    -------
    float
        ``sum_t #{k : indices_a[t, k] in indices_b[t]} / (T K)``, in [0, 1].
    """
    n_tokens, top_k = indices_a.shape
    shared = 0
    for t in range(n_tokens):
        chosen_b = {int(e) for e in indices_b[t]}
        shared += sum(1 for e in indices_a[t] if int(e) in chosen_b)
    return shared / (n_tokens * top_k)


def assignment_counts_reference(
    indices: np.ndarray, keep: np.ndarray, clusters: np.ndarray, n_clusters: int, n_experts: int
) -> tuple[np.ndarray, int, int]:
    """Kept assignments by token cluster and expert, and the tokens that lost assignments.

    Parameters
    ----------
    indices : ndarray, shape [T, K], int
        Chosen experts.
    keep : ndarray, shape [T, K], bool
        Which assignments survived the capacity.
    clusters : ndarray, shape [T], int
        The cluster (domain) of each token, in ``[0, n_clusters)``.
    n_clusters, n_experts : int

    Returns
    -------
    joint : ndarray, shape [n_clusters, n_experts], int64
        ``joint[c, e]``: kept assignments of cluster-``c`` tokens to expert ``e``.
    any_dropped : int
        Tokens with at least one dropped assignment.
    all_dropped : int
        Tokens with every assignment dropped.
    """
    joint = np.zeros((n_clusters, n_experts), dtype=np.int64)
    any_dropped = 0
    all_dropped = 0
    for t in range(indices.shape[0]):
        kept = [int(indices[t, k]) for k in range(indices.shape[1]) if keep[t, k]]
        for e in kept:
            joint[int(clusters[t]), e] += 1
        if len(kept) < indices.shape[1]:
            any_dropped += 1
        if not kept:
            all_dropped += 1
    return joint, any_dropped, all_dropped


def specialization_reference(joint: np.ndarray) -> float:
    """Mutual information of cluster and expert over the cluster entropy, ``I(C; E) / H(C)``.

    Parameters
    ----------
    joint : ndarray, shape [C, E], non-negative
        Kept assignments of cluster-``c`` tokens to expert ``e``.

    Returns
    -------
    float
        In [0, 1]: 1 when the expert identifies the cluster, 0 when routing ignores it. NaN when
        ``joint`` is all zeros or holds a single cluster (``H(C) = 0``).
    """
    rows = [[float(value) for value in row] for row in joint]
    total = sum(sum(row) for row in rows)
    if total <= 0:
        return math.nan
    n_experts = len(rows[0])
    p_cluster = [sum(row) / total for row in rows]
    p_expert = [sum(row[e] for row in rows) / total for e in range(n_experts)]
    mutual_information = 0.0
    for c, row in enumerate(rows):
        for e, count in enumerate(row):
            if count > 0:
                p = count / total
                mutual_information += p * math.log(p / (p_cluster[c] * p_expert[e]))
    cluster_entropy = -sum(p * math.log(p) for p in p_cluster if p > 0)
    return mutual_information / cluster_entropy if cluster_entropy > 0 else math.nan


def max_vio_noise_floor_reference(n_tokens: int, top_k: int, n_experts: int) -> float:
    """MaxVio of a perfectly balanced random router: ``sqrt(2 ln E)`` standard deviations.

    An expert's load is Binomial(T, p = K/E): mean ``T p``, standard deviation
    ``sqrt(T p (1 - p))``; their ratio simplifies to ``sqrt((E - K) / (T K))``. Zero for a
    single expert or ``K = E`` (every expert gets every token).
    """
    if n_experts < 2 or top_k >= n_experts:
        return 0.0
    return math.sqrt(2 * math.log(n_experts)) * math.sqrt((n_experts - top_k) / (n_tokens * top_k))
