"""moesim benchmark suite: ``make bench`` (full, about 75 s on 2 quiet cores) or ``--quick``.

Prints rich tables (times are median ± IQR of repeated runs after warm-up) and the PASS/MISS of
each performance goal, and writes everything to ``benchmarks/results/latest.json``. The code is the
package ``moesim/bench/`` (``moesim.bench.run_suite``), so ``moesim bench`` runs the same suite;
this script only sets BLAS's thread count before NumPy is imported.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="CI-sized smoke run (about 1 minute).")
    size.add_argument("--tiny", action="store_true", help="Seconds; checks the harness only.")
    parser.add_argument("--threads", type=int, default=2, help="Threads for Numba/torch/BLAS.")
    parser.add_argument(
        "--sections",
        default="routing,step,routers,scaling,startup,memory,layers,noisy",
        help="Comma-separated subset of routing,step,routers,scaling,startup,memory,layers,noisy.",
    )
    parser.add_argument(
        "--memory-steps",
        type=int,
        default=None,
        help="Steps of the memory run (default 100,000, extrapolated; 1000000 to measure).",
    )
    parser.add_argument(
        "--output", type=Path, default=HERE / "results" / "latest.json", help="JSON output."
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # OpenBLAS fixes its thread count when NumPy is imported: set it first, so the BLAS
    # baselines use the same threads as Numba and torch.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    from rich.console import Console

    from moesim.bench import render, run_suite

    console = Console()
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    results = run_suite(
        mode=mode,
        threads=args.threads,
        sections=[s.strip() for s in args.sections.split(",") if s.strip()],
        output=args.output,
        console=console,
        memory_steps=args.memory_steps,
    )
    render(results, console)
    console.print(f"results in [bold]{args.output}[/]", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
