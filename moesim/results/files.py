"""Each file of a results folder, read and checked: what the figures and the report draw from
is what they expect, or :class:`NotResultsError` names the file (and the line) and the problem.

The run's files (``summary.json``, ``history.csv``, ``loads.npz``, ``manifest.json``, the parts
of a killed run in ``variants.partial/``) and the sweep's (``sweep.csv``,
``sweep_summary.json``); :mod:`moesim.results.reading` puts them together.
"""

from __future__ import annotations

import csv
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from moesim.results.folder import LAYERS_FIELD, LOAD_FIELDS, PARTS_DIR
from moesim.results.metrics import HISTORY_COLUMNS, LAYER_COLUMN, LAYER_METRICS, METRICS


class NotResultsError(ValueError):
    """The folder is not a moesim results folder (no summary.json and no sweep.csv), or one of
    its files is damaged (the message names the file and the problem)."""


#: What reading a damaged file can raise, besides the checks below.
READ_ERRORS = (OSError, ValueError, KeyError, EOFError, csv.Error, zipfile.BadZipFile, zlib.error)


def _damaged(path: Path, problem: str) -> NotResultsError:
    return NotResultsError(
        f"{path}: {problem}; the results folder is damaged: run the scenario again "
        "(moesim run --force) to rewrite it"
    )


def _kind(value) -> str:
    return {type(None): "null", list: "a list", dict: "a mapping", str: "text"}.get(
        type(value), type(value).__name__
    )


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold a mapping (``summary.json``, ``manifest.json``, ...)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except (ValueError, RecursionError) as error:
        raise _damaged(path, f"not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise _damaged(path, f"expected a JSON object (a mapping), found {_kind(value)}")
    return value


def _is_number(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def check_summary(summary: dict, path: Path) -> dict:
    """``summary.json``: ``variants`` a list of mappings, each with a ``variant`` name, a text
    ``verdict`` and numbers (or null) for the summary metrics."""
    variants = summary.get("variants", [])
    if not isinstance(variants, list):
        raise _damaged(path, f"'variants' should be a list of variant summaries, found "
                       f"{_kind(variants)}")  # fmt: skip
    if not isinstance(summary.get("partial", False), bool):
        raise _damaged(
            path, f"'partial' should be true or false, found {_kind(summary['partial'])}"
        )
    for i, entry in enumerate(variants):
        where = f"variants[{i}]"
        if not isinstance(entry, dict):
            raise _damaged(path, f"{where} should be a mapping, found {_kind(entry)}")
        if not isinstance(entry.get("variant"), str) or not entry["variant"]:
            raise _damaged(path, f"{where}.variant should be the variant's name")
        if not isinstance(entry.get("verdict", ""), str):
            raise _damaged(path, f"{where}.verdict should be text, found {_kind(entry['verdict'])}")
        _check_metrics(entry, where, path)
        per_layer = entry.get("per_layer")
        if per_layer is None:
            continue
        if not isinstance(per_layer, list) or not per_layer:
            raise _damaged(path, f"{where}.per_layer should be a list of layer summaries")
        for j, layer in enumerate(per_layer):
            if not isinstance(layer, dict) or not _is_whole(layer.get(LAYER_COLUMN)):
                raise _damaged(path, f"{where}.per_layer[{j}] should be a mapping with a layer")
            _check_metrics(layer, f"{where}.per_layer[{j}]", path)
    return summary


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_metrics(entry: dict, where: str, path: Path) -> None:
    for key, value in entry.items():
        known = key in METRICS or key in LAYER_METRICS
        if known and not isinstance(value, bool) and not _is_number(value):
            raise _damaged(path, f"{where}.{key} should be a number, found {_kind(value)}")


def check_manifest(manifest: dict, path: Path) -> dict:
    """``manifest.json``: the fields the report shows have the types it expects."""
    expected = {
        "partial": (bool, "true or false"),
        "seconds": ((int, float), "a number"),
        "command": (list, "a list of words"),
        "planned_variants": (list, "a list of variant names"),
        "versions": (dict, "a mapping"),
    }
    for key, (types, wanted) in expected.items():
        value = manifest.get(key)
        if value is not None and not isinstance(value, types):
            raise _damaged(path, f"'{key}' should be {wanted}, found {_kind(value)}")
    return manifest


def check_sweep_summary(summary: dict, path: Path) -> dict:
    """``sweep_summary.json``: the best point and the metric have the types the report reads."""
    best = summary.get("best")
    if best is not None and not isinstance(best, dict):
        raise _damaged(path, f"'best' should be a mapping, found {_kind(best)}")
    if isinstance(best, dict) and not isinstance(best.get("params") or {}, dict):
        raise _damaged(path, f"'best.params' should be a mapping, found {_kind(best['params'])}")
    for key, wanted in (("seconds", (int, float)), ("command", list), ("zip", list)):
        value = summary.get(key)
        if value is not None and not isinstance(value, wanted):
            raise _damaged(path, f"'{key}' has the wrong type ({_kind(value)})")
    return summary


# ----------------------------------------------------------------------------- the run's files


def read_summary(output_dir: Path) -> dict:
    """``summary.json`` of a results folder, checked (:class:`NotResultsError` if damaged)."""
    path = Path(output_dir) / "summary.json"
    return check_summary(read_json_object(path), path)


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line, cells)`` of a CSV file whose rows all have the header's length."""
    try:
        with open(path, newline="") as stream:
            reader = csv.reader(stream)
            rows = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as error:
        raise _damaged(path, f"not a CSV table ({error})") from None
    if not rows or not rows[0][1]:
        raise _damaged(path, "empty: no header line")
    header = rows[0][1]
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise _damaged(
                Path(f"{path}:{line}"),
                f"{len(row)} cells where the header has {len(header)} (truncated or ragged)",
            )
    return header, rows[1:]


def read_history(output_dir: Path) -> dict[str, np.ndarray]:
    """``history.csv`` as columns (``variant`` as strings, the rest as floats; '' -> NaN).

    History columns the file lacks (it may come from an older moesim) are NaN."""
    path = Path(output_dir) / "history.csv"
    header, body = _read_rows(path)
    for name in ("variant", "step"):
        if name not in header:
            raise _damaged(path, f"no '{name}' column in the header")
    columns: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        if name == "variant":
            columns[name] = np.asarray([row[j] for _, row in body], dtype=object)
            continue
        values = []
        for line, row in body:
            try:
                values.append(float(row[j]) if row[j] else np.nan)
            except ValueError:
                problem = f"column {name}: {row[j][:40]!r} is not a number"
                raise _damaged(Path(f"{path}:{line}"), problem) from None
        columns[name] = np.asarray(values, dtype=float)
    for name in HISTORY_COLUMNS:
        columns.setdefault(name, np.full(len(body), np.nan))
    # One MoE layer (and every moesim 0.1 run) writes no layer column: it is layer 0.
    columns.setdefault(LAYER_COLUMN, np.zeros(len(body)))
    return columns


def read_loads(output_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """``loads.npz`` as ``{variant: {"loads", "demand", "bias", "steps", ...}}``, checked.

    Every variant's arrays have a layer axis, whether the file stores one or not: ``loads``,
    ``demand``, ``bias`` (L, R, E), ``final_loads``, ``final_bias`` (L, E), ``steps`` (R,) and
    ``layers`` (L,), the layers' numbers ([0] for a single-layer run)."""
    return _read_npz(Path(output_dir) / "loads.npz")


def read_deployment(output_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """``deployment.npz`` as ``{variant: {"gpu_layer_loads", "compute_ms", ...}}``: numeric
    arrays only (docs/metrics.md, "Deployment arrays")."""
    path = Path(output_dir) / "deployment.npz"
    grouped: dict[str, dict[str, np.ndarray]] = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                name, _, field_name = key.rpartition(".")
                array = data[key]
                if array.dtype.kind not in "biuf":
                    raise _damaged(path, f"{key} holds {array.dtype} values, not numbers")
                grouped.setdefault(name, {})[field_name] = array
    except READ_ERRORS as error:
        raise _damaged(
            path, f"cannot be read, truncated or not an .npz archive ({error})"
        ) from None
    return grouped


def _read_npz(path: Path, variant: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per-variant arrays of ``path`` (keys ``<variant>.<field>``, or ``<field>`` of
    ``variant``), each numeric and of the shape the figures draw."""
    grouped: dict[str, dict[str, np.ndarray]] = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                name, _, field_name = key.rpartition(".") if variant is None else (variant, "", key)
                if field_name in LOAD_FIELDS or field_name == LAYERS_FIELD:
                    grouped.setdefault(name, {})[field_name] = data[key]
    except READ_ERRORS as error:
        raise _damaged(
            path, f"cannot be read, truncated or not an .npz archive ({error})"
        ) from None
    for name, arrays in grouped.items():
        problem = _loads_problem(arrays)
        if problem is not None:
            raise _damaged(path, f"variant {name!r}: {problem}")
        if LAYERS_FIELD not in arrays:  # one layer, stored without the layer axis
            for field_name in LOAD_FIELDS:
                if field_name != "steps":
                    arrays[field_name] = arrays[field_name][np.newaxis]
            arrays[LAYERS_FIELD] = np.zeros(1, dtype=np.int64)
    return grouped


def _loads_problem(arrays: dict[str, np.ndarray]) -> str | None:
    missing = [name for name in LOAD_FIELDS if name not in arrays]
    if missing:
        return f"no {', '.join(missing)} array"
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf":
            return f"{name} holds {array.dtype} values, not numbers"
    shape = arrays["loads"].shape
    layered = LAYERS_FIELD in arrays
    if len(shape) != 2 + layered:
        axes = "(layers, records, experts)" if layered else "(records, experts)"
        return f"loads should be {2 + layered}-D {axes}, not of shape {shape}"
    for name, wanted in (
        ("demand", shape),
        ("bias", shape),
        ("steps", shape[-2:-1]),
        ("final_loads", shape[:-2] + shape[-1:]),
        ("final_bias", shape[:-2] + shape[-1:]),
        *((("layers", shape[:1]),) if layered else ()),
    ):
        if arrays[name].shape != wanted:
            return f"{name} has shape {arrays[name].shape}, expected {wanted}"
    return None


def read_parts(output_dir: Path) -> tuple[dict, dict | None, dict | None]:
    """The finished variants of a run that did not end (``variants.partial/``): a summary
    (marked partial), history columns and loads, as the whole files would hold them."""
    parts = Path(output_dir) / PARTS_DIR
    variants, histories, loads = [], [], {}
    for path in sorted(parts.glob("[0-9]*.json")):
        part = read_json_object(path)
        summary, history = part.get("summary"), part.get("history")
        if not isinstance(summary, dict) or not isinstance(history, dict):
            raise _damaged(path, "should hold the variant's 'summary' and 'history' mappings")
        check_summary({"variants": [summary]}, path)
        columns = _part_history(history, summary["variant"], path)
        variants.append(summary)
        histories.append(columns)
        if path.with_suffix(".npz").is_file():
            loads.update(_read_npz(path.with_suffix(".npz"), summary["variant"]))
    summary = {"partial": True, "variants": variants}
    if not histories:
        return summary, None, loads or None
    history = {name: np.concatenate([h[name] for h in histories]) for name in histories[0]}
    return summary, history, loads or None


def _part_history(history: dict, name: str, path: Path) -> dict[str, np.ndarray]:
    columns: dict[str, np.ndarray] = {}
    for column in (LAYER_COLUMN, *HISTORY_COLUMNS):
        if column == LAYER_COLUMN and column not in history:
            continue
        values = history.get(column, [])
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
            raise _damaged(path, f"history.{column} should be a list of numbers")
        columns[column] = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise _damaged(path, "the history columns differ in length")
    rows = lengths.pop()
    columns["variant"] = np.asarray([name] * rows, dtype=object)
    columns.setdefault(LAYER_COLUMN, np.zeros(rows))
    return columns


# ---------------------------------------------------------------------------- the sweep's table


def read_sweep_csv(path: Path) -> dict[str, np.ndarray]:
    """``sweep.csv`` as columns; failed points (a non-empty ``error`` cell) are left out."""
    header, body = _read_rows(Path(path))
    rows = [dict(zip(header, row, strict=True)) for _, row in body]
    if "error" in header:
        rows = [row for row in rows if not (row.get("error") or "").strip()]
    names = header if rows else []
    columns: dict[str, np.ndarray] = {}
    for name in names:
        cells = [row.get(name) or "" for row in rows]
        columns[name] = _parse_column(cells)
    return columns


def _parse_column(cells: list[str]) -> np.ndarray:
    """Floats when every cell is a number, a boolean or empty (NaN); else the cells as text."""
    values = []
    for cell in cells:
        text = cell.strip()
        if text in ("", "None", "null", "nan", "NaN"):
            values.append(np.nan)
            continue
        if text in ("True", "False", "true", "false"):
            values.append(1.0 if text.lower() == "true" else 0.0)
            continue
        try:
            values.append(float(text))
        except ValueError:
            return np.asarray(cells, dtype=object)
    return np.asarray(values, dtype=float)
