"""The deployment in the loop (docs/model.md §10): limits that follow the placement, V2's
losses and dropping, the summary and history it adds, and its scenario checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

import moesim
from moesim.engine.deployment import limited_router_spec
from moesim.errors import ScenarioError
from moesim.results.metrics import DEPLOYMENT_COLUMNS, REBALANCE_METRICS

SMALL = {
    "steps": 12,
    "tokens": {"tokens_per_step": 256, "dim": 16, "clusters": 8, "seq_len": 64},
    "router": {"experts": 16, "top_k": 4},
    "metrics": {"record_every": 4},
}


def small(**deployment) -> dict:
    return {**SMALL, "deployment": {"enabled": True, "nodes": 2, "gpus_per_node": 2, **deployment}}


@pytest.mark.parametrize(("limit", "targets", "per_target"), [("nodes", 2, 8), ("devices", 4, 4)])
def test_limited_routing_reaches_at_most_m_targets(limit, targets, per_target):
    scenario = moesim.load_scenario(small(limit=limit, max_targets=2))
    spec = limited_router_spec(scenario.deployment, moesim.engine.router_spec_for(scenario))
    assert (spec.n_groups, spec.topk_groups) == (targets, 2)
    assert spec.group_score_topk == (2 if limit == "nodes" else 1)  # V3: top K/M; V2: the max
    logits = np.random.default_rng(0).normal(size=(200, 16))
    indices, _ = moesim.route(
        logits,
        top_k=4,
        n_groups=spec.n_groups,
        topk_groups=2,
        group_score_topk=spec.group_score_topk,
    )
    reached = [len(set(row // per_target)) for row in indices]
    assert max(reached) <= 2 and min(reached) >= 1


def test_deployment_off_leaves_its_metrics_empty():
    result = moesim.simulate(moesim.load_scenario(SMALL))
    summary = result.variants[0].summary
    assert all(math.isnan(summary[name]) for name in (*DEPLOYMENT_COLUMNS, *REBALANCE_METRICS))
    assert result.variants[0].deployment is None


def test_a_deployment_measures_balance_traffic_and_time():
    result = moesim.simulate(moesim.load_scenario(small(limit="nodes", max_targets=1)))
    variant = result.variants[0]
    summary = variant.summary
    assert 0 < summary["balancedness"] <= 1 and 0 < summary["step_efficiency"] <= 1
    assert summary["gpu_imbalance"] >= 0 and summary["slot_imbalance"] >= summary["gpu_imbalance"]
    # A token limited to one node crosses InfiniBand less than one free to use both.
    free = moesim.simulate(moesim.load_scenario(small())).variants[0].summary
    assert 0 < summary["inter_node_mb"] < free["inter_node_mb"]
    assert np.isfinite(variant.history["step_time_ms"]).all()
    loads = variant.deployment["gpu_layer_loads"]
    assert loads.shape == (1, 4) and loads.sum() == variant.final_loads.sum()


def test_v2_device_losses_and_dropping_act():
    scenario = small(
        limit="devices",
        max_targets=2,
        device_balance_alpha=0.05,
        comm_balance_alpha=0.02,
        device_capacity_factor=1.0,
    )
    scenario["router"] = {**SMALL["router"], "score": "softmax"}
    scenario["learning"] = {"enabled": True}
    variant = moesim.simulate(moesim.load_scenario(scenario)).variants[0]
    assert np.nanmax(variant.history["aux_loss"]) > 0
    assert variant.summary["drop_rate"] > 0  # a GPU keeps at most its share T K / G


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        ({"nodes": 3}, "do not split evenly over 3 nodes"),
        ({"redundant_experts": 4}, "placement: eplb"),
        ({"limit": "nodes", "max_targets": 3}, "must be <= the 2 nodes"),
        ({"limit": "nodes", "max_targets": 2}, "top_k=5 must be a multiple of M=2"),
        ({"limit": "devices", "max_targets": 1}, "1 GPUs of 4 experts hold fewer than router"),
        ({"device_balance_alpha": 0.05}, "learning.enabled: true"),
    ],
)
def test_impossible_deployments_are_refused(deployment, message):
    data = small(**deployment)
    data["router"] = {**SMALL["router"], "top_k": 5}
    with pytest.raises(ScenarioError, match=message):
        moesim.load_scenario(data)


def test_many_layers_measure_each_layer_and_the_model():
    data = small(placement="eplb", redundant_experts=4, rebalance_window=4, rebalance_interval=4)
    data["layers"] = 3
    variant = moesim.simulate(moesim.load_scenario(data)).variants[0]
    summary = variant.summary
    per_layer = summary["per_layer"]
    # Layers run in turn: the model's step is the sum of its layers'; balancedness is vLLM's
    # ratio of sums, so it lies within the layers' range.
    assert summary["step_time_ms"] == pytest.approx(sum(s["step_time_ms"] for s in per_layer))
    layer_balance = [s["balancedness"] for s in per_layer]
    assert min(layer_balance) - 1e-12 <= summary["balancedness"] <= max(layer_balance) + 1e-12
    assert summary["experts_moved"] == sum(s["experts_moved"] for s in per_layer) > 0
    assert variant.deployment["gpu_layer_loads"].shape == (3, 4)
    rows = variant.history["layer"] == 2
    assert np.isfinite(variant.history["gpu_imbalance"][rows]).all()


def test_plans_come_every_interval_and_none_after_the_last_step():
    # Due after steps 4, 8 and 12 of 12: the last would serve no step, so it is neither made nor
    # counted (nor its experts' moves).
    scenario = small(placement="eplb", rebalance_window=4, rebalance_interval=4)
    summary = moesim.simulate(moesim.load_scenario(scenario)).variants[0].summary
    assert summary["rebalances"] == 2
    longer = moesim.load_scenario({**scenario, "steps": 13})
    assert moesim.simulate(longer).variants[0].summary["rebalances"] == 3
