"""Many MoE layers from the outside: per-layer settings in a scenario file (``by_layer``, dense
layers) and their errors, ``--layer N`` and ``moesim show``, the layer figures and the report's
per-layer sections."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import moesim
from moesim.cli import app
from moesim.engine import simulate_variant
from moesim.errors import ScenarioError
from moesim.figures import render_figures
from moesim.results import load_results
from moesim.scenario import layer_scenarios, moe_layer_numbers

BASE = {
    "name": "deep",
    "steps": 6,
    "layers": 5,
    "tokens": {"tokens_per_step": 128, "seq_len": 64, "dim": 8, "clusters": 4},
    "router": {"experts": 8, "top_k": 2},
    "metrics": {"record_every": 3},
    "by_layer": [
        {"layers": "0-1", "dense": True},  # as DeepSeek-V3's first layers
        {"layers": "3-", "balance": {"bias": {"rate": 0.01}}},
        {"layers": [2, 4], "router": {"init_skew": 2.0}},
    ],
}


def write(tmp_path, data, name="deep.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("layers")
    outcome = CliRunner().invoke(
        app, ["run", str(write(root, BASE)), "-o", str(root / "out"), "--quiet"]
    )
    assert outcome.exit_code == 0, outcome.output
    assert "mean over 3 MoE layers" in outcome.output and "worst" in outcome.output
    return root / "out"


def test_by_layer_settings_reach_each_layer():
    scenario = moesim.load_scenario(BASE)
    layers = layer_scenarios(scenario)
    assert layers[:2] == [None, None] and moe_layer_numbers(scenario) == [2, 3, 4]
    assert [(s.router.init_skew, s.balance.bias.rate) for s in layers[2:]] == [
        (2.0, 1e-3),
        (0.0, 1e-2),
        (2.0, 1e-2),  # later entries win, and merge with earlier ones
    ]
    result = simulate_variant(scenario)
    np.testing.assert_array_equal(result.layers, [2, 3, 4])
    assert set(np.unique(result.history["layer"])) == {2, 3, 4}  # dense layers have no rows


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"layers": "2-9"}, "by_layer[0].layers: layer 9 is not in the model (layers: 5"),
        ({"layers": "x"}, "expected a layer number, a range such as '0-2'"),
        ({"layers": 1, "dense": True, "router": {"top_k": 1}}, "a dense layer has no router"),
        ({"layers": 1, "router": {"experts": 4}}, "router.experts: cannot differ by layer"),
        ({"layers": "all", "dense": True}, "every one of the 5 layer(s) is dense"),
        ({"layers": 1, "router": {"top_kk": 1}}, "unknown key; did you mean 'top_k'?"),
        ({"layers": 3, "router": {"top_k": 9}}, "by_layer[0].router.top_k: must be <="),
    ],
)
def test_by_layer_problems_are_refused_at_their_line(tmp_path, entry, message):
    path = write(tmp_path, {**BASE, "by_layer": [entry]})
    with pytest.raises(ScenarioError) as caught:
        moesim.load_scenario(path)
    assert message in str(caught.value)
    assert f"{path}:" in str(caught.value)


def test_show_and_layer_options(folder):
    runner = CliRunner()
    by_layer = runner.invoke(app, ["show", str(folder), "--layers"])
    assert by_layer.exit_code == 0, by_layer.output
    assert "by layer" in by_layer.output
    one = runner.invoke(app, ["show", str(folder), "--layer", "3"])
    assert one.exit_code == 0 and "layer 3" in one.output
    wrong = runner.invoke(app, ["show", str(folder), "--layer", "1"])
    assert wrong.exit_code == 2
    assert "not an MoE layer of this run (MoE layers: 2-4); did you mean --layer 2?" in (
        wrong.output
    )
    assert runner.invoke(app, ["plot", str(folder), "--layer", "7"]).exit_code == 2


def test_layer_figures_and_report_sections(folder):
    data = load_results(folder)
    plots, skipped = render_figures(data, ["layer_loads", "max_vio_layers", "max_vio"])
    drawn = {plot.name: plot for plot in plots}
    assert sorted(drawn) == ["layer_loads", "max_vio", "max_vio_layers"]
    assert "mean over 3 layers" in drawn["max_vio"].figure.texts[0].get_text()
    data.layer = 4
    plots, skipped = render_figures(data, ["max_vio", "load_heatmap", "bias"])
    assert sorted(plot.name for plot in plots) == [
        "bias_layer4",
        "load_heatmap_layer4",
        "max_vio_layer4",
    ]
    outcome = CliRunner().invoke(app, ["report", str(folder)])
    assert outcome.exit_code == 0, outcome.output
    report = (folder / "report.md").read_text()
    assert "## Summary (mean over 3 MoE layers)" in report and "## Layers: deep" in report
    assert "worst layer" in report and "![layer_loads](figures/layer_loads.png)" in report


def test_single_layer_runs_draw_no_layer_figures(tmp_path):
    single = {**BASE, "layers": 1, "by_layer": []}
    outcome = CliRunner().invoke(
        app, ["run", str(write(tmp_path, single)), "-o", str(tmp_path / "one"), "--quiet"]
    )
    assert outcome.exit_code == 0
    plots, skipped = render_figures(load_results(tmp_path / "one"))
    names = {plot.name for plot in plots}
    assert "max_vio" in names and not names & {"layer_loads", "max_vio_layers"}
    assert not set(skipped) & {"layer_loads", "max_vio_layers"}  # not for this folder at all
