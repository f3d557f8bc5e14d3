"""route() against DeepSeek-V3's ``Gate`` and Megatron-Core's group-limited top-K
(docs/model.md §2): the same expert sets and weights, to 1e-12 in float64."""

import numpy as np
import pytest

from moesim import route


def gate_like(
    logits, bias, *, top_k, score, n_groups, topk_groups, route_scale, group_score_topk=None
):
    """DeepSeek-V3 ``Gate.forward`` (inference/model.py) in vectorized float64 NumPy.

    ``group_score_topk`` None is the Gate's rule (max without bias, top-2 sum with bias); an
    integer gives Megatron-Core's ``group_limited_topk`` (``topk // group_topk``).
    """
    n_tokens, n_experts = logits.shape
    z = logits.astype(np.float64)
    if score == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        scores = e / e.sum(axis=1, keepdims=True)
    else:
        scores = 1.0 / (1.0 + np.exp(-z))
    original_scores = scores
    if bias is not None:
        scores = scores + bias.astype(np.float64)
    if n_groups > 1:
        grouped = scores.reshape(n_tokens, n_groups, -1)
        if group_score_topk is None:
            group_score_topk = 1 if bias is None else 2
        group_scores = np.sort(grouped, axis=-1)[..., ::-1][..., :group_score_topk].sum(axis=-1)
        kept = np.argsort(-group_scores, axis=1, kind="stable")[:, :topk_groups]
        mask = np.ones((n_tokens, n_groups), dtype=bool)
        np.put_along_axis(mask, kept, False, axis=1)
        scores = np.where(mask[:, :, None], -np.inf, grouped).reshape(n_tokens, n_experts)
    indices = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    weights = np.take_along_axis(original_scores, indices, axis=1)
    if score == "sigmoid":
        weights = weights / weights.sum(axis=-1, keepdims=True)
    return indices, weights * route_scale


DEEPSEEK_CONFIGS = {
    "v3-671b": dict(
        n_experts=256,
        top_k=8,
        score="sigmoid",
        bias=True,
        n_groups=8,
        topk_groups=4,
        route_scale=2.5,
    ),
    "v2-236b": dict(
        n_experts=160,
        top_k=6,
        score="softmax",
        bias=False,
        n_groups=8,
        topk_groups=3,
        route_scale=16.0,
    ),
    "v2-lite-16b": dict(
        n_experts=64,
        top_k=6,
        score="softmax",
        bias=False,
        n_groups=1,
        topk_groups=1,
        route_scale=1.0,
    ),
}


def _by_index(indices, weights):
    order = np.argsort(indices, axis=1)
    return np.take_along_axis(indices, order, 1), np.take_along_axis(weights, order, 1)


def _assert_same_routing(got, expected):
    got_i, got_w = _by_index(*got)
    exp_i, exp_w = _by_index(*expected)
    np.testing.assert_array_equal(got_i, exp_i)
    np.testing.assert_allclose(got_w, exp_w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias_kind", ["none", "small", "negative", "mixed"])
@pytest.mark.parametrize("name", list(DEEPSEEK_CONFIGS))
def test_deepseek_gate_conformance(name, bias_kind):
    config = dict(DEEPSEEK_CONFIGS[name])
    n_experts = config.pop("n_experts")
    config.pop("bias")
    rng = np.random.default_rng([list(DEEPSEEK_CONFIGS).index(name), len(bias_kind)])
    logits = rng.standard_normal((128, n_experts))
    bias = {
        "none": None,
        "small": 0.01 * rng.standard_normal(n_experts),
        "negative": -3.0 + 0.5 * rng.standard_normal(n_experts),
        "mixed": rng.standard_normal(n_experts),
    }[bias_kind]
    if bias is not None:
        bias = bias.astype(np.float32)
    got = route(logits, bias, **config)
    _assert_same_routing(got, gate_like(logits, bias, **config))


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("name", ["v3-671b", "v2-236b"])
def test_megatron_group_limited_topk(name, with_bias):
    """Megatron scores a group by the sum of its top ``topk // group_topk`` scores."""
    config = dict(DEEPSEEK_CONFIGS[name])
    n_experts = config.pop("n_experts")
    config.pop("bias")
    rng = np.random.default_rng(11 if with_bias else 12)
    logits = rng.standard_normal((128, n_experts))
    bias = (0.2 * rng.standard_normal(n_experts)).astype(np.float32) if with_bias else None
    group_score_topk = config["top_k"] // config["topk_groups"]
    got = route(logits, bias, group_score_topk=group_score_topk, **config)
    expected = gate_like(logits, bias, group_score_topk=group_score_topk, **config)
    _assert_same_routing(got, expected)
    # And it is a real difference from the DeepSeek rule on this data when there is no bias.
    if not with_bias:
        deepseek = route(logits, bias, **config)[0]
        assert not np.array_equal(np.sort(deepseek, 1), np.sort(got[0], 1))
