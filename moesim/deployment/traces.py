"""Per-expert load traces: token counts recorded from real runs, as [steps, layers, experts].

Three formats (docs/eplb.md, "Load traces"):

- ``megatron``: the ``tokens_per_expert/`` folder that Megatron-Core's
  ``--save-tokens-per-expert-interval N`` writes, one ``rank{r}.jsonl`` per rank, each line
  ``{"iter": i, "block": "decoder", "layer": l, "tpe": [[counts of the rank's local experts],
  ... one list per micro-batch]}``. A step is one recorded iteration (the micro-batches summed);
  ranks combine by Megatron-Core's expert rank order (expert-tensor-parallel fastest, then
  expert-parallel, expert-data-parallel, pipeline): expert-parallel ranks hold consecutive
  blocks of experts, expert-data-parallel replicas saw different tokens and are added, only the
  first expert-tensor-parallel rank of each group is read (the others saw the same tokens), and
  the pipeline stages' layers follow one another;
- ``npy``: a NumPy ``.npy`` array of shape (steps, layers, experts), whole non-negative counts;
- ``csv``: a header ``step,layer,<one column per expert>`` then one row per (step, layer).

Every problem is a :class:`LoadTraceError` naming the file, the line when there is one, what was
expected and what was found. Sizes are checked before anything large is allocated.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMATS = ("auto", "megatron", "npy", "csv")
#: The largest trace, in cells (steps x layers x experts): 800 MB as int64.
MAX_TRACE_CELLS = 100_000_000
#: The largest text trace (all of a Megatron folder's rank files, or a CSV), in bytes.
MAX_TEXT_BYTES = 1 << 30
_RANK_FILE = re.compile(r"rank(\d+)\.jsonl")


class LoadTraceError(ValueError):
    """A load trace that cannot be used: ``file``, ``line`` (1-based, or None) and ``message``."""

    def __init__(self, file, message: str, line: int | None = None):
        self.file = str(file)
        self.line = line
        self.message = message
        where = self.file if line is None else f"{self.file}:{line}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class MegatronLayout:
    """How the ranks of a Megatron-Core run divide the experts.

    ``expert_parallel``: None means every rank (after expert-tensor and pipeline parallelism)
    is its own expert-parallel rank, i.e. no expert-data-parallel replicas.
    """

    expert_parallel: int | None = None
    expert_tensor_parallel: int = 1
    pipeline_parallel: int = 1


def detect_format(path) -> str:
    """``megatron`` for a folder or a ``.jsonl`` file, ``npy`` or ``csv`` by suffix."""
    path = Path(path)
    if path.is_dir() or path.suffix == ".jsonl":
        return "megatron"
    if path.suffix in (".npy", ".csv"):
        return path.suffix[1:]
    raise LoadTraceError(
        path,
        "cannot tell the trace format: expected a Megatron tokens_per_expert folder, "
        "a rank{r}.jsonl file, a .npy or a .csv (or name the format)",
    )


def read_load_trace(path, format: str = "auto", layout: MegatronLayout | None = None):
    """The loads of a trace file or folder.

    Returns
    -------
    loads : ndarray (steps, layers, experts) int64, tokens each expert received (the routing
        demand of a step, summed over its micro-batches)
    """
    path = Path(path)
    if not path.exists():
        raise LoadTraceError(path, "no such file or folder")
    if format not in FORMATS:
        raise LoadTraceError(path, f"unknown trace format {format!r}; expected one of {FORMATS}")
    if format == "auto":
        format = detect_format(path)
    if format == "npy":
        return _read_npy(path)
    if format == "csv":
        return _read_csv(path)
    return _read_megatron(path, layout or MegatronLayout())


def check_load_trace(path, format: str = "auto", layout: MegatronLayout | None = None):
    """``(steps, layers, experts)`` of a trace, checked as :func:`read_load_trace` does.

    A ``.npy`` is checked through a memory map, without reading it whole.
    """
    path = Path(path)
    if (format == "npy" or (format == "auto" and path.suffix == ".npy")) and path.is_file():
        return tuple(int(n) for n in _open_npy(path, check_values=True).shape)
    return tuple(int(n) for n in read_load_trace(path, format, layout).shape)


def _check_cells(path, steps: int, layers: int, experts: int) -> None:
    if steps * layers * experts > MAX_TRACE_CELLS:
        raise LoadTraceError(
            path,
            f"{steps} steps x {layers} layers x {experts} experts is more than "
            f"{MAX_TRACE_CELLS:,} counts; cut the trace to fewer steps",
        )


def _check_text_size(path: Path, files: list[Path]) -> None:
    size = sum(f.stat().st_size for f in files)
    if size > MAX_TEXT_BYTES:
        raise LoadTraceError(
            path, f"{size:,} bytes of text is more than {MAX_TEXT_BYTES:,}; use a .npy"
        )


# ----------------------------------------------------------------------------------------------
# .npy


def _open_npy(path: Path, *, check_values: bool) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as error:  # numpy raises several types for a bad file
        raise LoadTraceError(path, f"not a readable .npy file ({error})") from None
    if not isinstance(array, np.ndarray):
        raise LoadTraceError(path, "holds several arrays (a .npz); expected one .npy array")
    if array.ndim != 3 or 0 in array.shape:
        raise LoadTraceError(
            path, f"shape {array.shape}; expected 3-D (steps, layers, experts), non-empty"
        )
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise LoadTraceError(path, f"dtype {array.dtype}; expected integer token counts")
    _check_cells(path, *array.shape)
    if check_values:
        for step in range(array.shape[0]):
            _check_counts(path, np.asarray(array[step]), f"step {step}")
    return array


def _check_counts(path, counts: np.ndarray, where: str) -> None:
    """Raise unless every count is finite, whole and non-negative."""
    if np.issubdtype(counts.dtype, np.floating):
        bad = ~np.isfinite(counts) | (counts != np.round(counts))
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise LoadTraceError(
                path, f"{where}: count {counts[index]} at {index} is not a whole number"
            )
    if (counts < 0).any():
        index = tuple(int(i) for i in np.argwhere(counts < 0)[0])
        raise LoadTraceError(path, f"{where}: count {counts[index]} at {index} is negative")


def _read_npy(path: Path) -> np.ndarray:
    array = _open_npy(path, check_values=False)
    loads = np.array(array)  # the one read
    _check_counts(path, loads, "trace")
    if loads.dtype.kind in "uf" and loads.size and loads.max() > np.iinfo(np.int64).max:
        raise LoadTraceError(path, "a count does not fit in 64 bits")
    return loads.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# .csv


def _parse_count(path, line: int, text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise LoadTraceError(path, f"{what} {text.strip()!r} is not a whole number", line) from None
    if value < 0:
        raise LoadTraceError(path, f"{what} {value} is negative", line)
    return value


def _read_csv(path: Path) -> np.ndarray:
    _check_text_size(path, [path])
    rows: dict[tuple[int, int], tuple[int, list[int]]] = {}
    with path.open(encoding="utf-8", errors="replace") as file:
        header = file.readline().strip().split(",")
        if len(header) < 3 or [h.strip().lower() for h in header[:2]] != ["step", "layer"]:
            raise LoadTraceError(
                path,
                "header should be step,layer,<one column per expert>; "
                f"found {','.join(header)[:80]!r}",
                1,
            )
        experts = len(header) - 2
        for line, text in enumerate(file, start=2):
            if not text.strip():
                continue
            fields = text.split(",")
            if len(fields) != experts + 2:
                raise LoadTraceError(
                    path,
                    f"{len(fields)} fields; expected {experts + 2} (step, layer and "
                    f"{experts} experts, as the header)",
                    line,
                )
            step = _parse_count(path, line, fields[0], "step")
            layer = _parse_count(path, line, fields[1], "layer")
            if (step, layer) in rows:
                first = rows[(step, layer)][0]
                raise LoadTraceError(
                    path, f"step {step} layer {layer} again (first at line {first})", line
                )
            counts = [_parse_count(path, line, f, "count") for f in fields[2:]]
            rows[(step, layer)] = (line, counts)
    if not rows:
        raise LoadTraceError(path, "no rows after the header")
    steps = sorted({step for step, _ in rows})
    layers = 1 + max(layer for _, layer in rows)
    _check_cells(path, len(steps), layers, experts)
    loads = np.zeros((len(steps), layers, experts), dtype=np.int64)
    for position, step in enumerate(steps):
        for layer in range(layers):
            if (step, layer) not in rows:
                raise LoadTraceError(
                    path,
                    f"step {step} has no row for layer {layer} (layers 0..{layers - 1} "
                    "are expected for every step)",
                )
            loads[position, layer] = rows[(step, layer)][1]
    return loads


# ----------------------------------------------------------------------------------------------
# Megatron-Core tokens_per_expert/rank{r}.jsonl


def _rank_files(path: Path) -> dict[int, Path]:
    if path.is_file():
        return {0: path}
    folder = path / "tokens_per_expert" if (path / "tokens_per_expert").is_dir() else path
    files = {}
    for candidate in folder.iterdir():
        match = _RANK_FILE.fullmatch(candidate.name)
        if match and candidate.is_file():
            files[int(match.group(1))] = candidate
    if not files:
        raise LoadTraceError(folder, "no rank{r}.jsonl files (Megatron-Core tokens_per_expert)")
    missing = sorted(set(range(max(files) + 1)) - set(files))
    if missing:
        raise LoadTraceError(
            folder, f"rank{missing[0]}.jsonl is missing (ranks 0..{max(files)} are expected)"
        )
    return files


def _line_record(path: Path, line: int, text: str):
    """``(iter, layer, counts summed over micro-batches)`` of one line; None for MTP lines."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise LoadTraceError(path, f"not a JSON object ({error.msg})", line) from None
    if not isinstance(record, dict):
        raise LoadTraceError(path, "expected a JSON object with iter, layer and tpe", line)
    missing = [key for key in ("iter", "layer", "tpe") if key not in record]
    if missing:
        raise LoadTraceError(path, f"no {', '.join(missing)} (expected iter, layer, tpe)", line)
    block = record.get("block", "decoder")
    if block == "mtp":
        return None
    if block != "decoder":
        raise LoadTraceError(path, f"block {block!r}; expected 'decoder' or 'mtp'", line)
    for key in ("iter", "layer"):
        if not isinstance(record[key], int) or isinstance(record[key], bool) or record[key] < 0:
            raise LoadTraceError(path, f"{key} {record[key]!r}; expected an integer >= 0", line)
    tpe = record["tpe"]
    shape_ok = isinstance(tpe, list) and tpe and all(isinstance(m, list) and m for m in tpe)
    if not shape_ok or len({len(m) for m in tpe}) != 1:
        raise LoadTraceError(
            path,
            "tpe should be a list of micro-batches, each a list of the rank's local "
            "experts' token counts, all of one length",
            line,
        )
    values = [v for microbatch in tpe for v in microbatch]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        bad = next(v for v in values if not (isinstance(v, int) and v >= 0) or isinstance(v, bool))
        raise LoadTraceError(
            path, f"tpe holds {bad!r}; expected token counts (integers >= 0)", line
        )
    return record["iter"], record["layer"], np.array(tpe, dtype=np.int64).sum(axis=0)


def _read_rank(path: Path) -> dict[tuple[int, int], tuple[int, np.ndarray]]:
    """``{(iter, layer): (line, local counts)}`` of one rank's file."""
    records: dict[tuple[int, int], tuple[int, np.ndarray]] = {}
    with path.open(encoding="utf-8", errors="replace") as file:
        for line, text in enumerate(file, start=1):
            if not text.strip():
                continue
            parsed = _line_record(path, line, text)
            if parsed is None:
                continue
            iteration, layer, counts = parsed
            if (iteration, layer) in records:
                first = records[(iteration, layer)][0]
                raise LoadTraceError(
                    path,
                    f"iter {iteration} layer {layer} again (first at line {first}; a run "
                    "resumed from a checkpoint appends again: keep one)",
                    line,
                )
            records[(iteration, layer)] = (line, counts)
    if not records:
        raise LoadTraceError(path, "no decoder records")
    return records


def _rank_roles(world: int, layout: MegatronLayout, folder: Path) -> list[tuple[int, int, int]]:
    """``(expert-tensor rank, expert-parallel rank, pipeline rank)`` of each global rank."""
    tensor, pipeline = layout.expert_tensor_parallel, layout.pipeline_parallel
    expert = layout.expert_parallel or world // max(1, tensor * pipeline)
    if min(tensor, pipeline, expert) < 1 or world % (tensor * expert * pipeline):
        raise LoadTraceError(
            folder,
            f"{world} rank files do not divide into expert-tensor-parallel {tensor} x "
            f"expert-parallel {expert} x pipeline {pipeline} (x expert-data-parallel)",
        )
    data = world // (tensor * expert * pipeline)
    return [
        (rank % tensor, (rank // tensor) % expert, rank // (tensor * expert * data))
        for rank in range(world)
    ]


def _read_megatron(path: Path, layout: MegatronLayout) -> np.ndarray:
    files = _rank_files(path)
    _check_text_size(path, list(files.values()))
    roles = _rank_roles(len(files), layout, path)
    expert_parallel = 1 + max(ep for _, ep, _ in roles)
    per_rank = {rank: _read_rank(files[rank]) for rank, role in enumerate(roles) if role[0] == 0}
    local = {rank: len(next(iter(r.values()))[1]) for rank, r in per_rank.items()}
    if len(set(local.values())) != 1:
        rank = next(r for r in local if local[r] != local[0])
        raise LoadTraceError(
            files[rank], f"{local[rank]} local experts; rank0.jsonl has {local[0]}"
        )
    experts_per_rank = local[0]
    # Layers: each pipeline stage's own layer numbers, stage after stage.
    stage_layers = sorted({(roles[r][2], layer) for r, rec in per_rank.items() for _, layer in rec})
    iterations = sorted({it for rec in per_rank.values() for it, _ in rec})
    _check_cells(path, len(iterations), len(stage_layers), experts_per_rank * expert_parallel)
    layer_index = {key: i for i, key in enumerate(stage_layers)}
    step_index = {it: i for i, it in enumerate(iterations)}
    loads = np.zeros(
        (len(iterations), len(stage_layers), experts_per_rank * expert_parallel), dtype=np.int64
    )
    for rank, records in per_rank.items():
        _, ep, stage = roles[rank]
        wanted = {(it, layer) for it in iterations for (s, layer) in stage_layers if s == stage}
        absent = sorted(wanted - set(records))
        if absent:
            raise LoadTraceError(
                files[rank],
                f"no record for iter {absent[0][0]} layer {absent[0][1]}, which "
                "other ranks of its pipeline stage recorded",
            )
        columns = slice(ep * experts_per_rank, (ep + 1) * experts_per_rank)
        for (iteration, layer), (_, counts) in records.items():
            loads[step_index[iteration], layer_index[(stage, layer)], columns] += counts
    return loads


# ----------------------------------------------------------------------------------------------
# Writing (the shipped example, tests)


def write_csv_trace(loads: np.ndarray, path, steps=None) -> None:
    """Write (steps, layers, experts) counts as the CSV format; ``steps`` numbers the steps
    (default 0, 1, ...)."""
    loads = np.asarray(loads, dtype=np.int64)
    n_steps, layers, experts = loads.shape
    steps = range(n_steps) if steps is None else steps
    lines = ["step,layer," + ",".join(f"expert_{e}" for e in range(experts))]
    for position, step in enumerate(steps):
        for layer in range(layers):
            counts = ",".join(str(int(c)) for c in loads[position, layer])
            lines.append(f"{int(step)},{layer},{counts}")
    Path(path).write_text("\n".join(lines) + "\n")


def write_megatron_trace(
    loads: np.ndarray, folder, expert_parallel: int, iterations=None, microbatches: int = 1
) -> None:
    """Write counts as Megatron-Core's ``tokens_per_expert/rank{r}.jsonl`` files of a run with
    ``expert_parallel`` ranks (no other parallelism); each step's counts are split as evenly as
    possible over ``microbatches`` micro-batches. ``iterations`` numbers the steps (default
    1, 2, ...)."""
    loads = np.asarray(loads, dtype=np.int64)
    steps, layers, experts = loads.shape
    if experts % expert_parallel:
        raise ValueError(f"{experts} experts do not divide over {expert_parallel} ranks")
    iterations = range(1, steps + 1) if iterations is None else iterations
    local = experts // expert_parallel
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for rank in range(expert_parallel):
        lines = []
        for step, iteration in enumerate(iterations):
            for layer in range(layers):
                counts = loads[step, layer, rank * local : (rank + 1) * local]
                parts = [(counts + m) // microbatches for m in range(microbatches)]
                tpe = [[int(c) for c in part] for part in parts]
                record = {"iter": int(iteration), "block": "decoder", "layer": layer, "tpe": tpe}
                lines.append(json.dumps(record) + "\n")
        (folder / f"rank{rank}.jsonl").write_text("".join(lines))
