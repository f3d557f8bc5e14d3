"""Noisy top-K gating and Shazeer et al.'s importance and load losses (docs/model.md §2.1, §5.5):
the kernels against their NumPy twins, the twins' gradients against finite differences, the
noise stream, the scenario keys and a small run."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import moesim
from moesim import reference_noisy as ref
from moesim._jit import n_chunks_for
from moesim.errors import ScenarioError
from moesim.kernels import noisy
from moesim.kernels.learning import combined_aux_coefficients
from moesim.kernels.routing import SCORE_SOFTMAX, route
from moesim.reference_learning import aux_fractions, aux_top_k_counts, numerical_gradient

KEY = np.uint64(0x5EED)


def _problem(n_tokens, n_experts, top_k, dim, seed, *, with_bias, dtype=np.float64, step=3):
    """Clean and noise logits, the step's noise, a bias, the routing on H and per-gate rewards."""
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(n_tokens, dim))
    clean = (rng.normal(size=(n_tokens, n_experts)) * 1.5).astype(dtype)
    noise_logits = (rng.normal(size=(n_tokens, n_experts)) - 0.5).astype(dtype)
    bias = (rng.normal(size=n_experts) * 0.3 if with_bias else np.zeros(n_experts)).astype(dtype)
    noisy_logits = noisy.noisy_logits(clean, noise_logits, KEY, step)
    indices, _ = route(
        noisy_logits, bias if with_bias else None, top_k=top_k, score="softmax_after_topk"
    )
    rewards = rng.uniform(size=(n_tokens, top_k))
    eps = noisy.gate_noise(KEY, step, n_tokens, n_experts)
    return tokens, clean, noise_logits, bias, noisy_logits, indices, rewards, eps


def test_gate_noise_is_a_standard_normal_stream_of_its_step():
    eps = noisy.gate_noise(KEY, 5, 256, 32)
    assert abs(eps.mean()) < 0.05 and abs(eps.std() - 1.0) < 0.05
    np.testing.assert_array_equal(eps, noisy.gate_noise(KEY, 5, 256, 32))
    assert not np.array_equal(eps, noisy.gate_noise(KEY, 6, 256, 32))  # new noise each step
    assert not np.array_equal(eps, noisy.gate_noise(KEY + np.uint64(1), 5, 256, 32))
    # A token's noise does not depend on how many tokens the step has.
    np.testing.assert_array_equal(eps[:100], noisy.gate_noise(KEY, 5, 100, 32))


def test_noisy_kernels_give_the_same_bits_for_any_thread_count():
    tokens, clean, noise_logits, bias, _, indices, rewards, _ = _problem(
        600, 16, 3, 4, 1, with_bias=True, dtype=np.float32
    )
    before = numba.get_num_threads()
    outputs = []
    for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
        numba.set_num_threads(threads)
        try:
            h = noisy.noisy_logits(clean, noise_logits, KEY, 3)
            sums = noisy.balance_sums(h, clean, noise_logits, bias, True, indices)
            outputs.append((h, *sums))
        finally:
            numba.set_num_threads(before)
    for got in outputs[1:]:
        for a, b in zip(outputs[0], got, strict=True):
            np.testing.assert_array_equal(a, b)


def test_noisy_logits_refuse_mismatched_inputs():
    with pytest.raises(ValueError, match="same"):
        noisy.noisy_logits(np.zeros((2, 3)), np.zeros((2, 4)), KEY, 0)
    with pytest.raises(ValueError, match="dtype"):
        noisy.noisy_logits(np.zeros((2, 3)), np.zeros((2, 3), np.float32), KEY, 0)
    with pytest.raises(ValueError, match="finite"):
        noisy.noisy_logits(np.full((2, 3), np.nan), np.zeros((2, 3)), KEY, 0)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n_tokens=st.integers(1, 300),
    n_experts=st.integers(2, 24),
    with_bias=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    data=st.data(),
)
def test_noisy_logits_and_balance_sums_match_the_twin(
    seed, n_tokens, n_experts, with_bias, dtype, data
):
    top_k = data.draw(st.integers(1, n_experts - 1))
    _, clean, noise_logits, bias, h, indices, _, eps = _problem(
        n_tokens, n_experts, top_k, 2, seed, with_bias=with_bias, dtype=dtype
    )
    expected_h = ref.noisy_logits_reference(
        clean.astype(np.float64), noise_logits.astype(np.float64), eps
    )
    np.testing.assert_allclose(h, expected_h, rtol=2e-7 if dtype == np.float32 else 1e-15)
    importance, load = noisy.balance_sums(h, clean, noise_logits, bias, with_bias, indices)
    h64, clean64, noise64 = (a.astype(np.float64) for a in (h, clean, noise_logits))
    np.testing.assert_allclose(importance, ref.gates_reference(h64, indices).sum(axis=0))
    expected_load = ref.load_probabilities_reference(
        clean64, noise64, h64, bias.astype(np.float64), indices
    ).sum(axis=0)
    # float32: the kernel compares H + b rounded to float32, as the router does.
    tolerance = 1e-5 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(load, expected_load, rtol=tolerance, atol=1e-12)
    assert importance.sum() == pytest.approx(n_tokens)  # gates of a token sum to one


def test_kth_excluding_is_the_kth_largest_of_the_other_experts():
    selection = np.array([[5.0, 1.0, 4.0, 3.0, 2.0]])
    chosen = ref.chosen_mask(np.array([[0, 2]]), 5)
    threshold = ref.kth_excluding_reference(selection, 2, chosen)
    # Chosen experts are measured against the 3rd largest (3.0), the others against the 2nd.
    np.testing.assert_array_equal(threshold, [[3.0, 4.0, 3.0, 4.0, 4.0]])


@settings(max_examples=20, deadline=None)
@given(values=st.lists(st.floats(0.01, 100.0), min_size=1, max_size=12), weight=st.floats(0, 2))
def test_cv_squared_and_its_gradient_match_the_twin(values, weight):
    values = np.array(values)
    loss, gradient = noisy.cv_squared_and_gradient(values, weight)
    assert loss == pytest.approx(weight * ref.cv_squared(values), rel=1e-9, abs=1e-12)
    if len(values) > 1:
        np.testing.assert_allclose(
            gradient, ref.cv_squared_gradient(values, weight), rtol=1e-9, atol=1e-12
        )


def _aux_terms(clean, top_k, seq_len):
    fractions = aux_fractions(clean, "softmax", top_k, "sequence", seq_len)
    return [("sequence", 0.05, fractions)]


@pytest.mark.parametrize(
    ("with_bias", "w_importance", "w_load", "with_aux", "beta"),
    [
        (False, 0.3, 0.7, False, 0.0),
        (True, 0.0, 1.0, False, 0.0),
        (True, 0.5, 0.0, True, 0.01),
    ],
)
def test_noisy_gradient_twin_matches_finite_differences(
    with_bias, w_importance, w_load, with_aux, beta
):
    _, clean, noise_logits, bias, _, indices, rewards, eps = _problem(
        8, 6, 2, 3, 11, with_bias=with_bias
    )
    terms = _aux_terms(clean, 2, 4) if with_aux else []
    args = (bias, indices, rewards, 2.5, w_importance, w_load, terms, 4, beta)

    def objective(c, n):
        return ref.noisy_objective(c, n, eps, *args)

    d_clean, d_noise = ref.noisy_objective_gradient(clean, noise_logits, eps, *args)
    numeric_clean = numerical_gradient(lambda c: objective(c, noise_logits), clean)
    numeric_noise = numerical_gradient(lambda n: objective(clean, n), noise_logits)
    np.testing.assert_allclose(d_clean, numeric_clean, atol=1e-8)
    np.testing.assert_allclose(d_noise, numeric_noise, atol=1e-8)
    assert np.abs(d_noise).max() > 1e-4  # W_noise has something to learn from


def _kernel_gradients(tokens, clean, noise_logits, bias, with_bias, h, indices, rewards, **terms):
    n_tokens, n_experts = clean.shape
    dim = tokens.shape[1]
    w_importance, w_load = terms.get("w_importance", 0.0), terms.get("w_load", 0.0)
    importance, load = noisy.balance_sums(h, clean, noise_logits, bias, with_bias, indices)
    _, importance_coefficients = noisy.cv_squared_and_gradient(importance, w_importance)
    _, load_coefficients = noisy.cv_squared_and_gradient(load, w_load)
    aux = terms.get("aux", np.empty((0, n_experts)))
    n_chunks = n_chunks_for(n_tokens)
    gate, noise = np.zeros((n_chunks, n_experts, dim)), np.zeros((n_chunks, n_experts, dim))
    noisy._noisy_router_gradient(
        clean, h, noise_logits, tokens, indices, rewards, KEY, 3, bias, with_bias, 2.5,
        SCORE_SOFTMAX, aux, terms.get("seq_len", 1), terms.get("beta", 0.0),
        importance_coefficients if w_importance else np.empty(0),
        load_coefficients if w_load else np.empty(0), gate, noise, np.zeros(n_chunks),
    )  # fmt: skip
    return gate.sum(axis=0), noise.sum(axis=0)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n_tokens=st.sampled_from([8, 40, 300]),
    n_experts=st.integers(3, 16),
    with_bias=st.booleans(),
    w_importance=st.sampled_from([0.0, 0.1]),
    w_load=st.sampled_from([0.0, 0.1]),
    with_aux=st.booleans(),
    data=st.data(),
)
def test_noisy_gradient_kernel_matches_the_twin(
    seed, n_tokens, n_experts, with_bias, w_importance, w_load, with_aux, data
):
    top_k = data.draw(st.integers(1, n_experts - 1))
    tokens, clean, noise_logits, bias, h, indices, rewards, eps = _problem(
        n_tokens, n_experts, top_k, 5, seed, with_bias=with_bias
    )
    seq_len, beta = 4, 0.01 if with_aux else 0.0
    terms = _aux_terms(clean, top_k, seq_len) if with_aux else []
    aux = np.empty((0, n_experts))
    if with_aux:
        one_hot = aux_top_k_counts(clean, "softmax", top_k)
        counts = one_hot.reshape(n_tokens // seq_len, seq_len, n_experts).sum(axis=1)
        aux, _ = combined_aux_coefficients([("sequence", 0.05)], top_k, counts, n_tokens, seq_len)
    gate, noise = _kernel_gradients(
        tokens, clean, noise_logits, bias, with_bias, h, indices, rewards,
        w_importance=w_importance, w_load=w_load, aux=aux, seq_len=seq_len, beta=beta,
    )  # fmt: skip
    d_clean, d_noise = ref.noisy_objective_gradient(
        clean, noise_logits, eps, bias, indices, rewards, 2.5, w_importance, w_load, terms,
        seq_len, beta,
    )  # fmt: skip
    np.testing.assert_allclose(gate, d_clean.T @ tokens, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(noise, d_noise.T @ tokens, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Scenario keys and a run

SMALL_NOISY = {
    "name": "noisy",
    "seed": 2,
    "steps": 12,
    "tokens": {"tokens_per_step": 256, "dim": 8, "clusters": 4, "seq_len": 64},
    "router": {
        "experts": 16,
        "top_k": 2,
        "algorithm": "noisy_top_k",
        "score": "softmax_after_topk",
        "init_scale": 0.25,
    },
    "balance": {
        "bias": {"enabled": False},
        "aux": {"kind": ["importance", "load"], "alpha": [0.1, 0.1]},
    },
    "learning": {"enabled": True, "rate": 1e-2, "eval_tokens": 64},
    "metrics": {"record_every": 4},
}


def _with(**settings_):
    return moesim.load_scenario(SMALL_NOISY, [f"{k}={v}" for k, v in settings_.items()])


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"router.score": "sigmoid"}, "router.score: noisy_top_k gates with a softmax"),
        ({"router.groups": 4, "router.topk_groups": 2}, "router.groups: noisy_top_k chooses"),
        ({"router.top_k": 16}, "router.top_k: noisy_top_k needs top_k < experts"),
        ({"router.algorithm": "top_k"}, "'importance' is a loss of Shazeer et al."),
        (
            {
                "router.algorithm": "top_k",
                "balance.aux.kind": "none",
                "balance.aux.alpha": 0.0,
                "router.zero_init": True,
            },
            "router.zero_init: starts W_g and W_noise at zero",
        ),  # fmt: skip
    ],
)
def test_impossible_combinations_are_refused(settings_, message):
    with pytest.raises(ScenarioError, match=message.replace("(", r"\(")):
        _with(**settings_)


def test_a_noisy_run_records_its_losses():
    result = moesim.simulate(_with())
    assert result.summary["noisy"]["steps_done"] == 12
    # The importance and load losses (their sum) at every record, positive.
    assert (result.history["aux_loss"] > 0).all()


def test_zero_init_routes_on_noise_alone_so_loads_start_balanced():
    fixed = ["learning.enabled=false", "balance.aux.kind=none", "balance.aux.alpha=0.0"]
    fixed.append("metrics.window=12")  # the whole run: 6144 assignments
    zero = moesim.load_scenario(SMALL_NOISY, [*fixed, "router.zero_init=true"])
    signal = moesim.load_scenario(SMALL_NOISY, [*fixed, "router.init_scale=1.0"])
    # Uniform routing gives about 0.1 here (seeds 0-3); a random W_g of scale 1 gives 0.9-2.3.
    assert moesim.simulate(zero).summary["noisy"]["max_vio_global"] < 0.3
    assert moesim.simulate(signal).summary["noisy"]["max_vio_global"] > 0.6
