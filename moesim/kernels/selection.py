"""Top-K selection helpers of the routing kernel (docs/model.md §2), one token's row at a time.

``routing._route_chunk`` strings them together: group scores from each group's best two
values, the kept groups, a cheap lower bound of the K-th best score, the candidates at or above
it and their ranks. The sorted insert is shared with the noisy top-K and Sinkhorn kernels.

Every helper is branch-light and takes only the arrays it works on: an inlined routine's array
arguments cost atomic reference-count updates per call unless Numba can prune them, which it
does for short routines like these (see ``routing._route_chunk``).
"""

from __future__ import annotations

from moesim._jit import njit, njit_inline


@njit
def _insert_descending(value, index, top_values, top_indices, filled, capacity):
    """Insert ``(value, index)`` into a buffer kept in descending order of value.

    Callers insert candidates in increasing ``index`` order; an equal value then never displaces
    an earlier one, which is what makes ties go to the lower index. Returns the new fill level.
    """
    if filled == capacity:
        if not value > top_values[capacity - 1]:
            return filled
        position = capacity - 1
    else:
        position = filled
        filled += 1
    while position > 0 and value > top_values[position - 1]:
        top_values[position] = top_values[position - 1]
        top_indices[position] = top_indices[position - 1]
        position -= 1
    top_values[position] = value
    top_indices[position] = index
    return filled


@njit_inline
def _group_top_two(selection, n_groups, group_size, group_first, group_second):
    """Best and second-best value of ``S'`` in each group (branch-free running max/min)."""
    for g in range(n_groups):
        start = g * group_size
        first = max(selection[start], selection[start + 1])
        second = min(selection[start], selection[start + 1])
        for e in range(start + 2, start + group_size):
            value = selection[e]
            second = max(second, min(first, value))
            first = max(first, value)
        group_first[g] = first
        group_second[g] = second


@njit_inline
def _gather_at_least(selection, start, stop, threshold, cand_values, cand_ids, n_candidates):
    """Append experts ``start..stop-1`` whose ``S'`` is ``>= threshold`` (branch-free)."""
    for e in range(start, stop):
        value = selection[e]
        cand_values[n_candidates] = value
        cand_ids[n_candidates] = e
        n_candidates += value >= threshold
    return n_candidates


@njit_inline
def _compact_at_least(values, ids, n_values, threshold):
    """Keep, in place and in order, the entries of ``values[:n_values]`` ``>= threshold``."""
    kept = 0
    for i in range(n_values):
        value = values[i]
        values[kept] = value
        ids[kept] = ids[i]
        kept += value >= threshold
    return kept


@njit_inline
def _lower_bound_of_kth(values, n_values, top_k):
    """A value ``<=`` the ``top_k``-th largest of ``values[:n_values]`` (needs top_k <= n).

    The maxima of ``top_k`` disjoint blocks are ``top_k`` distinct elements, so the smallest of
    them cannot exceed the ``top_k``-th largest element.
    """
    bound = values[0]
    for block in range(top_k):
        start = (block * n_values) // top_k
        stop = ((block + 1) * n_values) // top_k
        block_max = values[start]
        for i in range(start + 1, stop):
            block_max = max(block_max, values[i])
        bound = block_max if block == 0 else min(bound, block_max)
    return bound


#: Up to this many groups, the kept groups are found by counting ranks (G^2 branch-free
#: comparisons; 3x faster than sorted inserts at G = 8), beyond it by sorted inserts.
_RANKED_GROUPS_MAX = 32


@njit_inline
def _rank(values, n, i):
    """Rank of ``values[i]`` among ``values[:n]`` in descending order, ties to the lower index:
    how many are larger, plus how many earlier ones are equal (branch-free comparisons)."""
    value = values[i]
    rank = 0
    for j in range(n):
        other = values[j]
        rank += (other > value) | ((other == value) & (j < i))
    return rank


@njit_inline
def _keep_groups(group_scores, topk_groups, kept_groups, kept_group_scores):
    """Write the ids of the ``topk_groups`` best groups to ``kept_groups``, in increasing id
    (so that experts are offered in increasing id: the ties rule); ties go to the lower id.

    A NaN group score ranks first and never outranks another, so at least ``topk_groups``
    groups qualify and only the first ``topk_groups`` of them are used.
    """
    n_groups = group_scores.shape[0]
    if n_groups <= _RANKED_GROUPS_MAX:
        n_kept = 0
        for g in range(n_groups):
            kept_groups[n_kept] = g
            n_kept += _rank(group_scores, n_groups, g) < topk_groups
        return
    filled = 0
    for g in range(n_groups):
        filled = _insert_descending(
            group_scores[g], g, kept_group_scores, kept_groups, filled, topk_groups
        )
    for j in range(1, topk_groups):  # insertion sort by id
        group = kept_groups[j]
        i = j - 1
        while i >= 0 and kept_groups[i] > group:
            kept_groups[i + 1] = kept_groups[i]
            i -= 1
        kept_groups[i + 1] = group


#: Up to this many candidates, they are sorted by counting ranks (n^2 branch-free comparisons;
#: 0.3 ms faster than sorted inserts at T=4096 with about 11 candidates a token), beyond it (many
#: tied scores) by sorted inserts.
_RANKED_CANDIDATES_MAX = 32


@njit_inline
def _rank_candidates(cand_values, cand_ids, n_candidates, ranked_ids):
    """``ranked_ids[r]`` = the id of the candidate of rank ``r`` (descending value, ties to the
    earlier candidate); candidates come in increasing id, so ties go to the lower id.

    Candidates are never NaN (they passed a ``>=`` test), so ranks are a permutation of
    ``0..n_candidates-1`` and the first K equal what sorted inserts would keep.
    """
    for i in range(n_candidates):
        ranked_ids[_rank(cand_values, n_candidates, i)] = cand_ids[i]


@njit
def _select_row_nan_fallback(
    selection, top_k, n_groups, topk_groups, kept_groups, best_values, out_indices
):
    """Offer every kept expert to the sorted buffer, so that every slot of ``out_indices``
    holds a valid expert id even when NaN scores defeat the candidate bounds."""
    group_size = selection.shape[0] // n_groups
    filled = 0
    for j in range(topk_groups if n_groups > 1 else 1):
        g = kept_groups[j] if n_groups > 1 else 0
        for e in range(g * group_size, (g + 1) * group_size):
            filled = _insert_descending(selection[e], e, best_values, out_indices, filled, top_k)
