"""``moesim papers``: paper scenarios run at several seeds into the fidelity table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moesim.cli import app
from moesim.papers import evaluate, paper_scenarios, run_fidelity, verdict_counts

PAPER = """\
name: tiny_paper
steps: 30
tokens: {tokens_per_step: 256, dim: 8, clusters: 4, seq_len: 64}
router: {experts: 8, top_k: 2, init_skew: 2.0}
variants:
  - name: none
  - name: bias-1e-3
    balance: {bias: {enabled: true, rate: 1.0e-3}}
  - name: bias-1e-2
    balance: {bias: {enabled: true, rate: 1.0e-2}}
published:
  - {source: "Paper, Table 1", setting: no balancing, variant: none,
     metric: max_vio_global, value: 0.5, expect: at_least}
  - {source: "Paper, Table 1", setting: bias, variant: bias-1e-2,
     metric: max_vio_global, value: 0.04}
  - {source: "Paper, Fig. 1", setting: faster is better, metric: max_vio_global,
     expect: decreasing, variants: [none, bias-1e-3, bias-1e-2]}
  - {source: "Paper, Table 2", setting: the bias costs fidelity, variant: bias-1e-2,
     relative_to: none, metric: fidelity, value: -0.01, role: fit}
  - {source: "Other paper", setting: a router moesim lacks, variant: none,
     metric: max_vio_global, value: 17.8, role: pending}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(PAPER)
    (tmp_path / "no_points.yaml").write_text("name: plain\nsteps: 5\n")
    return tmp_path


def test_rows_from_runs_are_judged(folder):
    rows, meta = run_fidelity(folder, seeds=2, results_dir=folder / "runs")
    assert [row.verdict for row in rows][-1] == "pending"
    assert len(rows) == 5 and meta["seeds"] == 2
    value_row = rows[1]
    assert len(value_row.values) == 2 and math.isfinite(value_row.mean)
    trend = rows[2]
    assert len(trend.values) == 3
    assert trend.verdict == "hit" or trend.verdict.startswith("miss (")
    difference = rows[3]
    assert all(v <= 0 for v in difference.values)  # the bias only ever lowers fidelity
    assert sum(verdict_counts(rows).values()) == 5


def test_one_job_and_two_give_the_same_table_and_a_rerun_resumes(folder, tmp_path):
    one, _ = run_fidelity(folder, seeds=2, jobs=1, results_dir=tmp_path / "one")
    two, meta = run_fidelity(folder, seeds=2, jobs=2, results_dir=tmp_path / "two")
    assert [row.values for row in one] == [row.values for row in two]
    [stored] = meta["folders"]
    points = sorted(Path(stored, "points").glob("*.json"))
    assert len(points) == 6  # 3 variants x 2 seeds
    stamps = [path.stat().st_mtime_ns for path in points]
    again, _ = run_fidelity(folder, seeds=2, jobs=1, results_dir=tmp_path / "two")
    assert [row.values for row in again] == [row.values for row in two]
    assert [path.stat().st_mtime_ns for path in points] == stamps  # nothing ran again


def test_verdicts_of_a_value():
    [(path, scenario)] = paper_scenarios(Path(__file__).parent / "data" / "papers")
    runs = [[{"variant": "base", "max_vio_global": value}] for value in (0.07, 0.09)]
    [row] = evaluate(scenario, runs)
    assert row.verdict == "within 2x" and row.mean == pytest.approx(0.08)
    far = [[{"variant": "base", "max_vio_global": 0.5}]]
    assert evaluate(scenario, far)[0].verdict == "miss (12x too large)"
    order = [[{"variant": "base", "max_vio_global": 0.3}]]
    assert evaluate(scenario, order)[0].verdict == "right order"
    opposite = [[{"variant": "base", "max_vio_global": -0.04}]]
    assert evaluate(scenario, opposite)[0].verdict == "miss (sign)"


def test_command_writes_the_page(folder, tmp_path):
    page = tmp_path / "fidelity.md"
    outcome = CliRunner().invoke(
        app,
        ["papers", str(folder), "--seeds", "1", "-o", str(page), "--results", str(tmp_path / "r")],
    )
    assert outcome.exit_code == 0, outcome.output
    text = page.read_text()
    assert "| Paper, Table 1 | bias | max_vio_global | 0.040 |" in text
    assert "pending" in text and "Verdicts:" in text


def test_command_refuses_bad_input(tmp_path):
    outcome = CliRunner().invoke(app, ["papers", str(tmp_path / "missing")])
    assert outcome.exit_code == 2 and "no paper scenarios" in outcome.output
    (tmp_path / "bad.yaml").write_text(PAPER.replace("variant: bias-1e-2", "variant: bias-1e2"))
    outcome = CliRunner().invoke(app, ["papers", str(tmp_path)])
    assert outcome.exit_code == 2 and "did you mean 'bias-1e-2'" in outcome.output


def test_the_shipped_paper_scenarios_run_at_a_small_size(tmp_path):
    """scenarios/papers/ end to end, shrunk: every published point gets a value or is pending."""
    shrink = ["steps=12", "tokens.tokens_per_step=512", "learning.eval_tokens=64"]
    rows, _ = run_fidelity(
        Path("scenarios/papers"), seeds=1, overrides=shrink, results_dir=tmp_path
    )
    assert len(rows) >= 20
    roles = {row.role for row in rows}
    assert {"fit", "predicted"} <= roles  # no pending row left once every model exists
    for row in rows:
        if row.role == "pending":
            assert row.verdict == "pending" and not row.values
        else:
            assert row.values and all(math.isfinite(v) for v in row.values), row.setting
