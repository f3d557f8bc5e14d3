"""Fused routing step benchmark: moesim's fused step kernel, the NumPy reference and BLAS.

DeepSeek-V3 routing by default (T=4096, E=256, K=8, 8 groups keep 4, sigmoid + bias), with the
matmul ``X @ W.T`` (d=64) for context. Timings are medians over repeated calls after a warm-up;
the ratios are what matter, since all three run in the same process. The code is
``moesim.bench.routing.bench_fused_step``; this script prints its table and writes its JSON
(``make bench`` writes ``benchmarks/results/routing.json``). Usage::

    python benchmarks/routing.py [--tokens 4096] [--repeats 20] [--json out.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--experts", type=int, default=256)
    parser.add_argument("--top-k", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    args = parser.parse_args(argv)

    from rich.console import Console

    from moesim.bench import bench_fused_step, render_fused_step, write_json

    result = bench_fused_step(
        args.tokens, experts=args.experts, top_k=args.top_k, dim=args.dim, repeats=args.repeats
    )
    render_fused_step(result, Console())
    if args.json is not None:
        write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
