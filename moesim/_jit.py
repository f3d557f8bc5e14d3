"""Numba options, declared once for every kernel in the package.

`cache=True` keeps compiled machine code on disk, so only the first run pays for compilation.
No `fastmath`: the router masks dropped groups with -inf and compares scores for ties, and
fastmath's `ninf`/`nnan` would make those comparisons undefined; reassociation would also make
sums depend on the compiler's vectorisation, which we do not want in values that feed the bias.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
import threading
from pathlib import Path
from typing import NamedTuple

# Numba's OpenMP workers (libgomp) busy-wait for milliseconds after every parallel region before
# they sleep. On a machine that runs anything else, a spinning worker holds a core the working
# thread needs, and every region ends a scheduler tick late: a 2-thread DeepSeek-V3 step (T=4096)
# took 43-65 ms instead of 8-17 ms at load 3 on 2 cores, and the capacity kernel 36 ms instead
# of 0.7 ms (measured side by side, docs/performance.md "Threads"). Passive workers sleep at once;
# no result depends on it. libgomp reads the setting once, when Numba first loads it, which is
# after this import; a user's own OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numba  # noqa: E402  (after the OpenMP setting above, on purpose)

JIT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}

#: Serial kernels: small per-row routines called from the parallel drivers.
njit = numba.njit(**JIT_OPTIONS)

#: Per-token routines on the hot path, inlined into their callers by Numba itself. A call that
#: is not inlined passes every array argument by value with a reference-count increment and
#: decrement each, which costs more than the work of a short routine (about 150 ns a call with
#: a dozen scratch arrays, measured).
njit_inline = numba.njit(inline="always", **JIT_OPTIONS)


def njit_parallel(function):
    """Compile ``function`` as a parallel (``prange``) driver with the package's options."""
    return numba.njit(parallel=True, **JIT_OPTIONS)(function)


#: Tokens per work item of the parallel drivers. Work is split into fixed chunks, never by the
#: number of threads, so that results do not depend on ``NUMBA_NUM_THREADS``.
CHUNK_TOKENS = 256


def has_avx512() -> bool:
    """Whether Numba compiles for AVX-512 (32 vector registers of 64 bytes) on this machine.

    Read from what Numba targets (``NUMBA_CPU_FEATURES``, else the host's features), which is
    part of the key of every cached kernel, so a constant derived from it matches the cached
    code that uses it.
    """
    from llvmlite import binding

    features = numba.config.CPU_FEATURES or binding.get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


def n_chunks_for(n_tokens: int) -> int:
    """Number of fixed work chunks for ``n_tokens`` tokens."""
    return max(1, -(-n_tokens // CHUNK_TOKENS))


# ----------------------------------------------------------------------------------------------
# The thread fight with OpenBLAS (docs/performance.md, "Threads")
#
# After every multi-threaded BLAS call, OpenBLAS's worker threads (a pthreads build: NumPy's and
# SciPy's wheels) busy-wait for about 2**28 CPU cycles (0.1 s) in case more BLAS work comes, in a
# loop that never yields the core. A Numba parallel region launched in that window shares the
# cores with those spinners: ``moesim.route(X @ W.T, ...)`` took 1.5-2x as long as on logits made
# by moesim. OpenBLAS has no call that puts its workers to sleep, but it stops them cleanly with
# ``blas_thread_shutdown_`` (what it does itself around a fork) and starts them again, lazily, at
# its next threaded call. :func:`quiet_blas_threads` does that before moesim's parallel kernels.


class _OpenBlasPool(NamedTuple):
    server_running: ctypes.c_int  #: OpenBLAS's ``blas_server_avail``: its worker threads exist
    shutdown: object  #: ``blas_thread_shutdown_``, called with the GIL held (``ctypes.PyDLL``)


_blas_pools: list[_OpenBlasPool] = []
_blas_pools_scanned_at = -1  # len(sys.modules) at the last scan: an import may load a new BLAS


def _loaded_openblas_pools() -> list[_OpenBlasPool]:
    """The OpenBLAS libraries loaded in this process (from ``/proc/self/maps``) that run a
    pthreads thread server; none where that file does not exist or nothing matches."""
    global _blas_pools, _blas_pools_scanned_at
    if _blas_pools_scanned_at == len(sys.modules):
        return _blas_pools
    _blas_pools_scanned_at = len(sys.modules)
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return _blas_pools
    pools = []
    for path in sorted(p for p in paths if ".so" in p):
        try:
            library = ctypes.PyDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
            pools.append(
                _OpenBlasPool(
                    ctypes.c_int.in_dll(library, "blas_server_avail"),
                    library.blas_thread_shutdown_,
                )
            )
        except (OSError, ValueError, AttributeError):
            continue  # an OpenMP build, or another layout: nothing to stop
    _blas_pools = pools
    return pools


def _no_other_thread_may_call_blas() -> bool:
    """Whether stopping OpenBLAS's workers now is safe: called from the main thread while every
    other Python thread is a daemon (Jupyter's kernel threads are; worker threads a program
    starts to compute, e.g. ``concurrent.futures``, are not). A BLAS call in flight in another
    thread must never see its workers stopped."""
    current = threading.current_thread()
    if current is not threading.main_thread():
        return False
    return all(thread.daemon for thread in threading.enumerate() if thread is not current)


def quiet_blas_threads() -> None:
    """Stop OpenBLAS's busy-waiting worker threads before a Numba parallel region.

    A no-op (a microsecond) unless an OpenBLAS thread server is running and no other thread may
    be calling BLAS. OpenBLAS restarts its workers at its next threaded call (tens of
    microseconds), so BLAS speed is unchanged. With one Numba thread the spinners still take
    cores from other processes (a sweep's workers), so they are stopped then too.
    """
    pools = _loaded_openblas_pools()
    running = [pool for pool in pools if pool.server_running.value]
    if not running or not _no_other_thread_may_call_blas():
        return
    for pool in running:
        pool.shutdown()


def _kernel_cache_dirs(package: Path) -> list[Path]:
    """Where Numba keeps the package's compiled kernels (one folder per source folder)."""
    folders = sorted({path.parent for path in package.rglob("*.py")})
    cache_root = numba.config.CACHE_DIR
    if not cache_root:
        return [folder / "__pycache__" for folder in folders]
    # Numba's layout under NUMBA_CACHE_DIR: <folder name>_<sha1 of the folder's absolute path>.
    return [
        Path(cache_root)
        / f"{folder.name}_{hashlib.sha1(str(folder.resolve()).encode()).hexdigest()}"
        for folder in folders
    ]


def drop_stale_kernel_cache(package: Path = Path(__file__).parent) -> bool:
    """Delete the package's cached kernels if any kernel source changed since they were written.

    Numba checks a cached function against its own file only: a kernel in ``step.py`` that
    inlines one from ``routing.py`` keeps running the old code after ``routing.py`` changes. A
    hash of every file with kernels, kept next to the cache, catches that. Returns whether
    anything was deleted. Installed packages never change in place, so this costs one hash of
    a few files at import; it matters to whoever edits the kernels.
    """
    sources = sorted(p for p in package.rglob("*.py") if "njit" in p.read_text(encoding="utf-8"))
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.relative_to(package).as_posix().encode())
        digest.update(source.read_bytes())
    expected = digest.hexdigest()
    dropped = False
    for cache_dir in _kernel_cache_dirs(package):
        stamp = cache_dir / "moesim-kernels.sha256"
        try:
            if stamp.read_text() == expected:
                continue
        except OSError:
            pass
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            for cached in list(cache_dir.glob("*.nbi")) + list(cache_dir.glob("*.nbc")):
                cached.unlink(missing_ok=True)
                dropped = True
            temporary = stamp.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(expected)
            os.replace(temporary, stamp)
        except OSError:
            pass  # read-only install: Numba falls back to its user-wide cache
    return dropped


drop_stale_kernel_cache()
