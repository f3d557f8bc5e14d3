"""Figures: each one is a real image that shows data, drawn from run and sweep folders.

The results folders are synthetic (hand-made loads, bias and summaries in the exact format of
``moesim.results``), so these tests are fast and independent of the engine; the last test draws
every shipped scenario end to end at reduced steps.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moesim import plots
from moesim.engine import HISTORY_COLUMNS, Result, VariantResult
from moesim.results import history_csv, write_atomic

TOKENS, TOP_K, EXPERTS, RECORDS = 512, 2, 16, 60
RUN_FIGURES = {"load_heatmap", "max_vio", "bias", "lorenz", "drop_rate", "tradeoff"}
SWEEP_FIGURES = {"drop_vs_capacity", "tradeoff", "sweep_metrics"}
SCENARIO_YAML = f"""name: synthetic
seed: 0
steps: {RECORDS}
tokens:
  tokens_per_step: {TOKENS}
router:
  experts: {EXPERTS}
  top_k: {TOP_K}
"""


def _variant(name, rng, preference, *, bias_rate, capacity_factor):
    """A VariantResult whose loads drift from ``preference`` to uniform when the bias is on."""
    assignments = TOKENS * TOP_K
    fair = assignments / EXPERTS
    capacity = None if capacity_factor is None else math.ceil(fair * capacity_factor)
    bias = np.zeros(EXPERTS, dtype=np.float32)
    demand = np.zeros((RECORDS, EXPERTS), dtype=np.int64)
    kept = np.zeros_like(demand)
    biases = np.zeros((RECORDS, EXPERTS), dtype=np.float32)
    history = {column: np.zeros(RECORDS) for column in HISTORY_COLUMNS}
    for r in range(RECORDS):
        mix = np.exp(np.log(preference) + 40.0 * bias)
        demand[r] = rng.multinomial(assignments, mix / mix.sum())
        kept[r] = demand[r] if capacity is None else np.minimum(demand[r], capacity)
        if bias_rate:
            bias += np.float32(bias_rate) * np.sign(fair - demand[r]).astype(np.float32)
        biases[r] = bias
        history["step"][r] = r
        history["max_vio_batch"][r] = demand[r].max() / fair - 1
        history["max_vio_window"][r] = demand[r].max() / fair - 1
        history["cv"][r] = demand[r].std() / fair
        history["drop_rate"][r] = (demand[r] - kept[r]).sum() / assignments
        history["bias_min"][r], history["bias_max"][r] = bias.min(), bias.max()
        history["fidelity"][r] = 1.0
        history["specialization"][r] = 0.3 + 0.2 * rng.random()
    final = demand[-6:].sum(axis=0)
    max_vio_global = final.max() / final.mean() - 1
    verdict = "balanced" if max_vio_global < 0.1 else "imbalanced"
    summary = {
        "variant": name,
        "steps": RECORDS,
        "partial": False,
        "max_vio_global": float(max_vio_global),
        "mean_max_vio_batch": float(history["max_vio_batch"].mean()),
        "final_max_vio_batch": float(history["max_vio_batch"][-6:].mean()),
        "max_vio_noise_floor": 0.3,
        "cv": float(final.std() / final.mean()),
        "gini": None,
        "starved": int((final < 0.1 * final.mean()).sum()),
        "drop_rate": float(history["drop_rate"].mean()),
        "token_drop_rate": float(history["drop_rate"].mean() * 1.6),
        "capacity": capacity,
        "steps_to_balance": None,
        "specialization": float(history["specialization"].mean()),
        "quality": float(0.5 + 0.1 * rng.random()),
        "verdict": verdict,
        "verdict_reason": f"MaxVio_global {max_vio_global:.3f} <synthetic> & none starved",
    }
    return VariantResult(
        name=name,
        scenario=None,
        summary=summary,
        history=history,
        loads=kept,
        demand=demand,
        bias=biases,
        final_loads=final,
        final_bias=biases[-1],
    )


def write_synthetic_run(path: Path, seed: int = 0, variants=None) -> Path:
    """A results folder like ``moesim run`` writes: bias on/off and a capacity variant."""
    rng = np.random.default_rng(seed)
    preference = rng.dirichlet(np.full(EXPERTS, 0.7)) + 1e-3
    specs = variants or [
        ("bias", 1e-3, None),
        ("no_bias", 0.0, None),
        ("capacity_1.0", 1e-3, 1.0),
    ]
    result = Result(scenario=None)
    for name, rate, factor in specs:
        result.variants.append(
            _variant(name, rng, preference, bias_rate=rate, capacity_factor=factor)
        )
    path.mkdir(parents=True, exist_ok=True)
    summary = {"scenario": "synthetic", "partial": False, "variants": result.summary.values()}
    summary["variants"] = list(summary["variants"])
    write_atomic(path / "summary.json", json.dumps(summary, indent=2))
    write_atomic(path / "history.csv", history_csv(result))
    arrays = {}
    for v in result.variants:
        for key in ("loads", "demand", "bias", "final_loads", "final_bias"):
            arrays[f"{v.name}.{key}"] = getattr(v, key)
        arrays[f"{v.name}.steps"] = v.history["step"].astype(np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(path / "loads.npz", buffer.getvalue())
    write_atomic(path / "scenario.resolved.yaml", SCENARIO_YAML)
    manifest = {
        "moesim": "0.1.0",
        "scenario": "synthetic",
        "seed": seed,
        "variants": [v.name for v in result.variants],
        "partial": False,
        "seconds": 1.5,
        "command": ["moesim", "run", "synthetic.yaml"],
    }
    write_atomic(path / "manifest.json", json.dumps(manifest))
    return path


def write_synthetic_sweep(path: Path, seed: int = 0) -> Path:
    """A sweep folder: ``sweep.csv`` over bias rate x capacity factor x 3 seeds, one failed row."""
    rng = np.random.default_rng(seed)
    rows = []
    for rate in (1e-4, 1e-3, 1e-2):
        for factor in (1.0, 1.25, 1.5):
            for s in range(3):
                # U-shaped in log(rate), as in the Loss-Free paper.
                max_vio = 0.05 + 0.08 * (math.log10(rate) + 3) ** 2 + 0.02 * rng.random()
                rows.append(
                    {
                        "balance.bias.rate": rate,
                        "capacity.factor": factor,
                        "seed": s,
                        "max_vio_global": max_vio,
                        "final_max_vio_batch": max_vio + 0.1,
                        "starved": int(rng.integers(0, 2)),
                        "drop_rate": max(0.0, 0.12 - 0.2 * (factor - 1)) + 0.01 * rng.random(),
                        "specialization": 0.4 + 0.1 * math.log10(rate) / 4 + 0.01 * rng.random(),
                        "verdict": "balanced" if max_vio < 0.1 else "imbalanced",
                        "error": "",
                    }
                )
    rows.append({**rows[0], "seed": 3, "max_vio_global": "", "error": "ValueError: boom"})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.mkdir(parents=True, exist_ok=True)
    write_atomic(path / "sweep.csv", buffer.getvalue())
    write_atomic(path / "scenario.resolved.yaml", SCENARIO_YAML.replace("synthetic", "sweepy"))
    return path


def assert_shows_data(png: Path, figure_size_px: tuple[int, int] | None = None) -> np.ndarray:
    """A readable PNG of the expected size that is not a blank canvas; returns its pixels."""
    with Image.open(png) as image:
        image.load()
        pixels = np.asarray(image.convert("L"), dtype=float)
        size = image.size
    if figure_size_px is not None:
        assert size == figure_size_px, f"{png.name}: {size} != {figure_size_px}"
    assert min(size) >= 300, f"{png.name} is only {size}"
    assert pixels.std() > 15, f"{png.name} looks blank (pixel std {pixels.std():.1f})"
    # Not just a frame: a good share of the pixels is neither white nor background.
    assert (pixels < 200).mean() > 0.02, f"{png.name} has almost no ink"
    return pixels


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_synthetic_run(tmp_path_factory.mktemp("run") / "results")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    return write_synthetic_sweep(tmp_path_factory.mktemp("sweep") / "results")


def _expected_sizes(results_dir: Path) -> dict[str, tuple[int, int]]:
    drawn, _ = plots.render_figures(plots.load_results(results_dir))
    return {
        p.name: tuple(int(round(v)) for v in p.figure.get_size_inches() * plots.DPI) for p in drawn
    }


def test_every_run_figure_is_an_image_with_data(run_dir):
    skipped = {}
    written = plots.write_figures(run_dir, on_skip=skipped.__setitem__)
    assert {p.stem for p in written} == RUN_FIGURES
    assert set(skipped) == {"drop_vs_capacity", "sweep_metrics"}
    sizes = _expected_sizes(run_dir)
    for path in written:
        assert path.parent == run_dir / "figures"
        assert_shows_data(path, sizes[path.stem])
    # Full-width figures are 7.5 in at 150 dpi.
    assert sizes["max_vio"][0] == 1125


def test_every_sweep_figure_is_an_image_with_data(sweep_dir):
    skipped = {}
    written = plots.write_figures(sweep_dir, on_skip=skipped.__setitem__)
    assert {p.stem for p in written} == SWEEP_FIGURES
    assert "load_heatmap" in skipped and "summary.json" in skipped["load_heatmap"]
    sizes = _expected_sizes(sweep_dir)
    for path in written:
        assert_shows_data(path, sizes[path.stem])


def test_heatmap_content_changes_with_the_data(tmp_path):
    first = write_synthetic_run(tmp_path / "a", seed=1)
    second = write_synthetic_run(tmp_path / "b", seed=2)
    again = write_synthetic_run(tmp_path / "c", seed=1)
    images = [
        assert_shows_data(plots.write_figures(d, only=["load_heatmap"])[0])
        for d in (first, second, again)
    ]
    assert images[0].shape == images[1].shape
    assert (np.abs(images[0] - images[1]) > 20).mean() > 0.02
    np.testing.assert_array_equal(images[0], images[2])


def test_svg_and_pdf(run_dir):
    written = plots.write_figures(run_dir, formats=("svg", "pdf"), only=["lorenz"])
    assert [p.name for p in written] == ["lorenz.svg", "lorenz.pdf"]
    assert b"<svg" in written[0].read_bytes()[:500]
    assert written[1].read_bytes().startswith(b"%PDF")


def test_figures_have_titles_labels_and_captions(run_dir, sweep_dir):
    for folder in (run_dir, sweep_dir):
        drawn, _ = plots.render_figures(plots.load_results(folder))
        for plot in drawn:
            assert plot.caption and "\n" not in plot.caption
            assert "synthetic" in plot.figure.get_suptitle() or "sweepy" in (
                plot.figure.get_suptitle()
            )
            axes = [
                ax
                for ax in plot.figure.axes
                if ax.get_visible() and getattr(ax, "_colorbar", None) is None
            ]
            # Panels in a row share the y label of the first; every panel has its x label.
            assert all(ax.get_xlabel() for ax in axes), f"{plot.name}: an x axis is unlabelled"
            assert axes[0].get_ylabel(), f"{plot.name}: the y axis is unlabelled"


def test_figures_without_their_data_are_skipped_with_a_reason(tmp_path):
    folder = write_synthetic_run(tmp_path / "plain", variants=[("no_bias", 0.0, None)])
    skipped = {}
    written = plots.write_figures(folder, on_skip=skipped.__setitem__)
    assert "bias" in skipped and "bias" in skipped["bias"]
    # No drops: the drop-rate figure is still drawn (a flat zero line with a note).
    assert "drop_rate" in {p.stem for p in written}
    (folder / "loads.npz").unlink()
    skipped.clear()
    written = plots.write_figures(folder, on_skip=skipped.__setitem__)
    assert "loads.npz" in skipped["load_heatmap"]
    assert {p.stem for p in written} >= {"max_vio", "drop_rate"}


def test_bad_arguments(run_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown figure"):
        plots.write_figures(run_dir, only=["nope"])
    with pytest.raises(ValueError, match="unknown format"):
        plots.write_figures(run_dir, formats=["gif"])
    with pytest.raises(plots.NotResultsError, match="not a moesim results folder"):
        plots.write_figures(tmp_path)
    with pytest.raises(plots.NotResultsError, match="not a folder"):
        plots.write_figures(tmp_path / "missing")


def test_sweep_reading_drops_failed_points_and_finds_parameters(sweep_dir):
    data = plots.load_results(sweep_dir)
    assert data.sweep_params == ["balance.bias.rate", "capacity.factor"]
    assert len(data.sweep["seed"]) == 27  # the failed row is left out
    assert data.scenario == "sweepy"  # from scenario.resolved.yaml


def test_interval_is_the_95_percent_interval_of_the_mean():
    values = np.array([1.0, 2.0, 4.0, np.nan])
    mean, half, n = plots.interval(values)
    assert n == 3 and mean == pytest.approx(7 / 3)
    assert half == pytest.approx(1.96 * np.std([1, 2, 4], ddof=1) / math.sqrt(3))
    assert plots.interval([5.0]) == (5.0, 0.0, 1)


def test_uniform_drop_rate_matches_monte_carlo():
    rng = np.random.default_rng(0)
    tokens, top_k, experts, factor = 512, 2, 16, 1.0
    capacity = math.ceil(tokens * top_k / experts * factor)
    demand = rng.binomial(tokens, top_k / experts, size=400_000)
    simulated = np.maximum(0, demand - capacity).mean() / (tokens * top_k / experts)
    expected = plots.uniform_drop_rate(tokens, top_k, experts, factor)
    assert expected == pytest.approx(simulated, rel=0.02)


def test_format_number():
    assert plots.format_number(None) == "-"
    assert plots.format_number(float("nan")) == "-"
    assert plots.format_number(0.0523) == "0.052"
    assert plots.format_number(12) == "12"
    assert plots.format_number(0.00012) == "1.20e-04"


@pytest.mark.slow
def test_shipped_scenarios_draw_every_figure(tmp_path):
    """End to end: each shipped scenario at reduced steps through the engine and the figures."""
    scenario_module = pytest.importorskip("moesim.scenario", reason="moesim.scenario not built yet")
    from moesim.engine import simulate
    from moesim.results import write_results

    files = sorted((Path(__file__).parent.parent / "scenarios").glob("*.yaml"))
    files = [f for f in files if "sweep" not in f.stem]
    if not files:
        pytest.skip("no shipped scenarios in scenarios/")
    for path in files:
        scenario = scenario_module.load_scenario(
            path, ["steps=40", "tokens.tokens_per_step=256", "tokens.seq_len=64"]
        )
        out = write_results(simulate(scenario), tmp_path / path.stem)
        written = plots.write_figures(out)
        names = {p.stem for p in written}
        assert {"load_heatmap", "max_vio", "lorenz", "drop_rate"} <= names, path.name
        sizes = _expected_sizes(out)
        for png in written:
            assert_shows_data(png, sizes[png.stem])
