"""Router-learning gradients: NumPy twins against finite differences, kernel against twins."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim import reference_learning as ref
from moesim import route
from moesim._jit import n_chunks_for
from moesim.kernels.learning import (
    AUX_CODES,
    CompetenceAffinityReward,
    _aux_counts,
    _router_gradient,
    aux_coefficients,
)
from moesim.kernels.routing import SCORE_CODES

SCORES = ["sigmoid", "softmax", "softmax_after_topk"]


def _case(seed, n_tokens=8, n_experts=6, top_k=2):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_tokens, n_experts))
    indices, _ = route(logits, top_k=top_k, score="sigmoid")
    rewards = rng.uniform(0, 1, size=(n_tokens, top_k))
    return logits, indices, rewards


def kernel_logit_gradient(
    logits, indices, rewards, score, normalize, route_scale, *, aux=None, z_loss=0.0
):
    """dJ/dZ from the kernel: with identity tokens, dJ/dW = (dJ/dZ)^T."""
    n_tokens, n_experts = logits.shape
    tokens = np.eye(n_tokens)
    score_code = SCORE_CODES[score]
    aux_code = SCORE_CODES["sigmoid"] if score == "sigmoid" else SCORE_CODES["softmax"]
    coefficients = np.empty((0, n_experts)) if aux is None else aux
    chunks = np.zeros((n_chunks_for(n_tokens), n_experts, n_tokens))
    lse = np.zeros(n_chunks_for(n_tokens))
    _router_gradient(
        logits,
        tokens,
        indices,
        rewards,
        score_code,
        normalize,
        route_scale,
        aux_code,
        coefficients,
        4,
        z_loss,
        chunks,
        lse,
    )
    return chunks.sum(axis=0).T


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("normalize", [True, False])
def test_reward_gradient_matches_finite_differences(score, normalize):
    logits, indices, rewards = _case(1)

    def objective(z):
        return ref.reward_objective(z, indices, rewards, score, normalize, 2.5)

    numeric = ref.numerical_gradient(objective, logits)
    analytic = ref.reward_gradient(logits, indices, rewards, score, normalize, 2.5)
    np.testing.assert_allclose(analytic, numeric, atol=1e-8)


@pytest.mark.parametrize("score", ["sigmoid", "softmax"])
@pytest.mark.parametrize("kind", ["batch", "sequence"])
def test_aux_loss_gradient_matches_finite_differences(score, kind):
    logits, indices, rewards = _case(2)
    alpha, top_k, seq_len = 0.3, 2, 4
    fractions = ref.aux_fractions(logits, score, top_k, kind, seq_len)

    def objective(z):
        return ref.aux_loss(z, score, alpha, top_k, kind, seq_len, fractions)

    numeric = ref.numerical_gradient(objective, logits)
    counts = np.zeros((logits.shape[0] // seq_len, logits.shape[1]), dtype=np.int64)
    _aux_counts(logits, SCORE_CODES[score], top_k, seq_len, counts, np.zeros(counts.shape))
    coefficients, kernel_fractions = aux_coefficients(
        kind, alpha, top_k, counts, logits.shape[0], seq_len
    )
    np.testing.assert_allclose(kernel_fractions, fractions)
    zero_rewards = np.zeros_like(rewards)
    kernel = kernel_logit_gradient(
        logits, indices, zero_rewards, score, True, 1.0, aux=coefficients
    )
    # The kernel returns dJ/dZ with J = R - L_aux: the aux part enters with a minus sign.
    np.testing.assert_allclose(-kernel, numeric, atol=1e-8)


def test_global_aux_uses_window_counts():
    logits, _, _ = _case(3)
    counts = np.ones((2, logits.shape[1]), dtype=np.int64)
    window = np.arange(logits.shape[1], dtype=np.int64)
    coefficients, fractions = aux_coefficients(
        "global", 0.5, 2, counts, logits.shape[0], 4, window, 40
    )
    np.testing.assert_allclose(fractions[0], logits.shape[1] / (2 * 40) * window)
    np.testing.assert_allclose(coefficients, 0.5 * fractions / logits.shape[0])


def test_z_loss_gradient_matches_finite_differences():
    logits, indices, rewards = _case(4)
    numeric = ref.numerical_gradient(lambda z: ref.z_loss(z, 1e-2), logits)
    kernel = kernel_logit_gradient(
        logits, indices, np.zeros_like(rewards), "sigmoid", True, 1.0, z_loss=1e-2
    )
    np.testing.assert_allclose(-kernel, numeric, atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n_tokens=st.integers(1, 40),
    n_experts=st.integers(2, 12),
    score=st.sampled_from(SCORES),
    normalize=st.booleans(),
    route_scale=st.sampled_from([1.0, 2.5, 16.0]),
    data=st.data(),
)
def test_reward_gradient_kernel_matches_reference(
    seed, n_tokens, n_experts, score, normalize, route_scale, data
):
    top_k = data.draw(st.integers(1, n_experts))
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_tokens, n_experts)) * 2
    indices, _ = route(logits, top_k=top_k, score="sigmoid")
    rewards = rng.uniform(0, 1, size=(n_tokens, top_k))
    rewards[rng.uniform(size=rewards.shape) < 0.2] = 0.0  # dropped assignments earn nothing
    expected = ref.reward_gradient(logits, indices, rewards, score, normalize, route_scale)
    got = kernel_logit_gradient(logits, indices, rewards, score, normalize, route_scale)
    np.testing.assert_allclose(got, expected, atol=1e-12, rtol=1e-10)


def test_aux_counts_are_a_plain_top_k_ignoring_bias_and_groups():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(32, 16))
    for score in ("sigmoid", "softmax"):
        counts = np.zeros((4, 16), dtype=np.int64)
        sums = np.zeros((4, 16))
        _aux_counts(logits, SCORE_CODES[score], 3, 8, counts, sums)
        one_hot = ref.aux_top_k_counts(logits, score, 3)
        np.testing.assert_array_equal(counts, one_hot.reshape(4, 8, 16).sum(axis=1))
        np.testing.assert_allclose(
            sums, ref.aux_affinities(logits, score).reshape(4, 8, 16).sum(axis=1)
        )


def test_reward_model_competence_and_affinity():
    rng = np.random.default_rng(6)
    model = CompetenceAffinityReward(4, 3, competence_tokens=10.0, knowledge_ema=0.5, rng=rng)
    tokens = np.array([[1.0, 0, 0], [0, 1.0, 0]], dtype=np.float32)
    indices = np.array([[0, 1], [2, 3]])
    keep = np.array([[True, True], [True, False]])
    np.testing.assert_array_equal(model.rewards(tokens, indices, keep), 0.0)  # no competence
    model.observe(tokens, indices, keep, np.array([1, 1, 1, 0]))
    np.testing.assert_allclose(model.competence, 1 - np.exp(-np.array([1, 1, 1, 0]) / 10.0))
    rewards = model.rewards(tokens, indices, keep)
    assert rewards[1, 1] == 0.0  # dropped
    unit = tokens[0] / np.linalg.norm(tokens[0])
    expected = model.competence[0] * 0.5 * (1 + unit @ model.knowledge[0])
    assert rewards[0, 0] == pytest.approx(expected)
    # Knowledge moved towards the token it processed, and the idle expert's did not move.
    assert np.linalg.norm(model.knowledge, axis=1) == pytest.approx(np.ones(4))
    assert model.best(tokens).shape == (2,)
    assert (model.best(tokens) >= rewards.max(axis=1) - 1e-12).all()


def test_aux_codes_cover_the_schema_kinds():
    assert set(AUX_CODES) == {"none", "batch", "sequence", "global"}
