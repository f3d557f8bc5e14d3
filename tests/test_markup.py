"""User text printed through rich is shown as given, never read as rich markup (issue 17, class 9).

A folder or file named ``out/[bold]br[/]`` must be printed as such: not as ``out/br`` in bold,
and not as a MarkupError after the results are written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from moesim.cli import app

TINY = """\
name: tiny
steps: 6
tokens: {tokens_per_step: 256, dim: 8, clusters: 4, seq_len: 64}
router: {experts: 8, top_k: 2}
"""
PAPER = """\
name: tiny_paper
steps: 6
tokens: {tokens_per_step: 256, dim: 8, clusters: 4, seq_len: 64}
router: {experts: 8, top_k: 2}
published:
  - {source: "Paper [bold]T[/]", setting: "a [red]setting[/]", metric: max_vio_global,
     value: 0.5, expect: at_least}
"""
#: A path component rich would read as markup: a style tag and a closing tag.
MARKUP = "[bold]br[/]"


def invoke(*arguments: str):
    outcome = CliRunner().invoke(app, [str(a) for a in arguments])
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), outcome.output
    return outcome


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "sc[bold]x[b].yaml"
    path.write_text(TINY)
    return path


def test_validate_shows_the_file_name_as_given(scenario):
    outcome = invoke("validate", scenario)
    assert outcome.exit_code == 0, outcome.output
    assert f"valid: {scenario}" in outcome.output.replace("\n", "")


def test_run_plot_and_report_show_the_folder_as_given(scenario, tmp_path):
    folder = tmp_path / "out" / MARKUP  # "[bold]br[" then "]": a closing tag "[/]" across
    outcome = invoke("run", scenario, "-o", folder, "-q")
    assert outcome.exit_code == 0, outcome.output
    assert (folder / "summary.json").is_file()
    assert f"results in {folder}" in outcome.output.replace("\n", "")
    outcome = invoke("plot", folder)
    assert outcome.exit_code == 0, outcome.output
    assert str(folder / "figures") in outcome.output.replace("\n", "")
    outcome = invoke("report", folder)
    assert outcome.exit_code == 0, outcome.output
    assert str(folder / "report.html") in outcome.output.replace("\n", "")


def test_errors_show_the_folder_as_given(tmp_path):
    folder = tmp_path / MARKUP
    outcome = invoke("plot", folder)
    assert outcome.exit_code == 2
    assert str(folder) in outcome.output.replace("\n", "")


def test_sweep_shows_the_folder_and_swept_text_as_given(scenario, tmp_path):
    folder = tmp_path / "sw" / MARKUP
    outcome = invoke("sweep", scenario, "-g", "description=a[/],b[bold]", "-o", folder, "-q")
    assert outcome.exit_code == 0, outcome.output
    flat = outcome.output.replace("\n", "")
    assert f"results in {folder}" in flat
    assert "a[/]" in flat and "b[bold]" in flat  # swept values in the table
    outcome = invoke("report", folder)
    assert outcome.exit_code == 0, outcome.output
    assert str(folder / "report.md") in outcome.output.replace("\n", "")


def test_a_variant_name_in_the_summary_table_is_text(tmp_path):
    from rich.console import Console

    from moesim.cli import summary_table

    console = Console(width=160, record=True)
    summaries = [
        {"variant": "v[bold]1[/]", "verdict": "balanced", "partial": False},
        {"variant": "v[/]2", "verdict": "diverged", "partial": True},
    ]
    console.print(summary_table("moesim: [red]x[/]", summaries))
    text = console.export_text()
    assert "v[bold]1[/]" in text and "v[/]2" in text and "moesim: [red]x[/]" in text


def test_papers_show_the_output_and_the_cells_as_given(tmp_path):
    folder = tmp_path / "papers[bold]"
    folder.mkdir()
    (folder / "tiny.yaml").write_text(PAPER)
    output = tmp_path / MARKUP / "fidelity.md"
    output.parent.mkdir(parents=True)
    outcome = invoke(
        "papers", folder, "--seeds", "1", "-o", output, "--results", tmp_path / "r[/]", "-q"
    )
    assert outcome.exit_code == 0, outcome.output
    flat = outcome.output.replace("\n", "")
    assert str(output) in flat
    assert "[bold]T[/]" in flat
