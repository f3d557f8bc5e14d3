"""The guard against stale compiled kernels (Numba checks a kernel against its own file only)."""

import numba
import numpy as np
import pytest

from moesim._jit import _kernel_cache_dirs, drop_stale_kernel_cache


@pytest.mark.parametrize("user_cache_dir", [False, True])
def test_cached_kernels_are_dropped_when_any_kernel_source_changes(
    tmp_path, monkeypatch, user_cache_dir
):
    package = tmp_path / "pkg"
    (package / "kernels").mkdir(parents=True)
    (package / "kernels" / "routing.py").write_text("@njit\ndef f(): pass\n")
    (package / "kernels" / "step.py").write_text("@njit\ndef g(): return f()\n")
    (package / "plots.py").write_text("def figure(): pass\n")
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "nc") if user_cache_dir else "")
    cache_dirs = _kernel_cache_dirs(package)
    assert len(cache_dirs) == 2

    def fill_cache():
        for folder in cache_dirs:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "step.g-1.py311.nbi").write_bytes(b"index")
            (folder / "step.g-1.py311.1.nbc").write_bytes(b"code")

    def cached_files():
        return sorted(p.name for folder in cache_dirs for p in folder.glob("*.nb?"))

    assert drop_stale_kernel_cache(package) is False  # nothing cached yet: stamp written
    fill_cache()
    assert drop_stale_kernel_cache(package) is False  # same sources: the cache is kept
    assert len(cached_files()) == 4

    (package / "plots.py").write_text("def figure(): return 1\n")  # no kernels in it
    assert drop_stale_kernel_cache(package) is False
    assert len(cached_files()) == 4

    (package / "kernels" / "routing.py").write_text("@njit\ndef f(): return 1\n")
    assert drop_stale_kernel_cache(package) is True  # step.g inlines f: all of it goes
    assert cached_files() == []
    fill_cache()
    assert drop_stale_kernel_cache(package) is False


def _spinning_openblas_pools():
    """The OpenBLAS thread servers running after a threaded matmul (skip where there are none)."""
    from moesim._jit import _loaded_openblas_pools

    x = np.ones((2048, 64), np.float32)
    product = x @ np.ones((64, 256), np.float32)
    pools = [pool for pool in _loaded_openblas_pools() if pool.server_running.value]
    if not pools:
        pytest.skip("no pthreads OpenBLAS with worker threads in this process")
    return pools, x, product


def test_openblas_workers_are_stopped_before_a_parallel_kernel_and_come_back():
    from moesim._jit import quiet_blas_threads

    pools, x, product = _spinning_openblas_pools()
    quiet_blas_threads()
    assert not any(pool.server_running.value for pool in pools)
    # OpenBLAS starts its workers again at its next threaded call; the result is the same.
    again = x @ np.ones((64, 256), np.float32)
    assert any(pool.server_running.value for pool in pools)
    np.testing.assert_array_equal(again, product)


def test_openblas_workers_are_left_alone_while_another_thread_may_use_them():
    import threading

    from moesim._jit import quiet_blas_threads

    pools, _, _ = _spinning_openblas_pools()
    worker = threading.Thread(target=quiet_blas_threads)  # not the main thread
    worker.start()
    worker.join()
    assert all(pool.server_running.value for pool in pools)


#: A parallel kernel, then 50 ms asleep: the CPU time the process used meanwhile is what its idle
#: OpenMP workers spent spinning (about 5 ms a region with libgomp's default, measured).
_IDLE_SPIN = """
import time, numpy as np
from moesim.kernels.routing import route
logits = np.random.default_rng(0).standard_normal((2048, 64)).astype(np.float32)
route(logits, top_k=2)
spun = []
for _ in range(5):
    route(logits, top_k=2)
    start = time.process_time()
    time.sleep(0.05)
    spun.append(time.process_time() - start)
print(sorted(spun)[2])
"""


def test_idle_numba_workers_sleep_rather_than_spin_without_the_user_setting_anything():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["NUMBA_NUM_THREADS"] = "2"
    outcome = subprocess.run(
        [sys.executable, "-c", _IDLE_SPIN], env=env, capture_output=True, text=True, timeout=120
    )
    assert outcome.returncode == 0, outcome.stderr
    assert float(outcome.stdout) < 1e-3  # seconds of CPU while the process slept 50 ms
