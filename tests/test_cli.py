"""The command line: exit codes, files written, refusals, errors and interrupts."""

from __future__ import annotations

import json
import subprocess
import sys
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


# --------------------------------------------------------------- --force replaces the old run


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_force_replaces_every_file_of_the_old_run(tiny, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, ["run", str(tiny), "-o", str(out), "-q"]).exit_code == 0
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    assert (out / "figures" / "load_heatmap.png").is_file()
    rerun = ["run", str(tiny), "-o", str(out), "-q", "--force", "--steps", "6"]
    result = runner.invoke(app, [*rerun, "--set", "output.save_loads=false"])
    assert result.exit_code == 0, result.output
    left = sorted(p.name for p in out.iterdir())
    assert left == ["history.csv", "manifest.json", "scenario.resolved.yaml", "summary.json"]
    report = runner.invoke(app, ["report", str(out)])
    assert report.exit_code == 0, report.output
    assert not (out / "figures" / "load_heatmap.png").exists()  # no loads: no heatmap
    assert "partial (interrupted)**: `False`" in (out / "report.md").read_text()


@pytest.mark.parametrize("leftover", ["report.html", "report.md", "figures"])
def test_a_first_run_refuses_a_folder_with_a_report_or_figures(tiny, tmp_path, leftover):
    out = tmp_path / "out"
    out.mkdir()
    if leftover == "figures":
        (out / "figures").mkdir()
        (out / "figures" / "max_vio.png").write_bytes(b"old")
    else:
        (out / leftover).write_text("old")
    result = runner.invoke(app, ["run", str(tiny), "-o", str(out), "-q"])
    assert result.exit_code == 1 and "--force" in result.output and leftover in result.output
    assert sorted(p.name for p in out.iterdir()) == [leftover]


def test_a_failed_force_rerun_keeps_the_old_complete_folder(tiny, tmp_path, monkeypatch):
    import importlib

    from moesim.results import load_results

    engine_run = importlib.import_module("moesim.engine.run")
    out = tmp_path / "out"
    assert runner.invoke(app, ["run", str(tiny), "-o", str(out), "-q"]).exit_code == 0
    before = _files(out)
    real = engine_run.simulate_variant

    def second_fails(variant, name, **options):
        if name == "nobias":
            raise OSError(28, "No space left on device")
        return real(variant, name, **options)

    monkeypatch.setattr(engine_run, "simulate_variant", second_fails)
    result = runner.invoke(app, ["run", str(tiny), "-o", str(out), "-q", "--force"])
    assert result.exit_code == 1 and "No space left" in result.output
    assert _files(out) == before  # no staging folder left, not a byte changed
    assert not load_results(out).partial


# ------------------------------------------------------- saving a variant costs that variant


def test_saving_a_variant_writes_its_own_size_not_the_whole_run(tmp_path, monkeypatch):
    """Bytes made durable (fsync) between one variant's start and the next stay the same from
    the first variant to the last: saving is O(variant), the run O(variants), not quadratic."""
    import importlib
    import os

    from moesim.engine import run_scenario

    engine_run = importlib.import_module("moesim.engine.run")
    synced = [0]
    per_variant: list[int] = []
    real_fsync, real_simulate = os.fsync, engine_run.simulate_variant

    def counting_fsync(fd):
        synced[0] += os.fstat(fd).st_size
        return real_fsync(fd)

    def marking_simulate(*args, **options):
        per_variant.append(synced[0])
        return real_simulate(*args, **options)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    monkeypatch.setattr(engine_run, "simulate_variant", marking_simulate)
    variants = [{"name": f"v{i}", "seed": i} for i in range(24)]
    scenario = dict(TINY, steps=4, variants=variants)
    run_scenario(scenario, tmp_path / "out", progress=False)
    costs = np.diff(per_variant)  # bytes saved after variant i (i = 0 .. 22)
    assert costs.max() <= 1.2 * costs[0] + 512, costs.tolist()
    assert synced[0] - per_variant[-1] < 24 * 2 * costs[0]  # the end writes the run once


def test_init_refuses_a_name_too_long_for_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = runner.invoke(app, ["init", "a" * 300])
    assert outcome.exit_code == 2 and "at most 255" in outcome.output
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_unknown_users_home_is_refused(command, tmp_path):
    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "switch.yaml"
    outcome = runner.invoke(app, [command, str(scenario), "-o", "~nosuchuser1234/x"])
    assert outcome.exit_code == 2 and "no such user's home folder" in outcome.output
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit)
