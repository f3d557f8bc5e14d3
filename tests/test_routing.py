"""route() against the NumPy reference, its invariants, and DeepSeek-V3 / Megatron conformance."""

import inspect

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moesim import route, routing_step
from moesim.kernels.numerics import NORMALIZE_EPS
from moesim.kernels.routing import ROUTER_OPTIONS, resolve_router_spec, router_logits
from moesim.kernels.selection import _RANKED_CANDIDATES_MAX
from moesim.reference import logits_reference, route_reference, selection_reference

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (E, G): E not a power of two in most, group sizes from 1 to 16.
LAYOUTS = [
    (8, 1),
    (12, 1),
    (7, 1),
    (6, 2),
    (12, 3),
    (20, 4),
    (30, 5),
    (10, 2),
    (64, 8),
    (9, 3),
    (6, 6),
]
SCORES = ["sigmoid", "softmax", "softmax_after_topk"]


@st.composite
def routing_cases(draw):
    n_experts, n_groups = draw(st.sampled_from(LAYOUTS))
    size = n_experts // n_groups
    topk_groups = draw(st.integers(1, n_groups))
    top_k = draw(st.integers(1, topk_groups * size))
    return {
        "n_tokens": draw(st.integers(1, 40)),
        "n_experts": n_experts,
        "n_groups": n_groups,
        "topk_groups": topk_groups,
        "top_k": top_k,
        "score": draw(st.sampled_from(SCORES)),
        "dtype": draw(st.sampled_from([np.float32, np.float64])),
        "with_bias": draw(st.booleans()),
        "group_score_topk": draw(st.one_of(st.none(), st.integers(1, size))),
        "normalize": draw(st.sampled_from([None, True, False])),
        "route_scale": draw(st.sampled_from([1.0, 2.5, 16.0])),
        "logit_scale": draw(st.sampled_from([0.1, 1.0, 4.0])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _make_inputs(case):
    rng = np.random.default_rng(case["seed"])
    shape = (case["n_tokens"], case["n_experts"])
    logits = (case["logit_scale"] * rng.standard_normal(shape)).astype(case["dtype"])
    bias = None
    if case["with_bias"]:
        bias = (0.1 * rng.standard_normal(case["n_experts"])).astype(np.float32)
    return logits, bias


def _kwargs(case):
    keys = ("top_k", "score", "n_groups", "topk_groups", "group_score_topk", "normalize")
    out = {k: case[k] for k in keys}
    out["route_scale"] = case["route_scale"]
    return out


def _decisive_rows(logits, bias, kwargs, margin):
    """Rows whose group choice and top-K order are decided by more than ``margin``.

    float32 scores may differ from the reference's by an ulp (exp implementations, summation
    order of group scores), which can flip near-ties; such rows are left out of exact checks.
    """
    _, selection, group_scores = selection_reference(
        logits,
        bias,
        score=kwargs["score"],
        n_groups=kwargs["n_groups"],
        topk_groups=kwargs["topk_groups"],
        group_score_topk=kwargs["group_score_topk"],
    )
    top_k = kwargs["top_k"]
    rows = []
    for t in range(logits.shape[0]):
        values = np.sort(selection[t].astype(np.float64))[::-1]
        values = values[np.isfinite(values)][: top_k + 1]
        scale = max(1.0, float(np.max(np.abs(values))))
        ok = bool(np.all(np.diff(values) < -margin * scale)) if values.size > 1 else True
        if group_scores is not None:
            g = np.sort(group_scores[t])[::-1][: kwargs["topk_groups"] + 1]
            gscale = max(1.0, float(np.max(np.abs(g))))
            ok = ok and bool(np.all(np.diff(g) < -margin * gscale))
        rows.append(ok)
    return np.array(rows, dtype=bool)


@SETTINGS
@given(case=routing_cases())
def test_route_matches_reference(case):
    logits, bias = _make_inputs(case)
    kwargs = _kwargs(case)
    indices, weights = route(logits, bias, **kwargs)
    ref_indices, ref_weights = route_reference(logits, bias, **kwargs)
    assert indices.dtype == np.int64
    assert weights.dtype == logits.dtype
    assert indices.shape == weights.shape == (case["n_tokens"], case["top_k"])
    if logits.dtype == np.float64:
        np.testing.assert_array_equal(indices, ref_indices)
        np.testing.assert_allclose(weights, ref_weights, rtol=1e-12, atol=1e-12)
    else:
        rows = _decisive_rows(logits, bias, kwargs, margin=1e-5)
        np.testing.assert_array_equal(indices[rows], ref_indices[rows])
        np.testing.assert_allclose(
            weights[rows], ref_weights[rows], rtol=2e-6, atol=1e-7 * case["route_scale"]
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "n_experts, n_groups, topk_groups, top_k",
    [
        (7, 1, 1, 1),  # E prime, K = 1
        (7, 1, 1, 7),  # K = E
        (12, 3, 2, 1),  # groups, K = 1
        (12, 3, 2, 8),  # K = topk_groups * E / G: every expert of the kept groups
        (30, 5, 3, 18),  # same edge case, E not a power of two
        (64, 8, 8, 8),  # every group kept
    ],
)
@pytest.mark.parametrize("score", SCORES)
def test_route_edge_shapes(dtype, n_experts, n_groups, topk_groups, top_k, score):
    rng = np.random.default_rng(n_experts * 100 + top_k)
    logits = rng.standard_normal((50, n_experts)).astype(dtype)
    bias = (0.05 * rng.standard_normal(n_experts)).astype(np.float32)
    kwargs = dict(top_k=top_k, score=score, n_groups=n_groups, topk_groups=topk_groups)
    for b in (None, bias):
        indices, weights = route(logits, b, **kwargs)
        ref_indices, ref_weights = route_reference(logits, b, **kwargs)
        rows = _decisive_rows(logits, b, {**kwargs, "group_score_topk": None}, margin=1e-5)
        if dtype == np.float64:
            rows[:] = True
        np.testing.assert_array_equal(indices[rows], ref_indices[rows])
        np.testing.assert_allclose(weights[rows], ref_weights[rows], rtol=2e-6, atol=1e-7)
        if top_k == topk_groups * n_experts // n_groups:
            # The kept groups are taken whole.
            groups = indices // (n_experts // n_groups)
            for row in groups:
                assert len(np.unique(row)) == topk_groups


@settings(max_examples=40, deadline=None)
@given(
    layout=st.sampled_from([(8, 1), (12, 3), (20, 4), (9, 3), (16, 8)]),
    dtype=st.sampled_from([np.float32, np.float64]),
    score=st.sampled_from(SCORES),
    values=st.integers(1, 4),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_exact_ties_go_to_lower_index(layout, dtype, score, values, with_bias, seed, data):
    """Integer logits and biases from a few values: ties everywhere, the lower index wins."""
    n_experts, n_groups = layout
    size = n_experts // n_groups
    topk_groups = data.draw(st.integers(1, n_groups))
    top_k = data.draw(st.integers(1, topk_groups * size))
    # Group sums of two or more values may round differently in float32 (spec leaves the
    # accumulation dtype open), so float32 keeps group scores to a single value.
    group_score_topk = 1 if dtype == np.float32 else data.draw(st.sampled_from([None, 1, 2]))
    rng = np.random.default_rng(seed)
    logits = rng.integers(-values, values + 1, size=(30, n_experts)).astype(dtype)
    bias = None
    if with_bias:
        bias = (rng.integers(-2, 3, size=n_experts) / 4).astype(np.float32)
    kwargs = dict(
        top_k=top_k,
        score=score,
        n_groups=n_groups,
        topk_groups=topk_groups,
        group_score_topk=group_score_topk,
    )
    indices, weights = route(logits, bias, **kwargs)
    ref_indices, ref_weights = route_reference(logits, bias, **kwargs)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_allclose(weights, ref_weights, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "n_experts, n_groups, topk_groups, top_k",
    [
        (64, 1, 1, 8),  # no groups: bound from block maxima
        (256, 8, 4, 8),  # DeepSeek-V3: bound from the best two of each kept group
        (64, 8, 2, 8),  # 2 * kept groups < K: bound from block maxima of the kept experts
        (12, 12, 6, 4),  # groups of one expert, kept groups >= K: bound from group maxima
        (12, 12, 3, 3),  # groups of one expert, kept groups = K
        (20, 10, 2, 4),  # groups of two, K = every kept expert
    ],
)
@pytest.mark.parametrize("values", [2, 1000])
def test_candidate_bounds_keep_exact_top_k(dtype, n_experts, n_groups, topk_groups, top_k, values):
    """The kernel filters candidates by a lower bound of the K-th best score before its sorted
    insert; every way of computing that bound must give the reference's experts exactly, with
    ties everywhere (few distinct values) and without (many)."""
    rng = np.random.default_rng(n_experts + 7 * top_k + values)
    logits = rng.integers(-values, values + 1, size=(400, n_experts)).astype(dtype) / values
    bias = (rng.integers(-2, 3, size=n_experts) / 8).astype(np.float32)
    kwargs = dict(top_k=top_k, score="softmax_after_topk", n_groups=n_groups)
    kwargs.update(topk_groups=topk_groups, group_score_topk=1)
    for b in (None, bias):
        indices, _ = route(logits, b, **kwargs)
        ref_indices, _ = route_reference(logits, b, **kwargs)
        np.testing.assert_array_equal(indices, ref_indices)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_candidates_ranked_or_inserted_alike(dtype):
    """Up to ``_RANKED_CANDIDATES_MAX`` candidates are ranked by counting, more go through
    sorted inserts: rows whose best score is shared by 1 to E experts put the number of
    candidates on both sides of that limit, and must give the reference's experts."""
    rng = np.random.default_rng(5)
    n_experts = 64
    assert 8 < _RANKED_CANDIDATES_MAX < n_experts
    logits = np.empty((n_experts, n_experts), dtype=dtype)
    for n_best in range(1, n_experts + 1):
        row = rng.permutation(n_experts) / n_experts  # distinct values below the best
        row[rng.choice(n_experts, n_best, replace=False)] = 1.0
        logits[n_best - 1] = row
    for groups in ({}, {"n_groups": 8, "topk_groups": 4, "group_score_topk": 1}):
        kwargs = {"top_k": 8, "score": "softmax_after_topk", **groups}
        indices, _ = route(logits, **kwargs)
        ref_indices, _ = route_reference(logits, **kwargs)
        np.testing.assert_array_equal(indices, ref_indices)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_equal_logits_pick_first_experts(dtype):
    logits = np.zeros((5, 12), dtype=dtype)
    indices, weights = route(logits, top_k=4)
    np.testing.assert_array_equal(indices, np.tile(np.arange(4), (5, 1)))
    np.testing.assert_allclose(weights, 0.25, rtol=1e-6)
    # With groups: group 0 and 1 (the lower ones) are kept on ties.
    indices, _ = route(logits, top_k=5, n_groups=4, topk_groups=2)
    np.testing.assert_array_equal(indices, np.tile(np.arange(5), (5, 1)))
    # Repeated maximal values at scattered positions.
    logits = np.zeros((1, 12), dtype=dtype)
    logits[0, [9, 3, 6]] = 2.0
    indices, _ = route(logits, top_k=4)
    np.testing.assert_array_equal(indices[0], [3, 6, 9, 0])


# --- properties -----------------------------------------------------------------------------


@SETTINGS
@given(case=routing_cases())
def test_distinct_experts_inside_kept_groups(case):
    logits, bias = _make_inputs(case)
    indices, weights = route(logits, bias, **_kwargs(case))
    size = case["n_experts"] // case["n_groups"]
    assert np.all((indices >= 0) & (indices < case["n_experts"]))
    assert np.all(np.isfinite(weights))
    for row in indices:
        assert len(np.unique(row)) == case["top_k"]
        assert len(np.unique(row // size)) <= case["topk_groups"]


@SETTINGS
@given(case=routing_cases())
def test_normalized_weights_sum_to_route_scale(case):
    case = {**case, "normalize": True}
    logits, bias = _make_inputs(case)
    _, weights = route(logits, bias, **_kwargs(case))
    rtol = 1e-5 if logits.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(
        weights.astype(np.float64).sum(axis=1), case["route_scale"], rtol=rtol
    )
    assert np.all(weights >= 0)


def _unbiased_scores(logits, score):
    """Scores S[T, E] read back through route() itself: K = E, no groups, no normalization."""
    n_tokens, n_experts = logits.shape
    indices, weights = route(logits, top_k=n_experts, score=score, normalize=False)
    scores = np.empty_like(weights)
    np.put_along_axis(scores, indices, weights, axis=1)
    return scores


@SETTINGS
@given(case=routing_cases())
def test_bias_never_changes_weights(case):
    case = {**case, "with_bias": True}
    if case["score"] == "softmax_after_topk":
        case["score"] = "sigmoid"
    logits, bias = _make_inputs(case)
    bias = bias * 20  # large enough to change the selection often
    kwargs = _kwargs(case)
    indices, weights = route(logits, bias, **kwargs)
    scores = _unbiased_scores(logits, case["score"])
    expected = np.take_along_axis(scores, indices, axis=1).astype(np.float64)
    normalize = case["normalize"]
    if normalize is None:
        normalize = case["score"] == "sigmoid"
    if normalize:
        expected = expected / (expected.sum(axis=1, keepdims=True) + NORMALIZE_EPS)
    expected = expected * case["route_scale"]
    rtol = 2e-6 if logits.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(weights, expected, rtol=rtol, atol=rtol * case["route_scale"])


@SETTINGS
@given(case=routing_cases(), shift_sign=st.sampled_from([1.0, -1.0]))
def test_constant_bias_shift_keeps_selection_exact(case, shift_sign):
    """Dyadic logits and biases make every addition exact: adding 0.25 to all biases changes
    nothing at all (ties included) with selection on the logits themselves."""
    case = {**case, "score": "softmax_after_topk"}
    rng = np.random.default_rng(case["seed"])
    shape = (case["n_tokens"], case["n_experts"])
    logits = (rng.integers(-16, 17, size=shape) / 8).astype(case["dtype"])
    bias = (rng.integers(-8, 9, size=case["n_experts"]) / 64).astype(np.float32)
    kwargs = _kwargs(case)
    indices, weights = route(logits, bias, **kwargs)
    shifted = (bias + np.float32(shift_sign * 0.25)).astype(np.float32)
    indices2, weights2 = route(logits, shifted, **kwargs)
    np.testing.assert_array_equal(indices, indices2)
    np.testing.assert_array_equal(weights, weights2)


@settings(max_examples=30, deadline=None)
@given(case=routing_cases())
def test_constant_bias_shift_sigmoid_float64(case):
    """With sigmoid scores the sums round, so only rows decided by a clear margin are compared."""
    case = {**case, "score": "sigmoid", "dtype": np.float64, "with_bias": True}
    logits, bias = _make_inputs(case)
    kwargs = _kwargs(case)
    indices, weights = route(logits, bias, **kwargs)
    shifted = bias + np.float32(0.25)
    indices2, weights2 = route(logits, shifted, **kwargs)
    rows = _decisive_rows(logits, bias, kwargs, margin=1e-9)
    np.testing.assert_array_equal(indices[rows], indices2[rows])
    np.testing.assert_allclose(weights[rows], weights2[rows], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("score", ["sigmoid", "softmax"])
def test_negative_bias_with_groups_never_picks_masked_experts(dtype, score):
    """Every biased score is negative: masking with 0 instead of -inf would let masked win."""
    rng = np.random.default_rng(7)
    n_experts, n_groups, topk_groups, top_k = 32, 8, 2, 8
    size = n_experts // n_groups
    logits = rng.standard_normal((200, n_experts)).astype(dtype)
    bias = (-5.0 + rng.uniform(-1, 1, n_experts)).astype(np.float32)
    indices, weights = route(
        logits, bias, top_k=top_k, score=score, n_groups=n_groups, topk_groups=topk_groups
    )
    for row in indices:
        assert len(np.unique(row // size)) == topk_groups  # K = the whole of the kept groups
    ref_indices, ref_weights = route_reference(
        logits, bias, top_k=top_k, score=score, n_groups=n_groups, topk_groups=topk_groups
    )
    np.testing.assert_array_equal(np.sort(indices, axis=1), np.sort(ref_indices, axis=1))
    # Fewer than the whole group: the kept groups still hold all choices.
    indices, _ = route(logits, bias, top_k=3, score=score, n_groups=n_groups, topk_groups=2)
    for row in indices:
        assert len(np.unique(row // size)) <= 2


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_tokens=st.integers(1, 600),
    dim=st.integers(1, 40),
    n_experts=st.integers(1, 140),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_router_logits_match_reference_bit_for_bit(n_tokens, dim, n_experts, dtype, seed):
    """Token blocks, chunk tails, full and partial expert tiles (64 float32 or 32 float64
    experts) and odd sizes all sum in the reference's order."""
    rng = np.random.default_rng(seed)
    tokens = rng.standard_normal((n_tokens, dim)).astype(dtype)
    centroids = rng.standard_normal((n_experts, dim)).astype(np.float32)
    logits = router_logits(tokens, centroids)
    assert logits.dtype == dtype and logits.shape == (n_tokens, n_experts)
    np.testing.assert_array_equal(logits, logits_reference(tokens, centroids))
    # Fortran-order tokens (a deeper layer's inputs) are read in place, to the same bits.
    np.testing.assert_array_equal(router_logits(np.asfortranarray(tokens), centroids), logits)
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(logits, tokens @ centroids.T.astype(dtype), atol=tolerance * dim)


def _keyword_defaults(function, leave_out=()):
    """``{name: default}`` of a function's keyword-only parameters (``empty`` when required)."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in leave_out
    }


def test_router_options_have_one_list_and_one_set_of_defaults():
    """resolve_router_spec declares the options; route's documented signature and the twin's
    spell them out and must agree with it, name for name and default for default."""
    declared = _keyword_defaults(resolve_router_spec, leave_out=("has_bias",))
    assert tuple(declared) == ROUTER_OPTIONS
    assert _keyword_defaults(route) == declared
    assert _keyword_defaults(route_reference) == declared
    # routing_step forwards them: only its capacity options are its own.
    assert set(_keyword_defaults(routing_step)) == {"capacity_factor", "capacity_policy"}


def test_an_unknown_routing_option_is_named_with_the_closest_one():
    logits = np.zeros((4, 8))
    with pytest.raises(TypeError, match=r"'topk' is not a routing option; did you mean 'top_k'"):
        routing_step(logits, top_k=2, topk=2)
    with pytest.raises(TypeError, match=r"'zzz' is not a routing option; the options are top_k"):
        routing_step(logits, top_k=2, zzz=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_router_logits_small_cases_bit_for_bit(dtype):
    """Blocks of 4 tokens, a block's tail, a second chunk (256 tokens a chunk), and a full
    expert tile with a partial one (70 experts), small enough to run unjitted too
    (tests/test_unjitted.py)."""
    rng = np.random.default_rng(11)
    for n_tokens, n_experts in ((1, 5), (3, 5), (4, 5), (9, 70), (261, 5)):
        centroids = rng.standard_normal((n_experts, 3)).astype(np.float32)
        tokens = rng.standard_normal((n_tokens, 3)).astype(dtype)
        np.testing.assert_array_equal(
            router_logits(tokens, centroids), logits_reference(tokens, centroids), strict=True
        )


def test_float32_scores_agree_with_a_float32_twin_of_deepseek_v3s_router():
    """moesim.route on float32 logits computes its sigmoid scores in float32 (token stream
    version 2); the expert sets are those of a NumPy float32 twin of the PyTorch router (make
    bench checks 1k-16k tokens against >= 99.99%)."""
    from moesim.bench.routing import float32_twin_agreement

    assert float32_twin_agreement(1024) >= 0.9999
