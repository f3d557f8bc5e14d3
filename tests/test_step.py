"""routing_step() is route + apply_capacity + bincount, and does not depend on thread count."""

import os
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim import apply_capacity, route, routing_step

LAYOUTS = [(8, 1, 1), (12, 3, 2), (20, 4, 2), (64, 8, 4), (9, 3, 3)]


@settings(max_examples=40, deadline=None)
@given(
    layout=st.sampled_from(LAYOUTS),
    data=st.data(),
    n_tokens=st.integers(1, 300),
    dtype=st.sampled_from([np.float32, np.float64]),
    score=st.sampled_from(["sigmoid", "softmax", "softmax_after_topk"]),
    with_bias=st.booleans(),
    capacity_factor=st.sampled_from([None, 0.5, 1.0, 1.25]),
    capacity_policy=st.sampled_from(["probs", "position"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_routing_step_equals_composition(
    layout, data, n_tokens, dtype, score, with_bias, capacity_factor, capacity_policy, seed
):
    n_experts, n_groups, topk_groups = layout
    top_k = data.draw(st.integers(1, topk_groups * n_experts // n_groups))
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n_tokens, n_experts)).astype(dtype)
    bias = (0.1 * rng.standard_normal(n_experts)).astype(np.float32) if with_bias else None
    kwargs = dict(
        top_k=top_k,
        score=score,
        n_groups=n_groups,
        topk_groups=topk_groups,
        group_score_topk=None,
        normalize=None,
        route_scale=2.5,
    )
    step = routing_step(
        logits, bias, capacity_factor=capacity_factor, capacity_policy=capacity_policy, **kwargs
    )
    indices, weights = route(logits, bias, **kwargs)
    keep = apply_capacity(indices, weights, n_experts, capacity_factor, capacity_policy)
    np.testing.assert_array_equal(step.indices, indices)
    np.testing.assert_array_equal(step.weights, weights)
    assert step.weights.dtype == weights.dtype
    np.testing.assert_array_equal(step.keep, keep)
    demand = np.bincount(indices.ravel(), minlength=n_experts)
    kept = np.bincount(indices[keep], minlength=n_experts)
    assert step.demand.dtype == np.int64 and step.kept.dtype == np.int64
    np.testing.assert_array_equal(step.demand, demand)
    np.testing.assert_array_equal(step.kept, kept)


SCRIPT = textwrap.dedent(
    """
    import hashlib
    import numpy as np
    from moesim import routing_step, update_bias, load_stats

    rng = np.random.default_rng(123)
    digest = hashlib.sha256()
    for dtype in (np.float32, np.float64):
        for n_tokens in (1, 7, 1000, 5000):
            logits = rng.standard_normal((n_tokens, 64)).astype(dtype)
            bias = (0.1 * rng.standard_normal(64)).astype(np.float32)
            for policy in ("probs", "position"):
                step = routing_step(
                    logits, bias, top_k=8, score="sigmoid", n_groups=8, topk_groups=4,
                    group_score_topk=None, normalize=None, route_scale=2.5,
                    capacity_factor=1.0, capacity_policy=policy,
                )
                for array in step:
                    digest.update(np.ascontiguousarray(array).tobytes())
                new_bias = update_bias(bias, step.kept, 1e-3, rule="proportional", center=True)
                digest.update(new_bias.tobytes())
                for value in load_stats(step.demand).values():
                    digest.update(np.float64(value).tobytes())
    print(digest.hexdigest())
    """
)


#: Run by conftest.py's outputs_by_thread_count with 1 and with 2 Numba threads.
THREAD_COUNT_JOBS = {"routing_step": SCRIPT}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores for NUMBA_NUM_THREADS=2")
def test_results_identical_across_thread_counts(outputs_by_thread_count):
    one, two = outputs_by_thread_count["routing_step"]
    assert len(one) == 64, one  # a SHA-256, not an error
    assert one == two


def test_nan_logits_on_the_unchecked_path_still_give_valid_experts():
    """The engine's hot path does not check logits (a diverged router can produce NaN); the
    kernel must still write K valid, distinct expert ids per token and never index outside."""
    from moesim.kernels.routing import prepare_routing
    from moesim.kernels.step import NO_CAPACITY, run_routing_step

    rng = np.random.default_rng(3)
    logits = rng.standard_normal((300, 64)).astype(np.float32)
    _, bias, has_bias, spec = prepare_routing(
        logits, np.zeros(64, np.float32), top_k=8, n_groups=8, topk_groups=4
    )
    logits[::3, ::5] = np.nan
    logits[1::3] = np.nan
    step = run_routing_step(logits, bias, has_bias, spec, NO_CAPACITY, 0)
    assert step.indices.min() >= 0 and step.indices.max() < 64
    assert all(len(set(row)) == 8 for row in step.indices.tolist())
    assert step.demand.sum() == 300 * 8
