"""Router-learning gradients: NumPy twins against finite differences, kernel against twins."""

from __future__ import annotations

import typing

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim import reference_learning as ref
from moesim import route
from moesim._jit import n_chunks_for
from moesim.errors import ScenarioError
from moesim.kernels.learning import (
    AUX_CODES,
    _aux_counts,
    _router_gradient,
    aux_coefficients,
    combined_aux_coefficients,
)
from moesim.kernels.rewards import REWARD_MODELS, CompetenceAffinityReward
from moesim.kernels.routing import SCORE_CODES
from moesim.scenario import AuxConfig, LearningConfig, MetricsConfig, load_scenario

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


#: Window of a global aux loss before this step: 3 earlier steps of 8 tokens, top-2 of 6.
EARLIER_COUNTS = np.array([9, 1, 4, 2, 0, 32], dtype=np.int64)
EARLIER_TOKENS = 24


def kernel_aux_coefficients(logits, score, terms, top_k=2, seq_len=4):
    """The engine's path: plain top-K counts, then the summed coefficient rows of ``terms``."""
    counts = np.zeros((logits.shape[0] // seq_len, logits.shape[1]), dtype=np.int64)
    _aux_counts(logits, SCORE_CODES[score], top_k, seq_len, counts, np.zeros(counts.shape))
    window = EARLIER_COUNTS + counts.sum(axis=0)
    return combined_aux_coefficients(
        terms, top_k, counts, logits.shape[0], seq_len, window, EARLIER_TOKENS + logits.shape[0]
    )


def reference_fractions(logits, score, kind, top_k=2, seq_len=4):
    return ref.aux_fractions(logits, score, top_k, kind, seq_len, EARLIER_COUNTS, EARLIER_TOKENS)


@pytest.mark.parametrize("score", ["sigmoid", "softmax"])
@pytest.mark.parametrize("kind", ["batch", "sequence", "global"])
def test_aux_loss_gradient_matches_finite_differences(score, kind):
    logits, indices, rewards = _case(2)
    alpha, top_k, seq_len = 0.3, 2, 4
    fractions = reference_fractions(logits, score, kind)

    def objective(z):
        return ref.aux_loss(z, score, alpha, top_k, kind, seq_len, fractions)

    numeric = ref.numerical_gradient(objective, logits)
    expected = ref.aux_gradient(logits, score, alpha, kind, seq_len, fractions)
    np.testing.assert_allclose(expected, numeric, atol=1e-8)

    coefficients, kernel_fractions = kernel_aux_coefficients(logits, score, [(kind, alpha)])
    np.testing.assert_allclose(kernel_fractions[0], fractions)
    zero_rewards = np.zeros_like(rewards)
    kernel = kernel_logit_gradient(
        logits, indices, zero_rewards, score, True, 1.0, aux=coefficients
    )
    # The kernel returns dJ/dZ with J = R - L_aux: the aux part enters with a minus sign.
    np.testing.assert_allclose(-kernel, expected, atol=1e-12)


def test_global_aux_uses_window_counts():
    logits, _, _ = _case(3)
    counts = np.ones((2, logits.shape[1]), dtype=np.int64)
    window = np.arange(logits.shape[1], dtype=np.int64)
    coefficients, fractions = aux_coefficients(
        "global", 0.5, 2, counts, logits.shape[0], 4, window, 40
    )
    np.testing.assert_allclose(fractions[0], logits.shape[1] / (2 * 40) * window)
    np.testing.assert_allclose(coefficients, 0.5 * fractions / logits.shape[0])


def test_one_aux_kind_keeps_its_own_coefficients():
    logits, _, _ = _case(3)
    counts = np.zeros((2, logits.shape[1]), dtype=np.int64)
    _aux_counts(logits, SCORE_CODES["sigmoid"], 2, 4, counts, np.zeros(counts.shape))
    for kind in ("batch", "sequence"):
        single, single_fractions = aux_coefficients(kind, 0.3, 2, counts, 8, 4)
        combined, fractions = combined_aux_coefficients([(kind, 0.3)], 2, counts, 8, 4)
        assert combined.tobytes() == single.tobytes()  # the one-kind form is bit-identical
        np.testing.assert_array_equal(fractions[0], single_fractions)


def test_z_loss_gradient_matches_finite_differences():
    logits, indices, rewards = _case(4)
    numeric = ref.numerical_gradient(lambda z: ref.z_loss(z, 1e-2), logits)
    expected = ref.z_loss_gradient(logits, 1e-2)
    np.testing.assert_allclose(expected, numeric, atol=1e-8)
    kernel = kernel_logit_gradient(
        logits, indices, np.zeros_like(rewards), "sigmoid", True, 1.0, z_loss=1e-2
    )
    np.testing.assert_allclose(-kernel, expected, atol=1e-12)


#: Several aux kinds at once, as Megatron-Core combines them.
COMBINED_TERMS = [("batch", 0.3), ("sequence", 0.05), ("global", 0.7)]


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("normalize", [True, False])
def test_combined_objective_gradient_matches_finite_differences(score, normalize):
    """Reward + three aux kinds + z-loss: the whole ``dJ/dZ`` of one learning step."""
    logits, indices, rewards = _case(7)
    seq_len, beta, scale = 4, 1e-2, 2.5
    aux = ref.aux_score(score)
    terms = [
        (kind, alpha, reference_fractions(logits, aux, kind)) for kind, alpha in COMBINED_TERMS
    ]
    args = (indices, rewards, score, normalize, scale, terms, seq_len, beta)

    numeric = ref.numerical_gradient(lambda z: ref.objective(z, *args), logits)
    expected = ref.objective_gradient(logits, *args)
    np.testing.assert_allclose(expected, numeric, atol=1e-8)

    coefficients, _ = kernel_aux_coefficients(logits, aux, COMBINED_TERMS)
    assert coefficients.shape == (2, logits.shape[1])  # one row per sequence
    kernel = kernel_logit_gradient(
        logits, indices, rewards, score, normalize, scale, aux=coefficients, z_loss=beta
    )
    np.testing.assert_allclose(kernel, expected, atol=1e-12)


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


# ----------------------------------------------------------------------------------------------
# Scenario settings of learning and the aux losses


def problems_of(tmp_path, text):
    """The problem lines of a scenario file (``file:line:col: key: message``)."""
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    return str(caught.value).replace(str(path), "s.yaml")


def test_reward_names_are_the_registered_models():
    names = typing.get_args(LearningConfig.model_fields["reward"].annotation)
    assert set(names) == set(REWARD_MODELS)
    assert (
        load_scenario({}).learning.reward == "capacity_nats"
    )  # the calibrated model (docs/model.md §5.1)


def test_an_unknown_reward_model_is_a_problem_with_a_suggestion(tmp_path):
    text = "learning:\n  enabled: true\n  reward: competence_afinity\n"
    message = problems_of(tmp_path, text)
    assert message.startswith(
        "s.yaml:3:3: learning.reward: expected one of 'capacity_nats' or 'competence_affinity'"
    )
    assert "did you mean 'competence_affinity'?" in message


def test_aux_kinds_combine_as_lists_and_the_single_form_is_unchanged():
    single = load_scenario({"learning": {"enabled": True}, "balance": {"aux": SINGLE_AUX}})
    assert single.balance.aux.kind == "batch" and single.balance.aux.alpha == 0.1
    assert single.balance.aux.terms() == [("batch", 0.1)]
    assert single.resolved_dict()["balance"]["aux"] == {**SINGLE_AUX, "z_loss": 0.0}
    combined = load_scenario(
        {
            "learning": {"enabled": True},
            "balance": {"aux": {"kind": ["batch", "global"], "alpha": [1e-2, 1e-3]}},
        }
    )
    assert combined.balance.aux.terms() == [("batch", 1e-2), ("global", 1e-3)]
    assert load_scenario({}).balance.aux.terms() == []


SINGLE_AUX = {"kind": "batch", "alpha": 0.1}


@pytest.mark.parametrize(
    ("aux", "expected"),
    [
        (
            "kind: [batch, sequence]\n    alpha: 0.1",
            "s.yaml:6:5: balance.aux.alpha: needs one coefficient per kind of balance.aux.kind "
            "(2), got 1; e.g. alpha: [1.0e-2, 1.0e-2]",
        ),
        (
            "kind: [batch]\n    alpha: [0.1, 0.2]",
            "s.yaml:6:5: balance.aux.alpha: needs one coefficient per kind of balance.aux.kind "
            "(1), got 2",
        ),
        (
            "kind: [batch, seqence]\n    alpha: [0.1, 0.2]",
            "s.yaml:5:19: balance.aux.kind[1]: expected one of 'none', 'batch', 'sequence', "
            "'global', 'importance' or 'load', got 'seqence'; did you mean 'sequence'?",
        ),
        (
            "kind: [batch, sequence]\n    alpha: [0.1, -1]",
            "s.yaml:6:18: balance.aux.alpha[1]: must be >= 0",
        ),
        (
            "kind: [batch, sequence]\n    alpha: [0.1, 0]",
            "s.yaml:6:18: balance.aux.alpha[1]: set balance.aux.alpha > 0 for kind 'sequence'",
        ),
        ("kind: [none, batch]\n    alpha: [0, 1]", "balance.aux.kind: none cannot be combined"),
        ("kind: [batch, batch]\n    alpha: [1, 1]", "balance.aux.kind: 'batch' is listed twice"),
        ("kind: []", "balance.aux.kind: an empty list"),
        ("kind: batch\n    alpha: 0", "s.yaml:6:5: balance.aux.alpha: set balance.aux.alpha > 0"),
    ],
)
def test_bad_aux_lists_explain_themselves(tmp_path, aux, expected):
    text = f"learning:\n  enabled: true\nbalance:\n  aux:\n    {aux}\n"
    assert expected in problems_of(tmp_path, text)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (
            "balanced_max_vio: 2.0",
            "metrics.balanced_max_vio: must be <= metrics.collapse_max_vio=1",
        ),
        ("record_every: 1000000000", "metrics.record_every: must be <= 100000000"),
        ("window: 1000000000", "metrics.window: must be <= 100000000"),
        ("balance_threshold: 1.0e+6", "metrics.balance_threshold: must be <= 65536"),
        ("collapse_max_vio: 1.0e+6", "metrics.collapse_max_vio: must be <= 65536"),
    ],
)
def test_metrics_bounds(tmp_path, setting, expected):
    assert expected in problems_of(tmp_path, f"metrics:\n  {setting}\n")


def test_every_numeric_learning_aux_and_metrics_field_has_both_bounds():
    for model in (LearningConfig, AuxConfig, MetricsConfig):
        for name, field in model.model_fields.items():
            if field.annotation in ("bool", bool) or "Literal" in str(field.annotation):
                continue
            kinds = {type(item).__name__ for item in field.metadata}
            assert kinds & {"Ge", "Gt"} and kinds & {"Le", "Lt"}, f"{model.__name__}.{name}"
