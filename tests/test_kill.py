"""A run killed mid-way never looks finished: a real ``moesim run`` subprocess is stopped by
Ctrl-C (exit 130), SIGTERM (handled alike, exit 143) and SIGKILL (no chance to clean up) once it
has finished some variants, and its folder must then read as partial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from moesim.cli import app
from moesim.results import load_results

#: Eight variants, each long enough that the run is still going a second after the second one
#: is saved, short enough that the test does not wait long for the first two.
KILLABLE = {
    "name": "killable",
    "steps": 600,
    "tokens": {"tokens_per_step": 256, "dim": 8, "clusters": 4, "seq_len": 64},
    "router": {"experts": 8, "top_k": 2},
    "variants": [{"name": f"v{i}"} for i in range(8)],
}


def finished_variants(folder: Path) -> int:
    """Variants saved so far, whichever way the folder keeps them."""
    counts = [len(list((folder / "variants.partial").glob("*.json")))]
    try:
        counts.append(len(json.loads((folder / "summary.json").read_text())["variants"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return max(counts)


def start_and_kill(
    tmp_path: Path, signum: int, *options: str
) -> tuple[subprocess.Popen, str, str, Path]:
    scenario = tmp_path / "killable.yaml"
    scenario.write_text(yaml.safe_dump(KILLABLE))
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "moesim", "run", str(scenario), "-o", str(out), "-q", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while finished_variants(out) < 2 and process.poll() is None:
        assert time.monotonic() < deadline, "the run never finished two variants"
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed: make it longer"
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=240)
    return process, stdout, stderr, out


def assert_reads_as_partial(out: Path) -> None:
    summary = json.loads((out / "summary.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert summary["partial"] is True and manifest["partial"] is True
    data = load_results(out)
    assert data.partial
    assert 2 <= len(data.variants) < 8
    report = CliRunner().invoke(app, ["report", str(out)])
    assert report.exit_code == 0, report.output
    assert "partial" in report.output
    text = (out / "report.md").read_text()
    assert "partial (interrupted)**: `True" in text
    assert "of 8 variant(s) finished" in text


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "Ctrl-C"]
)
def test_sigterm_finishes_the_step_keeps_the_variants_and_marks_partial(tmp_path, signum, code):
    process, stdout, stderr, out = start_and_kill(tmp_path, signum)
    assert process.returncode == code, stdout + stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert_reads_as_partial(out)
    # Like Ctrl-C: everything finished is written whole, the running variant up to its step.
    summary = json.loads((out / "summary.json").read_text())
    *done, last = summary["variants"]
    assert len(done) >= 2 and all(v["partial"] is False for v in done)
    assert last["partial"] is True and last["steps_done"] < KILLABLE["steps"]
    assert not (out / "variants.partial").exists()
    assert (out / "history.csv").is_file() and (out / "loads.npz").is_file()
    names = set(load_results(out).loads)
    assert {v["variant"] for v in done} <= names


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="no SIGKILL on this platform")
def test_sigkill_at_any_moment_leaves_a_folder_that_reads_as_partial(tmp_path):
    process, _, _, out = start_and_kill(tmp_path, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    assert_reads_as_partial(out)
    # The variants it finished are kept, each in its own file, figures and all.
    plotted = CliRunner().invoke(app, ["plot", str(out)])
    assert plotted.exit_code == 0, plotted.output
    assert "partial" in plotted.output


def test_a_force_rerun_killed_mid_way_leaves_the_old_complete_folder(tmp_path):
    """--force writes the new run aside (in the folder's .moesim-staging-*) and moves it in
    only at its end: killed before that, the folder still holds the old, complete run."""
    out = tmp_path / "out"
    old = dict(KILLABLE, steps=4, variants=KILLABLE["variants"][:2])
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    done = CliRunner().invoke(app, ["run", str(tmp_path / "old.yaml"), "-o", str(out), "-q"])
    assert done.exit_code == 0, done.output
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def staged_variants(folder: Path) -> int:
        return len(list(folder.glob(".moesim-staging-*/variants.partial/*.json")))

    scenario = tmp_path / "killable.yaml"
    scenario.write_text(yaml.safe_dump(KILLABLE))
    command = [sys.executable, "-m", "moesim", "run", str(scenario), "-o", str(out), "-q"]
    process = subprocess.Popen([*command, "--force"], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while staged_variants(out) < 1 and process.poll() is None:
        assert time.monotonic() < deadline, "the rerun never finished a variant"
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=60)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    data = load_results(out)
    assert not data.partial and [v["variant"] for v in data.variants] == ["v0", "v1"]
    # The next --force run clears what the killed one left.
    again = CliRunner().invoke(
        app, ["run", str(tmp_path / "old.yaml"), "-o", str(out), "-q", "--force"]
    )
    assert again.exit_code == 0, again.output
    assert not list(out.glob(".moesim-staging-*")) and not load_results(out).partial


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_worker_still_dies_of_sigterm():
    """Pool workers forked inside stop_on_interrupt inherit its handler; SIGTERM must still end
    them (a pool stops its workers so), not ask them to finish their step."""
    from moesim.cli.common import stop_on_interrupt

    with stop_on_interrupt() as stop_requested:
        child = os.fork()
        if child == 0:  # the worker
            time.sleep(30)
            os._exit(0)
        time.sleep(0.2)
        os.kill(child, signal.SIGTERM)
        _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    assert not stop_requested()
