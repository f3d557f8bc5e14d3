"""Parameter sweeps: a grid of scenario overrides x seeds, run in parallel, resumable.

- :mod:`moesim.sweep.grid`: the grid language (lists, ``logspace``/``linspace``/``range``, zip
  groups), :func:`expand_grid`, the ``--grid``/``--zip`` options.
- :mod:`moesim.sweep.plan`: :func:`plan_sweep` -> :class:`SweepPlan`: the scenario's ``sweep:``
  section merged with the caller's, every point (combination x seed x variant) validated.
- :mod:`moesim.sweep.executors`: a local process pool or a Dask cluster, one Numba thread per
  point; a failed point is recorded, the others go on.
- :mod:`moesim.sweep.store`: the sweep folder (``points/<id>.json``, ``sweep.csv``,
  ``sweep_aggregate.csv``, ``sweep_summary.json``, figures), resumable.
- :mod:`moesim.sweep.table`: rows, the aggregate over seeds (Student's t), the best row, the
  printed table.
- :mod:`moesim.sweep.run`: :func:`run_sweep`, which puts them together.

From Python (docs/sweeps.md)::

    plan = plan_sweep(load_scenario("scenarios/collapse.yaml"), grid={...}, seeds=3)
    result = run_sweep(plan, "results/my-sweep", jobs=2)
"""

from moesim.sweep.executors import EXECUTORS, run_dask, run_local, run_point
from moesim.sweep.grid import (
    SweepError,
    expand_grid,
    parse_grid_option,
    parse_values,
    parse_zip_option,
)
from moesim.sweep.plan import (
    Point,
    SweepPlan,
    check_metric,
    plan_sweep,
    point_id,
    sweep_hash,
    sweep_points,
)
from moesim.sweep.run import run_sweep
from moesim.sweep.store import (
    SWEEP_FILES,
    SweepExistsError,
    default_sweep_dir,
    prepare_sweep_dir,
    read_point,
    write_sweep_figures,
    write_sweep_results,
)
from moesim.sweep.table import (
    BOOKKEEPING_COLUMNS,
    KEY_METRICS,
    SweepResult,
    aggregate_rows,
    aggregate_table,
    best_row,
    metric_names,
    sweep_rows,
)

__all__ = [
    "BOOKKEEPING_COLUMNS",
    "EXECUTORS",
    "KEY_METRICS",
    "SWEEP_FILES",
    "Point",
    "SweepError",
    "SweepExistsError",
    "SweepPlan",
    "SweepResult",
    "aggregate_rows",
    "aggregate_table",
    "best_row",
    "check_metric",
    "default_sweep_dir",
    "expand_grid",
    "metric_names",
    "parse_grid_option",
    "parse_values",
    "parse_zip_option",
    "plan_sweep",
    "point_id",
    "prepare_sweep_dir",
    "read_point",
    "run_dask",
    "run_local",
    "run_point",
    "run_sweep",
    "sweep_hash",
    "sweep_points",
    "sweep_rows",
    "write_sweep_figures",
    "write_sweep_results",
]
