"""Running one fuzz case and checking the invariants moesim guarantees (docs/guarantees.md).

A case is a folder of inputs and a command line. It runs in its own temporary folder (its
working directory and ``HOME``), in a :class:`Worker` process, and is then checked:

- the exit code is 0, 1 or 2 (130 only where the case interrupts the run);
- no traceback, no uncaught exception, no crash, no hang;
- a refusal (exit 2) comes within :data:`REFUSAL_SECONDS`;
- nothing outside the case's folder changed (its parent folder, which holds a sentinel file);
- a results folder written by the case that says it is complete is complete.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import select
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
REFUSAL_SECONDS = 1.0
#: Address space of the worker: a case that asks for more gets a MemoryError (a violation)
#: instead of exhausting the machine.
MEMORY_LIMIT = 6 * 2**30
#: A case that takes longer is a hang (a violation); the worker is killed and restarted.
CASE_SECONDS = 60.0


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


class Worker:
    """A ``python worker.py`` process that runs cases in-process, restarted when it dies."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def _start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "NO_COLOR": "1", "COLUMNS": "160"}
        env.setdefault("MPLBACKEND", "Agg")
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("worker.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            preexec_fn=_limit_memory,
        )
        assert json.loads(self._read_line(120.0) or "{}").get("ready"), "fuzz worker did not start"

    def _read_line(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        return self.process.stdout.readline() if ready else None

    def invoke(self, argv: list[str], cwd: Path, env: dict, timeout: float = CASE_SECONDS) -> dict:
        """What ``moesim ARGV`` did in ``cwd``: exit code, output, exception, seconds."""
        if self.process is None or self.process.poll() is not None:
            self._start()
        case = {"argv": argv, "cwd": str(cwd), "env": env}
        self.process.stdin.write(json.dumps(case) + "\n")
        self.process.stdin.flush()
        line = self._read_line(timeout)
        if line:
            return json.loads(line)
        if line is None:  # still running
            self.close()
            return {"died": f"no answer after {timeout:.0f} s (a hang)"}
        code = self.process.wait()
        self.process = None
        return {"died": f"the worker died (exit status {code}; a negative one is a signal)"}

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every path under ``root`` (but ``skip``) with its size and modification time."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = here / name
            try:
                stat = path.lstat()
            except OSError:
                continue
            found[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return found


@dataclass
class Outcome:
    """One case's command, reply and the invariants it broke (empty: none)."""

    family: str
    argv: list[str]
    reply: dict
    violations: list[str] = field(default_factory=list)
    inputs: dict = field(default_factory=dict)
    seconds: float = 0.0

    def describe(self) -> str:
        reply = self.reply
        output = (reply.get("output") or "")[-1500:]
        return (
            f"[{self.family}] moesim {' '.join(self.argv)}\n  violations: {self.violations}\n"
            f"  inputs: {json.dumps(self.inputs)[:1500]}\n  exit: {reply.get('exit_code')} "
            f"exception: {reply.get('exception')} died: {reply.get('died')}\n  output: {output}"
            + (f"\n  traceback: {reply['traceback'][-1500:]}" if reply.get("traceback") else "")
        )


def check_reply(reply: dict, interrupted: bool = False) -> list[str]:
    """The exit code, traceback and refusal-time invariants of one command's reply."""
    if "died" in reply:
        return [reply["died"]]
    problems = []
    allowed = {0, 1, 2, 130} if interrupted else {0, 1, 2}
    if reply["exit_code"] not in allowed:
        problems.append(f"exit code {reply['exit_code']}")
    if reply["exception"] not in (None, "SystemExit"):
        problems.append(f"uncaught {reply['exception']}")
    if "Traceback" in (reply["output"] or ""):
        problems.append("a traceback in the output")
    if reply["exit_code"] == 2 and reply["seconds"] > REFUSAL_SECONDS:
        problems.append(f"refused after {reply['seconds']:.2f} s")
    return problems


def changed_outside(before: dict, after: dict) -> list[str]:
    """Paths added, removed or changed between two snapshots."""
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k) != after.get(k))


def _variant_names(folder: Path) -> list[str] | None:
    try:
        resolved = yaml.safe_load((folder / "scenario.resolved.yaml").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(resolved, dict):
        return None
    variants = resolved.get("variants") or []
    return [v["name"] for v in variants] or [resolved.get("name") or "base"]


def says_complete(folder: Path) -> bool:
    """Whether ``folder`` says the run finished: summary.json and manifest.json say
    ``"partial": false`` and no ``variants.partial/`` is left."""
    if (folder / "variants.partial").exists():
        return False
    for name in ("summary.json", "manifest.json"):
        path = folder / name
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return False
        if not isinstance(data, dict) or data.get("partial") is not False:
            return False
    return True


def incomplete_reasons(folder: Path) -> list[str]:
    """Why a run folder that says it is complete is not (empty: it is complete)."""
    summary = json.loads((folder / "summary.json").read_text())
    if (folder / "points").is_dir() or "variants" not in summary:
        return []  # a sweep folder: its points are checked by the sweep's own tests
    expected = _variant_names(folder)
    got = [v.get("variant") for v in summary.get("variants") or [] if isinstance(v, dict)]
    reasons = []
    if expected is None:
        reasons.append("scenario.resolved.yaml unreadable")
    elif got != expected:
        reasons.append(f"summary.json has variants {got}, the scenario {expected}")
    if any(isinstance(v, dict) and v.get("partial") for v in summary.get("variants") or []):
        reasons.append("a variant is partial")
    try:
        with open(folder / "history.csv", newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows or any(len(row) != len(rows[0]) for row in rows):
            reasons.append("history.csv empty or ragged")
        elif expected and {r[0] for r in rows[1:]} != set(expected):
            reasons.append("history.csv does not hold every variant")
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        reasons.append(f"history.csv unreadable: {error}")
    if (folder / "loads.npz").exists():
        try:
            with np.load(folder / "loads.npz", allow_pickle=False) as loads:
                for name in loads.files:
                    loads[name]
        except Exception as error:  # noqa: BLE001 (any failure to read is the finding)
            reasons.append(f"loads.npz unreadable: {error}")
    return reasons


def check_folders(case_dir: Path, before: dict, after: dict) -> list[str]:
    """Results folders the case wrote (summary.json new or changed) that claim too much."""
    problems = []
    for key in sorted(set(after)):
        path = Path(key)
        if path.name != "summary.json" or before.get(key) == after.get(key):
            continue
        folder = path.parent
        if says_complete(folder):
            problems.extend(
                f"{folder.relative_to(case_dir)}: says complete, but {reason}"
                for reason in incomplete_reasons(folder)
            )
    return problems


def literal_home(case_dir: Path, after: dict) -> list[str]:
    """A folder named ``~`` (a path whose ``~`` was not expanded)."""
    return [f"created {Path(k).relative_to(case_dir)}" for k in after if Path(k).name == "~"]


def run_case(worker: Worker, family: str, argv: list[str], case_dir: Path, inputs: dict) -> Outcome:
    """Run ``moesim ARGV`` with its working directory (and HOME) in ``case_dir/work``."""
    work = case_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    parent = case_dir.parent
    outside_before = snapshot(parent, skip=case_dir)
    inside_before = snapshot(case_dir)
    reply = worker.invoke(argv, work, {"HOME": str(work / "home")})
    outcome = Outcome(family, argv, reply, check_reply(reply), inputs)
    inside_after = snapshot(case_dir)
    outside = changed_outside(outside_before, snapshot(parent, skip=case_dir))
    outcome.violations += [f"touched outside its folder: {p}" for p in outside[:5]]
    outcome.violations += check_folders(case_dir, inside_before, inside_after)
    outcome.violations += literal_home(case_dir, inside_after)
    return outcome
