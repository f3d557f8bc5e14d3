"""The command line: exit codes, files written, refusals, errors and interrupts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from moesim.cli import app

runner = CliRunner()

TINY = {
    "name": "tiny",
    "steps": 12,
    "tokens": {"tokens_per_step": 256, "dim": 8, "clusters": 4, "seq_len": 64},
    "router": {"experts": 8, "top_k": 2},
    "variants": [{"name": "bias"}, {"name": "nobias", "balance": {"bias": {"enabled": False}}}],
}


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_run_writes_results_and_prints_the_table(tiny, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(tiny), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "MaxVio" in result.output and "nobias" in result.output
    for name in ("scenario.resolved.yaml", "summary.json", "history.csv", "loads.npz"):
        assert (out / name).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert [v["variant"] for v in summary["variants"]] == ["bias", "nobias"]
    assert summary["partial"] is False
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 0 and "numba" in manifest["versions"]
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files
    resolved = yaml.safe_load((out / "scenario.resolved.yaml").read_text())
    assert resolved["router"]["experts"] == 8 and "learning" in resolved


def test_run_refuses_to_overwrite_without_force(tiny, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, ["run", str(tiny), "-o", str(out), "-q"]).exit_code == 0
    before = (out / "summary.json").read_text()
    refused = runner.invoke(app, ["run", str(tiny), "-o", str(out), "-q", "--steps", "5"])
    assert refused.exit_code == 1
    assert "--force" in refused.output
    assert (out / "summary.json").read_text() == before
    forced = runner.invoke(app, ["run", str(tiny), "-o", str(out), "-q", "--steps", "5", "--force"])
    assert forced.exit_code == 0
    assert json.loads((out / "summary.json").read_text())["variants"][0]["steps"] == 5


def test_run_overrides_and_bad_overrides(tiny, tmp_path):
    result = runner.invoke(
        app, ["run", str(tiny), "-o", str(tmp_path / "o"), "-q", "--set", "router.topk=3"]
    )
    assert result.exit_code == 2
    assert "router.topk" in result.output and "top_k" in result.output
    assert "Traceback" not in result.output


def test_invalid_scenario_exits_2_with_location(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("router:\n  experts: 8\n  top_k: 9\n")
    result = runner.invoke(app, ["run", str(path), "-q", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "bad.yaml" in result.output and "top_k" in result.output
    assert not (tmp_path / "o").exists()
    missing = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "not found" in missing.output


def test_validate_schema_init_version(tiny, tmp_path, monkeypatch):
    validated = runner.invoke(app, ["validate", str(tiny)])
    assert validated.exit_code == 0 and "valid" in validated.output
    schema = runner.invoke(app, ["schema"])
    assert schema.exit_code == 0
    assert "properties" in json.loads(schema.output)
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init", "mine"]).exit_code == 0
    assert runner.invoke(app, ["validate", "mine.yaml"]).exit_code == 0
    assert runner.invoke(app, ["init", "mine"]).exit_code == 1  # no silent overwrite
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and "moesim" in version.output


def test_ctrl_c_keeps_finished_work_marked_partial(tmp_path):
    # A short first variant, then a long one: once the first is saved the run is stepping.
    variants = [{"name": "short", "steps": 5}, {"name": "long", "steps": 5_000_000}]
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(dict(TINY, variants=variants)))
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "moesim", "run", str(path), "-o", str(out), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "summary.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partial"] is True
    short, long = summary["variants"]
    assert short["partial"] is False and short["steps_done"] == 5
    assert long["partial"] is True and 0 < long["steps_done"] < 5_000_000


def _console_script(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed ``moesim`` command itself (not the typer app in this process)."""
    script = Path(sys.executable).with_name("moesim")
    if not script.exists():
        pytest.skip(f"no moesim console script beside {sys.executable} (package not installed)")
    return subprocess.run(
        [str(script), *arguments], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_console_script_exit_codes_and_files(tiny, tmp_path):
    out = tmp_path / "out"
    done = _console_script("run", str(tiny), "-o", str(out), "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "nobias" in done.stdout
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(
        ["history.csv", "loads.npz", "manifest.json", "scenario.resolved.yaml", "summary.json"]
    )
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    refused = _console_script("run", str(tiny), "-o", str(out), "-q", cwd=tmp_path)
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing overwritten
    bad = tmp_path / "bad.yaml"
    bad.write_text("router:\n  topk: 3\n")
    invalid = _console_script("run", str(bad), "-o", str(tmp_path / "never"), cwd=tmp_path)
    assert invalid.returncode == 2
    assert "bad.yaml:2:3: router.topk: unknown key; did you mean 'top_k'?" in invalid.stderr
    assert "Traceback" not in invalid.stderr and not (tmp_path / "never").exists()


def test_a_bad_trace_fails_validation_before_any_folder_is_made(tmp_path):
    values = np.ones((16, 4), dtype=np.float32)
    values[5, 1] = np.nan
    np.save(tmp_path / "trace.npy", values)
    scenario = dict(TINY, tokens={"source": "file", "file": "trace.npy", "tokens_per_step": 8,
                                  "seq_len": 8})  # fmt: skip
    path = tmp_path / "trace.yaml"
    path.write_text(yaml.safe_dump(scenario))
    for command in (["validate", str(path)], ["run", str(path), "-o", str(tmp_path / "out")]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "tokens.file: " in result.output and "NaN or inf (first at row 5)" in result.output
    assert not (tmp_path / "out").exists()


def test_an_unwritable_results_folder_is_an_error_not_a_traceback(tiny, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["run", str(tiny), "-o", str(blocker / "out"), "-q"])
    assert result.exit_code == 1
    assert "cannot write the results folder" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_summary_table_shows_both_drop_rates_and_the_verdict_in_80_columns(tiny, tmp_path):
    from rich.console import Console

    from moesim.cli import summary_table

    out = tmp_path / "out"
    capped = ["--set", "capacity.factor=1.0"]
    assert runner.invoke(app, ["run", str(tiny), "-o", str(out), "-q", *capped]).exit_code == 0
    summaries = json.loads((out / "summary.json").read_text())["variants"]
    console = Console(width=80, record=True)
    console.print(summary_table("moesim: tiny", summaries))
    text = console.export_text()
    assert "assign." in text and "tokens" in text
    for s in summaries:
        assert f"{s['token_drop_rate']:.2%}" in text
        assert s["verdict"] in text


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(Path("scenarios").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_runs(path, tmp_path):
    result = runner.invoke(
        app,
        [
            "run",
            str(path),
            "-q",
            "-o",
            str(tmp_path / "o"),
            "--steps",
            "6",
            "--set",
            "tokens.tokens_per_step=512",
            "--set",
            "tokens.seq_len=64",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert all(v["steps_done"] == 6 for v in summary["variants"])
