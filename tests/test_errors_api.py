"""Every bad argument raises ValueError with a message that names it; the public API exists."""

import numpy as np
import pytest

import moesim
from moesim import apply_capacity, load_stats, route, routing_step, update_bias

LOGITS = np.random.default_rng(0).standard_normal((4, 12))


def _with(**changes):
    kwargs = dict(top_k=2, score="sigmoid", n_groups=1, topk_groups=1)
    kwargs.update(changes)
    return kwargs


def _nan_logits():
    bad = LOGITS.copy()
    bad[1, 3] = np.nan
    return bad


def _inf_logits():
    bad = LOGITS.copy()
    bad[2, 0] = -np.inf
    return bad


ROUTE_ERRORS = [
    ("top_k too large", LOGITS, None, _with(top_k=13), r"top_k"),
    ("top_k zero", LOGITS, None, _with(top_k=0), r"top_k"),
    ("top_k negative", LOGITS, None, _with(top_k=-1), r"top_k"),
    ("groups not dividing E", LOGITS, None, _with(n_groups=5), r"n_groups"),
    (
        "too few experts in kept groups",
        LOGITS,
        None,
        _with(n_groups=4, top_k=4),
        r"top_k|topk_groups",
    ),
    ("topk_groups > n_groups", LOGITS, None, _with(n_groups=3, topk_groups=4), r"topk_groups"),
    ("topk_groups zero", LOGITS, None, _with(n_groups=3, topk_groups=0, top_k=1), r"topk_groups"),
    ("NaN logits", _nan_logits(), None, _with(), r"logits"),
    ("inf logits", _inf_logits(), None, _with(), r"logits"),
    ("1-D logits", LOGITS[0], None, _with(), r"logits"),
    ("3-D logits", LOGITS[None], None, _with(), r"logits"),
    ("integer logits", LOGITS.astype(np.int64), None, _with(), r"logits"),
    ("float16 logits", LOGITS.astype(np.float16), None, _with(), r"logits"),
    ("bias wrong length", LOGITS, np.zeros(11), _with(), r"bias"),
    ("bias 2-D", LOGITS, np.zeros((1, 12)), _with(), r"bias"),
    ("unknown score", LOGITS, None, _with(score="relu"), r"score"),
    (
        "group_score_topk > E/G",
        LOGITS,
        None,
        _with(n_groups=3, topk_groups=2, group_score_topk=5),
        r"group_score_topk",
    ),
    ("NaN bias", LOGITS, np.where(np.arange(12) == 3, np.nan, 0.0), _with(), r"bias\[3\]"),
    # Integer options must be integers: int() would truncate 2.7 to 2 and take True as 1.
    ("top_k float", LOGITS, None, _with(top_k=2.7), r"top_k is 2\.7"),
    ("top_k integral float", LOGITS, None, _with(top_k=2.0), r"top_k is 2\.0"),
    ("top_k bool", LOGITS, None, _with(top_k=True), r"top_k is True"),
    ("top_k string", LOGITS, None, _with(top_k="2"), r"top_k is '2'"),
    ("n_groups float", LOGITS, None, _with(n_groups=3.0), r"n_groups is 3\.0"),
    ("n_groups bool", LOGITS, None, _with(n_groups=True), r"n_groups is True"),
    (
        "topk_groups float",
        LOGITS,
        None,
        _with(n_groups=3, topk_groups=2.5),
        r"topk_groups is 2\.5",
    ),
    ("topk_groups bool", LOGITS, None, _with(topk_groups=True), r"topk_groups is True"),
    (
        "group_score_topk float",
        LOGITS,
        None,
        _with(n_groups=3, topk_groups=2, group_score_topk=1.5),
        r"group_score_topk is 1\.5",
    ),
    (
        "group_score_topk bool",
        LOGITS,
        None,
        _with(n_groups=3, topk_groups=2, group_score_topk=True),
        r"group_score_topk is True",
    ),
    ("normalize int", LOGITS, None, _with(normalize=1), r"normalize is 1"),
    ("normalize string", LOGITS, None, _with(normalize="false"), r"normalize is 'false'"),
]


@pytest.mark.parametrize(
    "logits, bias, kwargs, match", [c[1:] for c in ROUTE_ERRORS], ids=[c[0] for c in ROUTE_ERRORS]
)
def test_route_rejects(logits, bias, kwargs, match):
    with pytest.raises(ValueError, match=match):
        route(logits, bias, **kwargs)


@pytest.mark.parametrize(
    "logits, bias, kwargs, match", [c[1:] for c in ROUTE_ERRORS], ids=[c[0] for c in ROUTE_ERRORS]
)
def test_routing_step_rejects(logits, bias, kwargs, match):
    with pytest.raises(ValueError, match=match):
        full = dict(group_score_topk=None, normalize=None, route_scale=1.0)
        full.update(kwargs)
        routing_step(logits, bias, **full)


def test_valid_edge_arguments_accepted():
    route(LOGITS, top_k=12)
    route(LOGITS, top_k=8, n_groups=3, topk_groups=2)  # K = topk_groups * E / G
    route(LOGITS, np.zeros(12, np.float32), top_k=1, n_groups=3, topk_groups=3, group_score_topk=4)
    route(LOGITS.astype(np.float32), top_k=1, score="softmax_after_topk")


def test_numpy_integer_and_bool_options_accepted():
    kwargs = dict(top_k=4, n_groups=3, topk_groups=2, group_score_topk=2, normalize=True)
    numpy_kwargs = dict(
        top_k=np.int64(4),
        n_groups=np.int32(3),
        topk_groups=np.uint8(2),
        group_score_topk=np.int16(2),
        normalize=np.bool_(True),
    )
    for got, expected in zip(route(LOGITS, **numpy_kwargs), route(LOGITS, **kwargs), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_apply_capacity_rejects_unknown_policy():
    indices, weights = route(LOGITS, top_k=2)
    with pytest.raises(ValueError, match="policy"):
        apply_capacity(indices, weights, 12, 1.0, policy="random")


def _assignments_with(row, experts, weights=(0.5, 0.5)):
    """Valid routing of 4 tokens to 2 of 12 experts, with ``row`` replaced."""
    indices = np.arange(8, dtype=np.int64).reshape(4, 2)
    weights_out = np.full(indices.shape, 0.25)
    indices[row], weights_out[row] = experts, weights
    return indices, weights_out


CAPACITY_ERRORS = [
    ("NaN weight", _assignments_with(2, [0, 1], (0.5, np.nan)), 12, r"weights\[2, 1\] is nan"),
    ("inf weight", _assignments_with(1, [0, 1], (np.inf, 0.5)), 12, r"weights\[1, 0\] is inf"),
    ("expert too large", _assignments_with(3, [0, 12]), 12, r"indices\[3\].*n_experts=12"),
    ("negative expert", _assignments_with(1, [-1, 4]), 12, r"indices\[1\].*\[0, n_experts"),
    ("repeated expert", _assignments_with(2, [5, 5]), 12, r"indices\[2\] is \[5, 5\].*distinct"),
    ("n_experts float", _assignments_with(0, [0, 1]), 12.0, r"n_experts is 12\.0"),
    ("n_experts truncating float", _assignments_with(0, [0, 1]), 12.9, r"n_experts is 12\.9"),
    ("n_experts bool", _assignments_with(0, [0, 1]), True, r"n_experts is True"),
    ("n_experts zero", _assignments_with(0, [0, 1]), 0, r"n_experts is 0"),
]


@pytest.mark.parametrize(
    "assignments, n_experts, match",
    [c[1:] for c in CAPACITY_ERRORS],
    ids=[c[0] for c in CAPACITY_ERRORS],
)
@pytest.mark.parametrize("policy", ["probs", "position"])
def test_apply_capacity_rejects(assignments, n_experts, match, policy):
    indices, weights = assignments
    with pytest.raises(ValueError, match=match):
        apply_capacity(indices, weights, n_experts, 1.0, policy)


def test_apply_capacity_rejects_boolean_weights():
    indices, _ = _assignments_with(0, [0, 1])
    with pytest.raises(ValueError, match="weights has dtype bool"):
        apply_capacity(indices, np.ones(indices.shape, dtype=bool), 12, 1.0)


def test_apply_capacity_accepts_numpy_integer_n_experts():
    indices, weights = _assignments_with(0, [0, 1])
    keep = apply_capacity(indices, weights, np.int32(12), 1.0)
    np.testing.assert_array_equal(keep, apply_capacity(indices, weights, 12, 1.0))


BIAS3 = np.zeros(3, np.float32)
COUNTS3 = np.array([1, 2, 3])

UPDATE_BIAS_ERRORS = [
    ("NaN bias", np.array([0.0, np.nan, 0.0]), COUNTS3, 1e-3, r"bias\[1\] is nan"),
    ("inf bias", np.array([np.inf, 0.0, 0.0], np.float32), COUNTS3, 1e-3, r"bias\[0\] is inf"),
    ("-inf bias", np.array([0.0, 0.0, -np.inf]), COUNTS3, 1e-3, r"bias\[2\] is -inf"),
    ("bias overflowing float32", np.array([0.0, 1e39, 0.0]), COUNTS3, 1e-3, r"bias\[1\].*float32"),
    ("integer bias", np.zeros(3, np.int64), COUNTS3, 1e-3, r"bias has dtype int64"),
    ("2-D bias", np.zeros((1, 3), np.float32), COUNTS3, 1e-3, r"bias"),
    ("NaN rate", BIAS3, COUNTS3, float("nan"), r"rate is nan"),
    ("inf rate", BIAS3, COUNTS3, float("inf"), r"rate is inf"),
    ("negative rate", BIAS3, COUNTS3, -1e-3, r"rate is -0\.001"),
    ("negative counts", BIAS3, np.array([1, -2, 3]), 1e-3, r"counts\[1\] is -2"),
    ("float counts", BIAS3, np.array([1.0, 2.0, 3.0]), 1e-3, r"counts has dtype float64"),
    ("boolean counts", BIAS3, np.array([True, False, True]), 1e-3, r"counts has dtype bool"),
    ("counts too short", BIAS3, np.array([1, 2]), 1e-3, r"counts has shape \(2,\)"),
    ("2-D counts", BIAS3, np.array([[1, 2, 3]]), 1e-3, r"counts has shape \(1, 3\)"),
]


@pytest.mark.parametrize(
    "bias, counts, rate, match",
    [c[1:] for c in UPDATE_BIAS_ERRORS],
    ids=[c[0] for c in UPDATE_BIAS_ERRORS],
)
def test_update_bias_rejects(bias, counts, rate, match):
    with pytest.raises(ValueError, match=match):
        update_bias(bias, counts, rate)


def test_update_bias_rejects_unknown_rule_and_shape():
    with pytest.raises(ValueError, match="rule"):
        update_bias(np.zeros(3, np.float32), np.array([1, 2, 3]), 1e-3, rule="adam")
    with pytest.raises(ValueError, match="counts|bias"):
        update_bias(np.zeros(3, np.float32), np.array([1, 2]), 1e-3)


def test_update_bias_rejects_float_counts():
    with pytest.raises(ValueError, match="counts"):
        update_bias(np.zeros(3, np.float32), np.array([1.0, 2.5, 3.0]), 1e-3)


def test_public_names():
    for name in (
        "route",
        "apply_capacity",
        "expert_capacity",
        "update_bias",
        "load_stats",
        "routing_step",
        "RoutingStep",
    ):
        assert hasattr(moesim, name), name
    assert moesim.RoutingStep._fields == ("indices", "weights", "keep", "demand", "kept")
    assert isinstance(load_stats(np.array([1, 2, 3])), dict)
