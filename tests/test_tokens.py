"""Token stream: statistics, sequences, drift, determinism and trace replay."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import moesim
from moesim import tokens as ts
from moesim._jit import njit
from moesim.kernels.normals import normal_pairs_v2, normal_pairs_v2_reference

BASE = {"tokens": {"tokens_per_step": 4096, "dim": 8, "clusters": 4, "seq_len": 64}}


def tokens_config(**fields):
    return moesim.load_scenario(BASE, [f"tokens.{k}={v}" for k, v in fields.items()]).tokens


def stream_for(config, seed=0):
    return ts.make_stream(config, np.random.SeedSequence(seed))


def test_cluster_frequencies_follow_weights_without_coherence():
    config = tokens_config(seq_coherence=0.0, cluster_weights="dirichlet")
    stream = stream_for(config)
    counts = np.zeros(4)
    for step in range(10):
        _, clusters = ts.generate(stream, step, 4096)
        counts += np.bincount(clusters, minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), stream.base_weights, atol=0.01)


def test_tokens_are_noisy_cluster_means_over_sqrt_d():
    config = tokens_config(separation=2.0, noise=0.5)
    stream = stream_for(config)
    tokens, clusters = ts.generate(stream, 0, 4096)
    assert tokens.dtype == np.float32 and tokens.shape == (4096, 8)
    residual = tokens * np.sqrt(8) - stream.means[clusters]
    assert abs(residual.mean()) < 0.02
    assert residual.std() == pytest.approx(0.5, rel=0.03)


def test_full_coherence_gives_one_cluster_per_sequence():
    stream = stream_for(tokens_config(seq_coherence=1.0))
    _, clusters = ts.generate(stream, 3, 4096)
    per_sequence = clusters.reshape(-1, 64)
    assert (per_sequence == per_sequence[:, :1]).all()


def test_same_step_same_tokens_and_steps_differ():
    stream = stream_for(tokens_config())
    first, _ = ts.generate(stream, 5, 4096)
    again, _ = ts.generate(stream_for(tokens_config()), 5, 4096)
    other, _ = ts.generate(stream, 6, 4096)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_drift_shift_rotate_walk():
    shift = stream_for(tokens_config(**{"drift.kind": "shift", "drift.at_step": 10}))
    np.testing.assert_array_equal(ts.weights_at(shift, 9), shift.base_weights)
    shifted = ts.weights_at(shift, 10)
    np.testing.assert_allclose(np.sort(shifted), np.sort(shift.base_weights))
    rotate = stream_for(tokens_config(**{"drift.kind": "rotate", "drift.period": 8}))
    np.testing.assert_array_equal(ts.weights_at(rotate, 2), np.roll(rotate.base_weights, 1))
    walk = stream_for(tokens_config(**{"drift.kind": "walk", "drift.sigma": 0.5}))
    later = ts.weights_at(walk, 20)
    assert later.sum() == pytest.approx(1.0) and not np.allclose(later, walk.base_weights)
    again = stream_for(tokens_config(**{"drift.kind": "walk", "drift.sigma": 0.5}))
    np.testing.assert_array_equal(ts.weights_at(again, 20), later)


def test_trace_replay_cycles_rows_and_uses_labels(tmp_path):
    rows = np.arange(30, dtype=np.float32).reshape(10, 3)
    labels = np.arange(10) % 2
    path = tmp_path / "trace.npz"
    np.savez(path, embeddings=rows, labels=labels)
    config = moesim.load_scenario(
        {"tokens": {"source": "file", "file": str(path), "tokens_per_step": 4, "seq_len": 4}}
    ).tokens
    stream = stream_for(config)
    tokens, clusters = ts.generate(stream, 2, 4)
    np.testing.assert_array_equal(tokens, rows[[8, 9, 0, 1]])
    np.testing.assert_array_equal(clusters, labels[[8, 9, 0, 1]])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (np.zeros(5), "expected 2-D"),
        (np.array([[1.0, np.nan]]), "NaN or inf"),
        (np.array([["a", "b"]]), "expected floats"),
    ],
)
def test_bad_trace_files_have_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.npy"
    np.save(path, content)
    with pytest.raises(ts.TraceError, match=message):
        ts.load_trace(path)


def test_trace_npz_needs_a_key_when_ambiguous(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, a=np.zeros((2, 2)), b=np.zeros((2, 2)))
    with pytest.raises(ts.TraceError, match="file_key"):
        ts.load_trace(path)
    assert ts.load_trace(path, "b")[0].shape == (2, 2)
    with pytest.raises(ts.TraceError, match="not found"):
        ts.load_trace(tmp_path / "missing.npy")


def test_variants_see_the_same_tokens(monkeypatch):
    """Common random numbers: every variant is routed on the very same token stream."""
    from moesim import engine

    seen: list[tuple[int, bytes, bytes]] = []
    generate = engine.token_stream.generate

    def recording_generate(stream, step, n_tokens):
        tokens, clusters = generate(stream, step, n_tokens)
        if n_tokens == BASE["tokens"]["tokens_per_step"]:  # not learning's held-out batches
            seen.append((step, tokens.tobytes(), clusters.tobytes()))
        return tokens, clusters

    monkeypatch.setattr(engine.token_stream, "generate", recording_generate)
    # With a random-walk drift the stream has state, which each variant must replay from step 0.
    drifting = {"tokens": {**BASE["tokens"], "drift": {"kind": "walk", "sigma": 0.5}}}
    scenario = moesim.load_scenario(
        {
            **drifting,
            "steps": 5,
            "router": {"experts": 8, "top_k": 2},
            "variants": [
                {"name": "sigmoid-bias"},
                {
                    "name": "softmax-none",
                    "router": {"score": "softmax"},
                    "balance": {"bias": {"enabled": False}},
                },
                {"name": "learning", "learning": {"enabled": True}},
            ],
        }  # fmt: skip
    )
    moesim.simulate(scenario, progress=False)
    per_variant = [seen[i : i + 5] for i in range(0, len(seen), 5)]
    assert len(per_variant) == 3 and [s for s, _, _ in per_variant[0]] == list(range(5))
    assert per_variant[0] == per_variant[1] == per_variant[2]


# Labels index per-cluster arrays: every value is checked before anything is allocated or run.
@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([0, 1, 2**63 + 5], dtype=np.uint64), "label 9223372036854775813 at row 2"),
        (np.array([0, 1, 10**11]), "label 100000000000 at row 2 is not below"),
        (np.array([0, -1, 1]), "non-negative"),
        (np.array([0, 1, 4], dtype=np.int8), r"label 4 at row 2 .*clusters: 5 or more"),
        (np.array([0.0, 1.0, 2.0]), "labels must be integers"),
        (np.array([True, False, True]), "labels must be integers"),
        (np.array([0, 1]), r"one per row \(3\)"),
    ],
)
def test_trace_labels_are_range_checked(tmp_path, labels, message):
    path = tmp_path / "trace.npz"
    np.savez(path, embeddings=np.zeros((3, 2), dtype=np.float32), clusters=labels)
    for read in (ts.load_trace, ts.check_trace):
        with pytest.raises(ts.TraceError, match=message):
            read(path, None, 4)


def test_trace_members_that_are_not_arrays_are_refused(tmp_path):
    import io
    import zipfile

    rows = io.BytesIO()
    np.save(rows, np.zeros((3, 2)))
    path = tmp_path / "trace.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("embeddings.npy", rows.getvalue())
        archive.writestr("clusters", b"0 1 2")  # not in .npy format: numpy returns the bytes
    with pytest.raises(ts.TraceError, match="'clusters' is not a NumPy array"):
        ts.check_trace(path)
    np.savez(path, embeddings=np.zeros((3, 2)), clusters=np.array([0, 1, None], dtype=object))
    with pytest.raises(ts.TraceError, match="'clusters' is not readable"):
        ts.check_trace(path)


def test_a_file_key_for_a_npy_and_a_folder_as_trace_are_refused(tmp_path):
    np.save(tmp_path / "trace.npy", np.zeros((3, 2)))
    with pytest.raises(ts.TraceError, match="remove file_key") as caught:
        ts.check_trace(tmp_path / "trace.npy", "embeddings")
    assert caught.value.field == "file_key"
    with pytest.raises(ts.TraceError, match="is a folder"):
        ts.check_trace(tmp_path)


def test_a_run_of_a_trace_with_a_wrapping_label_exits_2_not_a_crash(tmp_path):
    import subprocess
    import sys

    np.savez(
        tmp_path / "trace.npz",
        embeddings=np.zeros((8, 4), dtype=np.float32),
        clusters=np.array([0, 1, 2, 3, 0, 1, 2, 2**63 + 5], dtype=np.uint64),
    )
    (tmp_path / "s.yaml").write_text(
        "steps: 2\ntokens: {source: file, file: trace.npz, tokens_per_step: 8, seq_len: 8}\n"
        "router: {experts: 4, top_k: 2}\n"
    )
    command = [sys.executable, "-m", "moesim", "run", "-q", "s.yaml", "-o", "out"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "s.yaml:2:" in done.stderr and "tokens.file" in done.stderr
    assert not (tmp_path / "out").exists()


@settings(max_examples=40, deadline=None)
@given(state=st.integers(0, 2**64 - 1), n_pairs=st.integers(1, 40))
def test_stream_2_normals_match_their_numpy_twin(state, n_pairs):
    first, second = _normal_pairs_v2(np.uint64(state), n_pairs)
    ref_first, ref_second = normal_pairs_v2_reference(state, n_pairs)
    np.testing.assert_allclose(first, ref_first, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(second, ref_second, rtol=2e-6, atol=2e-6)


@njit
def _normal_pairs_v2(state, n_pairs):
    first = np.empty(n_pairs, np.float32)
    second = np.empty(n_pairs, np.float32)
    work = np.empty((2, n_pairs), np.float32)
    normal_pairs_v2(state, first, second, work[0], work[1])
    return first, second


def _stream_tokens(version, **tokens):
    from moesim.scenario import load_scenario

    config = load_scenario({"tokens": {"stream_version": version, **tokens}}).tokens
    stream = ts.make_stream(config, np.random.SeedSequence(7))
    return stream, ts.generate(stream, 3, config.tokens_per_step)


def test_stream_2_keeps_stream_1s_clusters_with_standard_normal_noise():
    options = dict(tokens_per_step=2048, dim=33, clusters=8, seq_len=256, noise=1.0)
    _, (tokens_1, clusters_1) = _stream_tokens(1, **options)
    stream, (tokens_2, clusters_2) = _stream_tokens(2, **options)
    assert tokens_2.dtype == np.float32 and tokens_2.shape == tokens_1.shape
    np.testing.assert_array_equal(clusters_2, clusters_1)
    assert not np.array_equal(tokens_2, tokens_1)
    noise = tokens_2 * np.sqrt(33) - stream.means[clusters_2]
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 1) < 0.01
    assert abs(np.corrcoef(noise[:, :16].ravel(), noise[:, 17:].ravel())[0, 1]) < 0.02
    # Gaussian tails: the share beyond 2 and 3 standard deviations.
    assert abs((np.abs(noise) > 2).mean() - 0.0455) < 0.003
    assert abs((np.abs(noise) > 3).mean() - 0.0027) < 0.0008
