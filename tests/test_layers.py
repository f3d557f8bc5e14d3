"""Many MoE layers (docs/model.md §7): a router per layer, token paths between layers, results
per layer and their aggregates over the layers."""

from __future__ import annotations

import math

import numpy as np
import pytest

import moesim
from moesim.engine import run_scenario, simulate_variant
from moesim.engine.layers import shared_expert_pairs
from moesim.engine.paths import TokenPaths
from moesim.results import load_results
from moesim.results.layers import layer_summaries, model_summary, summary_of_layer

SMALL = {
    "name": "layered",
    "steps": 12,
    "tokens": {"tokens_per_step": 256, "seq_len": 64, "dim": 16, "clusters": 8},
    "router": {"experts": 16, "top_k": 2, "init_skew": 1.0},
    "balance": {"bias": {"enabled": True, "rate": 0.01}},
    "metrics": {"record_every": 4},
}


def scenario(layers: int = 3, **overrides):
    settings = [f"layers={layers}", *(f"{k}={v}" for k, v in overrides.items())]
    return moesim.load_scenario(SMALL, settings)


@pytest.fixture(scope="module")
def three_layers():
    return simulate_variant(scenario(3), "base")


def test_layer_0_of_many_is_the_single_layer_run(three_layers):
    # Layer 0 takes the single-layer run's seeds and tokens, and nothing of the later layers.
    single = simulate_variant(scenario(1), "base")
    np.testing.assert_array_equal(three_layers.loads[0], single.loads[0])
    np.testing.assert_array_equal(three_layers.final_bias[0], single.final_bias[0])
    layer_0 = summary_of_layer(three_layers.summary, 0)
    for key in ("max_vio_global", "final_max_vio_batch", "cv", "fidelity", "verdict"):
        assert layer_0[key] == single.summary[key], key
    assert "per_layer" not in single.summary and "layers" not in single.summary


def test_each_layer_has_its_own_state_and_later_layers_do_not_change_earlier_ones(three_layers):
    assert three_layers.loads.shape == (3, 3, 16)
    assert three_layers.final_bias.shape == (3, 16)
    np.testing.assert_array_equal(three_layers.layers, [0, 1, 2])
    # Different centroids and bias per layer: different loads.
    assert not np.array_equal(three_layers.final_loads[0], three_layers.final_loads[1])
    assert not np.array_equal(three_layers.final_bias[1], three_layers.final_bias[2])
    # Layer 1 of a 2-layer model is layer 1 of the 3-layer one.
    two = simulate_variant(scenario(2), "base")
    np.testing.assert_array_equal(two.loads[1], three_layers.loads[1])
    np.testing.assert_array_equal(two.final_bias[1], three_layers.final_bias[1])


def test_the_history_is_tidy_with_a_layer_column(three_layers):
    history = three_layers.history
    np.testing.assert_array_equal(history["layer"], np.repeat([0, 1, 2], 3))
    np.testing.assert_array_equal(history["step"], np.tile([3, 7, 11], 3))


def test_the_summary_is_the_mean_over_layers_with_the_worst_layer_and_percentiles(three_layers):
    summary = three_layers.summary
    layers = layer_summaries(summary)
    assert [layer["layer"] for layer in layers] == [0, 1, 2]
    values = np.array([layer["max_vio_global"] for layer in layers])
    assert summary["max_vio_global"] == pytest.approx(values.mean())
    assert summary["max_vio_global_max"] == values.max()
    assert summary["max_vio_global_p50"] == pytest.approx(np.median(values))
    assert summary["max_vio_global_p90"] == pytest.approx(np.percentile(values, 90))
    assert summary["worst_layer"] == int(np.argmax(values))
    assert summary["layers"] == 3 and summary["steps"] == 12
    assert "seconds" in summary and "seconds" not in layers[0]  # timing is the run's
    spread = summary["over_layers"]["entropy"]
    entropies = [layer["entropy"] for layer in layers]
    assert spread["worst_layer"] == int(np.argmin(entropies))  # lower entropy is worse


def test_model_summary_takes_the_latest_balance_and_the_worst_verdict():
    def layer(number, max_vio, balanced_at, verdict):
        return {
            "layer": number,
            "variant": "v",
            "steps": 10,
            "partial": False,
            "max_vio_global": max_vio,
            "steps_to_balance": balanced_at,
            "verdict": verdict,
            "verdict_reason": f"reason {number}",
        }

    summary = model_summary(
        [
            layer(3, 0.1, 4, "balanced"),
            layer(4, 2.0, 7, "collapsed"),
            layer(5, 0.3, None, "imbalanced"),
        ]
    )
    assert summary["max_vio_global"] == pytest.approx(0.8)
    assert summary["steps_to_balance"] is None  # layer 5 never balanced
    assert summary["verdict"] == "collapsed"
    assert summary["verdict_reason"] == "layer 4: reason 4 (1 of 3 layers collapsed)"
    assert summary["worst_layer"] == 4
    one = model_summary([layer(0, 0.1, 4, "balanced")])
    assert "layer" not in one and "per_layer" not in one


@pytest.mark.parametrize("stream_version", [1, 2])
def test_token_paths_keep_the_dtype_and_the_scale(stream_version):
    paths = TokenPaths(3, 64, 0.6, np.random.SeedSequence(1), stream_version)
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        tokens = rng.standard_normal((512, 64)).astype(dtype) * 3.0
        moved = paths.advance(tokens, 1, step=5).copy()  # the next call may reuse its array
        assert moved.dtype == dtype
        ratio = np.linalg.norm(moved, axis=1).mean() / np.linalg.norm(tokens, axis=1).mean()
        assert 0.95 < ratio < 1.05
        # rho of each token's direction carries over (after undoing the permutation).
        back = np.empty_like(moved)
        back[:, paths.permutations[1]] = moved * paths.signs[1]
        cosine = (back * tokens).sum(axis=1) / np.linalg.norm(back, axis=1)
        cosine /= np.linalg.norm(tokens, axis=1)
        assert cosine.mean() == pytest.approx(0.6, abs=0.05)
        # Consecutive layers' inputs correlate by rho, coordinate by coordinate, and what is
        # not carried over is standard normal noise at the token's scale.
        assert np.corrcoef(back.ravel(), tokens.ravel())[0, 1] == pytest.approx(0.6, abs=0.02)
        rms = np.sqrt(np.mean(tokens.astype(np.float64) ** 2, axis=1, keepdims=True))
        noise = (back - 0.6 * tokens) / (0.8 * rms)
        assert abs(noise.mean()) < 0.02 and noise.std() == pytest.approx(1.0, abs=0.02)
        # The held-out stream and the next step draw other noise.
        assert not np.array_equal(paths.advance(tokens, 1, step=5, stream=1), moved)
        assert not np.array_equal(paths.advance(tokens, 1, step=6), moved)
    # rho = 1: a pure signed permutation, no noise.
    exact = TokenPaths(2, 8, 1.0, np.random.SeedSequence(2), stream_version)
    tokens = rng.standard_normal((4, 8)).astype(np.float32)
    np.testing.assert_array_equal(
        np.abs(exact.advance(tokens, 0, 0)), np.abs(tokens[:, exact.permutations[0]])
    )


def test_shared_expert_pairs_against_a_double_loop():
    rng = np.random.default_rng(3)
    indices = np.stack([rng.choice(8, size=2, replace=False) for _ in range(12)])
    expected = [
        bool(set(indices[i]) & set(indices[j])) for i in range(12) for j in range(i + 1, 12)
    ]
    np.testing.assert_array_equal(shared_expert_pairs(indices, 8), expected)


def test_co_routing_is_measured_against_independent_layers():
    settings = {"steps": 4, "metrics.record_every": 2, "balance.bias.enabled": False}
    correlated = simulate_variant(scenario(3, **{"token_paths.correlation": 1.0}, **settings))
    independent = simulate_variant(scenario(3, **{"token_paths.correlation": 0.0}, **settings))
    lift = correlated.summary["co_routing"] / correlated.summary["co_routing_independent"]
    assert lift > 1.15
    baseline = independent.summary["co_routing"] / independent.summary["co_routing_independent"]
    assert abs(baseline - 1.0) < 0.05
    assert math.isnan(summary_of_layer(correlated.summary, 0)["co_routing"])  # no layer before


def test_results_folder_round_trip(tmp_path):
    result, folder = run_scenario(scenario(3), tmp_path / "run")
    header = (folder / "history.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["variant", "layer", "step"]
    data = load_results(folder)
    arrays = data.loads["layered"]
    assert arrays["loads"].shape == (3, 3, 16) and arrays["final_loads"].shape == (3, 16)
    np.testing.assert_array_equal(arrays["layers"], [0, 1, 2])
    np.testing.assert_array_equal(arrays["demand"], result.variants[0].demand)
    assert data.layer_numbers == [0, 1, 2]
    assert [s["layer"] for s in data.variants[0]["per_layer"]] == [0, 1, 2]
    # A chosen layer's views, and the mean over layers by default.
    mean = data.variant_history("layered")
    data.layer = 2
    one = data.variant_history("layered")
    np.testing.assert_array_equal(
        one["max_vio_batch"], result.variants[0].history["max_vio_batch"][6:]
    )
    assert (
        data.variants[0]["max_vio_global"]
        == summary_of_layer(result.variants[0].summary, 2)["max_vio_global"]
    )
    assert data.layer_loads("layered")["final_loads"].shape == (16,)
    assert len(mean["step"]) == 3 and np.isnan(mean["layer"]).all()


def test_a_single_layer_folder_reads_with_a_layer_axis(tmp_path):
    _, folder = run_scenario(scenario(1, steps=4), tmp_path / "one")
    header = (folder / "history.csv").read_text().splitlines()[0].split(",")
    assert "layer" not in header  # as moesim 0.1 wrote it
    data = load_results(folder)
    assert data.loads["layered"]["loads"].shape == (1, 1, 16)
    np.testing.assert_array_equal(data.history["layer"], 0)
    assert data.layer_numbers == [0]
