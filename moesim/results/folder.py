"""The results folder: what a run leaves on disk, written so that a folder says complete only
once it is (read back by :mod:`moesim.results.reading`).

    results/<scenario name>/
      scenario.resolved.yaml   the scenario with every default filled in
      summary.json             per-variant summary metrics and verdicts
      history.csv              tidy per-record metrics: one row per variant and recorded step
      loads.npz                per-expert loads, demand and bias per record, final loads/bias
      manifest.json            versions, seed, timing, command, partial flag; written last
      variants.partial/        while running: one file per finished variant (removed at the end)

The order of writing is what makes a folder honest:

1. At the start, ``scenario.resolved.yaml``, ``summary.json`` and ``manifest.json`` say
   ``"partial": true`` with no variants yet.
2. After each variant, only that variant is written, to ``variants.partial/NNNN.json`` (summary
   and history) and ``NNNN.npz`` (loads): the cost of saving a variant does not grow with the
   number of variants before it, and a run killed at any moment keeps what it finished.
3. At the end (or after Ctrl-C or SIGTERM), ``summary.json``, ``history.csv`` and ``loads.npz``
   are written whole, ``variants.partial/`` is removed and ``manifest.json`` is written last.

So a folder is complete only when its ``manifest.json`` says ``"partial": false`` (and
``summary.json`` agrees, and no ``variants.partial/`` is left); a run killed at any moment, even
by SIGKILL, leaves a folder that reads as partial. Every file is written to a temporary name in
the same folder and renamed into place, so a file is either the old one or the complete new one.

An existing results folder is never overwritten without ``force``. With ``force`` the new run is
written into a staging folder inside it (``.moesim-staging-*``) and moved in when it ends: until
then the old results stay as they were, and a rerun that fails (or is killed) leaves them so.
Moving in replaces every file of the old run, including ``report.html``, ``report.md`` and
``figures/`` drawn from it; the manifest is removed first and moved in last, so the folder reads
as partial while files move.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from moesim.results.metrics import HISTORY_COLUMNS, LAYER_COLUMN
from moesim.results.model import Result, VariantResult

RESULT_FILES = (
    "scenario.resolved.yaml",
    "summary.json",
    "history.csv",
    "loads.npz",
    "deployment.npz",
    "manifest.json",
)
#: Finished variants of a run still in progress (or killed): one ``NNNN.json`` (and ``NNNN.npz``
#: with ``save_loads``) per variant, in scenario order.
PARTS_DIR = "variants.partial"
#: Files drawn from a run by ``moesim plot`` and ``moesim report``: stale once it is rerun.
DERIVED_FILES = ("report.html", "report.md", "figures")
#: Where a ``force`` rerun is written before it replaces the old results.
STAGING_PREFIX = ".moesim-staging-"
#: Per-variant arrays of ``loads.npz`` (keys ``<variant>.<field>``). A run with one MoE layer
#: stores them without a layer axis, as moesim 0.1 did: ``loads``, ``demand``, ``bias`` (R, E),
#: ``steps`` (R,), ``final_loads``, ``final_bias`` (E,). With several layers they lead with one
#: ((L, R, E), (L, E)) and :data:`LAYERS_FIELD` (L,) holds the layers' numbers.
LOAD_FIELDS = ("loads", "demand", "bias", "steps", "final_loads", "final_bias")
LAYERS_FIELD = "layers"


class OutputExistsError(FileExistsError):
    """The results folder already holds results and overwriting was not asked for."""


def default_output_dir(scenario) -> Path:
    """``output.dir`` of the scenario, or ``results/<scenario name>``."""
    return Path(scenario.output.dir) if scenario.output.dir else Path("results") / scenario.name


def moesim_files(path: Path) -> list[str]:
    """Names in ``path`` that a run, ``plot`` or ``report`` wrote (or a killed rerun left)."""
    path = Path(path)
    names = [n for n in (*RESULT_FILES, PARTS_DIR, *DERIVED_FILES) if (path / n).exists()]
    if path.is_dir():
        names += sorted(p.name for p in path.glob(f"{STAGING_PREFIX}*"))
    return names


def prepare_output_dir(path: Path, *, force: bool) -> Path:
    """Create ``path``; refuse (OutputExistsError) if it already holds results and not force."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} exists and is not a folder")
    existing = moesim_files(path)
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


def is_single_layer(variant: VariantResult) -> bool:
    """Whether a variant ran one MoE layer, layer 0: its files are written as moesim 0.1's."""
    return len(variant.layers) == 1 and int(variant.layers[0]) == 0


def _history_names(result: Result) -> tuple[str, ...]:
    """Integer columns of history.csv: ``layer`` when a variant has several MoE layers."""
    if all(is_single_layer(variant) for variant in result.variants):
        return ("step",)
    return (LAYER_COLUMN, "step")


def history_csv(result: Result) -> str:
    """The tidy history as CSV text: ``variant`` first, then ``layer`` when a variant has
    several MoE layers (one row per variant, layer and recorded step), then
    :data:`HISTORY_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    integers = _history_names(result)
    names = (*integers, *HISTORY_COLUMNS[1:])
    writer.writerow(("variant", *names))
    for variant in result.variants:
        history = dict(variant.history)
        history.setdefault(LAYER_COLUMN, np.zeros(len(history["step"]), dtype=np.int64))
        columns = [history[name] for name in names]
        for row in zip(*columns, strict=True):
            cells = [int(value) for value in row[: len(integers)]] + [
                "" if not math.isfinite(value) else repr(float(value))
                for value in row[len(integers) :]
            ]
            writer.writerow((variant.name, *cells))
    return buffer.getvalue()


def _part_columns(variant: VariantResult) -> tuple[str, ...]:
    """History columns of a variant's part file: ``layer`` first with several layers."""
    return HISTORY_COLUMNS if is_single_layer(variant) else (LAYER_COLUMN, *HISTORY_COLUMNS)


def _json_text(value) -> str:
    return json.dumps(to_jsonable(value), indent=2) + "\n"


def _variant_arrays(variant: VariantResult) -> dict[str, np.ndarray]:
    """A variant's arrays for ``loads.npz`` (:data:`LOAD_FIELDS`); one layer without the layer
    axis."""
    single = is_single_layer(variant)
    per_layer = {
        "loads": variant.loads,
        "demand": variant.demand,
        "bias": variant.bias,
        "final_loads": variant.final_loads,
        "final_bias": variant.final_bias,
    }
    if single:
        per_layer = {key: array[0] for key, array in per_layer.items()}
    steps = variant.history["step"][: variant.loads.shape[-2]].astype(np.int64)
    arrays = {**per_layer, "steps": steps}
    arrays = {key: arrays[key] for key in LOAD_FIELDS}
    if not single:
        arrays[LAYERS_FIELD] = np.asarray(variant.layers, dtype=np.int64)
    return arrays


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _manifest(result: Result, *, seconds, command, planned) -> dict:
    versions = package_versions()
    return {
        "moesim": versions.get("moesim"),
        "versions": versions,
        "scenario": result.scenario.name,
        "seed": result.scenario.seed,
        "stream_version": result.scenario.tokens.stream_version,
        "variants": [v.name for v in result.variants],
        "planned_variants": list(planned),
        "partial": result.partial,
        "seconds": seconds,
        "variant_seconds": {v.name: v.summary.get("seconds") for v in result.variants},
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": list(command) if command is not None else sys.argv,
        "platform": platform.platform(),
        "numba_threads": _numba_threads(),
    }


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class ResultsWriter:
    """Writes one run into a results folder in the order that keeps it honest (module docs).

    Parameters
    ----------
    output_dir : Path
        The results folder, made by :func:`prepare_output_dir`.
    scenario : Scenario
    planned : list of str
        The names of every variant the run will try, in order (``manifest.json`` lists them,
        so a partial folder says how many it finished).
    replace : bool
        The folder holds older results (``force``): write into a staging folder and move the
        new run in at :meth:`finish`.
    command : list of str, optional
        The command recorded in ``manifest.json`` (``sys.argv`` when omitted).
    """

    def __init__(self, output_dir: Path, scenario, planned, *, replace=False, command=None):
        self.target = Path(output_dir)
        self.scenario = scenario
        self.planned = list(planned)
        self.command = command
        self.folder = self.target
        if replace:
            for name in moesim_files(self.target):
                if name.startswith(STAGING_PREFIX):  # left by a rerun that was killed
                    _remove(self.target / name)
            self.folder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.target))
        self.parts = self.folder / PARTS_DIR

    def start(self) -> None:
        """The scenario, and a summary and manifest that say partial, before any variant."""
        empty = Result(scenario=self.scenario, partial=True)
        write_atomic(self.folder / "scenario.resolved.yaml", self.scenario.to_yaml())
        write_atomic(self.folder / "summary.json", _json_text(self._summary(empty)))
        manifest = _manifest(empty, seconds=None, command=self.command, planned=self.planned)
        write_atomic(self.folder / "manifest.json", _json_text(manifest))
        self.parts.mkdir(exist_ok=True)

    def add_variant(self, index: int, variant: VariantResult) -> None:
        """Save one finished variant (its size only, whatever came before it)."""
        part = {
            "variant": variant.name,
            "summary": variant.summary,
            "history": {name: variant.history[name] for name in _part_columns(variant)},
        }
        if self.scenario.output.save_loads:
            write_atomic(self.parts / f"{index:04d}.npz", _npz_bytes(_variant_arrays(variant)))
        write_atomic(self.parts / f"{index:04d}.json", _json_text(part))

    def finish(self, result: Result, *, seconds: float | None = None) -> Path:
        """Write the whole run, remove the parts, write the manifest last; move a staged run
        into the folder. Called at the end and after an interrupt (``result.partial``)."""
        folder = self.folder
        write_atomic(folder / "summary.json", _json_text(self._summary(result)))
        write_atomic(folder / "history.csv", history_csv(result))
        if self.scenario.output.save_loads:
            arrays = {
                f"{v.name}.{key}": array
                for v in result.variants
                for key, array in _variant_arrays(v).items()
            }
            write_atomic(folder / "loads.npz", _npz_bytes(arrays))
        deployment = {
            f"{v.name}.{key}": array
            for v in result.variants
            for key, array in (v.deployment or {}).items()
        }
        if deployment:  # a scenario with a deployment (docs/metrics.md)
            write_atomic(folder / "deployment.npz", _npz_bytes(deployment))
        _remove(self.parts)
        manifest = _manifest(result, seconds=seconds, command=self.command, planned=self.planned)
        write_atomic(folder / "manifest.json", _json_text(manifest))
        if folder != self.target:
            self._move_in()
        return self.target

    def abandon(self) -> None:
        """After an error: drop a staged run (the old results stay untouched); a direct run
        keeps its finished variants, and its folder reads as partial."""
        if self.folder != self.target:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _summary(self, result: Result) -> dict:
        return {
            "scenario": self.scenario.name,
            "partial": result.partial,
            "variants": [v.summary for v in result.variants],
        }

    def _move_in(self) -> None:
        """Replace the old run's files by the staged ones, manifest out first and in last."""
        (self.target / "manifest.json").unlink(missing_ok=True)
        staged = {p.name for p in self.folder.iterdir()}
        for name in (*RESULT_FILES, PARTS_DIR, *DERIVED_FILES):
            if name not in staged:
                _remove(self.target / name)
        for name in sorted(staged - {"manifest.json"}):
            os.replace(self.folder / name, self.target / name)
        os.replace(self.folder / "manifest.json", self.target / "manifest.json")
        shutil.rmtree(self.folder, ignore_errors=True)


def write_results(
    result: Result, output_dir: Path, *, seconds: float | None = None, command=None
) -> Path:
    """Write every results file for a finished (or interrupted) ``result`` into ``output_dir``,
    the manifest last."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    planned = [v.name for v in result.variants]
    writer = ResultsWriter(output_dir, result.scenario, planned, command=command)
    write_atomic(output_dir / "scenario.resolved.yaml", result.scenario.to_yaml())
    return writer.finish(result, seconds=seconds)


def _numba_threads() -> int:
    import numba

    return int(numba.get_num_threads())
