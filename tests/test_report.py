"""The report: self-contained HTML and Markdown for a run and a sweep (synthetic folders and
small real ones from the shipped scenarios), the CLI commands, and a screenshot of the HTML in
headless Chromium when it is installed."""

from __future__ import annotations

import csv
import json
import shlex
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import test_plots
import typer
from PIL import Image
from test_plots import SWEEP_FIGURES, write_synthetic_run, write_synthetic_sweep
from typer.testing import CliRunner

from moesim import figures, report
from moesim.cli.figures import register
from moesim.report import write_report
from moesim.results import load_results
from moesim.results.metrics import format_number, format_value

DATA_URI = "data:image/png;base64,"
# The end-to-end results of test_plots.py (made once per session, whichever file runs first).
single_thread = test_plots.single_thread
shipped_runs = test_plots.shipped_runs
shipped_sweep = test_plots.shipped_sweep


class ReportParser(HTMLParser):
    """Collects what must hold for a self-contained page: images, tags, external references."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.tags: list[str] = []
        self.external: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed(path.read_text())
    parser.close()
    return parser


def write_report_and_names(folder: Path) -> tuple[Path, Path, Path, list[str]]:
    """``write_report(folder)``: (folder, html_path, md_path, the names of the figures it drew),
    the names taken from the figures the report drew (drawing them again costs seconds)."""
    with test_plots.keeping_drawn(report) as kept:
        html_path, md_path = write_report(folder)
    ((plots, _),) = kept
    return folder, html_path, md_path, [p.name for p in plots]


@pytest.fixture(scope="module")
def run_report(tmp_path_factory):
    return write_report_and_names(
        write_synthetic_run(tmp_path_factory.mktemp("report") / "results")
    )


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory):
    folder = write_synthetic_sweep(tmp_path_factory.mktemp("sweep_report") / "results")
    return write_report_and_names(folder)


def test_html_report_is_self_contained_and_embeds_every_figure(run_report):
    folder, html_path, _, names = run_report
    assert html_path == folder / "report.html"
    page = html_path.read_text()
    parser = parse(html_path)
    assert len(names) == len(test_plots.RUN_FIGURES)
    assert page.count(DATA_URI) == len(names)
    assert len(parser.images) == len(names)
    assert all(src.startswith(DATA_URI) for src in parser.images)
    assert parser.external == []
    assert "script" not in parser.tags and "link" not in parser.tags
    assert "style" in parser.tags
    text = "".join(parser.text)
    for name in names:
        assert f'id="{name}"' in page
        assert figures.FIGURES[name].caption in text


def test_html_report_holds_the_summary_numbers_and_verdicts(run_report):
    folder, html_path, _, _ = run_report
    page = html_path.read_text()
    text = " ".join(parse(html_path).text)
    summary = json.loads((folder / "summary.json").read_text())
    for variant in summary["variants"]:
        assert variant["variant"] in text
        assert format_number(variant["max_vio_global"]) in text
        assert format_number(variant["cv"]) in text
        # The verdict reason holds "<synthetic> &": escaped in the markup, intact in the text.
        assert variant["verdict_reason"] in text
    assert "<synthetic>" not in page and "&lt;synthetic&gt; &amp;" in page
    # Metadata from manifest.json and the resolved scenario.
    assert "moesim run synthetic.yaml" in text
    assert "tokens_per_step: 512" in text


def test_markdown_report_links_every_figure(run_report):
    folder, _, md_path, names = run_report
    text = md_path.read_text()
    for name in names:
        assert f"(figures/{name}.png)" in text
        assert (folder / "figures" / f"{name}.png").is_file()
    summary = json.loads((folder / "summary.json").read_text())
    for variant in summary["variants"]:
        assert format_number(variant["max_vio_global"]) in text
    assert "## Verdicts" in text and "```yaml" in text


def test_sweep_report(sweep_report):
    folder, html_path, md_path, names = sweep_report
    page = html_path.read_text()
    assert set(names) == SWEEP_FIGURES  # sweep_specialization: the chosen metric's figure
    assert page.count(DATA_URI) == len(names)
    assert "Sweep summary" in page and page.count('class="best"') == 1
    text = " ".join(parse(html_path).text)
    assert "balance.bias.rate" in text and "capacity.factor" in text
    md = md_path.read_text()
    assert all(f"(figures/{name}.png)" in md for name in names)
    # One row per point (18), each over 3 seeds; the failed row is not counted.
    assert md.count("\n| ") == 1 + 18


def _best_row(page: str) -> str:
    start = page.index('<tr class="best">')
    return page[start : page.index("</tr>", start)]


def test_sweep_report_follows_the_sweeps_metric_and_direction(sweep_report):
    folder, html_path, md_path, _ = sweep_report
    summary = json.loads((folder / "sweep_summary.json").read_text())
    assert (summary["metric"], summary["minimize"]) == ("specialization", False)
    best = summary["best"]["params"]
    row = _best_row(html_path.read_text())
    # The highlighted point is the highest specialization, not the lowest MaxVio_global.
    for value in best.values():
        assert f">{format_value(value)}</td>" in row
    assert format_number(summary["best"]["specialization"]["mean"]) in row
    md = md_path.read_text()
    header = next(line for line in md.splitlines() if line.startswith("| balance"))
    assert header.split(" | ")[4].startswith("specialization")  # the chosen metric first
    assert "best point by specialization (highest mean over seeds)" in md


def test_sweep_report_metadata(sweep_report):
    _, html_path, _, _ = sweep_report
    text = " ".join(parse(html_path).text)
    assert "0, 1, 2 (the scenario's seed 0, then +1 per seed)" in text
    assert "specialization (highest is best)" in text
    assert "54 finished, 1 failed" in text
    assert f"numpy {np.__version__}" in text
    assert "moesim sweep " in text and "--maximize" in text


def test_sweep_rows_follow_the_one_order_of_swept_values(tmp_path):
    """Numbers by value, then text, then missing values last (results.metrics.sort_key), as in
    sweep_aggregate.csv: a null capacity factor comes after 1.0 and 1.5."""
    folder = write_synthetic_sweep(tmp_path / "nulls")
    table = folder / "sweep.csv"
    table.write_text(table.read_text().replace(",1.25,", ",,"))
    header, rows, _ = report.sweep_rows(load_results(folder))
    assert header[:3] == ["balance.bias.rate", "capacity.factor", "router.score"]
    first_rate = [row[:3] for row in rows[:6]]
    assert first_rate == [
        [rate, factor, score]
        for rate in ["0.0001"]
        for factor in ["1", "1.5", "none"]
        for score in ["sigmoid", "softmax"]
    ]


def _cell_value(text: str):
    try:
        return float(text)
    except ValueError:
        return text


@pytest.mark.slow
def test_report_rows_are_in_the_order_of_sweep_aggregate_csv(shipped_sweep):
    data = load_results(shipped_sweep)
    _, rows, _ = report.sweep_rows(data)
    keys = data.sweep_keys
    with open(shipped_sweep / "sweep_aggregate.csv", newline="") as stream:
        aggregate = list(csv.DictReader(stream))
    expected = [[format_value(_cell_value(row[key])) for key in keys] for row in aggregate]
    assert [row[: len(keys)] for row in rows] == expected


def cli():
    app = typer.Typer()
    register(app)
    return app


@pytest.mark.slow
def test_report_of_a_real_run(shipped_runs, tmp_path):
    """collapse.yaml at reduced size: every figure it allows, its numbers and verdicts."""
    folder = shutil.copytree(shipped_runs["collapse"], tmp_path / "collapse")
    _, html_path, md_path, names = write_report_and_names(folder)
    page = html_path.read_text()
    assert set(names) == {"load_heatmap", "max_vio", "bias", "lorenz", "drop_rate", "tradeoff"}
    assert page.count(DATA_URI) == len(names)
    text = " ".join(parse(html_path).text)
    for variant in json.loads((folder / "summary.json").read_text())["variants"]:
        assert variant["variant"] in text and variant["verdict_reason"] in text
        assert format_number(variant["max_vio_global"]) in text
    manifest = json.loads((folder / "manifest.json").read_text())
    assert f"numba {manifest['versions']['numba']}" in text
    assert "steps: 40" in text  # the resolved scenario, at the size it ran
    for name in names:
        test_plots.assert_shows_data(folder / "figures" / f"{name}.png")


@pytest.mark.slow
def test_report_of_a_real_sweep_and_its_rerun_command(shipped_sweep, tmp_path):
    """bias_rate_sweep.yaml, small: the chosen metric's figure, the best point the sweep picked,
    and a command that reruns it (every point found done)."""
    from moesim.cli import app

    folder = shutil.copytree(shipped_sweep, tmp_path / "sweep")
    html_path, _ = write_report(folder)
    page = html_path.read_text()
    assert 'id="sweep_max_vio_global"' in page
    summary = json.loads((folder / "sweep_summary.json").read_text())
    row = _best_row(page)
    for value in summary["best"]["params"].values():
        assert f">{format_value(value)}</td>" in row
    text = " ".join(parse(html_path).text)
    assert "0, 1 (the scenario's seed 0, then +1 per seed)" in text
    assert "max_vio_global (lowest is best)" in text
    assert f"numba {summary['versions']['numba']}" in text
    data = load_results(folder)
    command = report.sweep_command(data)
    assert command is not None and command in text
    arguments = shlex.split(command)[1:]
    result = CliRunner().invoke(app, [*arguments, "--jobs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "8 point(s) already done" in result.output  # 2 scores x 2 rates x 2 seeds


def test_cli_plot_and_report(tmp_path):
    folder = write_synthetic_run(tmp_path / "results", variants=[("bias", 1e-3, None)])
    runner = CliRunner()
    result = runner.invoke(
        cli(), ["plot", str(folder), "--format", "png", "--format", "svg", "--only", "max_vio"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (folder / "figures").iterdir()) == ["max_vio.png", "max_vio.svg"]
    result = runner.invoke(cli(), ["report", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / "report.html").is_file() and (folder / "report.md").is_file()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["plot", "{missing}"], "not a folder"),
        (["plot", "{empty}"], "not a moesim results folder"),
        (["report", "{empty}"], "not a moesim results folder"),
        (["plot", "{run}", "--format", "gif"], "unknown format"),
        (["plot", "{run}", "--only", "nope"], "unknown figure"),
    ],
)
def test_cli_errors_exit_2_without_traceback(tmp_path, arguments, message):
    (tmp_path / "empty").mkdir()
    run = write_synthetic_run(tmp_path / "run", variants=[("bias", 1e-3, None)])
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "run": run}
    arguments = [a.format(**paths) for a in arguments]
    result = CliRunner().invoke(cli(), arguments)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_report_renders_in_headless_chromium(run_report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    _, html_path, _, _ = run_report
    shot = tmp_path / "shot.png"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1200,2000",
        html_path.resolve().as_uri(),
    ]
    completed = subprocess.run(command, capture_output=True, timeout=90, check=False)
    assert shot.is_file(), completed.stderr.decode(errors="replace")[-2000:]
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
        assert image.size == (1200, 2000)
    assert pixels.std() > 15, "the screenshot is blank"
    assert (pixels < 128).mean() > 0.01, "the screenshot shows almost nothing"


# ------------------------------------------------------------------ damaged results folders


def _edit_json(name: str, change):
    def damage(folder: Path) -> None:
        path = folder / name
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return damage


def _write(name: str, data: bytes | str):
    def damage(folder: Path) -> None:
        path = folder / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return damage


def _cut(name: str, fraction: float = 0.5):
    def damage(folder: Path) -> None:
        raw = (folder / name).read_bytes()
        (folder / name).write_bytes(raw[: int(len(raw) * fraction)])

    return damage


def _history_lines(change):
    def damage(folder: Path) -> None:
        lines = (folder / "history.csv").read_text().splitlines()
        (folder / "history.csv").write_text("\n".join(change(lines)) + "\n")

    return damage


def _loads(change):
    def damage(folder: Path) -> None:
        with np.load(folder / "loads.npz") as data:
            arrays = {key: data[key] for key in data.files}
        change(arrays)
        np.savez(folder / "loads.npz", **arrays)

    return damage


def _summary_variant(key, value):
    def change(summary):
        summary["variants"][0][key] = value
        return summary

    return _edit_json("summary.json", change)


def _figures_file(folder: Path) -> None:
    (folder / "figures").write_text("in the way")


def _damaged_part(folder: Path) -> None:
    (folder / "variants.partial").mkdir()
    (folder / "variants.partial" / "0000.json").write_text('{"variant": "bias", "summ')


#: name -> (damage, the file the message must name). Each gives exit 2 from plot and report.
DAMAGE = {
    "history truncated mid-line": (_cut("history.csv", 0.61), "history.csv"),
    "history ragged row": (
        _history_lines(lambda ls: ls[:3] + [ls[3] + ",7"] + ls[4:]),
        "history.csv",
    ),
    "history short row": (
        _history_lines(lambda ls: ls[:2] + [ls[2].rsplit(",", 3)[0]]),
        "history.csv",
    ),
    "history empty": (_write("history.csv", ""), "history.csv"),
    "history text cell": (
        _history_lines(
            lambda ls: ls[:2] + [ls[2].replace(",", ",abc,", 1)[:-4] + ls[2][-4:]] + ls[3:]
        ),
        "history.csv",
    ),
    "history without header": (_history_lines(lambda ls: ls[1:]), "history.csv"),
    "history binary": (_write("history.csv", bytes(range(256)) * 4), "history.csv"),
    "loads truncated": (_cut("loads.npz"), "loads.npz"),
    "loads empty": (_write("loads.npz", b""), "loads.npz"),
    "loads not a zip": (_write("loads.npz", "no zip here"), "loads.npz"),
    "loads missing array": (
        _loads(lambda a: a.pop(next(k for k in a if k.endswith(".steps")))),
        "loads.npz",
    ),
    "loads wrong shape": (
        _loads(lambda a: a.update({k: a[k][:-1] for k in a if k.endswith(".final_loads")})),
        "loads.npz",
    ),
    "loads text array": (
        _loads(lambda a: a.update({k: a[k].astype(str) for k in a if k.endswith(".loads")})),
        "loads.npz",
    ),
    "loads 1-D": (
        _loads(
            lambda a: a.update(
                {k: a[k].ravel() for k in a if k.endswith((".loads", ".demand", ".bias"))}
            )
        ),
        "loads.npz",
    ),
    "summary variants null": (
        _edit_json("summary.json", lambda s: dict(s, variants=None)),
        "summary.json",
    ),
    "summary variants mapping": (
        _edit_json("summary.json", lambda s: dict(s, variants={"a": 1})),
        "summary.json",
    ),
    "summary a list": (_edit_json("summary.json", lambda s: s["variants"]), "summary.json"),
    "summary truncated": (_cut("summary.json"), "summary.json"),
    "summary variant a number": (
        _edit_json("summary.json", lambda s: dict(s, variants=[1])),
        "summary.json",
    ),
    "summary variant without name": (_summary_variant("variant", None), "summary.json"),
    "summary metric text": (_summary_variant("max_vio_global", "big"), "summary.json"),
    "summary verdict a list": (_summary_variant("verdict", ["collapsed"]), "summary.json"),
    "summary partial text": (
        _edit_json("summary.json", lambda s: dict(s, partial="no")),
        "summary.json",
    ),
    "manifest a list": (_edit_json("manifest.json", lambda m: [m]), "manifest.json"),
    "manifest truncated": (_cut("manifest.json"), "manifest.json"),
    "manifest seconds text": (
        _edit_json("manifest.json", lambda m: dict(m, seconds="1.5 s")),
        "manifest.json",
    ),
    "killed run part damaged": (_damaged_part, "0000.json"),
}


@pytest.mark.parametrize("command", ["plot", "report"])
@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_run_folder_exits_2_naming_the_file(tmp_path, case, command):
    folder = write_synthetic_run(
        tmp_path / "run", variants=[("bias", 1e-3, None), ("none", 0, None)]
    )
    damage, name = DAMAGE[case]
    damage(folder)
    result = CliRunner().invoke(cli(), [command, str(folder)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert name in result.output and "damaged" in result.output


SWEEP_DAMAGE = {
    "sweep.csv ragged": (
        lambda f: f.joinpath("sweep.csv").write_text(f.joinpath("sweep.csv").read_text() + "1,2\n"),
        "sweep.csv",
    ),
    "sweep.csv empty": (_write("sweep.csv", ""), "sweep.csv"),
    "sweep_summary a list": (_edit_json("sweep_summary.json", lambda s: [s]), "sweep_summary.json"),
    "sweep_summary best a list": (
        _edit_json("sweep_summary.json", lambda s: dict(s, best=[1])),
        "sweep_summary.json",
    ),
    "sweep_summary params a list": (
        _edit_json("sweep_summary.json", lambda s: dict(s, best=dict(s["best"], params=[1]))),
        "sweep_summary.json",
    ),
}


@pytest.mark.parametrize("command", ["plot", "report"])
@pytest.mark.parametrize("case", list(SWEEP_DAMAGE))
def test_a_damaged_sweep_folder_exits_2_naming_the_file(tmp_path, case, command):
    folder = write_synthetic_sweep(tmp_path / "sweep")
    damage, name = SWEEP_DAMAGE[case]
    damage(folder)
    result = CliRunner().invoke(cli(), [command, str(folder)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert name in result.output


@pytest.mark.parametrize("resolved", ["{{{ not yaml", "a: &a [*a]\nvariants: &v [*v]\n", "- 1\n"])
def test_an_unreadable_resolved_scenario_is_left_out_not_a_crash(tmp_path, resolved):
    # Two variants (bias on, two capacity factors) give every run figure, each of which reads
    # the resolved scenario for its variants' settings; four only draw longer.
    specs = [("capacity_1.0", 1e-3, 1.0), ("capacity_1.5", 1e-3, 1.5)]
    folder = write_synthetic_run(tmp_path / "run", variants=specs)
    (folder / "scenario.resolved.yaml").write_text(resolved)
    for command in ("plot", "report"):
        result = CliRunner().invoke(cli(), [command, str(folder)])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", ["plot", "report"])
def test_figures_being_a_file_exits_1_naming_it(tmp_path, command):
    # One variant: every figure is drawn before the figures folder is made, more only cost time.
    folder = write_synthetic_run(tmp_path / "run", variants=[("bias", 1e-3, None)])
    _figures_file(folder)
    result = CliRunner().invoke(cli(), [command, str(folder)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    assert "figures" in result.output and "cannot write" in result.output


@pytest.mark.parametrize("command", ["plot", "report"])
def test_a_read_only_folder_exits_1(tmp_path, command, monkeypatch):
    import os

    folder = write_synthetic_run(tmp_path / "run", variants=[("bias", 1e-3, None)])
    real_mkstemp = __import__("tempfile").mkstemp

    def refuse(*args, dir=None, **options):  # what a read-only folder does, even for root
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise PermissionError(13, os.strerror(13), str(dir))
        return real_mkstemp(*args, dir=dir, **options)

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    result = CliRunner().invoke(cli(), [command, str(folder)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    assert "Permission denied" in result.output and "cannot write" in result.output
