"""Shared test set-up: a fixed terminal width so rich output is stable, and no colour codes."""

from __future__ import annotations

import os

os.environ["COLUMNS"] = "160"
os.environ["NO_COLOR"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
