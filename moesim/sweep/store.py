"""The sweep folder: one file per finished point, then the tables, the summary and the figures.

    results/<scenario name>-sweep/
      points/<point id>.json   one finished point (params, seed, variant, summary or error)
      sweep.csv                tidy: one row per point, seed and variant
      sweep_aggregate.csv      per parameter combination and variant: mean, std, 95% CI, n
      sweep_summary.json       grid, seeds, metric, best point, counts, partial, sweep hash
      scenario.resolved.yaml   the base scenario
      figures/                 the chosen metric against each swept parameter

Every file is written atomically, each point as soon as it finishes, so a rerun skips what is
done and an interrupted (even killed) sweep loses nothing finished. CSV cells keep full
precision (``repr`` of floats); only the printed table rounds.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

from moesim.results.folder import package_versions, to_jsonable, write_atomic
from moesim.scenario import Scenario, dump_yaml
from moesim.sweep.plan import Point, SweepPlan
from moesim.sweep.table import SweepResult, aggregate_rows, best_row, sweep_rows

SWEEP_FILES = ("sweep.csv", "sweep_aggregate.csv", "sweep_summary.json")


class SweepExistsError(FileExistsError):
    """The output folder holds a different sweep (or a run) and overwriting was not asked for."""


def default_sweep_dir(scenario: Scenario) -> Path:
    """``results/<scenario name>-sweep``: where ``moesim sweep`` writes without ``-o``."""
    return Path("results") / f"{scenario.name}-sweep"


def read_point(path: Path) -> dict | None:
    """A stored point, or None when it is missing or unreadable (it will run again)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def prepare_sweep_dir(output_dir: Path, identity: str, *, force: bool) -> Path:
    """Create the folder; resume the same sweep; refuse a different one unless ``force``.

    ``force`` starts over: stored points and sweep files are deleted first.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise SweepExistsError(f"{output_dir} exists and is not a folder")
    summary_path = output_dir / "sweep_summary.json"
    stored = read_point(summary_path) if summary_path.exists() else None
    if not force:
        if stored is not None and stored.get("sweep_hash") != identity:
            raise SweepExistsError(
                f"{output_dir} holds a different sweep (another grid, seeds or base scenario); "
                "pass --force to replace it or -o to write elsewhere"
            )
        if stored is None and (output_dir / "points").is_dir():
            raise SweepExistsError(
                f"{output_dir}/points exists without sweep_summary.json; pass --force to "
                "replace it or -o to write elsewhere"
            )
        if stored is None and (output_dir / "summary.json").exists():
            raise SweepExistsError(
                f"{output_dir} holds the results of a run; pass --force to write the sweep "
                "there anyway or -o to write elsewhere"
            )
    elif (output_dir / "points").is_dir():
        for path in (output_dir / "points").glob("*.json"):
            path.unlink()
        for name in SWEEP_FILES:
            (output_dir / name).unlink(missing_ok=True)
    (output_dir / "points").mkdir(parents=True, exist_ok=True)
    return output_dir


def sweep_info(plan: SweepPlan, executor: str) -> dict:
    """The sweep as planned, the first keys of ``sweep_summary.json`` (in the file's order)."""
    return {
        "scenario": plan.scenario.name,
        "sweep_hash": plan.identity,
        "parameters": plan.parameters,
        "grid": to_jsonable(plan.grid),
        "zip": [list(group) for group in plan.zip_groups],
        "seeds": plan.seeds,
        "metric": plan.metric,
        "minimize": plan.minimize,
        "executor": executor,
        "points": len(plan.points),
    }


def start_sweep_dir(output_dir: Path, scenario: Scenario, info: dict) -> None:
    """Write ``scenario.resolved.yaml`` and a partial ``sweep_summary.json`` before any point
    runs, so an interrupted (even killed) sweep can be recognised and resumed."""
    write_atomic(output_dir / "scenario.resolved.yaml", dump_yaml(scenario))
    write_summary(output_dir, info, best=None, records=[], partial=True, seconds=None)


def write_point(output_dir: Path, record: dict) -> None:
    """Store one finished point as ``points/<id>.json``."""
    write_atomic(
        output_dir / "points" / f"{record['id']}.json",
        json.dumps(to_jsonable(record), indent=1) + "\n",
    )


def finished_points(output_dir: Path, points: list[Point]) -> dict[str, dict]:
    """Point id -> stored record, for the points stored with status ``ok`` (failed, missing
    and unreadable ones run again)."""
    done = {}
    for point in points:
        stored = read_point(output_dir / "points" / f"{point.id}.json")
        if stored is not None and stored.get("status") == "ok":
            done[point.id] = stored
    return done


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(value) for value in row])
    return buffer.getvalue()


def _best_summary(best: dict | None, parameters: list[str], metric: str) -> dict | None:
    """The best row as stored in sweep_summary.json: parameters, variant, n and the metric."""
    if best is None:
        return None
    return {
        "params": {key: best[key] for key in parameters},
        "variant": best["variant"],
        "n": best["n"],
        metric: {stat: best.get(f"{metric}_{stat}") for stat in ("mean", "std", "ci95")},
    }


def _command_line() -> list[str]:
    """The command that is running, with the console script's path shortened to ``moesim``."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name == "moesim":
        argv[0] = "moesim"
    return argv


def write_summary(output_dir, info, *, best, records, partial, seconds) -> None:
    """``sweep_summary.json``: ``info`` (:func:`sweep_info`), the best row, the counts."""
    ok = sum(r["status"] == "ok" for r in records)
    summary = {
        **info,
        "best": _best_summary(best, info["parameters"], info["metric"]),
        "ok": ok,
        "failed": len(records) - ok,
        "missing": info["points"] - len(records),
        "partial": partial,
        "seconds": seconds,
        # As typed (the report shows it); from Python, the interpreter's own argv.
        "command": _command_line(),
        "versions": package_versions(),
    }
    write_atomic(output_dir / "sweep_summary.json", json.dumps(to_jsonable(summary), indent=2))


def write_sweep_results(
    output_dir: Path,
    points: list[Point],
    records: list[dict],
    *,
    info: dict,
    partial: bool,
    seconds: float | None = None,
    figures: bool = True,
) -> SweepResult:
    """Write sweep.csv, sweep_aggregate.csv, sweep_summary.json (and figures) from the records."""
    output_dir = Path(output_dir)
    header, rows = sweep_rows(points, records)
    write_atomic(output_dir / "sweep.csv", _csv_text(header, rows))
    aggregate = aggregate_rows(points, records)
    aggregate_header = list(aggregate[0]) if aggregate else []
    for row in aggregate[1:]:
        aggregate_header += [k for k in row if k not in aggregate_header]
    write_atomic(
        output_dir / "sweep_aggregate.csv",
        _csv_text(aggregate_header, [[r.get(k) for k in aggregate_header] for r in aggregate]),
    )
    metric, minimize = info["metric"], info["minimize"]
    best = best_row(aggregate, metric, minimize)
    write_summary(output_dir, info, best=best, records=records, partial=partial, seconds=seconds)
    result = SweepResult(
        output_dir=output_dir,
        records=records,
        aggregate=aggregate,
        parameters=list(info["parameters"]),
        metric=metric,
        minimize=minimize,
        best=best,
        partial=partial,
        ran=0,
        skipped=0,
    )
    if figures and any(r["status"] == "ok" for r in records) and info["parameters"]:
        write_sweep_figures(output_dir)
    return result


def write_sweep_figures(output_dir: Path) -> list[Path]:
    """The sweep figures of :mod:`moesim.figures` (PNG): ``figures/sweep_<metric>.png`` and the
    other figures of ``SWEEP_FIGURES`` that the results allow.

    The figures read the chosen metric and whether lowest or highest is best from
    ``sweep_summary.json`` (written just before), so ``moesim plot`` and ``moesim report`` draw
    the same files later. A figure the results cannot give (no finite value of the metric at
    all, say) is left out.
    """
    # Imported here: matplotlib is needed only once there is something to draw.
    from moesim.figures import SWEEP_FIGURES, write_figures

    return write_figures(Path(output_dir), only=SWEEP_FIGURES)
