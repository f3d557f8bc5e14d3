"""The fuzzer: every family of hostile input against the real command line, with the
invariants of :mod:`fuzz.harness` (docs/guarantees.md) checked on every case.

Each test runs its family's budget (:mod:`fuzz.budget`) and fails at the end with every case
that broke an invariant (command, input, output).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from .artifacts import ODD_PATHS, damage, damages, make_trace, traces
from .budget import allowed, profile
from .harness import REPOSITORY, Outcome, changed_outside, check_folders, snapshot
from .scenarios import TINY, odd_yaml_files, scenario_files, to_yaml

GRIDS = [
    "balance.bias.rate=0.001,0.01",
    "balance.bias.rate=logspace(1e-4,1e-2,3)",
    "router.top_k=range(1,3)",
    "router.top_k=1,2,2",
    "=1,2",
    "router.top_k=",
    "nope.key=1,2",
    "router.top_k=range(0,1e9)",
    "router.top_k=range(0,1,1e-300)",
    "router.top_k=range(0,inf)",
    "balance.bias.rate=linspace(0,1,nan)",
    "balance.bias.rate=logspace(1e-4,1e-2,1e12)",
    "balance.bias.rate=linspace(0,1,-3)",
    "balance.bias.rate=logspace(-1,1,3)",
    "router.score=[sigmoid, softmax]",
    "router.experts=8,1e400",
    "steps=1,2",
    "variants=1,2",
]


def _allowed(items: list[str]) -> list[str]:
    return [item for item in items if allowed(item)]


def _write_scenario(case: Path, text: bytes, name: str = "s.yaml") -> str:
    (case / "work" / name).write_bytes(text)
    return name


def test_validate_scenarios_at_and_beyond_their_bounds(fuzz):
    @profile("validate")
    @given(scenario_files(cheap=False), st.sampled_from([[], ["--set", "steps=5"], ["-s", "x=1"]]))
    def case(scenario, extra):
        directory = fuzz.case_dir("validate")
        name = _write_scenario(directory, scenario.text)
        outcome = fuzz.run("validate", ["validate", name, *extra], directory, scenario.describe())
        fuzz.clean(directory, outcome)

    case()
    fuzz.check()


def test_odd_yaml(fuzz):
    @profile("odd_yaml")
    @given(
        odd_yaml_files().filter(lambda s: allowed(s.note) and allowed(s.note.split(" ")[0])),
        st.sampled_from(["validate", "run"]),
    )
    def case(scenario, command):
        directory = fuzz.case_dir("odd_yaml")
        name = _write_scenario(directory, scenario.text)
        # --steps 3: a truncated file may be a valid scenario of default (large) size.
        argv = [command, name] + (["-q", "-o", "out", "--steps", "3"] if command == "run" else [])
        outcome = fuzz.run("odd_yaml", argv, directory, scenario.describe())
        fuzz.clean(directory, outcome)

    case()
    fuzz.check()


def test_run_tiny_scenarios(fuzz):
    @profile("run")
    @given(
        scenario_files(cheap=True),
        st.sampled_from([[], ["--steps", "3"], ["--seed", "7"], ["--plot"], ["--steps", "0"]]),
        st.sampled_from([None, "again", "force"]),
    )
    def case(scenario, extra, rerun):
        directory = fuzz.case_dir("run")
        name = _write_scenario(directory, scenario.text)
        argv = ["run", name, "-q", "-o", "out", *extra]
        outcome = fuzz.run("run", argv, directory, scenario.describe())
        if rerun and not outcome.violations:  # again: a refusal, or a --force rerun
            again = argv + (
                ["--force", "--set", "output.save_loads=false"] if rerun == "force" else []
            )
            outcome = fuzz.run("run", again, directory, scenario.describe())
        fuzz.clean(directory, outcome)

    case()
    fuzz.check()


def test_sweep_grids(fuzz):
    @profile("sweep")
    @given(
        st.lists(st.sampled_from(_allowed(GRIDS)), min_size=1, max_size=2, unique=True),
        st.sampled_from([[], ["--seeds", "2"], ["--zip", "router.top_k,balance.bias.rate"]]),
    )
    def case(grids, extra):
        directory = fuzz.case_dir("sweep")
        name = _write_scenario(directory, to_yaml({**TINY, "steps": 3}).encode())
        argv = ["sweep", name, "-q", "-j", "1", "-o", "sw", *extra]
        for grid in grids:
            argv += ["--grid", grid]
        outcome = fuzz.run("sweep", argv, directory, {"grids": grids})
        fuzz.clean(directory, outcome)

    case()
    fuzz.check()


def test_damaged_results_folders(fuzz):
    @profile("damaged")
    @given(
        damages(), st.sampled_from(["plot", "report", "run", "run --force", "plot --only max_vio"])
    )
    def case(harm, command):
        directory = fuzz.case_dir("damaged")
        folder = directory / "work" / "res"
        shutil.copytree(fuzz.template, folder)
        shutil.copy(fuzz.template.parent / "tiny.yaml", directory / "work" / "tiny.yaml")
        for what, name, cut in harm:
            damage(folder, what, name, cut)
        words = command.split()
        if words[0] == "run":
            argv = ["run", "tiny.yaml", "-q", "-o", "res", *words[1:]]
        else:
            argv = [words[0], "res", *words[1:]]
        outcome = fuzz.run("damaged", argv, directory, {"damage": harm})
        fuzz.clean(directory, outcome)

    case()
    fuzz.check()


def test_odd_traces(fuzz):
    @profile("traces")
    @given(traces(), st.sampled_from(["validate", "run"]), st.booleans())
    def case(trace, command, give_key):
        directory = fuzz.case_dir("traces")
        file_name, key = make_trace(directory / "work", trace)
        tokens = {"source": "file", "file": file_name, "tokens_per_step": 32, "seq_len": 16}
        if give_key and key is not None:
            tokens["file_key"] = key
        data = {**TINY, "steps": 3, "tokens": tokens}
        name = _write_scenario(directory, to_yaml(data).encode())
        argv = [command, name] + (["-q", "-o", "out"] if command == "run" else [])
        outcome = fuzz.run("traces", argv, directory, {"trace": trace, "scenario": data})
        fuzz.clean(directory, outcome)

    case()
    fuzz.check()


INIT_NAMES = [
    "mine",
    "",
    "a b",
    "[bold]x",
    "x[/]",
    "missing/dir/x",
    "x.yml",
    "é",
    ".hidden",
    "-",
    "x" * 300,
    "ro/x",
    "s.yaml",
    "x.YAML",
    "figures",
]


def test_init_names(fuzz):
    names = [n for n in INIT_NAMES if len(n) < 255 or allowed("init name too long")]

    @profile("init")
    @given(
        st.one_of(
            st.sampled_from(names),
            st.text(
                st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/"), max_size=12
            ),
        ),
        st.booleans(),
        st.booleans(),
    )
    def case(name, existing, force):
        directory = fuzz.case_dir("init")
        work = directory / "work"
        (work / "ro").mkdir()
        (work / "ro").chmod(0o555)
        if existing:
            (work / "s.yaml").write_text("steps: 1\n")
            (work / "mine.yaml").write_text("steps: 1\n")
        argv = ["init", name] + (["--force"] if force else [])
        outcome = fuzz.run("init", argv, directory, {"name": name, "existing": existing})
        if outcome.reply.get("exit_code") == 0 and not outcome.violations:
            written = re.search(r"wrote (.+?); run it", outcome.reply["output"].replace("\n", ""))
            if written:  # what init writes, its own validate accepts
                checked = fuzz.run(
                    "init", ["validate", "--", written.group(1)], directory, {"name": name}, False
                )
                if checked.reply.get("exit_code") != 0:
                    checked.violations.append("init wrote a file validate rejects")
                fuzz.record(checked)
                outcome = checked if checked.violations else outcome
        fuzz.clean(directory, outcome)

    case()
    fuzz.check()


def test_odd_output_paths(fuzz):
    @profile("paths")
    @given(
        st.sampled_from(ODD_PATHS),
        st.text(
            st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/\\"), max_size=6
        ),
        st.booleans(),
        st.sampled_from(["run", "sweep"]),
    )
    def case(path, suffix, in_file, command):
        path = path + suffix if path else suffix
        if command == "sweep" and path.startswith("~") and not allowed("sweep -o ~"):
            return
        directory = fuzz.case_dir("paths")
        data = {**TINY, "steps": 3}
        if in_file:
            data["output"] = {"dir": path}
        name = _write_scenario(directory, to_yaml(data).encode())
        argv = [command, name, "-q"] + ([] if in_file else ["-o", path])
        argv += ["-j", "1", "--grid", "balance.bias.rate=0.1,0.2"] if command == "sweep" else []
        outcome = fuzz.run("paths", argv, directory, {"path": path, "in_file": in_file}, False)
        printed = re.search(r"results in (.+)", outcome.reply.get("output") or "")
        if outcome.reply.get("exit_code") == 0 and printed and len(path) < 100:
            # rich may pad the line with spaces: the path as printed, or without them
            shown = [directory / "work" / p for p in (printed.group(1), printed.group(1).rstrip())]
            names = ("summary.json", "sweep_summary.json")
            if not any((folder / n).is_file() for folder in shown for n in names):
                outcome.violations.append(f"says results in {printed.group(1)!r}: not there")
        fuzz.record(outcome)
        fuzz.clean(directory, outcome)

    case()
    fuzz.check()


SIGNALS = ["SIGINT", "SIGTERM", "SIGKILL"]


def _wait_for_python(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Until the interpreter catches SIGINT (Linux; elsewhere, no wait). Before that the
    signal is the OS's to handle; for a few ms after it, CPython's own start-up (importing
    site) fails with "Fatal Python error": both before any moesim code runs, so the cases
    wait 0.3 s more."""
    status = Path(f"/proc/{process.pid}/status")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            lines = status.read_text().splitlines()
        except OSError:  # gone, or no /proc
            return
        caught = next((line for line in lines if line.startswith("SigCgt")), "")
        if caught and int(caught.split()[1], 16) & (1 << (signal.SIGINT - 1)):
            return
        time.sleep(0.01)


def test_signals_mid_run(fuzz):
    """A real ``moesim run`` process interrupted at a random moment: exit 130 after SIGINT, 143
    after SIGTERM (0 if it had finished), death for SIGKILL; no traceback; and a folder that
    says complete is complete."""

    @profile("signals")
    @given(st.sampled_from(_allowed(SIGNALS)), st.floats(0.3, 4.0))
    def case(name, delay):
        directory = fuzz.case_dir("signals")
        work = directory / "work"
        data = {**TINY, "steps": 4000, "tokens": {**TINY["tokens"], "tokens_per_step": 512}}
        data["variants"] = [{"name": f"v{i}", "seed": i} for i in range(4)]
        (work / "s.yaml").write_text(to_yaml(data))
        before = snapshot(directory)
        outside = snapshot(directory.parent, skip=directory)
        env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "HOME": str(work / "home")}
        process = subprocess.Popen(
            [sys.executable, "-m", "moesim", "run", "s.yaml", "-q", "-o", "out"],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for_python(process)
        time.sleep(delay)
        process.send_signal(getattr(signal, name))
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        code = process.returncode
        reply = {"exit_code": code, "output": stdout + stderr, "exception": None, "seconds": delay}
        outcome = Outcome("signals", ["run", "s.yaml", f"({name} after {delay:.2f} s)"], reply)
        expected = {"SIGINT": {0, 130}, "SIGTERM": {0, 143}, "SIGKILL": {-9}}[name]
        if code not in expected:
            outcome.violations.append(f"exit status {code} after {name}")
        if "Traceback" in stdout + stderr:
            outcome.violations.append("a traceback in the output")
        outcome.violations += check_folders(directory, before, snapshot(directory))
        outcome.violations += [
            f"touched outside: {p}"
            for p in changed_outside(outside, snapshot(directory.parent, skip=directory))
        ]
        outcome.seconds = delay
        fuzz.record(outcome)
        fuzz.clean(directory, outcome)

    case()
    fuzz.check()


def test_the_report_of_a_case_is_json():
    outcome = Outcome("x", ["validate"], {"exit_code": 0, "output": "", "exception": None})
    assert json.loads(json.dumps(outcome.__dict__))["family"] == "x"
