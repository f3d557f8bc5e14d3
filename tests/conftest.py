"""Shared test set-up: a fixed terminal width so rich output is stable, no colour codes, and
the thread-count determinism runs. (Numba's idle threads sleep rather than spin: moesim itself
sets that, see ``moesim._jit``.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

os.environ["COLUMNS"] = "160"
os.environ["NO_COLOR"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")


#: Runs the jobs given as JSON in argv[1] (name -> Python source that prints its result) in this
#: one interpreter; prints name -> what the job printed, or its traceback, as JSON.
_JOBS_RUNNER = """
import contextlib, io, json, sys, traceback
outputs = {}
for name, source in json.loads(sys.argv[1]).items():
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(source, name, "exec"), {"__name__": "__main__"})
        outputs[name] = printed.getvalue().strip()
    except Exception:
        outputs[name] = "error: " + traceback.format_exc()
print(json.dumps(outputs))
"""


@pytest.fixture(scope="session")
def outputs_by_thread_count(request) -> dict[str, tuple[str, str]]:
    """The thread-count determinism jobs of the collected test modules (a module's
    ``THREAD_COUNT_JOBS``: name -> Python source printing a digest), all run in one subprocess
    with NUMBA_NUM_THREADS=1 and one with NUMBA_NUM_THREADS=2 (the thread count is fixed when
    Numba starts): name -> (what it printed with 1 thread, with 2 threads). Two interpreters
    for every such test instead of two per test: each start pays Numba's import."""
    jobs: dict[str, str] = {}
    for item in request.session.items:
        jobs.update(getattr(getattr(item, "module", None), "THREAD_COUNT_JOBS", {}))
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _JOBS_RUNNER, json.dumps(jobs)],
            env=dict(os.environ, NUMBA_NUM_THREADS=str(threads)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for threads in (1, 2)
    ]
    printed = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr
        printed.append(json.loads(stdout.strip().splitlines()[-1]))
    return {name: (printed[0][name], printed[1][name]) for name in jobs}
