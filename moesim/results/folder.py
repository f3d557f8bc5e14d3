"""The results folder: what a run leaves on disk, written atomically (read back by
:mod:`moesim.results.reading`).

    results/<scenario name>/
      scenario.resolved.yaml   the scenario with every default filled in
      summary.json             per-variant summary metrics and verdicts
      history.csv              tidy per-record metrics: one row per variant and recorded step
      loads.npz                per-expert loads, demand and bias per record, final loads/bias
      manifest.json            versions, seed, timing, command, partial flag

Every file is written to a temporary name in the same folder and renamed into place, so a file
is either the old one or the complete new one, never half written. An existing results folder is
never overwritten without ``force``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from moesim.results.metrics import HISTORY_COLUMNS
from moesim.results.model import Result

RESULT_FILES = (
    "scenario.resolved.yaml",
    "summary.json",
    "history.csv",
    "loads.npz",
    "manifest.json",
)


class OutputExistsError(FileExistsError):
    """The results folder already holds results and overwriting was not asked for."""


def default_output_dir(scenario) -> Path:
    """``output.dir`` of the scenario, or ``results/<scenario name>``."""
    return Path(scenario.output.dir) if scenario.output.dir else Path("results") / scenario.name


def prepare_output_dir(path: Path, *, force: bool) -> Path:
    """Create ``path``; refuse (OutputExistsError) if it already holds results and not force."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} exists and is not a folder")
    existing = [name for name in RESULT_FILES if (path / name).exists()]
    if existing and not force:
        raise OutputExistsError(
            f"{path} already holds results ({', '.join(existing)}); pass --force to overwrite "
            "them or -o to write elsewhere"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(raw)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates 0600; results are meant to be shared, so use the usual umask mode.
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def to_jsonable(value):
    """Plain JSON types: numpy scalars to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("moesim", "numpy", "numba", "llvmlite", "pydantic", "pyyaml", "typer", "rich"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def history_csv(result: Result) -> str:
    """The tidy history as CSV text (``variant`` first, then :data:`HISTORY_COLUMNS`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("variant", *HISTORY_COLUMNS))
    for variant in result.variants:
        columns = [variant.history[name] for name in HISTORY_COLUMNS]
        for row in zip(*columns, strict=True):
            cells = [int(row[0])] + [
                "" if not math.isfinite(value) else repr(float(value)) for value in row[1:]
            ]
            writer.writerow((variant.name, *cells))
    return buffer.getvalue()


def write_results(
    result: Result, output_dir: Path, *, seconds: float | None = None, command=None
) -> Path:
    """Write (or rewrite) every results file for ``result`` into ``output_dir``.

    Called after each variant, so an interrupted run keeps what it finished; ``partial`` in
    ``summary.json`` and ``manifest.json`` says whether the run was cut short.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    scenario = result.scenario
    write_atomic(output_dir / "scenario.resolved.yaml", scenario.to_yaml())
    summary = {
        "scenario": scenario.name,
        "partial": result.partial,
        "variants": [v.summary for v in result.variants],
    }
    write_atomic(output_dir / "summary.json", json.dumps(to_jsonable(summary), indent=2) + "\n")
    write_atomic(output_dir / "history.csv", history_csv(result))
    if scenario.output.save_loads:
        arrays = {}
        for v in result.variants:
            arrays[f"{v.name}.loads"] = v.loads
            arrays[f"{v.name}.demand"] = v.demand
            arrays[f"{v.name}.bias"] = v.bias
            arrays[f"{v.name}.steps"] = v.history["step"].astype(np.int64)
            arrays[f"{v.name}.final_loads"] = v.final_loads
            arrays[f"{v.name}.final_bias"] = v.final_bias
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        write_atomic(output_dir / "loads.npz", buffer.getvalue())
    manifest = {
        "moesim": package_versions().get("moesim"),
        "versions": package_versions(),
        "scenario": scenario.name,
        "seed": scenario.seed,
        "variants": [v.name for v in result.variants],
        "partial": result.partial,
        "seconds": seconds,
        "variant_seconds": {v.name: v.summary.get("seconds") for v in result.variants},
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": list(command) if command is not None else sys.argv,
        "platform": platform.platform(),
        "numba_threads": _numba_threads(),
    }
    write_atomic(output_dir / "manifest.json", json.dumps(to_jsonable(manifest), indent=2) + "\n")
    return output_dir


def _numba_threads() -> int:
    import numba

    return int(numba.get_num_threads())
