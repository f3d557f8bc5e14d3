"""A recorded load trace replayed through the deployment (``deployment.load_trace``,
docs/model.md §10.8): the trace's counts placed as by hand, EPLB as ``moesim trace eplb`` places
it, no invented traffic, the settings it cannot apply refused, and the same result twice."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from typer.testing import CliRunner

import moesim
from moesim.cli import app
from moesim.deployment import rebalance
from moesim.deployment.cost import balancedness, imbalance_ratio
from moesim.deployment.eplb import rebalance_experts
from moesim.errors import ScenarioError

STEPS, LAYERS, EXPERTS = 45, 2, 16


@pytest.fixture(scope="module")
def trace(tmp_path_factory) -> tuple:
    """A small trace as .npy whose hot experts move at step 15: (path, loads (S, L, E))."""
    rng = np.random.default_rng(0)
    hot = np.roll(np.linspace(3.0, 0.2, EXPERTS), 1)
    weights = np.stack([np.roll(hot, 8 * (step >= 15) + layer) for step in range(STEPS)
                        for layer in range(LAYERS)]).reshape(STEPS, LAYERS, EXPERTS)  # fmt: skip
    loads = rng.poisson(20 * weights).astype(np.int64)
    path = tmp_path_factory.mktemp("trace") / "loads.npy"
    np.save(path, loads)
    return path, loads


def replay(path, steps=STEPS, **deployment) -> dict:
    return {
        "steps": steps,
        "layers": LAYERS,
        "router": {"experts": EXPERTS, "groups": 2},
        "balance": {"bias": {"enabled": False}},
        "metrics": {"record_every": 5, "window": steps - 10},
        "deployment": {
            "enabled": True,
            "load_trace": str(path),
            "nodes": 2,
            "gpus_per_node": 2,
            **deployment,
        },
    }


def test_contiguous_replay_places_the_counts_as_by_hand(trace):
    path, loads = trace
    variant = moesim.simulate(moesim.load_scenario(replay(path))).variants[0]
    final = loads[10:]  # the final window: the last 35 steps
    by_hand = final.reshape(35, LAYERS, 4, EXPERTS // 4).sum(axis=-1)  # (S, L, G)
    assert np.array_equal(variant.deployment["gpu_layer_loads"], by_hand.sum(axis=0))
    summary = variant.summary
    per_step = [balancedness(step) for step in by_hand]
    assert summary["balancedness"] == pytest.approx(np.mean(per_step), rel=1e-12)
    imbalance = np.nanmean(imbalance_ratio(by_hand), axis=1)
    assert summary["gpu_imbalance"] == pytest.approx(imbalance.mean(), rel=1e-12)
    # MaxVio of the loads themselves, each step against its own mean load.
    max_vio = final.max(axis=-1) / final.mean(axis=-1) - 1
    assert summary["final_max_vio_batch"] == pytest.approx(max_vio.mean(), rel=1e-12)
    assert np.array_equal(variant.final_loads, final.sum(axis=0))
    # Traffic needs which experts each token chose: empty, never 0.
    for name in ("comm_ms", "intra_node_mb", "inter_node_mb", "drop_rate"):
        assert summary[name] is None or math.isnan(summary[name]), name
    assert np.isnan(variant.deployment["sent_inter_mb"]).all()
    assert summary["rebalances"] == 0 and summary["experts_moved"] == 0


def test_eplb_replay_is_what_trace_eplb_gives(trace):
    path, loads = trace
    settings = {"placement": "eplb", "redundant_experts": 4, "rebalance_window": 10,
                "rebalance_interval": 10, "expert_bytes": 1e6}  # fmt: skip
    summary = moesim.simulate(moesim.load_scenario(replay(path, **settings))).variants[0].summary
    sizes = rebalance.EplbSizes(EXPERTS + 4, 2, 2, 4)
    # The engine's first placement is EPLB on uniform loads (before any window).
    initial = rebalance_experts(np.ones((LAYERS, EXPERTS)), *sizes)[0]
    plans = rebalance.replay_rebalancing(
        loads, sizes, initial, window=10, interval=10, first_after=10, expert_bytes=1e6
    )
    gpu_load = rebalance.replay_gpu_loads(loads, plans, 4)[10:]
    assert summary["balancedness"] == pytest.approx(
        rebalance.balancedness_per_step(gpu_load).mean(), rel=1e-12
    )
    moved = sum(int(move.experts_moved.sum()) for move in plans.moves)
    assert (summary["rebalances"], summary["experts_moved"]) == (len(plans.moves), moved)
    assert summary["migration_gb"] == pytest.approx(sum(m.bytes_moved for m in plans.moves) / 1e9)
    # The command prints the same mean balancedness over the same steps.
    printed = CliRunner().invoke(app, [
        "trace", "eplb", str(path), "--gpus", "4", "--nodes", "2", "--redundant", "4",
        "--groups", "2", "--window", "10", "--interval", "10", "--first-after", "10",
    ])  # fmt: skip
    assert printed.exit_code == 0, printed.output
    row = next(line for line in printed.output.splitlines() if "EPLB every" in line)
    assert re.findall(r"\d\.\d{3}", row)[0] == f"{summary['balancedness']:.3f}"


def test_a_stale_plan_keeps_the_first_placement(trace):
    path, _ = trace
    stale = replay(path, placement="eplb", rebalance_window=10, rebalance_interval=None)
    fresh = replay(path, placement="eplb", rebalance_window=10, rebalance_interval=10)
    stale, fresh = (moesim.simulate(moesim.load_scenario(s)).variants[0].summary
                    for s in (stale, fresh))  # fmt: skip
    assert stale["rebalances"] == 1 and fresh["rebalances"] == 4
    assert stale["balancedness"] < fresh["balancedness"]  # the hot experts moved on


def test_a_replay_is_deterministic(trace):
    path, _ = trace
    scenario = moesim.load_scenario(replay(path, placement="eplb", redundant_experts=4))
    first, second = (moesim.simulate(scenario).variants[0] for _ in range(2))
    for summary in (first.summary, second.summary):
        for layer in (summary, *summary["per_layer"]):
            layer.pop("seconds", None), layer.pop("steps_per_second", None)
    assert json.dumps(first.summary, sort_keys=True) == json.dumps(second.summary, sort_keys=True)
    for column, values in first.history.items():
        assert np.array_equal(values, second.history[column], equal_nan=True), column


def test_relative_trace_path_and_refused_settings(trace, tmp_path):
    path, _ = trace
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "loads.npy").write_bytes(path.read_bytes())
    good = tmp_path / "good.yaml"
    good.write_text(
        f"steps: {STEPS}\nlayers: {LAYERS}\nrouter: {{experts: {EXPERTS}}}\n"
        "balance: {bias: {enabled: false}}\n"
        "deployment: {enabled: true, load_trace: traces/loads.npy, gpus_per_node: 4}\n"
    )
    scenario = moesim.load_scenario(good)
    assert scenario.deployment.load_trace == str(tmp_path / "traces" / "loads.npy")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"steps: {STEPS + 5}\n"  # line 1: more steps than the trace
        "layers: 3\n"  # 2: the trace has 2 MoE layers
        "router: {experts: 8}\n"  # 3: and 16 experts
        "learning: {enabled: true}\n"  # 4: learning on counts
        "deployment: {enabled: true, load_trace: traces/loads.npy, gpus_per_node: 4}\n"
    )  # balance.bias.enabled is true by default: refused too, at the trace
    with pytest.raises(ScenarioError) as error:
        moesim.load_scenario(bad)
    text = str(error.value)
    held = f"the trace holds {STEPS} steps x {LAYERS} MoE layers x {EXPERTS} experts"
    assert re.search(rf"bad.yaml:1:\d+: steps: {held}, but the scenario runs {STEPS + 5}", text)
    assert re.search(rf"bad.yaml:2:\d+: layers: {held}, but the scenario has 3 MoE", text)
    assert re.search(rf"bad.yaml:3:\d+: router.experts: {held}, but router.experts is 8", text)
    assert re.search(r"bad.yaml:4:\d+: learning.enabled: a replayed load trace", text)
    assert re.search(r"bad.yaml:5:\d+: balance.bias.enabled: .*balance.bias.enabled: false", text)
    missing = tmp_path / "missing.yaml"
    missing.write_text(good.read_text().replace("loads.npy", "none.npy"))
    with pytest.raises(
        ScenarioError, match=r"missing.yaml:5:\d+: deployment.load_trace: .*no such"
    ):
        moesim.load_scenario(missing)
    off = tmp_path / "off.yaml"
    off.write_text(good.read_text().replace("enabled: true, ", ""))
    with pytest.raises(ScenarioError, match=r"deployment.enabled: .*set deployment.enabled: true"):
        moesim.load_scenario(off)
