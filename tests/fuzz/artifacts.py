"""Odd paths, odd traces and damaged results folders for the fuzzer.

Each strategy draws a description; ``make_*`` functions build it on disk inside a case folder.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from .budget import allowed

#: Output paths with spaces, rich markup, unicode, and the surprising ones of issue 17.
ODD_PATHS = [
    "out dir",
    "out/[bold]br",
    "out/[/]",
    "[red]x[/red]",
    "out/é 名",
    "out/\\[x]",
    "",
    ".",
    "~/x",
    "a/b/c/d",
    "x" * 200,
    "out/" + "y" * 300,
    "-dash",
    "report.html",
]

# --- traces -------------------------------------------------------------------------------

DTYPES = [
    "float32",
    "float64",
    "float16",
    "int8",
    "int64",
    "uint64",
    "bool",
    "complex64",
    "U3",
    "object",
]


@st.composite
def traces(draw) -> dict:
    """A trace description: file kind, embeddings (dtype, shape, special values), labels."""
    rows = draw(st.sampled_from([0, 1, 7, 64, 200]))
    shape = draw(
        st.sampled_from([(rows, 4), (rows,), (rows, 4, 1), (rows, 0), (), (rows, 3), (rows, 5000)])
    )
    labels = draw(
        st.one_of(
            st.none(),
            st.sampled_from(
                [
                    ("uint64", [2**63 + 5]),
                    ("int64", [10**11]),
                    ("int64", [-1]),
                    ("int64", [2**62]),
                    ("int32", [0, 1, 2]),
                    ("float64", [0.5]),
                    ("int64", "short"),
                    ("object", [1]),
                    ("int64", [3]),
                ]
            ),
        )
    )
    return {
        "kind": draw(st.sampled_from(["npy", "npz", "npz", "fake npz member", "not numpy"])),
        "dtype": draw(st.sampled_from(DTYPES)),
        "shape": shape,
        "special": draw(st.sampled_from([None, "nan", "inf", "huge", "max"])),
        "labels": labels,
        "key": draw(st.sampled_from([None, "x", "tokens", "clusters", "missing"])),
        "name": draw(st.sampled_from(["trace", "tr ace", "[bold]t", "tr[-]", "t\u00e9"])),
    }


def _embeddings(spec: dict) -> np.ndarray:
    shape = spec["shape"]
    rng = np.random.default_rng(0)
    values = rng.normal(size=shape)
    if spec["special"] == "nan" and values.size:
        values.flat[values.size // 2] = np.nan
    elif spec["special"] == "inf" and values.size:
        values.flat[0] = np.inf
    elif spec["special"] == "huge":
        values = values * 1e300
    elif spec["special"] == "max" and values.size:
        values.flat[-1] = 3.5e38
    dtype = spec["dtype"]
    if dtype == "object":
        return np.array(values.tolist() if values.ndim else values.item(), dtype=object)
    with np.errstate(all="ignore"):
        return values.astype(dtype)


def _labels(spec: dict, rows: int) -> np.ndarray | None:
    if spec["labels"] is None:
        return None
    dtype, values = spec["labels"]
    if values == "short":
        return np.zeros(max(rows - 1, 0), dtype=dtype)
    pattern = np.resize(np.array(values, dtype=dtype), rows)
    return pattern if dtype != "object" else pattern.astype(object)


def make_trace(folder: Path, spec: dict) -> tuple[str, str | None]:
    """Write the trace into ``folder``; its file name and the ``file_key`` to use."""
    embeddings = _embeddings(spec)
    rows = embeddings.shape[0] if embeddings.ndim else 0
    labels = _labels(spec, rows)
    kind = spec["kind"]
    name = spec["name"] + (".npy" if kind == "npy" else ".npz")
    path = folder / name
    key = spec["key"]
    if kind == "npy":
        np.save(path, embeddings, allow_pickle=True)
    elif kind == "npz":
        arrays = {key or "x": embeddings}
        if labels is not None:
            arrays["clusters"] = labels
        np.savez(path, **arrays)
    elif kind == "fake npz member":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(f"{key or 'x'}.npy", b"this is not an array")
            buffer = io.BytesIO()
            np.save(buffer, np.zeros((4, 4), dtype=np.float32))
            archive.writestr("clusters.npy", buffer.getvalue()[:40])
    else:
        path.write_bytes(b"\x93NUMPY" + os.urandom(64))
    return name, key


# --- damaged results folders -----------------------------------------------------------------

FOLDER_FILES = [
    "summary.json",
    "manifest.json",
    "history.csv",
    "loads.npz",
    "scenario.resolved.yaml",
]
#: Damages to the file drawn.
FILE_DAMAGES = (
    "truncate",
    "empty",
    "delete",
    "garbage",
    "not json",
    "json null",
    "json list",
    "as folder",
)

#: Damages to the folder as a whole, or to files other than the one drawn.
FOLDER_DAMAGES = (
    "variants null",
    "variants wrong",
    "huge json number",
    "ragged csv",
    "csv extra column",
    "csv text numbers",
    "npz object",
    "npz missing member",
    "npz wrong shapes",
    "figures as file",
    "report as folder",
    "read-only",
)
DAMAGES = FILE_DAMAGES + FOLDER_DAMAGES


@st.composite
def damages(draw) -> list[tuple[str, str, float]]:
    """One to three damages: (what, which file, where to cut as a fraction)."""
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from([d for d in DAMAGES if allowed(d)]),
                st.sampled_from(FOLDER_FILES),
                st.floats(0, 1),
            ),
            min_size=1,
            max_size=3,
        )
    )


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


#: Damages that rewrite summary.json whatever file was chosen.
SUMMARY_DAMAGES = ("variants null", "variants wrong", "huge json number")


def _mapping(path: Path) -> dict:
    """The JSON object in ``path``, or {} when an earlier damage left something else."""
    value = _json(path)
    return value if isinstance(value, dict) else {}


def damage(folder: Path, what: str, name: str, cut: float) -> None:
    """Damage one file of a results folder copied from a real run.

    Damages are stacked at random: one that needs a file an earlier one turned into a folder
    (or removed the folder of) does not apply.
    """
    try:
        _damage(folder, what, name, cut)
    except (IsADirectoryError, NotADirectoryError):
        pass


def _damage(folder: Path, what: str, name: str, cut: float) -> None:
    path = folder / name
    if path.is_dir() and what in FILE_DAMAGES and what not in ("as folder", "delete"):
        return  # an earlier damage made it a folder
    data = path.read_bytes() if path.is_file() else b""
    summary_path = folder / "summary.json"
    if what in SUMMARY_DAMAGES and summary_path.is_dir():
        return  # an earlier damage made summary.json a folder
    if what == "truncate":
        path.write_bytes(data[: int(len(data) * cut)])
    elif what == "empty":
        path.write_bytes(b"")
    elif what == "delete":
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    elif what == "garbage":
        path.write_bytes(os.urandom(max(1, int(200 * cut))))
    elif what == "not json":
        path.write_text("{'variants': [,")
    elif what == "json null":
        path.write_text("null")
    elif what == "json list":
        path.write_text("[1, 2, 3]")
    elif what == "variants null":
        summary_path.write_text(json.dumps({**_mapping(summary_path), "variants": None}))
    elif what == "variants wrong":
        summary = _mapping(summary_path)
        summary["variants"] = [{"variant": 3, "max_vio_global": "x"}, 5, None]
        (folder / "summary.json").write_text(json.dumps(summary))
    elif what == "huge json number":
        text = (
            (folder / "summary.json").read_text() if (folder / "summary.json").is_file() else "{}"
        )
        (folder / "summary.json").write_text(text.replace("0.", "1" + "0" * 400 + ".", 1))
    elif what in ("ragged csv", "csv extra column", "csv text numbers"):
        history = folder / "history.csv"
        text = history.read_text(errors="replace") if history.is_file() else ""
        # An earlier damage may have emptied the file: damage a header of its own then.
        lines = text.splitlines() or ["variant,step"]
        index = int(cut * (len(lines) - 1))
        if what == "ragged csv":
            lines[index] = lines[index].rsplit(",", 1)[0]
        elif what == "csv extra column":
            lines[index] += ",1,2"
        else:
            lines[index] = ",".join("x" for _ in lines[index].split(","))
        history.write_text("\n".join(lines) + "\n")
    elif what.startswith("npz"):
        loads = folder / "loads.npz"
        arrays = {}
        if loads.is_file():
            try:
                with np.load(loads) as held:
                    arrays = {k: held[k] for k in held.files}
            except Exception:  # noqa: BLE001 (already damaged)
                arrays = {}
        if what == "npz object":
            arrays = {k: np.array([None, "x"], dtype=object) for k in arrays} or {
                "a": np.array([None])
            }
            np.savez(loads, **arrays)
        elif what == "npz missing member":
            np.savez(loads, **dict(list(arrays.items())[: len(arrays) // 2]))
        else:
            np.savez(loads, **{k: np.zeros((2, 3, 5)) for k in arrays})
    elif what == "as folder":
        if path.is_dir():
            return
        path.unlink(missing_ok=True)
        path.mkdir()
    elif what == "figures as file":
        shutil.rmtree(folder / "figures", ignore_errors=True)
        if not (folder / "figures").exists():
            (folder / "figures").write_text("not a folder")
    elif what == "report as folder":
        if not (folder / "report.html").is_dir():
            (folder / "report.html").unlink(missing_ok=True)
            (folder / "report.html").mkdir()
    elif what == "read-only":
        for entry in [folder, *folder.iterdir()]:
            entry.chmod(0o555 if entry.is_dir() else 0o444)


def restore_permissions(folder: Path) -> None:
    """Make a case folder removable again."""
    for dirpath, dirnames, _ in os.walk(folder):
        os.chmod(dirpath, 0o755)
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
