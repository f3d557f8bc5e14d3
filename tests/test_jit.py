"""The guard against stale compiled kernels (Numba checks a kernel against its own file only)."""

import numba
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
