"""Worker processes of the suite: ``python -m moesim.bench TASK PAYLOAD`` prints one JSON line.

:func:`moesim.bench.common.run_worker` starts them: torch routing (its OpenMP threads must not
share a process with Numba's), scaling (a thread count per process) and memory (a fresh peak
RSS per process).
"""

from __future__ import annotations

import json
import sys


def worker_main(argv: list[str]) -> None:
    """Run the worker ``argv[0]`` on the JSON payload ``argv[1]`` and print its JSON answer."""
    from moesim.bench.memory import memory_worker
    from moesim.bench.routing import torch_routing_worker
    from moesim.bench.scaling import scaling_worker

    workers = {
        "torch_routing": torch_routing_worker,
        "scaling": scaling_worker,
        "memory": lambda payload: memory_worker([int(n) for n in payload]),
    }
    task, payload = argv[0], json.loads(argv[1])
    if task not in workers:
        raise SystemExit(f"unknown benchmark worker {task!r}; known: {', '.join(workers)}")
    print(json.dumps(workers[task](payload)))


if __name__ == "__main__":
    worker_main(sys.argv[1:])
