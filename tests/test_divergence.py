"""Numerical divergence is its own verdict, never a routing one (issue 17, class 5).

A router whose state overflows to inf or NaN has no routing outcome to judge: the run stops at
that step with the verdict ``diverged``, naming the step and what went non-finite. Weights whose
sum overflows are refused before anything runs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from moesim import load_scenario, simulate
from moesim.cli import app
from moesim.engine.loop import non_finite_state
from moesim.errors import ScenarioError
from moesim.results import VERDICTS

TINY = {
    "name": "tiny",
    "steps": 40,
    "tokens": {"tokens_per_step": 256, "dim": 8, "clusters": 4, "seq_len": 64},
    "router": {"experts": 8, "top_k": 2},
}
#: A learning rate and z-loss far too large: the centroids overflow within a few steps.
OVERFLOW = ["learning.enabled=true", "learning.rate=1e6", "balance.aux.z_loss=1000"]


def test_an_overflowing_router_is_diverged_not_collapsed():
    result = simulate(load_scenario(TINY, OVERFLOW))
    summary = result.variants[0].summary
    assert summary["verdict"] == "diverged"
    assert "diverged" in VERDICTS
    step = summary["steps_done"]
    assert 0 < step < TINY["steps"]  # stopped where the state overflowed
    assert f"step {step}" in summary["verdict_reason"]
    assert "logits" in summary["verdict_reason"]
    assert not summary["partial"]  # ended by the overflow, not interrupted
    history = result.variants[0].history
    for column in ("max_vio_batch", "cv", "bias_mean"):
        assert np.isfinite(history[column]).all(), column  # no row of an overflowed step


def test_the_command_says_diverged_with_the_step(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(TINY))
    arguments = ["run", str(path), "-o", str(tmp_path / "out"), "-q"]
    outcome = CliRunner().invoke(app, [*arguments, *sum((["--set", s] for s in OVERFLOW), [])])
    assert outcome.exit_code == 0, outcome.output
    assert "collapsed" not in outcome.output
    assert "diverged" in outcome.output and "stopped at step" in outcome.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["variants"][0]["verdict"] == "diverged"


def test_a_valid_run_is_not_diverged():
    result = simulate(load_scenario(TINY, ["learning.enabled=true"]))
    assert result.variants[0].summary["verdict"] != "diverged"
    assert result.variants[0].summary["steps_done"] == TINY["steps"]


@pytest.mark.parametrize(
    "where, value, named",
    [("logits", np.inf, "logits"), ("logits", np.nan, "logits"), ("bias", np.nan, "bias")],
)
def test_non_finite_state_names_what_is_not_finite(where, value, named):
    logits = np.zeros((16, 8), dtype=np.float32)
    bias = np.zeros(8, dtype=np.float32)
    assert non_finite_state(logits, bias) is None
    (logits if where == "logits" else bias)[3] = value
    assert named in non_finite_state(logits, bias)


def test_explicit_weights_whose_sum_overflows_are_refused():
    tokens = {**TINY["tokens"], "cluster_weights": "explicit", "explicit_weights": [1e308] * 4}
    with pytest.raises(ScenarioError, match="explicit_weights: must be non-negative with a "):
        load_scenario({**TINY, "tokens": tokens})
    load_scenario({**TINY, "tokens": {**tokens, "explicit_weights": [1e307] * 4}})
