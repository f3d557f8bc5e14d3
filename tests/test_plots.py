"""Figures: each one is a real image that shows data, drawn from run and sweep folders.

Most results folders are synthetic (hand-made loads, bias and summaries in the exact format of
``moesim.results`` and ``moesim.sweep``), so these tests are fast and independent of the engine.
The last tests draw every shipped scenario end to end at reduced size: each run scenario, and
``bias_rate_sweep.yaml`` on part of its grid with two seeds (session fixtures, shared with
``test_report.py``).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import numpy as np
import pytest
from matplotlib import colors as mcolors
from PIL import Image

from moesim import figures
from moesim.figures import registry
from moesim.figures.capacity import UNIFORM_LABEL
from moesim.figures.sweep import x_parameters
from moesim.results import (
    HISTORY_COLUMNS,
    NotResultsError,
    Result,
    VariantResult,
    history_csv,
    load_results,
    write_atomic,
)
from moesim.statistics import mean_interval

TOKENS, TOP_K, EXPERTS, RECORDS = 512, 2, 16, 60
#: Every run figure: the synthetic run has the bias, capacity factors and specialization.
RUN_FIGURES = {
    "load_heatmap",
    "max_vio",
    "bias",
    "lorenz",
    "drop_rate",
    "drop_vs_capacity",
    "tradeoff",
}
#: Figures of an expert-parallel deployment (the synthetic run and sweep have none).
DEPLOYMENT_FIGURES = {"gpu_layer_heatmap", "gpu_traffic", "step_time"}
#: File names of the synthetic sweep's figures (its chosen metric is specialization).
SWEEP_FIGURES = {"sweep_specialization", "sweep_metrics", "drop_vs_capacity", "tradeoff"}
#: The synthetic run: (variant, bias rate, capacity factor).
RUN_VARIANTS = (
    ("bias", 1e-3, None),
    ("no_bias", 0.0, None),
    ("capacity_1.0", 1e-3, 1.0),
    ("capacity_1.5", 1e-3, 1.5),
)
SCENARIO_YAML = f"""name: synthetic
seed: 0
steps: {RECORDS}
tokens:
  tokens_per_step: {TOKENS}
router:
  experts: {EXPERTS}
  top_k: {TOP_K}
  score: sigmoid
"""
SHIPPED = Path(__file__).parent.parent / "scenarios"
#: Reduced size of the end-to-end runs: a few steps of small batches.
SMALL = ["steps=40", "tokens.tokens_per_step=256", "tokens.seq_len=64"]
YELLOW = "#f0e442"


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


def _variants_yaml(specs) -> str:
    """The ``variants`` section of the resolved scenario for ``write_synthetic_run``."""
    lines = ["variants:"]
    for name, rate, factor in specs:
        lines.append(f"- name: {name}")
        lines.append(f"  balance: {{bias: {{enabled: {str(bool(rate)).lower()}, rate: {rate}}}}}")
        if factor is not None:
            lines.append(f"  capacity: {{factor: {factor}}}")
    return "\n".join(lines) + "\n"


def write_synthetic_run(path: Path, seed: int = 0, variants=None) -> Path:
    """A results folder like ``moesim run`` writes: bias on/off and two capacity variants."""
    rng = np.random.default_rng(seed)
    preference = rng.dirichlet(np.full(EXPERTS, 0.7)) + 1e-3
    specs = variants or RUN_VARIANTS
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
    write_atomic(path / "scenario.resolved.yaml", SCENARIO_YAML + _variants_yaml(specs))
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


#: The synthetic sweep's grid (sweep.csv columns, in this order).
SWEEP_GRID = {
    "balance.bias.rate": [1e-4, 1e-3, 1e-2],
    "capacity.factor": [1.0, 1.25, 1.5],
    "router.score": ["sigmoid", "softmax"],
}


def write_synthetic_sweep(path: Path, seed: int = 0, grid: dict | None = None) -> Path:
    """A sweep folder as ``moesim sweep`` writes it: ``sweep.csv`` over ``grid`` x 3 seeds with
    one failed row, and ``sweep_summary.json`` ranking points by the highest specialization."""
    grid = grid or SWEEP_GRID
    rng = np.random.default_rng(seed)
    rows = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        rate, factor = params["balance.bias.rate"], params["capacity.factor"]
        softmax = params.get("router.score") == "softmax"
        for s in range(3):
            # U-shaped in log(rate), as in the Loss-Free paper; softmax a little worse.
            max_vio = 0.05 + 0.08 * (math.log10(rate) + 3) ** 2 + 0.02 * rng.random()
            max_vio += 0.05 * softmax
            rows.append(
                {
                    **params,
                    "seed": s,
                    "variant": "sweepy",
                    "status": "ok",
                    "max_vio_global": max_vio,
                    "final_max_vio_batch": max_vio + 0.1,
                    "starved": 0,  # the same everywhere: no panel, a note
                    "drop_rate": max(0.0, 0.12 - 0.2 * (factor - 1)) + 0.01 * rng.random(),
                    "specialization": 0.4 + 0.1 * math.log10(rate) / 4 + 0.01 * rng.random(),
                    "quality": 0.5 - 0.2 * max_vio + 0.01 * rng.random(),
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
    # The best point as moesim.sweep picks it: the highest mean over the seeds that finished.
    means: dict[tuple, list] = {}
    for row in rows[:-1]:
        means.setdefault(tuple(row[k] for k in grid), []).append(row["specialization"])
    best = max(means, key=lambda key: np.mean(means[key]))
    summary = {
        "scenario": "sweepy",
        "parameters": list(grid),
        "grid": grid,
        "zip": [],
        "seeds": 3,
        "metric": "specialization",
        "minimize": False,
        "points": len(rows),
        "best": {
            "params": dict(zip(grid, best, strict=True)),
            "variant": "sweepy",
            "n": 3,
            "specialization": {"mean": float(np.mean(means[best])), "std": 0.0, "ci95": 0.0},
        },
        "ok": len(rows) - 1,
        "failed": 1,
        "missing": 0,
        "partial": False,
        "seconds": 12.5,
        "versions": {"moesim": "0.1.0", "numpy": np.__version__},
    }
    write_atomic(path / "sweep_summary.json", json.dumps(summary, indent=2))
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


def assert_plots_show_data(plot_list) -> None:
    """Every panel of every figure holds data (lines, points or an image), not only notes."""
    for plot in plot_list:
        for ax in _panels(plot.figure):
            drawn = ax.lines or ax.collections or ax.images
            assert drawn, f"{plot.name}: a panel without data ({ax.get_title()!r})"


def _panels(figure) -> list:
    return [ax for ax in figure.axes if ax.get_visible() and getattr(ax, "_colorbar", None) is None]


@contextmanager
def keeping_drawn(module):
    """Keeps what ``module.render_figures`` draws while the block runs: a list of its
    ``(plots, skipped)`` results, so a test checks the very figures a command wrote or embedded
    instead of drawing them again (drawing is most of these tests' time)."""
    kept = []
    real = module.render_figures

    def spy(*args, **options):
        kept.append(real(*args, **options))
        return kept[-1]

    with mock.patch.object(module, "render_figures", spy):
        yield kept


class Drawn(NamedTuple):
    """The figures ``figures.write_figures`` wrote for a folder and the figures it drew for
    them. Shared by several tests: they look at the figures and never change them."""

    written: list[Path]
    skipped: dict[str, str]
    plots: list
    sizes: dict[str, tuple[int, int]]  # file stem -> expected PNG size (pixels)

    def plot(self, name: str):
        (found,) = [p for p in self.plots if p.name == name]
        return found


def write_and_keep(folder: Path) -> Drawn:
    """``figures.write_figures(folder)`` drawing each figure once, with what it drew."""
    skipped = {}
    with keeping_drawn(registry) as kept:
        written = figures.write_figures(folder, on_skip=skipped.__setitem__)
    ((plots, _),) = kept
    inches = {p.name: p.figure.get_size_inches() for p in plots}
    sizes = {
        name: tuple(int(round(v)) for v in size * figures.DPI) for name, size in inches.items()
    }
    return Drawn(written, skipped, plots, sizes)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_synthetic_run(tmp_path_factory.mktemp("run") / "results")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    return write_synthetic_sweep(tmp_path_factory.mktemp("sweep") / "results")


@pytest.fixture(scope="module")
def run_drawn(run_dir) -> Drawn:
    """Every figure of the synthetic run, written once for the tests that look at them."""
    return write_and_keep(run_dir)


@pytest.fixture(scope="module")
def sweep_drawn(sweep_dir) -> Drawn:
    """Every figure of the synthetic sweep, written once for the tests that look at them."""
    return write_and_keep(sweep_dir)


def test_every_run_figure_is_an_image_with_data(run_dir, run_drawn):
    written, skipped, plots, sizes = run_drawn
    assert {p.stem for p in written} == RUN_FIGURES
    assert set(skipped) == {
        "sweep_chosen_metric",
        "sweep_metrics",
        "sweep_deployment",
        "experts_per_token",
        *DEPLOYMENT_FIGURES,
    }
    for path in written:
        assert path.parent == run_dir / "figures"
        assert_shows_data(path, sizes[path.stem])
    # Full-width figures are 7.5 in at 150 dpi.
    assert sizes["max_vio"][0] == 1125
    assert_plots_show_data(plots)


def test_every_sweep_figure_is_an_image_with_data(sweep_drawn):
    written, skipped, plots, sizes = sweep_drawn
    assert {p.stem for p in written} == SWEEP_FIGURES
    assert "load_heatmap" in skipped and "summary.json" in skipped["load_heatmap"]
    for path in written:
        assert_shows_data(path, sizes[path.stem])
    assert_plots_show_data(plots)


def test_the_chosen_metric_figure_follows_sweep_summary(sweep_dir, sweep_drawn, tmp_path):
    data = load_results(sweep_dir)
    assert data.sweep_metric == ("specialization", False)
    plot = sweep_drawn.plot("sweep_specialization")  # the chosen metric's figure
    title = plot.figure.get_suptitle()
    assert "specialization" in title and "highest is best" in title
    # The best point of sweep_summary.json is ringed once, in the panel against each parameter.
    rings = [
        c
        for ax in plot.figure.axes
        for c in ax.collections
        if c.get_facecolor().size == 0 or not c.get_facecolor()[:, 3].any()
    ]
    assert len(rings) == len(x_parameters(data))
    # Another metric, lowest best: another file name and title.
    folder = shutil.copytree(sweep_dir, tmp_path / "other")
    summary = json.loads((folder / "sweep_summary.json").read_text())
    summary.update(metric="max_vio_global", minimize=True, best=None)
    (folder / "sweep_summary.json").write_text(json.dumps(summary))
    written = figures.write_figures(folder, only=["sweep_chosen_metric"])
    assert [p.name for p in written] == ["sweep_max_vio_global.png"]
    (folder / "sweep_summary.json").unlink()
    skipped = {}
    figures.write_figures(folder, only=["sweep_chosen_metric"], on_skip=skipped.__setitem__)
    assert "sweep_summary.json" in skipped["sweep_chosen_metric"]


def test_sweep_lines_are_never_pooled_a_large_grid_is_split_into_panels(tmp_path):
    grid = {**SWEEP_GRID, "router.top_k": [2, 4]}  # 2 x 3 x 2 = 12 lines against the rate
    data = load_results(write_synthetic_sweep(tmp_path / "big", grid=grid))
    layout = figures.sweep_layout(data, "balance.bias.rate")
    assert layout.facet_keys == ["router.score"]  # fewest values, text on ties
    assert len(layout.facets) == 2 and len(layout.styles) == 6
    (plot,), _ = figures.render_figures(data, only=["sweep_chosen_metric"])
    titles = {ax.get_title() for ax in plot.figure.axes}
    assert {"score=sigmoid", "score=softmax"} <= titles
    legend_texts = [t.get_text() for leg in _legends(plot.figure) for t in leg.get_texts()]
    assert not any("mean over" in text for text in legend_texts)
    # Each line of a panel is one combination: the seeds of one point, nothing averaged.
    assert all(len(ax.lines) <= figures.MAX_LINES + 1 for ax in _panels(plot.figure))


def test_a_grid_too_large_for_panels_is_named_not_drawn(tmp_path):
    grid = {**SWEEP_GRID, "router.top_k": [2, 4], "router.experts": [8, 16]}
    grid["tokens.clusters"] = [4, 8]  # 3 x 2 x 2 x 2 x 2 x 3: 8 panels of 6 lines
    data = load_results(write_synthetic_sweep(tmp_path / "huge", grid=grid))
    assert figures.sweep_layout(data, "balance.bias.rate").too_many_facets
    (plot,), _ = figures.render_figures(data, only=["sweep_chosen_metric"])
    notes = [t.get_text() for ax in plot.figure.axes for t in ax.texts]
    assert any("too many to draw honestly" in note for note in notes)


def _legends(figure) -> list:
    found = list(figure.legends)
    for sub in figure.subfigs:
        found += sub.legends
    return found + [ax.get_legend() for ax in figure.axes if ax.get_legend()]


def test_sweep_metrics_shows_quality_and_leaves_out_constant_metrics(sweep_drawn):
    plot = sweep_drawn.plot("sweep_metrics")
    ylabels = " ".join(ax.get_ylabel() for ax in _panels(plot.figure))
    assert "quality" in ylabels and "specialization" in ylabels
    assert "starved" not in ylabels  # 0 at every point
    assert "starved experts (count) = 0" in plot.figure.get_supxlabel()


def test_sweep_figures_use_human_labels(sweep_drawn):
    for plot in sweep_drawn.plots:
        for ax in _panels(plot.figure):
            for label in (ax.get_xlabel(), ax.get_ylabel()):
                assert "." not in label.split("(")[0], f"{plot.name}: raw key path {label!r}"
                assert "_" not in label.replace("MaxVio_", ""), f"{plot.name}: raw {label!r}"
        texts = [t.get_text() for leg in _legends(plot.figure) for t in leg.get_texts()]
        assert not any("variant=" in text for text in texts), f"{plot.name}: {texts}"


def test_series_styles_tell_score_functions_apart_and_skip_yellow():
    pairs = [
        {"router.score": score, "balance.aux.alpha": alpha}
        for score in ("sigmoid", "softmax")
        for alpha in (0.0, 0.01, 0.1)
    ]
    styles = figures.series_styles(pairs)
    for i in range(3):  # the same balancing: one colour, a style and marker per score
        sigmoid, softmax = styles[i], styles[i + 3]
        assert sigmoid.color == softmax.color
        assert (sigmoid.linestyle, sigmoid.marker) == ("-", "o")
        assert (softmax.linestyle, softmax.marker) == ("--", "s")
    # Only the score differs: it sets the colour too, so bands can be told apart.
    alone = figures.series_styles([{"router.score": "sigmoid"}, {"router.score": "softmax"}])
    assert alone[0].color != alone[1].color
    many = figures.series_styles([{"variant": str(i)} for i in range(16)])
    assert len({(s.color, s.linestyle) for s in many}) == 16
    assert len({(s.color, s.marker) for s in many}) == 16
    assert YELLOW not in {s.color.lower() for s in many}


def test_no_figure_draws_yellow(tmp_path, sweep_drawn):
    names = [f"v{i}" for i in range(9)]  # more variants than colours
    folder = write_synthetic_run(tmp_path / "nine", variants=[(n, 1e-3, None) for n in names])
    for drawn in (figures.render_figures(load_results(folder))[0], sweep_drawn.plots):
        for plot in drawn:
            for artist in plot.figure.findobj():
                for getter in ("get_color", "get_facecolor", "get_edgecolor"):
                    value = getattr(artist, getter, lambda: None)()
                    if value is None or isinstance(value, str) and value == "none":
                        continue
                    rgba = np.atleast_2d(mcolors.to_rgba_array(value))
                    hexes = {mcolors.to_hex(c) for c in rgba}
                    assert YELLOW not in hexes, f"{plot.name}: yellow {type(artist).__name__}"


def test_drop_rate_against_capacity_factor_from_variants(run_dir, run_drawn):
    data = load_results(run_dir)
    plot = run_drawn.plot("drop_vs_capacity")
    (ax,) = _panels(plot.figure)
    assert "capacity factor" in ax.get_xlabel()
    variants_line = next(line for line in ax.lines if line.get_label() != UNIFORM_LABEL)
    np.testing.assert_allclose(variants_line.get_xdata(), [1.0, 1.5])
    expected = [100 * s["drop_rate"] for s in data.variants if s["variant"].startswith("capa")]
    np.testing.assert_allclose(variants_line.get_ydata(), expected)
    assert any(line.get_label() == UNIFORM_LABEL for line in ax.lines)
    assert {t.get_text() for t in ax.texts} == {"capacity_1.0", "capacity_1.5"}


def test_heatmap_labels_the_step_axis_above_a_hidden_panel(tmp_path):
    specs = [(f"v{i}", 1e-3, None) for i in range(5)]  # 2 x 3 panels, the last one hidden
    folder = write_synthetic_run(tmp_path / "five", variants=specs)
    (plot,), _ = figures.render_figures(load_results(folder), only=["load_heatmap"])
    plot.figure.draw_without_rendering()  # ticks and layout as drawn, no pixels
    panels = _panels(plot.figure)
    assert len(panels) == 5
    top_right = panels[2]
    assert top_right.get_xlabel() == "step"
    assert any(t.get_visible() and t.get_text() for t in top_right.get_xticklabels())


def test_tradeoff_title_names_both_panels(run_drawn):
    plot = run_drawn.plot("tradeoff")
    assert "specialization and quality" in plot.figure.get_suptitle()
    assert len(_panels(plot.figure)) == 2


def test_heatmap_content_changes_with_the_data(tmp_path):
    first = write_synthetic_run(tmp_path / "a", seed=1)
    second = write_synthetic_run(tmp_path / "b", seed=2)
    again = write_synthetic_run(tmp_path / "c", seed=1)
    images = [
        assert_shows_data(figures.write_figures(d, only=["load_heatmap"])[0])
        for d in (first, second, again)
    ]
    assert images[0].shape == images[1].shape
    assert (np.abs(images[0] - images[1]) > 20).mean() > 0.02
    np.testing.assert_array_equal(images[0], images[2])


def test_svg_and_pdf(run_dir):
    written = figures.write_figures(run_dir, formats=("svg", "pdf"), only=["lorenz"])
    assert [p.name for p in written] == ["lorenz.svg", "lorenz.pdf"]
    assert b"<svg" in written[0].read_bytes()[:500]
    assert written[1].read_bytes().startswith(b"%PDF")


def test_figures_have_titles_labels_and_captions(run_drawn, sweep_drawn):
    for drawn in (run_drawn.plots, sweep_drawn.plots):
        for plot in drawn:
            assert plot.caption and "\n" not in plot.caption
            assert "synthetic" in plot.figure.get_suptitle() or "sweepy" in (
                plot.figure.get_suptitle()
            )
            axes = _panels(plot.figure)
            # Panels in a row share the y label of the first; every x axis that shows tick
            # labels (the bottom panel of a column when panels share x) has its label. Ticks and
            # layout as a drawing makes them, without the pixels (the PNGs were checked apart).
            plot.figure.draw_without_rendering()
            for ax in axes:
                if any(t.get_visible() and t.get_text() for t in ax.get_xticklabels()):
                    assert ax.get_xlabel(), f"{plot.name}: an x axis is unlabelled"
            assert axes[0].get_ylabel(), f"{plot.name}: the y axis is unlabelled"


def test_figures_without_their_data_are_skipped_with_a_reason(tmp_path):
    folder = write_synthetic_run(tmp_path / "plain", variants=[("no_bias", 0.0, None)])
    skipped = {}
    written = figures.write_figures(folder, on_skip=skipped.__setitem__)
    assert "bias" in skipped and "bias" in skipped["bias"]
    assert "capacity.factor" in skipped["drop_vs_capacity"]
    # No drops: the drop-rate figure is still drawn (a flat zero line with a note).
    assert "drop_rate" in {p.stem for p in written}
    (folder / "loads.npz").unlink()
    skipped.clear()
    written = figures.write_figures(folder, on_skip=skipped.__setitem__)
    assert "loads.npz" in skipped["load_heatmap"]
    assert {p.stem for p in written} >= {"max_vio", "drop_rate"}


def test_bad_arguments(run_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown figure"):
        figures.write_figures(run_dir, only=["nope"])
    with pytest.raises(ValueError, match="unknown format"):
        figures.write_figures(run_dir, formats=["gif"])
    with pytest.raises(NotResultsError, match="not a moesim results folder"):
        figures.write_figures(tmp_path)
    with pytest.raises(NotResultsError, match="not a folder"):
        figures.write_figures(tmp_path / "missing")


def test_sweep_reading_drops_failed_points_and_finds_parameters(sweep_dir):
    data = load_results(sweep_dir)
    assert data.sweep_params == list(SWEEP_GRID)
    assert len(data.sweep["seed"]) == 54  # the failed row is left out
    assert data.scenario == "sweepy"
    assert data.sweep_keys == list(SWEEP_GRID)  # one variant: not a key


def test_interval_is_the_95_percent_student_t_interval_of_the_mean():
    values = np.array([1.0, 2.0, 4.0, np.nan])
    mean, half, n = mean_interval(values)
    assert n == 3 and mean == pytest.approx(7 / 3)
    # t_{0.975, 2} = 4.303: three seeds give an interval 2.2x wider than the normal 1.96.
    assert half == pytest.approx(4.3027 * np.std([1, 2, 4], ddof=1) / math.sqrt(3), rel=1e-4)
    assert mean_interval([5.0]) == (5.0, 0.0, 1)


def test_uniform_drop_rate_matches_monte_carlo():
    rng = np.random.default_rng(0)
    tokens, top_k, experts, factor = 512, 2, 16, 1.0
    capacity = math.ceil(tokens * top_k / experts * factor)
    demand = rng.binomial(tokens, top_k / experts, size=400_000)
    simulated = np.maximum(0, demand - capacity).mean() / (tokens * top_k / experts)
    expected = figures.uniform_drop_rate(tokens, top_k, experts, factor)
    assert expected == pytest.approx(simulated, rel=0.02)


# ------------------------------------------------------------------ shipped scenarios, end to end


@pytest.fixture(scope="session")
def single_thread():
    """One Numba thread for the in-process runs: on a busy machine the thread pool's start-up
    costs more than these small batches (results do not depend on the thread count)."""
    numba = pytest.importorskip("numba")
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


#: The end-to-end results of this session, made once even when test_report.py uses them too
#: (a fixture imported into another module is a second fixture with its own cache).
_SHIPPED: dict[str, object] = {}


@pytest.fixture(scope="session")
def shipped_runs(tmp_path_factory, single_thread) -> dict[str, Path]:
    """Every shipped run scenario at reduced size, through the engine: name -> results folder."""
    from moesim.engine import simulate
    from moesim.results import write_results
    from moesim.scenario import load_scenario

    if "runs" not in _SHIPPED:
        root = tmp_path_factory.mktemp("shipped")
        folders = {}
        for path in sorted(SHIPPED.glob("*.yaml")):
            if "sweep" in path.stem:
                continue
            scenario = load_scenario(path, SMALL)
            folders[path.stem] = write_results(simulate(scenario), root / path.stem)
        _SHIPPED["runs"] = folders
    return _SHIPPED["runs"]


@pytest.fixture(scope="session")
def shipped_sweep(tmp_path_factory) -> Path:
    """``bias_rate_sweep.yaml`` as a user runs it, on 2 of its 7 rates x 2 seeds at small size."""
    from typer.testing import CliRunner

    from moesim.cli import app

    if "sweep" not in _SHIPPED:
        out = tmp_path_factory.mktemp("shipped_sweep") / "bias_rate_sweep"
        arguments = ["sweep", str(SHIPPED / "bias_rate_sweep.yaml"), "--jobs", "1", "--quiet"]
        arguments += [f"--set={item}" for item in SMALL] + ["--seeds", "2"]
        arguments += ["--grid", "balance.bias.rate=1e-3,1e-2", "--output", str(out)]
        result = CliRunner().invoke(app, arguments)
        assert result.exit_code == 0, result.output
        _SHIPPED["sweep"] = out
    return _SHIPPED["sweep"]


def _applicable_run_figures(path: Path) -> set[str]:
    """The figures a run of this scenario must have, from the scenario, not from the figures."""
    from moesim.scenario import expand_variants, load_scenario
    from moesim.scenario.layers import moe_layer_numbers

    variants = [s for _, s in expand_variants(load_scenario(path, SMALL))]
    names = {"load_heatmap", "max_vio", "lorenz", "drop_rate"}
    if any(s.balance.bias.enabled and s.balance.bias.rate > 0 for s in variants):
        names.add("bias")
    if any(s.tokens.source == "clusters" and s.tokens.clusters > 1 for s in variants):
        names.add("tradeoff")
    if len({s.capacity.factor for s in variants if s.capacity.factor is not None}) > 1:
        names.add("drop_vs_capacity")
    if any(s.deployment.enabled for s in variants):
        names |= DEPLOYMENT_FIGURES
    if all(s.deployment.enabled and s.deployment.load_trace for s in variants):
        # A replayed load trace has per-expert counts only: no drops, traffic or token domains.
        names -= {"drop_rate", "gpu_traffic", "tradeoff"}
    if any(s.router.algorithm in ("expert_choice", "sinkhorn") for s in variants):
        names.add("experts_per_token")
    if any(len(moe_layer_numbers(s)) > 1 for s in variants):
        names |= {"layer_loads", "max_vio_layers"}
    return names


@pytest.mark.slow
def test_shipped_run_scenarios_draw_every_applicable_figure(shipped_runs, tmp_path):
    assert set(shipped_runs) >= {"collapse", "switch", "sigmoid_vs_softmax"}
    for name, results in shipped_runs.items():
        folder = shutil.copytree(results, tmp_path / name)
        written, _, plots, sizes = write_and_keep(folder)
        expected = _applicable_run_figures(SHIPPED / f"{name}.yaml")
        assert {p.stem for p in written} == expected, name
        for png in written:
            assert_shows_data(png, sizes[png.stem])
        assert_plots_show_data(plots)
    # The variants of switch.yaml differ in capacity factor: a point per variant.
    assert "drop_vs_capacity" in _applicable_run_figures(SHIPPED / "switch.yaml")


@pytest.mark.slow
def test_shipped_sweep_draws_every_sweep_figure(shipped_sweep):
    written, _, drawn, sizes = write_and_keep(shipped_sweep)
    # bias_rate_sweep ranks by max_vio_global; it does not vary capacity, so no drop figure.
    assert {p.stem for p in written} == {"sweep_max_vio_global", "sweep_metrics", "tradeoff"}
    for png in written:
        assert_shows_data(png, sizes[png.stem])
    data = load_results(shipped_sweep)
    assert_plots_show_data(drawn)
    assert data.sweep_keys == ["router.score", "balance.bias.rate"]
    chosen = next(p for p in drawn if p.name == "sweep_max_vio_global")
    (panel,) = _panels(chosen.figure)
    # One line per score function, told apart by style; x is the rate, labelled in words.
    styles = {(line.get_color(), line.get_linestyle()) for line in panel.lines}
    assert len(styles) == 2 and {s for _, s in styles} == {"-", "--"}
    assert panel.get_xlabel().startswith("bias update rate u")
