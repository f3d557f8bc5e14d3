"""The behaviour the model must reproduce (docs/model.md §8), on the shipped scenarios.

Reduced sizes where the behaviour already shows; the bias-rate study needs the full run length
(too slow a rate is only distinguishable from the right one once the right one has converged) and
several seeds (only what holds at every seed is asserted).
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


#: Seeds of the bias-rate study (docs/model.md §8 gives the numbers of each).
RATE_SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def bias_rates():
    """Sigmoid + bias at u = 1e-4, 1e-3, 1e-2 on collapse.yaml's router, full length, 3 seeds."""
    base = load_scenario("scenarios/collapse.yaml", ["balance.bias.enabled=true", "variants=[]"])
    summaries = {}
    for seed in RATE_SEEDS:
        for rate in ("1e-4", "1e-3", "1e-2"):
            scenario = load_scenario(base, [f"balance.bias.rate={rate}", f"seed={seed}"])
            summaries[rate, seed] = simulate_variant(scenario, rate).summary
    return summaries


@pytest.mark.slow
def test_too_slow_a_bias_rate_is_worse_on_max_vio_global(bias_rates):
    # Measured: 0.951 / 0.460 / 0.081 at 1e-4 against 0.050 / 0.039 / 0.043 at 1e-3.
    for seed in RATE_SEEDS:
        slow, right = bias_rates["1e-4", seed], bias_rates["1e-3", seed]
        assert slow["max_vio_global"] > 1.5 * right["max_vio_global"], seed
        assert right["verdict"] == "balanced", seed


@pytest.mark.slow
def test_too_fast_a_bias_rate_oscillates(bias_rates):
    # The "too fast" half of the U is not in MaxVio_global: at 1e-2 it is 0.067 / 0.039 / 0.029,
    # no worse than 1e-3 at two seeds of three (docs/model.md §8), so it is not asserted. The bias
    # oscillates more (0.026 / 0.023 / 0.027 against 0.006 / 0.005 / 0.005), and single batches
    # are less balanced (final MaxVio_batch 0.62 / 0.60 / 0.60 against 0.50 / 0.50 / 0.48).
    for seed in RATE_SEEDS:
        fast, right = bias_rates["1e-2", seed], bias_rates["1e-3", seed]
        assert fast["bias_oscillation"] > 3 * right["bias_oscillation"], seed
        assert fast["final_max_vio_batch"] > 1.1 * right["final_max_vio_batch"], seed
