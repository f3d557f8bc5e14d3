"""The multiplicative expert bias (Loss-Free Table 4): selection by ``S * b``, against the twin."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moesim import route, update_bias
from moesim.reference import route_reference

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    n_tokens=st.integers(1, 40),
    layout=st.sampled_from([(8, 1, 1), (12, 3, 2), (64, 8, 4), (7, 1, 1)]),
    score=st.sampled_from(["sigmoid", "softmax"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_multiplicative_selection_matches_the_twin(n_tokens, layout, score, seed):
    n_experts, n_groups, topk_groups = layout
    rng = np.random.default_rng(seed)
    top_k = int(rng.integers(1, topk_groups * (n_experts // n_groups) + 1))
    logits = rng.standard_normal((n_tokens, n_experts))  # float64: exact comparison
    bias = (1.0 + 0.3 * rng.standard_normal(n_experts)).astype(np.float32)
    options = dict(top_k=top_k, score=score, n_groups=n_groups, topk_groups=topk_groups)
    indices, weights = route(logits, bias, bias_mode="multiplicative", **options)
    ref_indices, ref_weights = route_reference(logits, bias, bias_mode="multiplicative", **options)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-12, atol=1e-12)


def test_a_factor_of_one_selects_as_no_bias_and_a_factor_moves_selection():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((64, 16)).astype(np.float32)
    plain, _ = route(logits, top_k=2)
    ones, _ = route(logits, np.ones(16, np.float32), top_k=2, bias_mode="multiplicative")
    np.testing.assert_array_equal(plain, ones)
    boosted = np.ones(16, np.float32)
    boosted[5] = 100.0
    chosen, _ = route(logits, boosted, top_k=2, bias_mode="multiplicative")
    assert (chosen[:, 0] == 5).all()


def test_multiplicative_needs_positive_scores_and_a_known_mode():
    logits = np.zeros((4, 8))
    with pytest.raises(ValueError, match="needs positive scores"):
        route(logits, np.ones(8), top_k=2, score="softmax_after_topk", bias_mode="multiplicative")
    with pytest.raises(ValueError, match="bias_mode"):
        route(logits, np.ones(8), top_k=2, bias_mode="multiply")


def test_same_update_rule_moves_a_multiplicative_bias_from_one():
    """The update rules are the additive ones (Loss-Free Table 4): b starts at 1."""
    counts = np.array([10, 0, 5, 5])
    out = update_bias(np.ones(4, np.float32), counts, 1e-2)
    np.testing.assert_allclose(out, [0.99, 1.01, 1.0, 1.0], rtol=1e-6)
