"""The entry points of ``make bench`` (benchmarks/routing.py, benchmarks/run.py) run end to end
and write what they promise (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path


def load_script(name: str):
    """A script of benchmarks/ as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_bench", Path("benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_routing_benchmark_smoke(tmp_path):
    out = tmp_path / "routing.json"
    result = load_script("routing").main(["--tokens", "512", "--repeats", "2", "--json", str(out)])
    assert result["agreement"] == 1.0
    assert {"fused_ms", "reference_ms", "matmul_ms", "speedup_vs_reference"} <= set(result)
    assert result["shape"]["tokens"] == 512
    assert result["goal_vs_reference"] == 5.0 and isinstance(result["passed"], bool)
    assert json.loads(out.read_text())["fused_ms"] == result["fused_ms"]


def test_suite_entry_point_writes_chosen_sections(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # the script sets it when unset
    out = tmp_path / "latest.json"
    arguments = ["--tiny", "--threads", "1", "--sections", "routing", "--output", str(out)]
    assert load_script("run").main(arguments) == 0
    assert set(json.loads(out.read_text())) == {"meta", "routing", "goals"}


def test_make_bench_and_moesim_bench_run_every_section_by_default():
    import inspect

    from moesim.bench import SECTIONS
    from moesim.cli.bench import bench_command

    assert load_script("run").parse_args([]).sections.split(",") == list(SECTIONS)
    default = inspect.signature(bench_command).parameters["sections"].default
    assert default.split(",") == list(SECTIONS)
