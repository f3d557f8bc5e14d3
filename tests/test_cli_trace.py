"""``moesim trace``: a run's loads exported as a trace, and the shipped example placed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from moesim.cli import app
from moesim.deployment import traces

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "scenarios" / "traces" / "example"


def test_a_run_exported_reads_back_as_its_demand(tmp_path):
    out = tmp_path / "run"
    tiny = [
        "--set",
        "steps=6",
        "--set",
        "tokens.tokens_per_step=128",
        "--set",
        "tokens.seq_len=64",
        "-q",
    ]
    scenario = str(ROOT / "scenarios" / "traces" / "example.yaml")
    assert runner.invoke(app, ["run", scenario, "-o", str(out), *tiny]).exit_code == 0
    with np.load(out / "loads.npz") as saved:
        demand = np.moveaxis(saved["trace_example.demand"], 0, 1)  # (layers, steps, experts)
    for name, extra in (("t.npy", []), ("t.csv", []), ("mcore", ["--expert-parallel", "4"])):
        result = runner.invoke(app, ["trace", "export", str(out), str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
        loads = traces.read_load_trace(tmp_path / name)
        np.testing.assert_array_equal(loads, demand)
        # Every assignment of every step and layer: top-4 of 128 tokens in each of 4 layers.
        assert loads.shape == (6, 4, 32) and loads.sum() == 6 * 4 * 128 * 4
    bad = runner.invoke(
        app, ["trace", "export", str(out), str(tmp_path / "x.npy"), "--variant", "v"]
    )
    assert bad.exit_code == 2 and "no variant 'v'" in bad.output


def test_the_shipped_example_is_placed_and_rebalanced():
    assert traces.check_load_trace(EXAMPLE) == (400, 4, 32)
    args = ["--gpus", "8", "--nodes", "2", "--redundant", "8", "--groups", "4"]
    timing = ["--window", "100", "--interval", "100", "--expert-bytes", "44e6"]
    result = runner.invoke(app, ["trace", "eplb", str(EXAMPLE), *args, *timing])
    assert result.exit_code == 0, result.output
    assert "EPLB every 100 steps" in result.output and "3 plan(s)" in result.output
    assert "(oracle)" in result.output


def test_bad_trace_and_impossible_sizes_exit_2(tmp_path):
    (tmp_path / "t.csv").write_text("step,layer,a\n0,0,x\n")
    bad = runner.invoke(app, ["trace", "eplb", str(tmp_path / "t.csv"), "--gpus", "2"])
    assert bad.exit_code == 2 and "t.csv:2: count 'x' is not a whole number" in bad.output
    sizes = runner.invoke(app, ["trace", "eplb", str(EXAMPLE), "--gpus", "5"])
    assert sizes.exit_code == 2 and "32 physical experts do not divide equally over 5 GPUs" in (
        sizes.output
    )
