"""The fuzzer's worker: runs ``moesim`` commands in-process (typer's CliRunner), one per line.

Started by :class:`fuzz.harness.Worker` as ``python worker.py``, under a memory limit, so that a
case that crashes, exhausts memory or hangs takes down this process only: the harness sees the
worker die or time out, records it against the case and starts a new worker.

Protocol: one JSON object per line on stdin, ``{"argv": [...], "cwd": DIR, "env": {...}}``; one
JSON object per line on stdout, ``{"exit_code", "output", "exception", "traceback",
"seconds"}``. The real stdout is kept for the protocol: nothing else may print to it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback


def main() -> None:
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to stderr
    from typer.testing import CliRunner

    from moesim.cli import app

    runner = CliRunner()
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        case = json.loads(line)
        os.chdir(case["cwd"])
        start = time.perf_counter()
        result = runner.invoke(app, case["argv"], env=case.get("env") or None)
        seconds = time.perf_counter() - start
        error = result.exception
        reply = {
            "exit_code": result.exit_code,
            "output": result.output,
            "exception": None if error is None else type(error).__name__,
            "traceback": None
            if error is None or isinstance(error, SystemExit)
            else "".join(traceback.format_exception(error))[-4000:],
            "seconds": seconds,
        }
        protocol.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
