"""The behaviour the model must reproduce (docs/model.md section 8), on the shipped scenarios.

Reduced sizes where the behaviour already shows; the bias-rate U-shape needs the full run length
(too slow a rate is only distinguishable from the right one once the right one has converged).
"""

from __future__ import annotations

import pytest

from moesim.engine import simulate_variant
from moesim.scenario import expand_variants, load_scenario

REDUCED = ["steps=400", "tokens.tokens_per_step=1024"]


def run(path, names, overrides=()):
    variants = dict(expand_variants(load_scenario(path, list(overrides))))
    return {name: simulate_variant(variants[name], name).summary for name in names}


@pytest.fixture(scope="module")
def reduced():
    summaries = run(
        "scenarios/collapse.yaml",
        ["sigmoid-none", "sigmoid-aux-1e-2", "sigmoid-bias-1e-3", "softmax-none"],
        REDUCED,
    )
    summaries.update(run("scenarios/collapse_extremes.yaml", ["sigmoid-aux-10"], REDUCED))
    return summaries


def test_no_balancing_collapses_deeper_with_softmax(reduced):
    sigmoid, softmax = reduced["sigmoid-none"], reduced["softmax-none"]
    assert sigmoid["verdict"] == softmax["verdict"] == "collapsed"
    assert softmax["max_vio_global"] > 2 * sigmoid["max_vio_global"]
    assert softmax["starved"] > sigmoid["starved"]


def test_sigmoid_bias_balances(reduced):
    balanced = reduced["sigmoid-bias-1e-3"]
    assert balanced["max_vio_global"] < 0.1 and balanced["starved"] == 0
    assert balanced["verdict"] == "balanced"


def test_aux_loss_needs_a_large_alpha_and_then_costs_specialization(reduced):
    assert reduced["sigmoid-aux-1e-2"]["verdict"] == "collapsed"
    strong = reduced["sigmoid-aux-10"]
    assert strong["max_vio_global"] < 0.1
    bias = reduced["sigmoid-bias-1e-3"]
    assert strong["specialization"] < bias["specialization"] - 0.03


def test_bias_rate_is_u_shaped_at_full_length():
    rates = ("1e-4", "1e-3", "1e-2")
    base = load_scenario("scenarios/collapse.yaml", ["balance.bias.enabled=true"])
    summaries = {}
    for rate in rates:
        scenario = load_scenario(base, [f"balance.bias.rate={rate}", "variants=[]"])
        summaries[rate] = simulate_variant(scenario, rate).summary["max_vio_global"]
    assert summaries["1e-3"] < summaries["1e-4"]
    assert summaries["1e-3"] < summaries["1e-2"]
