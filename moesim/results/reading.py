"""Reading a results folder back: a run's files, a sweep's table, and the grouping of its rows.

Every file is read and checked by :mod:`moesim.results.files` (a damaged one raises
:class:`NotResultsError` naming it), so the figures and the report need no checks of their own.
A run killed before its end is read from its parts (``variants.partial/``), and
:attr:`ResultsData.partial` says whether a folder holds a complete run.

:func:`load_results` reads whatever a folder holds (``moesim run`` writes ``summary.json``,
``history.csv``, ``loads.npz``, ``manifest.json`` and ``scenario.resolved.yaml``; ``moesim sweep``
writes ``sweep.csv`` and ``sweep_summary.json``) into one :class:`ResultsData`, which the figures
and the report draw from. :func:`group_rows` groups a sweep's rows by parameter values, in the
one order of swept values (:func:`moesim.results.metrics.sort_key`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from moesim.results.files import (
    READ_ERRORS,
    NotResultsError,
    check_manifest,
    check_sweep_summary,
    read_deployment,
    read_history,
    read_json_object,
    read_loads,
    read_parts,
    read_summary,
    read_sweep_csv,
)
from moesim.results.folder import PARTS_DIR
from moesim.results.layers import layer_numbers, summary_of_layer
from moesim.results.metrics import LAYER_COLUMN, sort_key

#: Sweep columns that are neither swept parameters nor metrics.
SWEEP_BOOKKEEPING = {"seed", "point", "run", "replicate", "variant", "error", "status", "id"}


def sweep_parameters(columns: dict[str, np.ndarray], sweep_summary: dict | None = None) -> list:
    """Swept parameter columns: named in ``sweep_summary.json`` or key paths (``a.b``)."""
    if isinstance(sweep_summary, dict):
        for key in ("parameters", "params", "swept", "grid"):
            named = sweep_summary.get(key)
            if isinstance(named, dict):
                named = list(named)
            if isinstance(named, list) and named and all(isinstance(n, str) for n in named):
                return [n for n in named if n in columns]
    return [n for n in columns if "." in n and n not in SWEEP_BOOKKEEPING]


def group_rows(columns: dict, keys: list[str]) -> list[tuple[tuple, np.ndarray]]:
    """Rows grouped by the values of ``keys``: ``[(((key, value), ...), row indices)]``, in the
    order of :func:`~moesim.results.metrics.sort_key` (numbers, then text, then missing)."""
    n = len(next(iter(columns.values()))) if columns else 0
    groups: dict[tuple, list[int]] = {}
    for i in range(n):
        combo = tuple((k, _hashable(columns[k][i])) for k in keys)
        groups.setdefault(combo, []).append(i)
    return sorted(
        ((combo, np.asarray(rows)) for combo, rows in groups.items()),
        key=lambda group: tuple(sort_key(value) for _, value in group[0]),
    )


def _hashable(value):
    """A cell as a grouping key: a Python float, or None for NaN (NaN != NaN would make a group
    per row of a null parameter); text as it is."""
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def same_value(a, b) -> bool:
    """Equal sweep values: numbers within rounding (JSON and CSV spell floats alike), else text."""
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return str(a) == str(b)


# ---------------------------------------------------------------------------- the whole folder


@dataclass
class ResultsData:
    """Everything the figures and the report read from one results folder.

    Attributes
    ----------
    summary : dict or None
        ``summary.json`` of a run (``{"scenario", "partial", "variants": [...]}``).
    history : dict[str, ndarray] or None
        ``history.csv`` columns (``variant`` as strings; ``layer`` 0 for a single-layer run).
    loads : dict[str, dict[str, ndarray]] or None
        ``loads.npz`` per variant, with a layer axis even for one layer: ``loads``/``demand``
        (L, R, E) int64, ``bias`` (L, R, E) float32, ``steps`` (R,), ``final_loads`` (L, E),
        ``final_bias`` (L, E), ``layers`` (L,) the layers' numbers.
    deployment : dict[str, dict[str, ndarray]] or None
        ``deployment.npz`` per variant (a scenario with a deployment): per-GPU arrays of the
        final window (docs/metrics.md).
    sweep : dict[str, ndarray] or None
        ``sweep.csv`` columns: floats where every cell parses as a number, else strings.
    sweep_params : list[str]
        Swept parameters (key paths such as ``balance.bias.rate``).
    sweep_summary : dict or None
        ``sweep_summary.json``: grid, seeds, the chosen metric and direction, the best point.
    unfinished : bool
        The run never reached its end (killed): its variants were read from
        ``variants.partial/``.
    layer : int or None
        The MoE layer the views show (:attr:`variants`, :meth:`variant_history`,
        :meth:`layer_loads`): that layer's numbers, or the mean over the layers when None
        (``moesim plot --layer N``, ``moesim report --layer N``).
    """

    path: Path
    scenario: str
    summary: dict | None = None
    history: dict | None = None
    loads: dict | None = None
    manifest: dict | None = None
    resolved_yaml: str | None = None
    deployment: dict | None = None
    sweep: dict | None = None
    sweep_params: list[str] = field(default_factory=list)
    sweep_summary: dict | None = None
    unfinished: bool = False
    layer: int | None = None

    @property
    def variants(self) -> list[dict]:
        """Variant summaries of the run, in scenario order (empty for a sweep-only folder);
        layer :attr:`layer`'s summaries when one is chosen (KeyError when a variant lacks it)."""
        variants = list(self.summary.get("variants") or []) if self.summary else []
        if self.layer is None:
            return variants
        return [summary_of_layer(summary, self.layer) for summary in variants]

    @property
    def layer_numbers(self) -> list[int]:
        """The MoE layers' numbers of the run's first variant ([0] for one layer)."""
        variants = list(self.summary.get("variants") or []) if self.summary else []
        return layer_numbers(variants[0]) if variants else [0]

    @property
    def is_multi_layer(self) -> bool:
        return len(self.layer_numbers) > 1

    @property
    def partial(self) -> bool:
        """The folder does not hold a complete run: it was interrupted or killed. A run is
        complete only when its ``manifest.json``, written last, says ``"partial": false``
        and ``summary.json`` agrees (a sweep-only folder: ``sweep_summary.json``)."""
        if self.summary is None:
            return bool((self.sweep_summary or {}).get("partial"))
        if self.unfinished or self.summary.get("partial") is not False:
            return True
        return self.manifest is None or self.manifest.get("partial") is not False

    @property
    def planned_variants(self) -> list[str] | None:
        """Every variant the run meant to run (``manifest.json``), None when unrecorded."""
        planned = (self.manifest or {}).get("planned_variants")
        return [str(name) for name in planned] if isinstance(planned, list) else None

    def partial_note(self) -> str | None:
        """``"partial (interrupted or killed): 2 of 8 variants finished"``, None if complete."""
        if not self.partial:
            return None
        if self.summary is None:
            return "partial (interrupted or killed): some sweep points were not run"
        finished = len(self.variants)
        planned = self.planned_variants
        count = f"{finished} of {len(planned)}" if planned is not None else f"{finished}"
        return f"partial (interrupted or killed): {count} variant(s) finished"

    @property
    def is_sweep(self) -> bool:
        return self.sweep is not None and len(self.sweep.get("seed", self._first_column())) > 0

    def _first_column(self):
        return next(iter(self.sweep.values())) if self.sweep else []

    @property
    def sweep_metric(self) -> tuple[str, bool] | None:
        """The sweep's chosen metric and whether lowest is best, from ``sweep_summary.json``."""
        summary = self.sweep_summary or {}
        metric = summary.get("metric")
        if not isinstance(metric, str) or not metric:
            return None
        return metric, bool(summary.get("minimize", True))

    @property
    def sweep_keys(self) -> list[str]:
        """Columns that tell sweep points apart: the swept parameters, and the variant when the
        scenario has more than one."""
        if not self.is_sweep:
            return []
        keys = [p for p in self.sweep_params if p in self.sweep]
        if "variant" in self.sweep and len(set(self.sweep["variant"].tolist())) > 1:
            keys.append("variant")
        return keys

    @property
    def seeds(self) -> list:
        """The distinct seeds of the sweep's rows, in order."""
        if not self.is_sweep or "seed" not in self.sweep:
            return []
        return sorted({_hashable(s) for s in self.sweep["seed"].tolist()}, key=sort_key)

    def variant_history(self, name: str) -> dict[str, np.ndarray] | None:
        """History columns of one variant (rows of the tidy table with ``variant == name``):
        layer :attr:`layer`'s rows, or with several layers their mean at each recorded step;
        None without ``history.csv``."""
        if self.history is None:
            return None
        mask = self.history["variant"] == name
        if self.layer is not None:
            mask &= self.history[LAYER_COLUMN] == self.layer
        rows = {key: values[mask] for key, values in self.history.items() if key != "variant"}
        if self.layer is not None or len(np.unique(rows[LAYER_COLUMN])) <= 1:
            return rows
        return _mean_per_step(rows)

    def layer_loads(self, name: str) -> dict[str, np.ndarray] | None:
        """One variant's ``loads.npz`` arrays without the layer axis: layer :attr:`layer`'s, or
        the mean over the layers (``loads``, ``demand``, ``bias`` (R, E), ``steps`` (R,),
        ``final_loads``, ``final_bias`` (E,)); None when the variant has none saved."""
        arrays = (self.loads or {}).get(name)
        if arrays is None:
            return None
        numbers = arrays["layers"].tolist()
        if self.layer is not None and self.layer not in numbers:
            return None
        picked = {}
        for key, array in arrays.items():
            if key in ("steps", "layers"):
                continue
            if self.layer is not None:
                picked[key] = array[numbers.index(self.layer)]
            elif len(numbers) == 1:
                picked[key] = array[0]
            else:
                picked[key] = array.mean(axis=0)
        picked["steps"] = arrays["steps"]
        return picked

    @cached_property
    def scenario_dict(self) -> dict:
        """The resolved scenario as a mapping (empty when absent or unreadable)."""
        if not self.resolved_yaml:
            return {}
        try:
            node = yaml.safe_load(self.resolved_yaml)
            json.dumps(node, default=str)  # refuses a structure that holds itself (&a [*a])
        except (yaml.YAMLError, ValueError, RecursionError):
            return {}
        return node if isinstance(node, dict) else {}

    def scenario_value(self, key_path: str):
        """A value of the resolved (base) scenario by key path (None when unknown)."""
        node = self.scenario_dict
        for key in key_path.split("."):
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    def variant_settings(self, name: str) -> dict:
        """What a variant sets (key path -> value), from the ``variants`` of the resolved
        scenario; ``{}`` for a variant it does not list."""
        for entry in self.scenario_dict.get("variants") or []:
            if isinstance(entry, dict) and entry.get("name") == name:
                flat = _flatten(entry)
                return {k: v for k, v in flat.items() if k not in ("name", "description")}
        return {}

    def variant_value(self, name: str, key_path: str):
        """A variant's value of a key path: its own setting, else the base scenario's."""
        settings = self.variant_settings(name)
        return settings[key_path] if key_path in settings else self.scenario_value(key_path)

    def best_point(self) -> dict | None:
        """The sweep's best point from ``sweep_summary.json``: ``{values, mean, metric,
        direction}`` with ``values`` key -> value for every column of :attr:`sweep_keys`;
        None when the sweep recorded none (or no finite mean)."""
        chosen = self.sweep_metric
        best = (self.sweep_summary or {}).get("best")
        if chosen is None or not isinstance(best, dict):
            return None
        metric, minimize = chosen
        params = best.get("params") or {}
        values = {k: params.get(k) for k in self.sweep_params}
        values["variant"] = best.get("variant")
        stats = best.get(metric)
        mean = stats.get("mean") if isinstance(stats, dict) else None
        if not isinstance(mean, (int, float)) or not math.isfinite(mean):
            return None
        direction = "lowest" if minimize else "highest"
        return {"values": values, "mean": float(mean), "metric": metric, "direction": direction}


def _mean_per_step(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The mean over the layers of each history column at each recorded step (NaN-aware)."""
    steps, inverse = np.unique(rows["step"], return_inverse=True)
    mean = {"step": steps.astype(float), LAYER_COLUMN: np.full(steps.size, np.nan)}
    for key, values in rows.items():
        if key in mean:
            continue
        finite = np.isfinite(values)
        sums = np.bincount(inverse, np.where(finite, values, 0.0), minlength=steps.size)
        counts = np.bincount(inverse, finite.astype(float), minlength=steps.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[key] = np.where(counts > 0, sums / counts, np.nan)
    return mean


def _flatten(node: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and empty mappings are values)."""
    flat = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def load_results(results_dir: Path) -> ResultsData:
    """Read a results folder written by ``moesim run`` and/or ``moesim sweep``.

    Raises
    ------
    NotResultsError
        When the folder does not exist, holds neither ``summary.json`` nor ``sweep.csv``, or
        cannot be read.
    """
    path = Path(results_dir)
    if not path.is_dir():
        raise NotResultsError(f"{path} is not a folder")
    has_run = (path / "summary.json").is_file()
    has_sweep = (path / "sweep.csv").is_file()
    if not has_run and not has_sweep:
        raise NotResultsError(
            f"{path} is not a moesim results folder (no summary.json or sweep.csv); "
            "make one with `moesim run` or `moesim sweep`"
        )
    data = ResultsData(path=path, scenario=path.name)
    try:
        _read_files(data, has_run=has_run, has_sweep=has_sweep)
    except NotResultsError:
        raise
    except READ_ERRORS as error:
        where = f" {error.filename}" if getattr(error, "filename", None) else ""
        raise NotResultsError(f"{path}: cannot read results{where} ({error})") from error
    for source in (data.summary, data.manifest, data.sweep_summary):
        if isinstance(source, dict) and isinstance(source.get("scenario"), str):
            data.scenario = source["scenario"]
            break
    else:
        name = data.scenario_value("name")
        if isinstance(name, str) and name:
            data.scenario = name
    return data


def _read_files(data: ResultsData, *, has_run: bool, has_sweep: bool) -> None:
    """Fill ``data`` with the files its folder holds (absent optional files stay None)."""
    path = data.path
    if has_run and (path / PARTS_DIR).is_dir():
        # Killed before its end: the finished variants are in their own files.
        data.summary, data.history, data.loads = read_parts(path)
        data.unfinished = True
    elif has_run:
        data.summary = read_summary(path)
        if (path / "history.csv").is_file():
            data.history = read_history(path)
        if (path / "loads.npz").is_file():
            data.loads = read_loads(path)
        if (path / "deployment.npz").is_file():
            data.deployment = read_deployment(path)
    if (path / "manifest.json").is_file():
        data.manifest = check_manifest(
            read_json_object(path / "manifest.json"), path / "manifest.json"
        )
    if (path / "scenario.resolved.yaml").is_file():
        data.resolved_yaml = (path / "scenario.resolved.yaml").read_text(errors="replace")
    if (path / "sweep_summary.json").is_file():
        summary_path = path / "sweep_summary.json"
        data.sweep_summary = check_sweep_summary(read_json_object(summary_path), summary_path)
    if has_sweep:
        data.sweep = read_sweep_csv(path / "sweep.csv")
        data.sweep_params = sweep_parameters(data.sweep, data.sweep_summary)
