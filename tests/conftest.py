"""Shared test set-up: a fixed terminal width so rich output is stable, no colour codes, and
Numba's idle threads asleep rather than spinning."""

from __future__ import annotations

import os

os.environ["COLUMNS"] = "160"
os.environ["NO_COLOR"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
# Numba's OpenMP threads spin between parallel regions by default. On a 2-core machine that
# runs anything else (another test's subprocess, a sweep worker, a second pytest) the spinning
# threads take the cores the working ones need: a small run took 5x the time with both threads
# spinning (measured). Sleeping idle threads change no result (they never depend on the thread
# count); subprocesses of the tests inherit the setting.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
