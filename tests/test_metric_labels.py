"""One home for what a result is: every summary metric has a label (moesim.results.metrics) and
a line in docs/metrics.md, and one formatter shows it the same in the CLI and the report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from moesim.results.metrics import (
    HISTORY_COLUMNS,
    METRICS,
    SUMMARY_METRICS,
    format_metric,
    format_number,
    format_value,
    metric_spec,
)

METRICS_DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


def documented_names() -> set[str]:
    """Names in the first cell of a table row of docs/metrics.md (``| `name` |``, or several
    names in one cell: ``| `bias_min`, `bias_max` |``)."""
    names = set()
    for line in METRICS_DOC.read_text().splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`(\w+)`", first_cell))
    return names


def test_every_summary_metric_has_a_label():
    missing = [name for name in SUMMARY_METRICS if name not in METRICS]
    assert not missing, f"add these to moesim.results.metrics.METRICS: {missing}"
    assert list(METRICS) == list(SUMMARY_METRICS)  # one table: no label for a metric not made
    for name in SUMMARY_METRICS:
        spec = metric_spec(name)
        assert spec.label and spec.title, name


def test_every_summary_metric_and_history_column_is_documented():
    documented = documented_names()
    missing = [name for name in (*SUMMARY_METRICS, *HISTORY_COLUMNS) if name not in documented]
    assert not missing, f"add a line for each of these to docs/metrics.md: {missing}"
    assert "docs/model.md §6" in METRICS_DOC.read_text()


def test_format_metric_shows_fractions_in_percent():
    assert format_metric("drop_rate", 0.1234) == "12.34%"
    assert format_metric("drop_rate", 0.1234, digits=3) == "12.340%"
    assert format_metric("drop_rate", 0.0) == "0.00%"
    assert format_metric("cv", 0.1234) == "0.123"
    assert format_metric("mean_max_vio_batch", 0.1234, digits=2) == "0.12"
    assert format_metric("steps_to_balance", 1234) == "1,234"
    for missing in (None, float("nan")):
        assert format_metric("drop_rate", missing) == "-"
        assert format_metric("cv", missing) == "-"
    # The same as Python's percent format, which the summary table used before.
    for value in (0.5, 0.0123, 0.98765, 1.0):
        assert format_metric("token_drop_rate", value) == f"{value:.2%}"


def test_format_number_and_format_value():
    assert format_number(None) == "-"
    assert format_number(float("nan")) == "-"
    assert format_number(0.0523) == "0.052"
    assert format_number(12) == "12"
    assert format_number(0.00012) == "1.20e-04"
    assert format_value(None) == "none"
    assert format_value(2.0) == "2"
    assert format_value(0.001) == "0.001"
    assert format_value("sigmoid") == "sigmoid"


@pytest.mark.parametrize("name", ["drop_rate", "top10_share", "final_drop_rate"])
def test_percent_metrics_scale_by_100(name):
    assert metric_spec(name).scale == 100.0
    assert metric_spec("max_vio_global").scale == 1.0


def test_a_terminal_table_rounds_tiny_values_instead_of_widening():
    assert format_metric("max_vio_global", 0.0004) == "4.00e-04"
    assert format_metric("max_vio_global", 0.0004, scientific=False) == "0.000"
    assert format_metric("drop_rate", 0.00004, scientific=False) == "0.00%"
