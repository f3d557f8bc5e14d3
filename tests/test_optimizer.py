"""Router optimizers: AdamW against its textbook twin, the schedule, the loss model in nats."""

from __future__ import annotations

import numpy as np
import pytest

from moesim import reference_learning as ref
from moesim import route
from moesim.kernels.optimizer import (
    AdamW,
    GradientDescent,
    learning_rate_at,
    make_optimizer,
    reference_adamw,
)
from moesim.kernels.rewards import REWARD_MODELS, CapacityNatsLoss
from moesim.kernels.routing import SCORE_CODES
from moesim.scenario import LearningConfig
from tests.test_learning import kernel_logit_gradient


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adamw_matches_the_textbook_loop(dtype):
    rng = np.random.default_rng(0)
    start = rng.normal(size=(6, 5))
    gradients = [rng.normal(size=(6, 5)) * 10.0 ** rng.integers(-6, 2) for _ in range(20)]
    rates = [learning_rate_at(s, 20, 1e-2, 5, "cosine", 0.1) for s in range(20)]
    parameters = start.astype(dtype)
    optimizer = AdamW((6, 5), beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)
    for gradient, rate in zip(gradients, rates, strict=True):
        optimizer.update(parameters, gradient, rate)
    expected = reference_adamw(start, gradients, rates, 0.9, 0.95, 1e-8, 0.1)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(parameters, expected, rtol=tolerance, atol=tolerance)


def test_adamw_first_step_moves_every_element_by_the_rate():
    # Bias-corrected first step: m_hat / sqrt(v_hat) = sign(g), whatever the gradient's scale.
    parameters = np.zeros((2, 3))
    AdamW((2, 3), weight_decay=0.0, eps=0.0).update(
        parameters, np.array([[1e-9, -5.0, 3.0], [-1e3, 2e-4, 1.0]]), 1e-3
    )
    np.testing.assert_allclose(parameters, -1e-3 * np.array([[1, -1, 1], [-1, 1, 1]]))


def test_gradient_descent_steps_against_the_gradient():
    parameters = np.ones((2, 2), dtype=np.float32)
    GradientDescent((2, 2)).update(parameters, np.full((2, 2), 2.0), 0.25)
    np.testing.assert_array_equal(parameters, 0.5)


def test_schedule_warmup_cosine_and_floor():
    rates = [learning_rate_at(s, 100, 1.0, 10, "cosine", 0.1) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[10] == pytest.approx(1.0) and rates[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))
    assert learning_rate_at(7, 100, 0.5, 0, "constant", 0.1) == 0.5


def test_make_optimizer_follows_the_config():
    assert isinstance(make_optimizer(LearningConfig(optimizer="sgd"), (2, 2)), GradientDescent)
    assert isinstance(make_optimizer(LearningConfig(), (2, 2)), AdamW)  # the calibrated default
    adamw = make_optimizer(LearningConfig(optimizer="adamw", adam_beta2=0.99), (2, 2))
    assert isinstance(adamw, AdamW) and adamw.beta2 == 0.99


def _capacity_case(seed, n_tokens=8, n_experts=6, dim=4, top_k=2):
    rng = np.random.default_rng(seed)
    model = CapacityNatsLoss(n_experts, dim, 50.0, 0.3, 0.7, rng)
    tokens = rng.normal(size=(n_tokens, dim)).astype(np.float32)
    for _ in range(3):
        indices = rng.integers(0, n_experts, size=(n_tokens, top_k))
        keep = np.ones((n_tokens, top_k), dtype=bool)
        model.observe(tokens, indices, keep, np.bincount(indices.ravel(), minlength=n_experts))
    logits = rng.normal(size=(n_tokens, n_experts))
    indices, _ = route(logits, top_k=top_k, score="sigmoid")
    keep = rng.uniform(size=indices.shape) > 0.2
    return model, tokens, logits, indices, keep


@pytest.mark.parametrize("score", ["sigmoid", "softmax", "softmax_after_topk"])
@pytest.mark.parametrize("normalize", [True, False])
def test_capacity_loss_gradient_matches_finite_differences(score, normalize):
    """The learner's gradient (kernel fed the model's rewards) is -d(mean loss)/dZ exactly."""
    model, tokens, logits, indices, keep = _capacity_case(3)
    scale = 2.5

    def mean_loss(z):
        return ref.capacity_token_losses(
            z,
            tokens,
            indices,
            keep,
            model.competence,
            model.knowledge,
            model.sensitivity,
            score,
            normalize,
            scale,
        ).mean()

    numeric = ref.numerical_gradient(mean_loss, logits)
    rewards = model.rewards(tokens, indices, keep) / scale
    ascent = kernel_logit_gradient(logits, indices, rewards, score, normalize, scale)
    np.testing.assert_allclose(-ascent, numeric, atol=1e-8)


def test_capacity_model_matches_its_twin():
    model, tokens, logits, indices, keep = _capacity_case(4)
    q = ref.capacity_match(tokens, model.competence, model.knowledge)
    expected = np.where(keep, np.take_along_axis(q, indices, axis=1), 0.0) * model.sensitivity
    np.testing.assert_allclose(model.rewards(tokens, indices, keep), expected, rtol=1e-12)
    np.testing.assert_allclose(model.best(tokens), model.sensitivity * q.max(axis=1), rtol=1e-12)
    weights = ref.gate_weights(logits, indices, "sigmoid", True, 2.5)
    np.testing.assert_allclose(
        model.token_losses(tokens, indices, weights, keep, 2.5),
        ref.capacity_token_losses(
            logits,
            tokens,
            indices,
            keep,
            model.competence,
            model.knowledge,
            model.sensitivity,
            "sigmoid",
            True,
            2.5,
        ),
        rtol=1e-12,
    )
    knowledge, processed = ref.capacity_observe(
        model.knowledge, model.processed, tokens, indices, keep, model.knowledge_ema
    )
    counts = np.bincount(indices[keep], minlength=model.knowledge.shape[0])
    model.observe(tokens, indices, keep, counts)
    np.testing.assert_allclose(model.knowledge, knowledge, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(model.processed, processed)


def test_finite_capacity_a_generalist_is_worse_at_each_domain():
    """An expert fed two orthogonal domains matches each about half as well as a specialist."""
    # competence_tokens tiny: both experts fully competent, only their knowledge differs.
    model = CapacityNatsLoss(2, 2, 1e-6, 1.0, 1.0, np.random.default_rng(0))
    domain_a = np.array([[1.0, 0.0]], dtype=np.float32)
    both = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    model.observe(domain_a, np.array([[0]]), np.ones((1, 1), bool), np.array([1, 0]))
    model.observe(both, np.array([[1], [1]]), np.ones((2, 1), bool), np.array([0, 2]))
    rewards = model.rewards(domain_a, np.array([[0, 1]]), np.ones((1, 2), bool))
    assert rewards[0, 1] == pytest.approx(rewards[0, 0] / 2)


def test_capacity_model_is_registered():
    assert REWARD_MODELS["capacity_nats"] is CapacityNatsLoss
    assert "sigmoid" in SCORE_CODES
