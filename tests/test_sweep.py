"""Sweeps: grid expansion, validation before running, resume, failures, local vs Dask, CLI."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from moesim.cli import app as moesim_app
from moesim.errors import ScenarioError
from moesim.results.metrics import NOT_METRICS, SUMMARY_METRICS, TEXT_SUMMARY_KEYS
from moesim.scenario import load_scenario
from moesim.sweep import (
    SweepError,
    SweepExistsError,
    SweepResult,
    aggregate_rows,
    aggregate_table,
    best_row,
    check_metric,
    expand_grid,
    parse_grid_option,
    parse_values,
    plan_sweep,
    point_id,
    run_local,
    run_point,
    run_sweep,
    sweep_points,
    sweep_rows,
)

TINY = {
    "name": "tiny",
    "steps": 20,
    "tokens": {"tokens_per_step": 256, "dim": 16, "clusters": 8, "seq_len": 64},
    "router": {"experts": 8, "top_k": 2},
}
#: Timing columns differ between runs; everything else must be identical.
TIMING = {"seconds", "steps_per_second"}


def tiny(**sections) -> object:
    data = {**TINY, **sections}
    return load_scenario(data)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


# ------------------------------------------------------------------------- grid expansion


def test_expand_grid_is_the_full_product_in_grid_order():
    combos = expand_grid({"router.top_k": [1, 2], "router.score": ["sigmoid", "softmax", "x"]})
    assert len(combos) == 6
    assert combos[0] == {"router.top_k": 1, "router.score": "sigmoid"}
    assert combos[1] == {"router.top_k": 1, "router.score": "softmax"}
    assert combos[-1] == {"router.top_k": 2, "router.score": "x"}
    assert expand_grid({}) == [{}]


def test_zipped_keys_vary_together():
    grid = {"a": [1, 2, 3], "b": ["x", "y"], "c": [10, 20, 30]}
    combos = expand_grid(grid, [["a", "c"]])
    assert len(combos) == 6
    assert all(combo["c"] == 10 * combo["a"] for combo in combos)
    assert list(combos[0]) == ["a", "b", "c"]  # keys keep the grid order


def test_logspace_linspace_range():
    assert parse_values("k", "logspace(1e-4,1e-2,3)") == [1e-4, 1e-3, 1e-2]
    values = parse_values("k", "logspace(1e-4, 1e-2, 9)")
    assert len(values) == 9 and values[0] == 1e-4 and values[-1] == 1e-2
    assert all(b / a == pytest.approx(10**0.25) for a, b in zip(values, values[1:], strict=False))
    assert parse_values("k", "linspace(0,1,5)") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_values("k", "range(2,9,3)") == [2, 5, 8]
    assert parse_values("k", "range(0,1,0.25)") == [0.0, 0.25, 0.5, 0.75]
    assert parse_values("k", [3, 1]) == [3, 1]


@pytest.mark.parametrize(
    ("grid", "zips", "expected"),
    [
        ({"router.top_k": []}, [], r"router\.top_k: no values"),
        ({"balance.bias.rate": "logspace(0,1e-2,3)"}, [], r"balance\.bias\.rate: logspace"),
        ({"a": "linspace(0,1)"}, [], r"a: linspace\(a,b,n\)"),
        ({"a": "geomspace(1,2,3)"}, [], r"a: expected a list"),
        ({"a": "range(1,5,0)"}, [], r"a: range"),
        ({"a": "range(5,1)"}, [], r"a: range\(5,1\) gives no values"),
        ({"a": [1, 2], "b": [1, 2, 3]}, [["a", "b"]], r"a,b: zipped lists need equal lengths"),
        ({"a": [1, 2]}, [["a", "nope"]], r"nope: zipped but not in the grid"),
    ],
)
def test_grid_errors_name_the_parameter(grid, zips, expected):
    with pytest.raises(SweepError, match=expected):
        expand_grid(grid, zips)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ([1, 2, 1], r"k: the list has the value 1 twice"),
        ([1, 1.0], r"k: the list has the value 1.0 twice"),
        ("logspace(1,1,3)", r"k: logspace\(1,1,3\) gives the value 1.0 twice"),
        ("linspace(0,0,2)", r"k: linspace\(0,0,2\) gives the value 0.0 twice"),
    ],
)
def test_a_value_given_twice_is_refused(spec, expected):
    # Its points would share an id: run twice and counted twice in the aggregate.
    with pytest.raises(SweepError, match=expected):
        parse_values("k", spec)


def test_all_grid_problems_are_reported_at_once():
    with pytest.raises(SweepError) as caught:
        expand_grid({"a": [], "b": "nonsense"})
    assert [p.path for p in caught.value.problems] == ["a", "b"]


def test_grid_option():
    assert parse_grid_option("balance.bias.rate=1e-4,1e-3") == ("balance.bias.rate", [1e-4, 1e-3])
    assert parse_grid_option("router.score=sigmoid,softmax")[1] == ["sigmoid", "softmax"]
    assert parse_grid_option("capacity.factor=null,1.25")[1] == [None, 1.25]
    assert parse_grid_option("a=logspace(1,100,3)") == ("a", "logspace(1,100,3)")
    assert parse_grid_option("tokens.explicit_weights=[1,2],[3,4]")[1] == [[1, 2], [3, 4]]
    with pytest.raises(ScenarioError, match="KEY=V1,V2"):
        parse_grid_option("router.top_k")


# ------------------------------------------------------------------------- points


def test_points_cross_seeds_and_variants_with_stable_ids():
    no_bias = {"name": "none", "balance": {"bias": {"enabled": False}}}
    base = tiny(variants=[{"name": "bias"}, no_bias])
    points = sweep_points(base, expand_grid({"router.top_k": [1, 2]}), seeds=3)
    assert len(points) == 2 * 3 * 2
    assert len({p.id for p in points}) == len(points)
    first = points[0]
    assert (first.params, first.seed, first.variant) == ({"router.top_k": 1}, 0, "bias")
    assert first.id == point_id({"router.top_k": 1}, 0, "bias")
    assert first.scenario["router"]["top_k"] == 1 and first.scenario["seed"] == 0
    assert points[-1].scenario["balance"]["bias"]["enabled"] is False
    assert [p.id for p in sweep_points(base, expand_grid({"router.top_k": [1, 2]}), 3)] == [
        p.id for p in points
    ]


def test_every_point_is_validated_before_anything_runs(tmp_path):
    base = tiny()
    with pytest.raises(ScenarioError) as caught:
        sweep_points(base, expand_grid({"router.top_k": [2, 16], "router.score": ["x"]}), 2)
    text = str(caught.value)
    # One line per distinct problem, naming the first bad point and how many more share it.
    assert "sweep point router.top_k=2, router.score='x', seed=0 (and 3 more points)" in text
    assert "router.score: expected one of" in text
    with pytest.raises(ScenarioError, match=r"router.top_k=16, seed=0 \(and 1 more.*must be <="):
        sweep_points(base, expand_grid({"router.top_k": [2, 16]}), 2)


def test_the_seed_is_not_a_grid_key():
    with pytest.raises(SweepError, match=r"seed: is set by the seeds .*--seeds"):
        sweep_points(tiny(), expand_grid({"seed": [1, 2]}), 1)


def test_summary_metrics_are_the_numeric_keys_of_a_real_summary():
    from moesim.engine import simulate

    summary = next(iter(simulate(tiny(steps=3)).summary.values()))
    numeric = [k for k, v in summary.items() if k not in NOT_METRICS and not isinstance(v, str)]
    assert list(SUMMARY_METRICS) == numeric
    assert set(summary) == set(SUMMARY_METRICS) | set(TEXT_SUMMARY_KEYS) | NOT_METRICS


def test_check_metric_names_the_metric_and_suggests_one():
    check_metric("quality")
    with pytest.raises(SweepError) as caught:
        check_metric("max_vio_globl")
    text = str(caught.value)
    assert text.startswith("--metric: unknown metric 'max_vio_globl' (metrics: steps, ")
    assert text.endswith("did you mean 'max_vio_global'?")
    with pytest.raises(SweepError, match=r"--metric: 'verdict' is not a number"):
        check_metric("verdict")


def test_run_point_reports_a_failure_instead_of_raising():
    record = run_point(
        {"id": "x", "params": {}, "seed": 0, "variant": "v", "scenario": {"steps": -1}}
    )
    assert record["status"] == "failed" and "ValidationError" in record["error"]
    assert "Traceback" in record["traceback"] and record["summary"] is None


def test_aggregate_mean_std_ci_and_best():
    points = sweep_points(tiny(), expand_grid({"router.top_k": [1, 2]}), seeds=2)
    values = {points[0].id: 1.0, points[1].id: 3.0, points[2].id: 0.5, points[3].id: 0.5}
    records = [
        {
            "id": p.id,
            "params": p.params,
            "seed": p.seed,
            "variant": p.variant,
            "status": "ok",
            "summary": {"max_vio_global": values[p.id], "verdict": "ok"},
        }
        for p in points
    ]
    rows = aggregate_rows(points, records)
    assert [r["router.top_k"] for r in rows] == [1, 2]
    assert rows[0]["n"] == 2 and rows[0]["max_vio_global_mean"] == 2.0
    assert rows[0]["max_vio_global_std"] == pytest.approx(math.sqrt(2))
    # Student's t with 1 degree of freedom (two seeds): 12.706, not the normal 1.96.
    assert rows[0]["max_vio_global_ci95"] == pytest.approx(12.7062 * math.sqrt(2) / math.sqrt(2))
    assert "verdict_mean" not in rows[0]
    assert best_row(rows, "max_vio_global")["router.top_k"] == 2
    assert best_row(rows, "max_vio_global", minimize=False)["router.top_k"] == 1


def _records(points, summary) -> list[dict]:
    """A finished record per point, ``summary(point)`` its summary."""
    return [
        {**{k: getattr(p, k) for k in ("id", "params", "seed", "variant")}, "status": "ok",
         "summary": summary(p)}
        for p in points
    ]  # fmt: skip


def test_rows_order_swept_values_like_the_report_null_last():
    # One order for swept values everywhere (results.metrics.sort_key): numbers, then null.
    points = sweep_points(tiny(), expand_grid({"capacity.factor": [None, 2.0, 1.25]}), 2)
    records = _records(points, lambda p: {"max_vio_global": 1.0})
    header, rows = sweep_rows(points, list(reversed(records)))
    assert [(row[0], row[1]) for row in rows] == [
        (1.25, 0), (1.25, 1), (2.0, 0), (2.0, 1), (None, 0), (None, 1)
    ]  # fmt: skip
    assert [r["capacity.factor"] for r in aggregate_rows(points, records)] == [1.25, 2.0, None]


# ------------------------------------------------------------------------- the plan


def test_plan_merges_the_sweep_section_with_the_arguments():
    base = tiny(
        sweep={
            "grid": {"router.top_k": [1, 2], "balance.bias.rate": [1e-3, 1e-2]},
            "zip": [["router.top_k", "balance.bias.rate"]],
            "seeds": 2,
            "metric": "quality",
            "minimize": False,
        }
    )
    from_file = plan_sweep(base)
    assert (from_file.seeds, from_file.metric, from_file.minimize) == (2, "quality", False)
    assert len(from_file.combinations) == 2 and len(from_file.points) == 4
    assert from_file.parameters == ["router.top_k", "balance.bias.rate"]

    # A given key wins in place, new keys come after; the file's zip group still holds ...
    rates = "logspace(1e-4,1e-2,3)"
    with pytest.raises(SweepError, match=r"router.top_k,balance.bias.rate: zipped lists need"):
        plan_sweep(base, grid={"balance.bias.rate": rates})
    # ... unless a given group shares a key with it.
    plan = plan_sweep(
        base,
        grid={"balance.bias.rate": rates, "router.init_skew": [0.0, 0.5, 1.0]},
        zip_groups=[["balance.bias.rate", "router.init_skew"]],
        seeds=1,
        metric="max_vio_global",
        minimize=True,
    )
    assert list(plan.grid) == ["router.top_k", "balance.bias.rate", "router.init_skew"]
    assert plan.grid["balance.bias.rate"] == rates
    assert plan.zip_groups == [["balance.bias.rate", "router.init_skew"]]
    assert (plan.seeds, plan.metric, plan.minimize) == (1, "max_vio_global", True)
    assert len(plan.combinations) == 2 * 3 and len(plan.points) == 6
    assert plan.combinations[1] == {
        "router.top_k": 1, "balance.bias.rate": 1e-3, "router.init_skew": 0.5
    }  # fmt: skip


def test_plan_refuses_a_bad_metric_and_run_an_edited_one(tmp_path):
    with pytest.raises(SweepError, match=r"--metric: unknown metric 'qualty'"):
        plan_sweep(tiny(), metric="qualty")
    edited = dataclasses.replace(plan_sweep(tiny()), metric="verdict")
    with pytest.raises(SweepError, match=r"metric: 'verdict' is not a number"):
        run_sweep(edited, tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------------- running


def _sweep(base, grid, out, **options):
    plan = plan_sweep(
        base, grid=grid, seeds=options.pop("seeds", 1), metric=options.pop("metric", None)
    )
    options.setdefault("progress", False)
    options.setdefault("figures", False)
    return plan.points, run_sweep(plan, out, **options)


def test_interrupted_sweep_resumes_without_running_a_point_twice(tmp_path):
    base = tiny()
    grid = {"balance.bias.rate": "logspace(1e-4,1e-2,3)"}
    out = tmp_path / "sweep"
    stored = out / "points"

    def interrupt():
        if len(list(stored.glob("*.json"))) >= 2:
            raise KeyboardInterrupt
        return False

    points, first = _sweep(base, grid, out, seeds=2, jobs=1, should_stop=interrupt)
    assert first.interrupted and first.partial
    done = {p.name: p.stat().st_mtime_ns for p in stored.glob("*.json")}
    assert 2 <= len(done) < len(points)
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["partial"] is True and summary["missing"] == len(points) - len(done)

    _, second = _sweep(base, grid, out, seeds=2, jobs=2)
    assert not second.partial and not second.interrupted
    assert second.skipped == len(done) and second.ran == len(points) - len(done)
    # Finished points were not run again (their files untouched); nothing was lost.
    assert all((stored / name).stat().st_mtime_ns == mtime for name, mtime in done.items())
    assert {p.name for p in stored.glob("*.json")} == {f"{p.id}.json" for p in points}
    rows = read_csv(out / "sweep.csv")
    assert len(rows) == len(points) and all(r["status"] == "ok" for r in rows)
    # One Numba thread per worker process.
    assert {json.loads(p.read_text())["numba_threads"] for p in stored.glob("*.json")} == {1}
    assert [(float(r["balance.bias.rate"]), int(r["seed"])) for r in rows] == sorted(
        (p.params["balance.bias.rate"], p.seed) for p in points
    )
    assert json.loads((out / "sweep_summary.json").read_text())["ok"] == len(points)


@pytest.mark.parametrize(("signum", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_stopped_sweep_exits_with_the_code_of_its_signal(tmp_path, signum, code):
    import signal
    import types

    from moesim.cli.common import StopRequest
    from moesim.cli.sweep import _print_outcome

    request = StopRequest()
    request.signum = getattr(signal, signum)
    stopped = types.SimpleNamespace(records=[], skipped=0, output_dir=tmp_path, failed=[],
                                    interrupted=True, partial=True)  # fmt: skip
    with pytest.raises(typer.Exit) as exited:
        _print_outcome(stopped, interrupted_exit=request.exit_code)
    assert exited.value.exit_code == code


def test_a_failing_point_is_recorded_and_the_others_finish(tmp_path):
    good, broken = tmp_path / "good.npy", tmp_path / "broken.npy"
    for trace in (good, broken):
        np.save(trace, np.ones((512, TINY["tokens"]["dim"]), dtype=np.float32))
    base = tiny(tokens={"tokens_per_step": 256, "seq_len": 64, "source": "file", "file": str(good)})
    grid = {"tokens.file": [str(good), str(broken)]}
    plan = plan_sweep(base, grid=grid, seeds=2)  # both traces are valid here ...
    broken.write_text("not an array")  # ... and one is broken when the points run
    out = tmp_path / "sweep"
    # One worker: the failure is caught in the worker that runs the point, whatever the pool size.
    result = run_sweep(plan, out, jobs=1, progress=False)
    assert len(result.failed) == 2 and not result.partial
    rows = read_csv(out / "sweep.csv")
    by_file = {(r["tokens.file"], r["status"]) for r in rows}
    assert by_file == {(str(good), "ok"), (str(broken), "failed")}
    failed = [r for r in rows if r["status"] == "failed"]
    assert all("TraceError" in r["error"] and r["max_vio_global"] == "" for r in failed)
    stored = json.loads((out / "points" / f"{failed[0]['point']}.json").read_text())
    assert "Traceback" in stored["traceback"] and stored["status"] == "failed"
    aggregate = read_csv(out / "sweep_aggregate.csv")
    assert {(r["tokens.file"], r["n"]) for r in aggregate} == {(str(good), "2"), (str(broken), "0")}
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert (summary["ok"], summary["failed"]) == (2, 2)
    assert summary["best"]["params"] == {"tokens.file": str(good)}
    assert (out / "figures" / "sweep_max_vio_global.png").stat().st_size > 1000


def test_a_different_sweep_is_refused_in_the_same_folder(tmp_path):
    base = tiny()
    out = tmp_path / "sweep"
    _sweep(base, {"router.top_k": [1]}, out, jobs=1)
    with pytest.raises(SweepExistsError, match="different sweep"):
        _sweep(base, {"router.top_k": [2]}, out, jobs=1)
    _, forced = _sweep(base, {"router.top_k": [2]}, out, jobs=1, force=True)
    assert forced.ran == 1 and len(list((out / "points").glob("*.json"))) == 1


def test_local_pool_and_dask_cluster_give_identical_results(tmp_path):
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed not installed (pip install 'moesim[dask]')"
    )
    base = tiny(learning={"enabled": True})
    grid = {"router.score": ["sigmoid", "softmax"], "balance.bias.rate": [1e-3, 1e-2]}
    _sweep(base, grid, tmp_path / "local", jobs=2)
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        _, result = _sweep(
            base, grid, tmp_path / "dask", executor="dask", address=cluster.scheduler_address
        )
    assert len(result.records) == 4 and not result.failed
    assert {record["numba_threads"] for record in result.records} == {1}
    local, dask = read_csv(tmp_path / "local/sweep.csv"), read_csv(tmp_path / "dask/sweep.csv")
    assert len(local) == len(dask) == 4
    for a, b in zip(local, dask, strict=True):
        assert {k: v for k, v in a.items() if k not in TIMING} == {
            k: v for k, v in b.items() if k not in TIMING
        }


def _die_on_top_k_2(payload: dict) -> dict:
    """A stand-in for run_point (runs in a spawned worker): top_k=2 kills its process."""
    if payload["params"]["router.top_k"] == 2:
        os._exit(1)
    time.sleep(0.5)  # still running when the other worker dies
    summary = {"max_vio_global": float(payload["params"]["router.top_k"])}
    return {**{k: payload[k] for k in ("id", "params", "seed", "variant")}, "status": "ok",
            "summary": summary, "error": None}  # fmt: skip


def _signal_state(payload: dict) -> dict:
    """A stand-in for run_point: whether SIGINT was held back in this worker since it started."""
    import signal

    held = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    summary = {"max_vio_global": float(held)}
    return {**{k: payload[k] for k in ("id", "params", "seed", "variant")}, "status": "ok",
            "summary": summary, "error": None}  # fmt: skip


@pytest.mark.skipif(not hasattr(__import__("signal"), "pthread_sigmask"), reason="POSIX only")
def test_workers_start_with_ctrl_c_held_back_and_the_parent_keeps_it():
    # Ctrl-C reaches the whole process group: a worker still importing would print a traceback.
    import signal

    points = sweep_points(tiny(), expand_grid({"router.top_k": [1, 2]}), 1)
    records = []
    run_local(points, records.append, jobs=2, should_stop=None, task=_signal_state)
    assert [r["summary"]["max_vio_global"] for r in records] == [1.0, 1.0]
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_a_worker_that_dies_fails_only_its_point():
    # top_k=1 runs beside the one that dies; top_k=3 starts after it, in a new pool.
    points = sweep_points(tiny(), expand_grid({"router.top_k": [1, 2, 3]}), 1)
    records = []
    interrupted = run_local(
        points, records.append, jobs=2, address=None, should_stop=None, task=_die_on_top_k_2
    )
    assert not interrupted
    assert sorted(r["params"]["router.top_k"] for r in records) == [1, 2, 3]  # each once
    by_top_k = {r["params"]["router.top_k"]: r for r in records}
    assert by_top_k[2]["status"] == "failed" and "WorkerDied" in by_top_k[2]["error"]
    assert all(by_top_k[k]["status"] == "ok" for k in (1, 3))


def test_an_unknown_metric_is_refused_before_anything_is_written(tmp_path):
    base = tiny()
    with pytest.raises(SweepError, match=r"metric: unknown metric 'qualty'.*'quality'\?"):
        _sweep(base, {"router.top_k": [1]}, tmp_path / "s", metric="qualty")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("width", [80, 160])
def test_aggregate_table_shows_std_and_whole_headers(width):
    from rich.console import Console

    grid = {"router.score": ["sigmoid", "softmax"], "balance.bias.rate": [1e-4, 4.64e-3]}
    points = sweep_points(tiny(), expand_grid(grid), seeds=3)
    records = [
        {
            **{k: getattr(p, k) for k in ("id", "params", "seed", "variant")},
            "status": "ok",
            "summary": {
                "max_vio_global": 0.5 + i / 7,
                "final_max_vio_batch": 1.0 + i / 3,
                "starved": i % 3,
                "quality": 0.0072 + i / 1000,
            },
        }
        for i, p in enumerate(points)
    ]
    aggregate = aggregate_rows(points, records)
    best = best_row(aggregate, "max_vio_global")
    result = SweepResult(
        Path("."), records, aggregate, list(grid), "max_vio_global", True, best, False, 0, 0
    )
    console = Console(width=width, record=True, no_color=True)
    console.print(aggregate_table(result))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    header = " ".join(text.splitlines()[2:6])
    for name in ("router.", "score", "balance.", "bias.rate", "max_vio_", "global", "mean ± ci"):
        assert name in header
    assert "sd" in header.split() and "final_max_" in header and "vio_batch" in header
    first = aggregate[0]
    line = next(line for line in text.splitlines() if line.lstrip().startswith("sigmoid"))
    assert f"{first['max_vio_global_mean']:.3f} ± {first['max_vio_global_ci95']:.3f}" in line
    assert f"{first['max_vio_global_std']:.3f}" in line
    assert "Student's t" in text


def test_dask_without_address_starts_single_threaded_workers(tmp_path):
    pytest.importorskip("distributed", reason="dask.distributed not installed")
    _, result = _sweep(tiny(), {"router.top_k": [1, 2]}, tmp_path / "s", executor="dask", jobs=1)
    assert [r["status"] for r in result.records] == ["ok", "ok"]
    assert {r["numba_threads"] for r in result.records} == {1}


# ------------------------------------------------------------------------- command line


def _app() -> typer.Typer:
    from moesim.cli.sweep import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command, so "sweep" is a subcommand
    return app


@pytest.fixture
def cli(tmp_path, monkeypatch):
    app = _app()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(
        json.dumps({**TINY, "sweep": {"grid": {"balance.bias.rate": [1e-3, 1e-2]}, "seeds": 2}})
    )
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["sweep", "tiny.yaml", *args])


def test_cli_sweep_runs_resumes_and_refuses(cli, tmp_path):
    result = cli("--grid", "router.score=sigmoid,softmax", "-j", "2", "-q")
    assert result.exit_code == 0, result.output
    out = tmp_path / "results" / "tiny-sweep"
    rows = read_csv(out / "sweep.csv")
    assert len(rows) == 2 * 2 * 2
    assert list(rows[0])[:6] == [
        "balance.bias.rate",
        "router.score",
        "seed",
        "variant",
        "status",
        "point",
    ]
    assert "max_vio_global" in result.output and "± " in result.output
    for name in ("sweep_aggregate.csv", "sweep_summary.json", "scenario.resolved.yaml"):
        assert (out / name).is_file()
    assert (out / "figures" / "sweep_max_vio_global.png").is_file()

    assert " sd " in result.output
    again = cli(
        "--grid", "router.score=sigmoid,softmax", "-q", "--metric", "quality_ratio", "--maximize"
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "8 point(s) already done, skipped" in again.output
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert (summary["metric"], summary["minimize"]) == ("quality_ratio", False)
    assert isinstance(summary["command"], list) and summary["command"]  # shown by the report

    other = cli("--grid", "router.score=sigmoid", "-q")
    assert other.exit_code == 1 and "different sweep" in other.output


def test_cli_bad_input_exits_2_before_running(cli, tmp_path):
    bad_point = cli("--grid", "router.top_k=2,16", "-q", "-o", "out")
    assert bad_point.exit_code == 2
    assert "sweep point balance.bias.rate=0.001, router.top_k=16" in bad_point.output
    assert not (tmp_path / "out").exists()
    empty = cli("--grid", "router.top_k=range(3,1)", "-q", "-o", "out")
    assert empty.exit_code == 2 and "router.top_k: range(3,1) gives no values" in empty.output
    unzippable = cli("--zip", "balance.bias.rate,router.top_k", "-q", "-o", "out")
    assert unzippable.exit_code == 2 and "router.top_k: zipped but not in the grid" in (
        unzippable.output
    )
    assert cli("--executor", "ray", "-q").exit_code == 2
    assert not (tmp_path / "out").exists()


def test_cli_bad_metric_exits_2_before_running(cli, tmp_path):
    typo = cli("--metric", "max_vio_globl", "-q", "-o", "out")
    assert typo.exit_code == 2 and "Traceback" not in typo.output
    assert "--metric: unknown metric 'max_vio_globl'" in typo.output
    assert "did you mean 'max_vio_global'?" in typo.output
    text = cli("--metric", "verdict", "-q", "-o", "out")
    assert text.exit_code == 2 and "'verdict' is not a number" in text.output
    in_file = cli("--set", "sweep.metric=qualty", "-q", "-o", "out")
    assert in_file.exit_code == 2
    assert "--set sweep.metric=qualty: sweep.metric: unknown metric 'qualty'" in in_file.output
    assert "did you mean 'quality'?" in in_file.output
    (tmp_path / "typo.yaml").write_text(
        (tmp_path / "tiny.yaml").read_text().replace('"seeds": 2', '"seeds": 2, "metric": "cvv"')
    )
    from_file = CliRunner().invoke(_app(), ["sweep", "typo.yaml", "-q"])
    assert from_file.exit_code == 2
    assert re.search(r"typo.yaml:\d+:\d+: sweep.metric: unknown metric 'cvv'", from_file.output)
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()


def test_should_stop_lets_running_points_finish_and_marks_partial(tmp_path):
    base = tiny()
    points, result = _sweep(
        base, {"router.top_k": [1, 2, 3, 4, 5, 6]}, tmp_path / "s", jobs=1, should_stop=lambda: 1
    )
    stored = list((tmp_path / "s" / "points").glob("*.json"))
    assert result.interrupted and result.partial
    assert 1 <= len(stored) < len(points) and len(result.records) == len(stored)
    assert all(json.loads(p.read_text())["status"] == "ok" for p in stored)


# ----------------------------------------------------------------------------------------------
# Grids without limits (issue 17, class 3) and the sweep's smaller inconsistencies (class 14)

HOSTILE_GRIDS = [
    ("range(0,1e9)", r"gives 1,000,000,000 values; a sweep may have at most 100,000 points"),
    ("range(0,1,1e-300)", r"gives more than 100,000 values"),
    ("range(-1e308,1e308,1e-308)", r"gives more than 100,000 values"),
    ("range(0,inf)", r"takes finite numbers"),
    ("range(nan,1)", r"takes finite numbers"),
    ("linspace(0,1,nan)", r"takes finite numbers"),
    ("linspace(0,1,inf)", r"takes finite numbers"),
    ("linspace(0,1,2.5)", r"a whole count n >= 1"),
    ("logspace(1e-4,1e-2,1e12)", r"gives 1,000,000,000,000 values"),
    ("logspace(1e-4,1e400,3)", r"takes finite numbers"),
    ("range(1e308,-1e308,1e-308)", r"gives no values"),
]


@pytest.mark.parametrize("spec, expected", HOSTILE_GRIDS)
def test_a_grid_too_large_or_not_finite_is_refused_at_once(spec, expected):
    started = time.perf_counter()
    with pytest.raises(SweepError, match=rf"router.top_k: .*{expected}"):
        expand_grid({"router.top_k": spec})
    assert time.perf_counter() - started < 1.0


def test_points_are_counted_before_anything_is_expanded():
    # Each axis is within the limit; their product (and seeds, variants) is not.
    grid = {"a": "range(0,1000)", "b": "range(0,1000)"}
    with pytest.raises(SweepError, match="1,000,000 combination"):
        expand_grid(grid)
    assert len(expand_grid(grid, [["a", "b"]])) == 1000  # zipped: one axis
    with pytest.raises(SweepError, match=r"1,000 combination\(s\) x 200 seed\(s\) make 200,000"):
        plan_sweep(tiny(), grid={"router.top_k": "range(0,1000)"}, seeds=200)


def test_the_largest_grid_expands_quickly():
    # 100,000 values: the check for a value given twice must not compare every pair.
    started = time.perf_counter()
    assert len(parse_values("k", "range(0,100000)")) == 100_000
    assert len(parse_values("k", [[i] for i in range(20_000)])) == 20_000
    assert time.perf_counter() - started < 5.0


def test_validate_checks_the_files_sweep_grid(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(
        "name: grid\nsweep:\n  grid:\n    router.top_k: range(0,1e9)\n"
        "    balance.bias.rate: linspace(0,1,nan)\n"
    )
    outcome = CliRunner().invoke(moesim_app, ["validate", str(path)])
    assert outcome.exit_code == 2, outcome.output
    text = outcome.output.replace("\n", "")
    assert f"{path}:4:5: sweep.grid.router.top_k: range(0,1e9) gives 1,000,000,000" in text
    assert f"{path}:5:5: sweep.grid.balance.bias.rate: linspace() takes finite" in text
    path.write_text("name: grid\nsweep:\n  seeds: 1000\n  grid: {router.top_k: 'range(1,1000)'}\n")
    outcome = CliRunner().invoke(moesim_app, ["validate", str(path)])
    assert outcome.exit_code == 2 and "999,000 points" in outcome.output


def test_the_sweep_command_refuses_a_huge_grid_quickly(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(TINY))
    started = time.perf_counter()
    outcome = CliRunner().invoke(
        moesim_app,
        ["sweep", str(path), "-g", "router.top_k=range(0,1e9)", "-o", str(tmp_path / "s")],
    )
    assert outcome.exit_code == 2, outcome.output
    assert "1,000,000,000 values" in outcome.output
    assert time.perf_counter() - started < 5.0
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("text", ["=1,2", " =logspace(1,2,3)", "router..top_k=1,2"])
def test_a_bad_grid_option_is_reported_as_grid_not_set(text):
    with pytest.raises(SweepError) as caught:
        parse_grid_option(text)
    assert str(caught.value).startswith(f"--grid {text}")
    assert "--set" not in str(caught.value)


def test_a_sweep_that_cannot_write_exits_1_like_run(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(TINY))
    (tmp_path / "a_file").write_text("")
    target = tmp_path / "a_file" / "sweep"
    outcome = CliRunner().invoke(
        moesim_app, ["sweep", str(path), "-g", "router.top_k=1,2", "-o", str(target)]
    )
    assert outcome.exit_code == 1, outcome.output
    assert "cannot write the results folder" in outcome.output
    outcome = CliRunner().invoke(moesim_app, ["run", str(path), "-o", str(target)])
    assert outcome.exit_code == 1, outcome.output


def test_the_sweep_folder_is_read_as_run_reads_it(tmp_path, monkeypatch):
    # -o '' is refused (not the current folder); ~ is the home folder, not a folder named "~".
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(TINY))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    arguments = ["sweep", str(path), "-g", "router.top_k=1,2", "-q", "-j", "1"]  # one worker
    outcome = CliRunner().invoke(moesim_app, [*arguments, "-o", ""])
    assert outcome.exit_code == 2 and "empty path" in outcome.output
    assert not (tmp_path / "sweep.csv").exists()
    outcome = CliRunner().invoke(moesim_app, [*arguments, "-o", "~/s"])
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "home" / "s" / "sweep.csv").is_file() and not (tmp_path / "~").exists()
