"""Routing benchmark: the fused Numba step, the NumPy reference and the BLAS matmul, side by side.

DeepSeek-V3 shape by default (T=4096, E=256, K=8, 8 groups keep 4, sigmoid + bias, d=64).
Timings are medians over repeated calls after a warm-up; the ratios are what matter, since all
three run in the same process on the same inputs. Usage::

    python benchmarks/routing.py [--tokens 4096] [--repeats 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numba
import numpy as np
from rich.console import Console
from rich.table import Table

import moesim
from moesim.reference import route_reference

GOAL_VS_REFERENCE = 5.0


def median_seconds(function, repeats: int) -> tuple[float, float]:
    """Median and interquartile range of ``repeats`` timed calls (after one warm-up call)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return float(median), float(q3 - q1)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--experts", type=int, default=256)
    parser.add_argument("--top-k", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((args.tokens, args.dim)).astype(np.float32) / np.sqrt(args.dim)
    centroids = rng.standard_normal((args.experts, args.dim)).astype(np.float32)
    logits = tokens @ centroids.T
    bias = (rng.standard_normal(args.experts) * 0.01).astype(np.float32)
    options = dict(top_k=args.top_k, n_groups=8, topk_groups=4, route_scale=2.5)

    fused = median_seconds(lambda: moesim.routing_step(logits, bias, **options), args.repeats)
    reference = median_seconds(
        lambda: route_reference(logits, bias, **options), max(3, args.repeats // 5)
    )
    matmul = median_seconds(lambda: tokens @ centroids.T, args.repeats)
    # Same answer, or the speed means nothing.
    indices, _ = moesim.route(logits, bias, **options)
    reference_indices, _ = route_reference(logits, bias, **options)
    agreement = float((np.sort(indices, 1) == np.sort(reference_indices, 1)).all(1).mean())

    rows = [
        ("moesim fused step (Numba)", fused, 1.0),
        ("NumPy reference", reference, reference[0] / fused[0]),
        ("BLAS matmul X @ W.T (context)", matmul, matmul[0] / fused[0]),
    ]
    table = Table(
        title=f"routing T={args.tokens} E={args.experts} K={args.top_k} groups 8 keep 4, "
        f"d={args.dim}, {numba.get_num_threads()} threads"
    )
    for column in ("implementation", "median ms", "IQR ms", "time / fused"):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    for name, (median, iqr), ratio in rows:
        table.add_row(name, f"{median * 1e3:.2f}", f"{iqr * 1e3:.2f}", f"{ratio:.1f}x")
    console = Console()
    console.print(table)
    speedup = reference[0] / fused[0]
    verdict = "PASS" if speedup >= GOAL_VS_REFERENCE else "MISS"
    console.print(
        f"fused vs NumPy reference: {speedup:.1f}x (goal >= {GOAL_VS_REFERENCE:g}x): {verdict}; "
        f"same expert sets on {agreement:.1%} of tokens"
    )
    result = {
        "shape": vars(args) | {"json": None},
        "threads": numba.get_num_threads(),
        "machine": platform.platform(),
        "fused_ms": fused[0] * 1e3,
        "reference_ms": reference[0] * 1e3,
        "matmul_ms": matmul[0] * 1e3,
        "speedup_vs_reference": speedup,
        "goal_vs_reference": GOAL_VS_REFERENCE,
        "agreement": agreement,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
