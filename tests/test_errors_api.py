"""Every bad argument raises ValueError with a message that names it; the public API exists."""

from fractions import Fraction

import numpy as np
import pytest

import moesim
from moesim import apply_capacity, load_stats, route, routing_step, update_bias
from moesim.kernels.checks import check_real

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
    # Real options must be real numbers: float() would take True as 1.0 and parse "2.5".
    ("route_scale bool", LOGITS, None, _with(route_scale=True), r"route_scale is True"),
    ("route_scale NumPy bool", LOGITS, None, _with(route_scale=np.True_), r"route_scale is"),
    ("route_scale string", LOGITS, None, _with(route_scale="2.5"), r"route_scale is '2\.5'"),
    ("route_scale bytes", LOGITS, None, _with(route_scale=b"2.5"), r"route_scale is b'2\.5'"),
    ("route_scale list", LOGITS, None, _with(route_scale=[2.5]), r"route_scale is \[2\.5\]"),
    ("route_scale None", LOGITS, None, _with(route_scale=None), r"route_scale is None"),
    ("route_scale complex", LOGITS, None, _with(route_scale=1 + 0j), r"route_scale is \(1\+0j\)"),
    ("route_scale zero", LOGITS, None, _with(route_scale=0), r"route_scale is 0;.*positive"),
    ("route_scale negative", LOGITS, None, _with(route_scale=-2.5), r"route_scale is -2\.5"),
    ("route_scale NaN", LOGITS, None, _with(route_scale=np.float64("nan")), r"route_scale is nan"),
    ("route_scale inf", LOGITS, None, _with(route_scale=float("inf")), r"route_scale is inf"),
    ("route_scale beyond float", LOGITS, None, _with(route_scale=10**400), r"route_scale is 10{5}"),
    # Choices are checked as strings first: ``in`` on a dict raises TypeError for a list.
    ("score list", LOGITS, None, _with(score=["sigmoid"]), r"score is \['sigmoid'\]"),
    ("score dict", LOGITS, None, _with(score={}), r"score is \{\}"),
    ("score None", LOGITS, None, _with(score=None), r"score is None"),
    # A finite float64 bias that float32 logits cannot hold would become inf when cast.
    (
        "bias overflowing float32 logits",
        LOGITS.astype(np.float32),
        np.where(np.arange(12) == 5, 1e39, 0.0),
        _with(),
        r"bias\[5\] is 1e\+39; it must fit in float32",
    ),
    (
        "bias overflowing float32 logits, negative",
        LOGITS.astype(np.float32),
        np.where(np.arange(12) == 0, -1e300, 0.0),
        _with(),
        r"bias\[0\] is -1e\+300; .*float32",
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


def test_bias_within_the_logits_dtype_accepted():
    """Only overflow is refused: 3e38 fits float32, and float64 logits hold a 1e39 bias."""
    big = np.where(np.arange(12) == 5, 3e38, 0.0)
    indices, _ = route(LOGITS.astype(np.float32), big, top_k=2)
    assert (indices[:, 0] == 5).all()
    indices, _ = route(LOGITS, np.where(np.arange(12) == 7, 1e39, 0.0), top_k=2)
    assert (indices[:, 0] == 7).all()


def test_numpy_and_integer_route_scale_accepted():
    expected = route(LOGITS, top_k=2, route_scale=2.0)
    for route_scale in (2, np.int64(2), np.float32(2.0), np.float64(2.0)):
        for got, want in zip(
            route(LOGITS, top_k=2, route_scale=route_scale), expected, strict=True
        ):
            np.testing.assert_array_equal(got, want)


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


CAPACITY_OPTION_ERRORS = [
    ("capacity_factor bool", dict(capacity_factor=True), r"capacity_factor is True"),
    ("capacity_factor NumPy bool", dict(capacity_factor=np.True_), r"capacity_factor is"),
    ("capacity_factor string", dict(capacity_factor="1.0"), r"capacity_factor is '1\.0'"),
    ("capacity_factor list", dict(capacity_factor=[1.0]), r"capacity_factor is \[1\.0\]"),
    ("capacity_factor zero", dict(capacity_factor=0.0), r"capacity_factor is 0\.0;.*positive"),
    ("capacity_factor negative", dict(capacity_factor=-1), r"capacity_factor is -1;"),
    ("capacity_factor NaN", dict(capacity_factor=float("nan")), r"capacity_factor is nan"),
    ("capacity_factor inf", dict(capacity_factor=np.inf), r"capacity_factor is inf"),
    ("capacity_factor beyond float", dict(capacity_factor=10**400), r"capacity_factor is 10{5}"),
    ("policy list", dict(policy=["probs"]), r"policy is \['probs'\]"),
    ("policy None", dict(policy=None), r"policy is None"),
]


@pytest.mark.parametrize(
    "options, match",
    [c[1:] for c in CAPACITY_OPTION_ERRORS],
    ids=[c[0] for c in CAPACITY_OPTION_ERRORS],
)
def test_apply_capacity_rejects_options(options, match):
    indices, weights = _assignments_with(0, [0, 1])
    kwargs = dict(capacity_factor=1.0, policy="probs")
    kwargs.update(options)
    with pytest.raises(ValueError, match=match):
        apply_capacity(indices, weights, 12, **kwargs)


@pytest.mark.parametrize(
    "options, match",
    [c[1:] for c in CAPACITY_OPTION_ERRORS],
    ids=[c[0] for c in CAPACITY_OPTION_ERRORS],
)
def test_routing_step_rejects_capacity_options(options, match):
    kwargs = dict(capacity_factor=1.0, capacity_policy="probs")
    kwargs.update({k.replace("policy", "capacity_policy"): v for k, v in options.items()})
    with pytest.raises(ValueError, match=match):
        routing_step(LOGITS, top_k=2, **kwargs)


def test_numpy_real_capacity_factor_accepted():
    """A NumPy float32 factor gives the capacity of its float64 value, in both entry points."""
    logits = np.random.default_rng(1).standard_normal((1000, 12))
    indices, weights = route(logits, top_k=2)
    factor = np.float32(1.1)  # 1.10000002384...: ceil(1000*2/12 * factor) is 184 either way
    keep = apply_capacity(indices, weights, 12, factor)
    np.testing.assert_array_equal(keep, apply_capacity(indices, weights, 12, float(factor)))
    np.testing.assert_array_equal(keep, routing_step(logits, top_k=2, capacity_factor=factor).keep)
    np.testing.assert_array_equal(
        apply_capacity(indices, weights, 12, np.int64(2)), apply_capacity(indices, weights, 12, 2.0)
    )


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


UPDATE_BIAS_OPTION_ERRORS = [
    ("rate bool", dict(rate=True), r"rate is True"),
    ("rate NumPy bool", dict(rate=np.False_), r"rate is"),
    ("rate string", dict(rate="0.1"), r"rate is '0\.1'"),
    ("rate bytes", dict(rate=b"0.1"), r"rate is b'0\.1'"),
    ("rate None", dict(rate=None), r"rate is None"),
    ("rate array", dict(rate=np.array([0.1])), r"rate is array"),
    ("rate beyond float", dict(rate=10**400), r"rate is 10{5}"),
    ("rule list", dict(rule=["sign"]), r"rule is \['sign'\]"),
    ("rule None", dict(rule=None), r"rule is None"),
    ("center int", dict(center=1), r"center is 1 of type int; it must be True or False"),
    ("center zero", dict(center=0), r"center is 0 "),
    ("center string", dict(center="false"), r"center is 'false'"),
    ("center None", dict(center=None), r"center is None"),
    ("center NumPy integer", dict(center=np.int64(1)), r"center is"),
    ("center list", dict(center=[True]), r"center is \[True\]"),
]


@pytest.mark.parametrize(
    "options, match",
    [c[1:] for c in UPDATE_BIAS_OPTION_ERRORS],
    ids=[c[0] for c in UPDATE_BIAS_OPTION_ERRORS],
)
def test_update_bias_rejects_options(options, match):
    kwargs = dict(rate=1e-3, rule="sign", center=False)
    kwargs.update(options)
    with pytest.raises(ValueError, match=match):
        update_bias(BIAS3, COUNTS3, **kwargs)


def test_update_bias_accepts_numpy_reals_and_bools():
    expected = update_bias(BIAS3, COUNTS3, 0.5, center=True)
    for rate in (np.float32(0.5), np.float64(0.5)):
        for center in (True, np.True_):
            np.testing.assert_array_equal(
                update_bias(BIAS3, COUNTS3, rate, center=center), expected
            )
    np.testing.assert_array_equal(
        update_bias(BIAS3, COUNTS3, np.int64(1)), update_bias(BIAS3, COUNTS3, 1.0)
    )
    np.testing.assert_array_equal(update_bias(BIAS3, COUNTS3, 0), BIAS3)


def test_update_bias_rejects_unknown_rule_and_shape():
    with pytest.raises(ValueError, match="rule"):
        update_bias(np.zeros(3, np.float32), np.array([1, 2, 3]), 1e-3, rule="adam")
    with pytest.raises(ValueError, match="counts|bias"):
        update_bias(np.zeros(3, np.float32), np.array([1, 2]), 1e-3)


def test_update_bias_rejects_float_counts():
    with pytest.raises(ValueError, match="counts"):
        update_bias(np.zeros(3, np.float32), np.array([1.0, 2.5, 3.0]), 1e-3)


STARVED_FRACTION_ERRORS = [
    ("bool", True, r"starved_fraction is True"),
    ("NumPy bool", np.True_, r"starved_fraction is"),
    ("string", "0.1", r"starved_fraction is '0\.1'"),
    ("None", None, r"starved_fraction is None"),
    ("list", [0.1], r"starved_fraction is \[0\.1\]"),
    ("negative", -0.1, r"starved_fraction is -0\.1; it must be a finite real number in \[0, 1\]"),
    ("above one", 1.5, r"starved_fraction is 1\.5; .*\[0, 1\]"),
    ("NaN", float("nan"), r"starved_fraction is nan"),
    ("inf", np.inf, r"starved_fraction is inf"),
]


@pytest.mark.parametrize(
    "starved_fraction, match",
    [c[1:] for c in STARVED_FRACTION_ERRORS],
    ids=[c[0] for c in STARVED_FRACTION_ERRORS],
)
@pytest.mark.parametrize("counts", [np.array([1, 2, 3]), np.array([[1, 2, 3], [0, 0, 0]])])
def test_load_stats_rejects_starved_fraction(counts, starved_fraction, match):
    with pytest.raises(ValueError, match=match):
        load_stats(counts, starved_fraction)


def test_load_stats_accepts_starved_fraction_bounds_and_numpy_reals():
    counts = np.array([0, 1, 5, 10])  # mean 4
    assert load_stats(counts, 0)["starved"] == 0
    assert load_stats(counts, 1)["starved"] == 2
    assert load_stats(counts, np.float32(0.5))["starved"] == 2
    assert load_stats(counts, np.float64(0.25))["starved"] == 1


def test_check_helpers_shared():
    """One implementation in moesim.kernels.checks; the old import path still works."""
    from moesim.kernels import balance, capacity, checks, metrics, routing

    assert routing.check_integer is checks.check_integer
    assert routing.check_finite is checks.check_finite
    for module in (routing, balance, capacity, metrics):
        assert module.check_real is checks.check_real


CHECK_REAL_ACCEPTS = [
    ("int", 3, {}, 3.0),
    ("NumPy int8", np.int8(-3), {}, -3.0),
    ("NumPy float32", np.float32(0.5), {}, 0.5),
    ("NumPy longdouble", np.longdouble(0.25), {}, 0.25),
    ("Fraction", Fraction(1, 4), {"positive": True}, 0.25),
    ("lower bound", 0, {"minimum": 0}, 0.0),
    ("upper bound", 1.0, {"minimum": 0, "maximum": 1}, 1.0),
]


@pytest.mark.parametrize(
    "value, bounds, expected",
    [c[1:] for c in CHECK_REAL_ACCEPTS],
    ids=[c[0] for c in CHECK_REAL_ACCEPTS],
)
def test_check_real_accepts(value, bounds, expected):
    got = check_real("x", value, **bounds)
    assert type(got) is float and got == expected


CHECK_REAL_REJECTS = [
    ("bool", True, {}, r"x is True of type bool; it must be a finite real number \(.*not bool"),
    ("NumPy bool", np.False_, {}, r"x is np\.False_ of type bool"),
    ("str", "1", {}, r"x is '1' of type str"),
    ("bytes", b"1", {}, r"x is b'1' of type bytes"),
    ("complex", 1j, {}, r"x is 1j of type complex"),
    ("0-d array", np.array(1.0), {}, r"x is array\(1\.\) of type ndarray"),
    ("NaN", float("nan"), {}, r"x is nan; it must be a finite real number$"),
    ("-inf", -np.inf, {}, r"x is -inf"),
    ("int beyond float", 10**400, {}, r"x is 10{10}"),
    ("not positive", 0.0, {"positive": True}, r"x is 0\.0; it must be a positive finite real"),
    ("below minimum", -1, {"minimum": 0}, r"x is -1; it must be a finite real number >= 0$"),
    ("above maximum", 2, {"maximum": 1}, r"x is 2; it must be a finite real number <= 1$"),
]


@pytest.mark.parametrize(
    "value, bounds, match",
    [c[1:] for c in CHECK_REAL_REJECTS],
    ids=[c[0] for c in CHECK_REAL_REJECTS],
)
def test_check_real_rejects(value, bounds, match):
    with pytest.raises(ValueError, match=match):
        check_real("x", value, **bounds)


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
