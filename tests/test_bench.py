"""The benchmark harness runs end to end (tiny sizes) and writes the expected JSON; no timings
are asserted."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from moesim import bench
from moesim.cli import app


def test_summarize_samples_median_and_iqr():
    timing = bench.summarize_samples([4.0, 1.0, 3.0, 2.0, 5.0])
    assert timing == {"median": 3.0, "iqr": 2.0, "repeats": 5}
    assert bench.summarize_samples([0.5]) == {"median": 0.5, "iqr": 0.0, "repeats": 1}


def test_result_hash_ignores_timings_only():
    bias = np.arange(4, dtype=np.float32)
    summary = {"max_vio_global": 0.1, "seconds": 1.0, "steps_per_second": 10.0}
    same = bench.result_hash({**summary, "seconds": 2.0, "steps_per_second": 5.0}, bias)
    assert bench.result_hash(summary, bias) == same
    assert bench.result_hash(summary, bias + 1) != same


@pytest.mark.skipif(not bench.torch_available(), reason="torch (bench extra) not installed")
def test_torch_twin_matches_route():
    import torch

    from moesim import route

    logits, bias = bench.routing_inputs(64)
    options = {k: v for k, v in bench.DEEPSEEK_V3_ROUTING.items() if k != "score"}
    indices, _ = bench.torch_route(torch.from_numpy(logits), torch.from_numpy(bias), **options)
    ours, _ = route(logits, bias, **bench.DEEPSEEK_V3_ROUTING)
    np.testing.assert_array_equal(np.sort(indices.numpy(), 1), np.sort(ours, 1))


def test_torch_comparison_of_identical_routings(tmp_path):
    # What the torch worker saves, made by moesim itself: full agreement, no weight difference.
    from moesim import route
    from moesim.bench.routing import compare_with_torch

    indices, weights = route(*bench.routing_inputs(64), **bench.DEEPSEEK_V3_ROUTING)
    np.save(tmp_path / "indices_64.npy", indices)
    np.save(tmp_path / "weights_64.npy", weights)
    assert compare_with_torch(64, str(tmp_path)) == {
        "torch_agreement": 1.0,
        "torch_ordered_agreement": 1.0,
        "torch_max_weight_diff": 0.0,
    }


def test_deepseek_v3_router_section_matches_the_kernel_options():
    router = bench.step_scenario(tokens_per_step=256)["router"]
    options = bench.DEEPSEEK_V3_ROUTING
    assert router["experts"] == bench.DEEPSEEK_V3_EXPERTS
    assert (router["top_k"], router["groups"], router["topk_groups"]) == (
        options["top_k"],
        options["n_groups"],
        options["topk_groups"],
    )
    assert (router["score"], router["route_scale"]) == (options["score"], options["route_scale"])


def test_unknown_worker_is_refused():
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-m", "moesim.bench", "warp", "{}"], capture_output=True, text=True
    )
    assert completed.returncode != 0
    assert "unknown benchmark worker 'warp'" in completed.stderr


def test_tiny_suite_end_to_end(tmp_path):
    output = tmp_path / "latest.json"
    results = bench.run_suite(mode="tiny", threads=1, output=output)
    saved = json.loads(output.read_text())
    assert set(saved) == {"meta", "goals", *bench.SECTIONS}
    assert {"cpu", "cores", "numpy", "numba", "torch", "load_average"} <= set(saved["meta"])
    for row in saved["routing"]["rows"]:
        assert {"tokens", "moesim", "reference"} <= set(row)
        assert {"median", "iqr", "repeats"} <= set(row["moesim"])
        if saved["meta"]["torch"] is not None:
            assert 0.0 <= row["torch_agreement"] <= 1.0
    assert {"blas_logits", "blas_gradient", "learning_off", "learning_on", "pieces"} <= set(
        saved["step"]
    )
    assert saved["scaling"]["identical"] is True
    assert {"steps_per_second_1t", "steps_per_second_2t", "hash"} <= set(
        saved["scaling"]["rows"][0]
    )
    assert saved["startup"]["warm"]["median"] > 0
    assert saved["memory"]["peak_rss_mb"] > 0 and saved["memory"]["extrapolated"]
    assert [row["layers"] for row in saved["layers"]["rows"]] == [1, 2]
    assert saved["layers"]["deepseek"]["moe_layers"] == 58  # the real layer count, at small T
    paths = saved["layers"]["token_paths"]
    assert paths["kernel"]["median"] > 0 and paths["max_difference"] < 1e-4  # agrees with its twin
    noisy = saved["noisy"]["rows"]
    assert [row["kernel"] for row in noisy] == ["noisy_logits", "balance_sums", "gradient"]
    for row in noisy:
        assert row["moesim"]["median"] > 0 and row["max_difference"] < 1e-4  # agrees with twin
    statuses = {g["goal"]: g["status"] for g in saved["goals"]}
    assert len(statuses) == 11 and set(statuses.values()) <= {"PASS", "MISS", "SKIP", "BUSY"}
    fight = saved["routing"]["after_matmul"]
    assert fight["after_numpy"]["median"] > 0 and fight["after_moesim"]["median"] > 0
    assert saved["routing"]["rows"][0]["float32_twin_agreement"] >= 0.9999
    assert saved["meta"]["cpu_detail"] is None or "family" in saved["meta"]["cpu_detail"]
    assert set(saved["meta"]["busy_elsewhere"]) == set(bench.SECTIONS)
    buffer = io.StringIO()
    bench.render(results, Console(file=buffer, width=120))
    assert "Goals" in buffer.getvalue()


def test_cli_bench_one_section(tmp_path):
    output = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app, ["bench", "--tiny", "--threads", "1", "--sections", "step", "-o", str(output)]
    )
    assert result.exit_code == 0, result.output
    assert set(json.loads(output.read_text())) == {"meta", "step", "goals"}


def test_cli_bench_rejects_unknown_section(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--sections", "routing,warp", "-o", "x.json"])
    assert result.exit_code == 2
    assert "warp" in result.output


def test_busy_machine_turns_timing_goals_into_busy():
    results = {
        "meta": {"busy_elsewhere": {"step": 0.5, "routing": 0.01}},
        "step": {
            "blas_logits": {"median": 1.0},
            "blas_gradient": {"median": 1.0},
            "learning_off": {"median": 2.0},
            "learning_on": {"median": 20.0},
        },
    }
    statuses = {g["goal"]: (g["status"], g["note"]) for g in bench.evaluate_goals(results)}
    assert {status for status, _ in statuses.values()} == {"BUSY"}
    assert all("50%" in note for _, note in statuses.values())
    results["meta"]["busy_elsewhere"]["step"] = 0.05
    goals = bench.evaluate_goals(results)
    assert [g["status"] for g in goals] == ["PASS", "MISS"]
    # A MISS says where the time goes and how much must go: 20 ms against 5 x 2 ms.
    assert goals[1]["note"].endswith("the budget is 10000.00 ms: 10000.00 ms to go")


def test_busy_elsewhere_sees_another_process():
    import os
    import subprocess
    import sys
    import time

    before = bench.cpu_counters()
    if before is None:
        pytest.skip("no /proc/stat on this system")
    spin = "import time\nt = time.time()\nwhile time.time() - t < 1.5:\n    pass\n"
    spinner = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(1.0)
        during = bench.cpu_counters()
    finally:
        spinner.wait()
    # One spinning process holds one core of the machine (more if others are busy too).
    assert bench.busy_elsewhere(before, during) > 0.5 / os.cpu_count()
    assert bench.busy_elsewhere(None, during) is None
