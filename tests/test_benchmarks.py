"""The routing benchmark runs end to end and reports what it promises (no timing assertions)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def test_routing_benchmark_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("routing_bench", Path("benchmarks/routing.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "routing.json"
    result = module.main(["--tokens", "512", "--repeats", "2", "--json", str(out)])
    assert out.is_file()
    assert result["agreement"] == 1.0
    assert {"fused_ms", "reference_ms", "matmul_ms", "speedup_vs_reference"} <= set(result)
