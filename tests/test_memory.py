"""The memory estimate (moesim/scenario/memory.py) against what a run really allocates.

Each shape below makes a different part of the estimate the largest (one step's arrays,
learning, the clusters x experts table, the records of several variants, the balance window, a
replayed trace). A run of it, results folder included, is traced with ``tracemalloc`` (NumPy
reports its arrays to it): the estimate must be an upper bound of the traced peak, and not
more than :data:`SLACK` times above it. An array added to the engine without a term in the
estimate fails the first check; a term far larger than its arrays fails the second.

Scratch arrays made inside Numba kernels are not traced (Numba has its own allocator); the
estimate counts them, so the traced peak is a little below what the process holds.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import moesim
from moesim.engine import run_scenario
from moesim.scenario import estimated_memory
from moesim.scenario.checks.tokens import check_trace_once

#: How far above the traced peak the estimate may be.
SLACK = 4.0

_SMALL = {"tokens_per_step": 512, "seq_len": 64, "dim": 8, "clusters": 4}
SHAPES = {
    "step": {
        "steps": 3,
        "tokens": {"tokens_per_step": 32768, "seq_len": 512, "dim": 32, "clusters": 4},
        "router": {"experts": 64, "top_k": 4},
        "capacity": {"factor": 1.0},
    },
    "learning": {
        "steps": 3,
        "tokens": {"tokens_per_step": 8192, "seq_len": 256, "dim": 64, "clusters": 4},
        "router": {"experts": 64, "top_k": 4},
        "learning": {"enabled": True},
        "balance": {"aux": {"kind": "sequence", "alpha": 0.01}},
    },
    "clusters": {
        "steps": 3,
        "tokens": {**_SMALL, "clusters": 20000},
        "router": {"experts": 128, "top_k": 2},
    },
    "records": {
        "steps": 60,
        "tokens": {**_SMALL, "tokens_per_step": 64},
        "router": {"experts": 16384, "top_k": 2},
        "metrics": {"record_every": 1, "balance_window": 1},
        "variants": [{"name": "a"}, {"name": "b"}],
    },
    "balance": {
        "steps": 60,
        "tokens": {**_SMALL, "tokens_per_step": 16, "seq_len": 16},
        "router": {"experts": 32768, "top_k": 2},
        "metrics": {"balance_window": 60, "record_every": 60},
    },
    "layers": {  # every layer holds its router, learner, counters and records
        "steps": 10,
        "layers": 4,
        "tokens": {**_SMALL, "tokens_per_step": 256},
        "router": {"experts": 2048, "top_k": 2},
        "learning": {"enabled": True, "eval_tokens": 256},
        "metrics": {"record_every": 1, "balance_window": 10},
    },
    "trace": {  # learning's held-out stream holds a copy of the trace
        "steps": 3,
        "tokens": {"source": "file", "tokens_per_step": 512, "seq_len": 64, "clusters": 4},
        "router": {"experts": 16, "top_k": 2},
        "learning": {"enabled": True},
    },
}


def _traced_peak(scenario, folder) -> int:
    """Bytes allocated at the peak of a run of ``scenario`` into ``folder``, above the start."""
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        run_scenario(scenario, folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start


@pytest.mark.parametrize("shape", SHAPES)
def test_the_memory_estimate_bounds_what_a_run_allocates(tmp_path, shape):
    data = dict(SHAPES[shape])
    trace_shape = None
    if shape == "trace":
        path = tmp_path / "trace.npz"
        rng = np.random.default_rng(0)
        labels = np.arange(200_000) % 4
        np.savez(path, x=rng.standard_normal((200_000, 24)), clusters=labels)
        data["tokens"] = {**data["tokens"], "file": str(path)}
        trace_shape = check_trace_once(str(path), None, 4)
    scenario = moesim.load_scenario(data)
    # Compile the kernels this shape uses first: what is traced is the run.
    run_scenario(moesim.load_scenario(data, ["steps=2"]), tmp_path / "warm-up")
    peak = _traced_peak(scenario, tmp_path / "out")
    parts = estimated_memory(scenario, trace_shape)
    estimate = sum(parts.values())
    described = ", ".join(f"{name} {size / 2**20:.1f}" for name, size in parts.items())
    assert peak <= estimate, f"traced {peak / 2**20:.1f} MiB > estimate ({described} MiB)"
    assert estimate <= SLACK * peak, f"traced {peak / 2**20:.1f} MiB; estimate {described} MiB"


def test_a_clusters_by_experts_table_too_large_is_refused(monkeypatch):
    # Within every bound, and once accepted, then 48.8 GiB for the table alone at run time.
    monkeypatch.setattr(moesim.scenario.memory, "physical_memory", lambda: 32 * 2**30)
    with pytest.raises(moesim.ScenarioError) as caught:
        moesim.load_scenario(
            {"tokens": {"clusters": 100_000}, "router": {"experts": 65536, "top_k": 8}}
        )
    (problem,) = caught.value.problems
    assert problem.path == "tokens.clusters"
    assert "clusters x experts" in problem.hint


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        (["metrics.balance_window=100000", "steps=100000", "router.experts=16384"], "metrics"),
        (
            [
                "router.experts=65536",
                "tokens.dim=4096",
                "tokens.tokens_per_step=256",
                "tokens.seq_len=256",
            ],
            "router",
        ),
    ],
)
def test_other_large_parts_are_refused_at_their_key(monkeypatch, overrides, path):
    monkeypatch.setattr(moesim.scenario.memory, "physical_memory", lambda: 8 * 2**30)
    with pytest.raises(moesim.ScenarioError) as caught:
        moesim.load_scenario({"router": {"top_k": 8}}, overrides)
    assert [p.path.split(".")[0] for p in caught.value.problems] == [path]
