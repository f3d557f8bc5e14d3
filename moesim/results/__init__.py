"""Results: what a run produces (names, classes) and the folder it leaves on disk.

- :mod:`moesim.results.metrics`: history columns, summary metrics, their labels and number
  format, the sweep metric check, the order of swept values.
- :mod:`moesim.results.model`: :class:`Result` and :class:`VariantResult`, in memory.
- :mod:`moesim.results.folder`: writing a results folder, atomically.
- :mod:`moesim.results.files`: each file of a results folder read and checked.
- :mod:`moesim.results.reading`: reading a results folder (a run, a sweep) into
  :class:`ResultsData` for the figures and the report.
- :mod:`moesim.results.verdict`: the verdict on a run (collapsed, balanced, imbalanced).
"""

from moesim.results.folder import (
    PARTS_DIR,
    RESULT_FILES,
    OutputExistsError,
    ResultsWriter,
    default_output_dir,
    history_csv,
    moesim_files,
    package_versions,
    prepare_output_dir,
    to_jsonable,
    write_atomic,
    write_results,
)
from moesim.results.metrics import HISTORY_COLUMNS, SUMMARY_METRICS
from moesim.results.model import Result, VariantResult
from moesim.results.reading import (
    NotResultsError,
    ResultsData,
    group_rows,
    load_results,
    read_history,
    read_loads,
    read_summary,
    read_sweep_csv,
    same_value,
    sweep_parameters,
)
from moesim.results.verdict import VERDICTS, verdict

__all__ = [
    "HISTORY_COLUMNS",
    "PARTS_DIR",
    "RESULT_FILES",
    "SUMMARY_METRICS",
    "VERDICTS",
    "NotResultsError",
    "OutputExistsError",
    "Result",
    "ResultsData",
    "ResultsWriter",
    "VariantResult",
    "default_output_dir",
    "group_rows",
    "history_csv",
    "load_results",
    "moesim_files",
    "package_versions",
    "prepare_output_dir",
    "read_history",
    "read_loads",
    "read_summary",
    "read_sweep_csv",
    "same_value",
    "sweep_parameters",
    "to_jsonable",
    "verdict",
    "write_atomic",
    "write_results",
]
