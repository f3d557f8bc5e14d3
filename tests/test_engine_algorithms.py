"""The routing algorithms in the engine: expert choice, Sinkhorn, the input jitter and the
multiplicative bias run from a scenario, measure what they should, and leave top-K unchanged."""

import math

import numpy as np

from moesim import simulate
from moesim.scenario import load_scenario

SCENARIO = """
name: algorithms
steps: 6
tokens: {tokens_per_step: 256, dim: 8, clusters: 4, seq_len: 64}
router: {experts: 16, top_k: 2, score: softmax}
balance: {bias: {enabled: false}}
metrics: {record_every: 2, fidelity: false}
variants:
  - name: top-k
  - name: top-k-jitter-0
    router: {input_jitter: 0.0}
  - name: top-k-jitter
    router: {input_jitter: 0.05}
  - name: bias-add-0
    balance: {bias: {enabled: true, rate: 0.0}}
  - name: bias-mult-0
    balance: {bias: {enabled: true, rate: 0.0, mode: multiplicative}}
  - name: bias-mult
    balance: {bias: {enabled: true, rate: 0.01, mode: multiplicative}}
  - name: expert-choice
    router: {algorithm: expert_choice}
    capacity: {factor: 1.0}
  - name: sinkhorn
    router: {algorithm: sinkhorn}
    learning: {enabled: true}
"""


def test_algorithms_run_from_a_scenario(tmp_path):
    path = tmp_path / "algorithms.yaml"
    path.write_text(SCENARIO)
    result = simulate(load_scenario(path))
    runs = {run.name: run for run in result.variants}
    summary = {name: run.summary for name, run in runs.items()}

    # eps = 0 and a bias that never moves (0 added, or 1 multiplied) change nothing.
    for same in ("top-k-jitter-0", "bias-add-0", "bias-mult-0"):
        np.testing.assert_array_equal(runs[same].demand, runs["top-k"].demand)
    assert not np.array_equal(runs["top-k-jitter"].demand, runs["top-k"].demand)
    assert np.all(runs["bias-mult-0"].final_bias == 1.0)
    assert not np.all(runs["bias-mult"].final_bias == 1.0)

    # Expert choice: every expert takes exactly ceil(T K / E) = 32 tokens a step.
    assert np.all(runs["expert-choice"].demand == 32 * 2)  # record windows of two steps
    ec = summary["expert-choice"]
    shares = [ec[k] for k in ("no_expert_share", "one_expert_share", "two_experts_share")]
    shares.append(ec["more_experts_share"])
    assert math.isclose(sum(shares), 1.0) and ec["no_expert_share"] > 0
    assert ec["token_drop_rate"] == ec["fully_dropped_rate"] > 0
    assert ec["drop_rate"] == 0
    # Whole-batch routers depend on their batch; top-K is not measured (0 by construction).
    assert 0 < ec["batch_dependence"] <= 1
    assert 0 <= summary["sinkhorn"]["batch_dependence"] <= 1
    assert summary["sinkhorn"]["sinkhorn_iterations"] >= 1
    assert math.isnan(summary["top-k"]["batch_dependence"])
    assert summary["top-k"]["two_experts_share"] == 1.0
