"""Per-expert load statistics, vectorised over many steps, and the engine's per-step metrics
(docs/model.md §6).

Each has a NumPy twin in ``moesim.reference`` that the tests compare it with.
"""

from __future__ import annotations

import math

import numpy as np

from moesim._jit import njit
from moesim.kernels.checks import check_real

#: Names of the statistics, in the column order of ``_load_stats_rows``.
LOAD_STAT_NAMES = ("max_vio", "cv", "entropy", "gini", "starved", "top10_share")


@njit
def _load_stats_rows(counts, starved_fraction, out):
    """``out[s, :]`` = statistics of the loads ``counts[s, :]`` (NaN where a row sums to 0).

    max_vio = max/mean - 1; cv = population std / mean; entropy = H(c/sum) / log E, and 1 for
    E = 1 (0/0 there: one expert is perfectly balanced, as max_vio = cv = gini = 0 say);
    gini = sum_ij |c_i - c_j| / (2 E^2 mean); starved = #experts below ``starved_fraction`` of
    the mean; top10_share = share of the ceil(E/10) most loaded experts.

    Serial, in plain loops: rows are short (E values), and a parallel driver of array
    expressions took seconds to compile for no gain at run time.
    """
    n_rows, n_experts = counts.shape
    n_top = max(1, math.ceil(0.1 * n_experts))
    log_experts = math.log(n_experts) if n_experts > 1 else 1.0
    for s in range(n_rows):
        row = counts[s]
        total = 0.0
        largest = row[0]
        for e in range(n_experts):
            total += row[e]
            largest = max(largest, row[e])
        if total <= 0:
            out[s, :] = np.nan
            continue
        mean = total / n_experts
        out[s, 0] = largest / mean - 1.0
        squares = 0.0
        entropy = 0.0
        starved = 0
        for e in range(n_experts):
            squares += (row[e] - mean) ** 2
            if row[e] > 0:
                p = row[e] / total
                entropy -= p * math.log(p)
            if row[e] < starved_fraction * mean:
                starved += 1
        out[s, 1] = math.sqrt(squares / n_experts) / mean
        out[s, 2] = entropy / log_experts if n_experts > 1 else 1.0
        ordered = np.sort(row)
        # sum_ij |x_i - x_j| = 2 * sum_i (2i - n + 1) x_(i) over ascending order, 0-based i.
        weighted = 0.0
        for i in range(n_experts):
            weighted += (2 * i - n_experts + 1) * ordered[i]
        out[s, 3] = weighted / (n_experts * total)
        out[s, 4] = starved
        top = 0.0
        for i in range(n_experts - n_top, n_experts):
            top += ordered[i]
        out[s, 5] = top / total


def load_stats(counts, starved_fraction: float = 0.1) -> dict:
    """Balance statistics of per-expert loads.

    Parameters
    ----------
    counts : ndarray, shape (E,) or (S, E), non-negative
        Loads (assignments) per expert, for one step or for S steps.
    starved_fraction : float
        An expert is starved when its load is below this fraction of the mean load; a finite
        real number in [0, 1] (not a bool or str).

    Returns
    -------
    dict
        ``max_vio``, ``cv``, ``entropy`` (normalised to [0, 1]; 1 for a single expert, where
        ``H / log E`` is 0/0: one expert is perfectly balanced), ``gini``, ``starved`` (count),
        ``top10_share``: floats for 1-D input, arrays of shape (S,) for 2-D input. NaN where the
        total load is zero.

    Raises
    ------
    ValueError
        Naming the argument and the constraint it breaks.
    """
    counts = np.asarray(counts)
    if counts.ndim not in (1, 2) or counts.shape[-1] == 0:
        raise ValueError(f"counts has shape {counts.shape}; it must be (E,) or (S, E) with E >= 1")
    if not (np.issubdtype(counts.dtype, np.integer) or np.issubdtype(counts.dtype, np.floating)):
        raise ValueError(f"counts has dtype {counts.dtype}; it must be numeric")
    if counts.size and (not np.isfinite(counts).all() or counts.min() < 0):
        raise ValueError("counts must be finite and non-negative")
    starved_fraction = check_real("starved_fraction", starved_fraction, minimum=0, maximum=1)
    rows = np.ascontiguousarray(np.atleast_2d(counts), dtype=np.float64)
    out = np.empty((rows.shape[0], len(LOAD_STAT_NAMES)), dtype=np.float64)
    _load_stats_rows(rows, starved_fraction, out)
    if counts.ndim == 1:
        return {name: float(out[0, j]) for j, name in enumerate(LOAD_STAT_NAMES)}
    return {name: out[:, j].copy() for j, name in enumerate(LOAD_STAT_NAMES)}


@njit
def _assignment_counts(indices, keep, clusters, joint):
    """Accumulate kept assignments into ``joint[cluster, expert]``; count drops per token.

    Returns ``(tokens with any dropped assignment, tokens with every assignment dropped)``.
    """
    n_tokens, top_k = indices.shape
    any_dropped = 0
    all_dropped = 0
    for t in range(n_tokens):
        dropped = 0
        for k in range(top_k):
            if keep[t, k]:
                joint[clusters[t], indices[t, k]] += 1
            else:
                dropped += 1
        any_dropped += dropped > 0
        all_dropped += dropped == top_k
    return any_dropped, all_dropped


@njit
def _top_k_overlap(indices_a, indices_b, n_experts):
    """Mean fraction of each row's experts in ``indices_a`` that also appear in ``indices_b``."""
    n_tokens, top_k = indices_a.shape
    marks = np.full(n_experts, -1, dtype=np.int64)
    shared = 0
    for t in range(n_tokens):
        for k in range(top_k):
            marks[indices_b[t, k]] = t
        for k in range(top_k):
            shared += marks[indices_a[t, k]] == t
    return shared / (n_tokens * top_k)


def specialization(joint) -> float:
    """Mutual information of cluster and expert over the cluster entropy, in [0, 1].

    ``joint[c, e]`` counts kept assignments of cluster-``c`` tokens to expert ``e``. 1 means the
    expert identifies the cluster; 0 means routing ignores it. NaN when at most one cluster has
    kept assignments (``H(C) = 0``).
    """
    joint = np.asarray(joint, dtype=np.float64)
    total = joint.sum()
    if total <= 0:
        return float("nan")
    p = joint / total
    p_cluster = p.sum(axis=1)
    if np.count_nonzero(p_cluster) < 2:
        # H(C) is 0, but the rounded p sum to 1 - 1 ulp: log of it would make 1e-16 / 1e-16.
        return float("nan")
    p_expert = p.sum(axis=0)
    nz = p > 0
    mutual = float((p[nz] * np.log(p[nz] / np.outer(p_cluster, p_expert)[nz])).sum())
    pc = p_cluster[p_cluster > 0]
    cluster_entropy = float(-(pc * np.log(pc)).sum())
    return mutual / cluster_entropy if cluster_entropy > 0 else float("nan")


def max_vio_noise_floor(n_tokens: int, top_k: int, n_experts: int) -> float:
    """MaxVio_batch that perfectly balanced random routing still shows (sampling noise).

    Each expert's load is Binomial(T, K/E); the largest of E such loads exceeds the mean by
    about ``sqrt(2 ln E)`` standard deviations.
    """
    p = top_k / n_experts
    mean = n_tokens * p
    if n_experts < 2 or p >= 1:
        return 0.0
    return math.sqrt(2 * math.log(n_experts)) * math.sqrt(n_tokens * p * (1 - p)) / mean


#: Bins of :func:`_experts_per_token_histogram`: tokens with 0, 1, 2, and 3 or more experts.
EXPERT_COUNT_BINS = 4


@njit
def _experts_per_token_histogram(keep, histogram):
    """Add to ``histogram`` (4,) int64 the tokens of ``keep`` (T, M) with 0, 1, 2, >= 3 kept
    experts (the last bin holds every count from 3 up)."""
    last = histogram.shape[0] - 1
    for t in range(keep.shape[0]):
        kept = 0
        for k in range(keep.shape[1]):
            kept += keep[t, k]
        histogram[min(kept, last)] += 1
