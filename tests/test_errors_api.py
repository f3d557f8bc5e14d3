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


def test_apply_capacity_rejects_unknown_policy():
    indices, weights = route(LOGITS, top_k=2)
    with pytest.raises(ValueError, match="policy"):
        apply_capacity(indices, weights, 12, 1.0, policy="random")


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
