"""Load traces (moesim/deployment/traces.py): the three formats, how ranks combine, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moesim.deployment import traces
from moesim.deployment.traces import LoadTraceError, MegatronLayout


@pytest.fixture
def loads():
    rng = np.random.default_rng(3)
    return rng.integers(0, 50, size=(4, 3, 8)).astype(np.int64)


def test_three_formats_give_the_same_loads(tmp_path, loads):
    np.save(tmp_path / "t.npy", loads)
    traces.write_csv_trace(loads, tmp_path / "t.csv")
    traces.write_megatron_trace(loads, tmp_path / "run" / "tokens_per_expert", 4, microbatches=3)
    for path in ("t.npy", "t.csv", "run", "run/tokens_per_expert"):
        read = traces.read_load_trace(tmp_path / path)
        assert read.dtype == np.int64
        np.testing.assert_array_equal(read, loads)
        assert traces.check_load_trace(tmp_path / path) == loads.shape


def _write_rank(folder, rank, records):
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r) + "\n" for r in records)
    (folder / f"rank{rank}.jsonl").write_text(lines)


def test_megatron_ranks_combine_by_expert_rank_order(tmp_path):
    # 8 ranks: expert-tensor-parallel 2 (fastest), expert-parallel 2, data-parallel 2.
    folder = tmp_path / "tokens_per_expert"
    for rank in range(8):
        tensor, expert, data = rank % 2, (rank // 2) % 2, rank // 4
        # Tensor-parallel peers saw the same tokens: rank 1 repeats rank 0's counts and is
        # skipped; a different count there would show if it were added.
        counts = [[10 * expert + data + 100 * tensor, 1]]
        records = [{"iter": 5, "block": "decoder", "layer": 0, "tpe": counts}]
        records.append({"iter": 5, "block": "mtp", "mtp_idx": 0, "layer": 0, "tpe": [[9, 9]]})
        _write_rank(folder, rank, records)
    layout = MegatronLayout(expert_parallel=2, expert_tensor_parallel=2)
    loads = traces.read_load_trace(folder, layout=layout)
    # experts 0-1 on expert rank 0, 2-3 on expert rank 1; data-parallel replicas add up.
    np.testing.assert_array_equal(loads, [[[0 + 1, 2, 20 + 1, 2]]])


def test_megatron_pipeline_stages_follow_one_another(tmp_path):
    folder = tmp_path / "tokens_per_expert"
    # pipeline 2, expert-parallel 1: rank 0 holds layers 0-1 (local), rank 1 the next two.
    _write_rank(folder, 0, [{"iter": 1, "layer": l, "tpe": [[l, 0]]} for l in (0, 1)])
    _write_rank(folder, 1, [{"iter": 1, "layer": l, "tpe": [[0, 10 + l]]} for l in (0, 1)])
    loads = traces.read_load_trace(folder, layout=MegatronLayout(pipeline_parallel=2))
    np.testing.assert_array_equal(loads[0], [[0, 0], [1, 0], [0, 10], [0, 11]])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not a JSON object"),
        ("[1, 2]", "expected a JSON object"),
        ('{"iter": 1, "layer": 0}', "no tpe"),
        ('{"iter": -1, "layer": 0, "tpe": [[1, 2]]}', "iter -1; expected an integer >= 0"),
        ('{"iter": 1, "layer": 0, "tpe": [[1, 2], [3]]}', "all of one length"),
        ('{"iter": 1, "layer": 0, "tpe": [[1, -2]]}', "tpe holds -2"),
        ('{"iter": 1, "layer": 0, "tpe": [[1, 2.5]]}', "tpe holds 2.5"),
        ('{"iter": 1, "block": "encoder", "layer": 0, "tpe": [[1, 2]]}', "block 'encoder'"),
        ('{"iter": 0, "layer": 0, "tpe": [[1, 2]]}', "iter 0 layer 0 again \\(first at line 1"),
    ],
)
def test_bad_megatron_lines_are_refused_at_their_line(tmp_path, line, message):
    folder = tmp_path / "tokens_per_expert"
    folder.mkdir()
    first = json.dumps({"iter": 0, "layer": 0, "tpe": [[1, 2]]})
    (folder / "rank0.jsonl").write_text(first + "\n" + line + "\n")
    with pytest.raises(LoadTraceError, match=message) as caught:
        traces.read_load_trace(folder)
    assert caught.value.line == 2
    assert str(caught.value).startswith(f"{folder / 'rank0.jsonl'}:2: ")


def test_megatron_folder_problems(tmp_path, loads):
    folder = tmp_path / "tokens_per_expert"
    traces.write_megatron_trace(loads, folder, 4)
    (folder / "rank2.jsonl").unlink()
    with pytest.raises(LoadTraceError, match="rank2.jsonl is missing"):
        traces.read_load_trace(folder)
    traces.write_megatron_trace(loads, folder, 4)
    with pytest.raises(LoadTraceError, match="do not divide into"):
        traces.read_load_trace(folder, layout=MegatronLayout(expert_parallel=3))
    # A rank that stopped early: its stage's other ranks recorded an iteration it lacks.
    text = (folder / "rank1.jsonl").read_text().splitlines(keepends=True)
    (folder / "rank1.jsonl").write_text("".join(text[:-3]))
    with pytest.raises(LoadTraceError, match="rank1.jsonl: no record for iter 4 layer 0"):
        traces.read_load_trace(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoadTraceError, match="no rank"):
        traces.read_load_trace(tmp_path / "empty")


def test_bad_csv_files_are_refused_at_their_line(tmp_path):
    path = tmp_path / "t.csv"
    cases = [
        ("steps,layer,a,b\n", 1, "header should be step,layer"),
        ("step,layer,a,b\n0,0,1\n", 2, "3 fields; expected 4"),
        ("step,layer,a,b\n0,0,1,x\n", 2, "count 'x' is not a whole number"),
        ("step,layer,a,b\n0,0,1,-1\n", 2, "count -1 is negative"),
        ("step,layer,a,b\n0,0,1,1\n0,0,1,1\n", 3, "again \\(first at line 2\\)"),
        ("step,layer,a,b\n0,1,1,1\n", None, "step 0 has no row for layer 0"),
    ]
    for text, line, message in cases:
        path.write_text(text)
        with pytest.raises(LoadTraceError, match=message) as caught:
            traces.read_load_trace(path)
        assert caught.value.line == line


def test_bad_npy_files_are_refused(tmp_path):
    path = tmp_path / "t.npy"
    for array, message in [
        (np.ones((3, 4)), "expected 3-D"),
        (np.full((1, 1, 2), 0.5), "not a whole number"),
        (np.full((1, 1, 2), -1), "negative"),
        (np.array([[["a"]]]), "expected integer token counts"),
    ]:
        np.save(path, array)
        with pytest.raises(LoadTraceError, match=message):
            traces.read_load_trace(path)
        with pytest.raises(LoadTraceError, match=message):
            traces.check_load_trace(path)
    path.write_bytes(b"not numpy")
    with pytest.raises(LoadTraceError, match="not a readable .npy"):
        traces.read_load_trace(path)


def test_sizes_are_checked_before_allocating(tmp_path, monkeypatch):
    monkeypatch.setattr(traces, "MAX_TRACE_CELLS", 10)
    path = tmp_path / "t.csv"
    traces.write_csv_trace(np.ones((2, 1, 6), dtype=np.int64), path)
    with pytest.raises(LoadTraceError, match="more than 10 counts"):
        traces.read_load_trace(path)
    monkeypatch.setattr(traces, "MAX_TEXT_BYTES", 10)
    with pytest.raises(LoadTraceError, match="bytes of text"):
        traces.read_load_trace(path)


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(LoadTraceError, match="no such file"):
        traces.read_load_trace(tmp_path / "absent.npy")
    (tmp_path / "t.txt").write_text("")
    with pytest.raises(LoadTraceError, match="cannot tell the trace format"):
        traces.read_load_trace(tmp_path / "t.txt")
    with pytest.raises(LoadTraceError, match="unknown trace format"):
        traces.read_load_trace(tmp_path / "t.txt", format="parquet")
